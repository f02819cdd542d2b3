"""Identities of the exponential, as property tests over random matrices."""

import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
from hypothesis import given, settings, strategies as st

from .helpers import rel_err

N = 5
expm = jax.jit(odeexpm.expm)


@st.composite
def matrices(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.floats(0.01, 8.0))
    complex_ = draw(st.booleans())
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, N)) + (1j * rng.standard_normal((N, N)) if complex_ else 0)
    return jnp.asarray(scale * A / np.sqrt(N))


settings.register_profile("odeexpm", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("odeexpm")


def condition(X) -> float:
    # Checking det(X) or X X^-1 = I in floating point loses cond(X) * eps by itself.
    return float(np.linalg.cond(np.asarray(X)))


@given(matrices())
def test_det_is_exp_trace(A):
    X = expm(A)
    det = jnp.linalg.det(X)
    assert abs(det - jnp.exp(jnp.trace(A))) <= 1e-12 * condition(X) * abs(det)


@given(matrices())
def test_inverse_is_exp_of_minus(A):
    X = expm(A)
    assert rel_err(X @ expm(-A), np.eye(N)) < 1e-12 * condition(X)


@given(matrices())
def test_transpose_commutes(A):
    assert rel_err(expm(A.T), expm(A).T) < 1e-12


@given(matrices(), st.floats(-2.0, 2.0), st.floats(-2.0, 2.0))
def test_semigroup(A, s, t):
    assert rel_err(expm(A, s) @ expm(A, t), expm(A, s + t)) < 1e-10
