"""Conventions made explicit: Hamiltonians passed as `H` (`odeexpm.schrodinger`), and
warnings where a generator looks like the other convention."""

import warnings

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import odeexpm
import pytest
import scipy.linalg
from jax.experimental import sparse

from .helpers import rel_err

Z = jnp.diag(jnp.array([1.0, -1.0]))
X = jnp.array([[0.0, 1.0], [1.0, 0.0]])


def driven(t, a):
    return 0.5 * Z + a * jnp.cos(t) * X


@pytest.mark.parametrize(
    "hamiltonian, kind",
    [
        (odeexpm.Modulated(0.5 * Z, X[None], [lambda t, a: a * jnp.cos(t)]), "Modulated"),
        (driven, None),
        (odeexpm.FromFunction(driven), None),
    ],
    ids=["modulated", "callable", "generator"],
)
def test_schrodinger_time_dependent(hamiltonian, kind):
    A = odeexpm.schrodinger(hamiltonian)
    if kind is not None:
        assert type(A).__name__ == kind  # structure kept: Magnus8's commutators apply
    U = odeexpm.propagator(A, 0.0, 3.0, args=0.3)
    reference = odeexpm.propagator(lambda t, a: -1j * driven(t, a), 0.0, 3.0, args=0.3, rtol=1e-12)
    assert rel_err(U, reference) < 1e-9


@pytest.mark.parametrize("kind", ["dense", "bcoo", "lineax"])
def test_schrodinger_constant(kind):
    H = {
        "dense": X,
        "bcoo": sparse.BCOO.fromdense(X),
        "lineax": lx.FunctionLinearOperator(lambda v: X @ v, jax.ShapeDtypeStruct((2,), X.dtype)),
    }[kind]
    psi = odeexpm.evolve(odeexpm.schrodinger(H), jnp.array([1.0, 0.0]), 0.0, 0.7)
    assert rel_err(psi, scipy.linalg.expm(-0.7j * np.asarray(X))[:, 0]) < 1e-12


def test_hermitian_generator_warns():
    with pytest.warns(UserWarning, match="complex and Hermitian"):
        odeexpm.propagator(lambda t, a: driven(t, 0.3).astype(complex), 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeexpm.propagator(odeexpm.schrodinger(driven), 0.0, 1.0, args=0.3)
        odeexpm.propagator(lambda t, a: driven(t, 0.3), 0.0, 1.0)  # real: no warning


def test_markov_generator_in_the_row_convention_warns():
    n = 6
    Q = np.diag(np.full(n - 1, 1.0), -1) + np.diag(np.full(n - 1, 2.0), 1)
    rows = Q - np.diag(Q.sum(axis=1))  # rows sum to zero: dp/dt = p Q
    p0 = np.eye(n)[0]
    for A in (rows, sparse.BCOO.fromdense(rows)):
        with pytest.warns(UserWarning, match="pass A.T"):
            odeexpm.expm_multiply(A, p0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = odeexpm.expm_multiply(rows.T, p0, 1.0)  # the documented way: pass Q.T
    assert rel_err(p, scipy.linalg.expm(rows).T @ p0) < 1e-12
    assert abs(float(p.sum()) - 1) < 1e-12
