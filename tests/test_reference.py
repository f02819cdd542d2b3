"""The references: agreement with each other and with analytic forms; Taylor's failure."""

import jax.numpy as jnp
import numpy as np
from odeexpm.reference import mp_expm, mp_frechet, pade_expm, pade_frechet, taylor_expm

from .helpers import random_matrix, rel_err

WARD = np.array([[-49.0, 24.0], [-64.0, 31.0]])


def ward_exact():
    # A = V diag(-17, -1) V^-1 with V = [[3, 1], [4, 2]].
    V = np.array([[3.0, 1.0], [4.0, 2.0]])
    return V @ np.diag(np.exp([-17.0, -1.0])) @ np.linalg.inv(V)


def test_mp_expm_analytic():
    assert rel_err(mp_expm(WARD, dps=40), ward_exact()) < 1e-15
    theta = 1000.0
    rotation = theta * np.array([[0.0, 1.0], [-1.0, 0.0]])
    exact = [[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]
    assert rel_err(mp_expm(rotation, dps=40), exact) < 1e-15
    nilpotent = np.diag([6.0, 6.0, 6.0], 1)
    exact = (
        np.eye(4) + nilpotent + nilpotent @ nilpotent / 2 + nilpotent @ nilpotent @ nilpotent / 6
    )
    assert rel_err(mp_expm(nilpotent), exact) < 1e-15


def test_pade_and_mp_agree():
    A = random_matrix(6, 0, complex_=True, scale=2.0)
    E = random_matrix(6, 1, complex_=True)
    assert rel_err(pade_expm(A), mp_expm(A, dps=30)) < 1e-13
    assert rel_err(pade_frechet(A, E), mp_frechet(A, E, dps=30)) < 1e-12


def test_naive_taylor_fails_on_ward():
    # Terms of size ~1e6 cancel to an answer of size ~1: about 1e6 * eps is lost.
    error64 = rel_err(taylor_expm(jnp.asarray(WARD), terms=150), ward_exact())
    assert 1e-10 < error64 < 1e-6  # half the digits gone in float64
    error32 = rel_err(taylor_expm(jnp.asarray(WARD, jnp.float32), terms=150), ward_exact())
    assert error32 > 0.5  # no correct digit in float32
    # It is fine on a small well-scaled matrix.
    A = random_matrix(4, 2)
    assert rel_err(taylor_expm(jnp.asarray(A), terms=30), mp_expm(A, dps=30)) < 1e-14
