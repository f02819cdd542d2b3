"""Gradients of `expm`, reverse and forward, against the Fréchet derivative."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
from odeexpm.reference import mp_frechet, pade_expm, pade_frechet

from .helpers import random_matrix, rel_err

REVERSE = {
    "frechet": None,  # the default, odeexpm.FrechetAdjoint
    "checkpoint": diffrax.RecursiveCheckpointAdjoint(),
    "backsolve": diffrax.BacksolveAdjoint(),
    "direct": diffrax.DirectAdjoint(),
}
FORWARD = {
    "frechet": None,  # the default, odeexpm.FrechetAdjoint
    "forward": diffrax.ForwardMode(),
    "direct": diffrax.DirectAdjoint(),
}


def vjp_reference(A, W):
    """JAX's gradient of `Re sum(W * exp(A))`.

    `dL = Re <conj(W), L_exp(A, dA)> = Re <L_exp(A^H, conj(W)), dA>`, and for complex
    inputs `jax.grad` returns the conjugate of that Riesz representative.
    """
    return np.conj(np.asarray(pade_frechet(jnp.conj(A).T, jnp.conj(W))))


def loss(expm_fn, W):
    return lambda A: jnp.real(jnp.sum(W * expm_fn(A)))


@pytest.mark.parametrize(
    "adjoint,complex_",
    [
        ("frechet", False),
        ("frechet", True),
        ("checkpoint", False),
        ("checkpoint", True),
        ("backsolve", False),
        ("backsolve", True),
        ("direct", False),
    ],
)
def test_reverse_matches_frechet(adjoint, complex_):
    A = random_matrix(6, 1, complex_=complex_, scale=2.0)
    W = random_matrix(6, 2, complex_=complex_)
    grad = jax.grad(loss(lambda A: odeexpm.expm(A, adjoint=REVERSE[adjoint]), W))(A)
    reference = jax.grad(loss(pade_expm, W))(A)
    # The autodiff gradient of the closed form follows the same convention and equals
    # the Fréchet derivative at A^H in direction conj(W), conjugated.
    assert rel_err(reference, vjp_reference(A, W)) < 1e-12
    assert rel_err(grad, vjp_reference(A, W)) < 1e-8


@pytest.mark.parametrize(
    "adjoint,complex_",
    [
        ("frechet", False),
        ("frechet", True),
        ("forward", False),
        ("forward", True),
        ("direct", False),
    ],
)
def test_forward_matches_frechet(adjoint, complex_):
    A = random_matrix(5, 3, complex_=complex_, scale=2.0)
    E = random_matrix(5, 4, complex_=complex_)
    X, tangent = jax.jvp(lambda A: odeexpm.expm(A, adjoint=FORWARD[adjoint]), (A,), (E,))
    assert rel_err(X, pade_expm(A)) < 1e-10
    assert rel_err(tangent, mp_frechet(A, E, dps=30)) < 1e-8


@pytest.mark.parametrize("adjoint", ["frechet", "forward"])
def test_jacfwd(adjoint):
    A = random_matrix(3, 5)
    jacobian = jax.jacfwd(lambda A: odeexpm.expm(A, adjoint=FORWARD[adjoint]))(A)
    assert rel_err(jacobian, jax.jacrev(pade_expm)(A)) < 1e-9


def test_every_mode_at_the_defaults():
    # jacfwd in t, and second derivatives: jax.hessian (forward over reverse, which
    # Hessian-vector products jax.jvp(jax.grad(f)) also are), against the closed form's
    # autodiff. (jax.grad, jax.jvp and jax.jacfwd in A: the tests above.)
    A = random_matrix(3, 17)
    W = random_matrix(3, 18)
    assert rel_err(jax.jacfwd(lambda t: odeexpm.expm(A, t))(0.7), A @ pade_expm(0.7 * A)) < 1e-9
    f, f_pade = (lambda A, e=e: jnp.sum(W * e(A)) for e in (odeexpm.expm, pade_expm))
    assert rel_err(jax.hessian(f)(A), jax.hessian(f_pade)(A)) < 1e-8


@pytest.mark.parametrize(
    "name,A",
    [
        ("identity", 0.5 * np.eye(4)),
        ("jordan", 2.0 * np.eye(4) + np.eye(4, k=1)),
        ("repeated", np.diag([1.0, 1.0, -2.0, -2.0]) + 0.3 * np.eye(4, k=2)),
    ],
)
def test_repeated_eigenvalues(name, A):
    W = random_matrix(4, 7)
    grad = jax.grad(loss(odeexpm.expm, W))(A)
    assert rel_err(grad, mp_frechet(A.T, W, dps=30)) < 1e-8


def test_large_norm_gradient_with_squarings():
    # 10 squarings: the gradient flows through the solve and the squaring loop.
    A = 1000.0 * np.array([[0.0, 1.0], [-1.0, 0.0]]) - 0.5 * np.eye(2)
    W = np.array([[1.0, 2.0], [-1.0, 0.5]])
    grad = jax.grad(loss(odeexpm.expm, W))(A)
    assert rel_err(grad, mp_frechet(A.T, W, dps=40)) < 1e-8


@pytest.mark.parametrize("adjoint", ["frechet", "checkpoint"])
def test_plain_solve_gradient(adjoint):
    A = random_matrix(4, 8)
    W = random_matrix(4, 9)
    expm = lambda A: odeexpm.expm(A, squarings=0, adjoint=REVERSE[adjoint])
    grad = jax.grad(loss(expm, W))(A)
    assert rel_err(grad, pade_frechet(A.T, W)) < 1e-8


def test_frechet_adjoint_on_stiff_input():
    # The gradient is a forward solve at A^T: as robust as the forward pass. Past 16
    # squarings JAX's Padé returns NaN, and its autodiff gradient is silently zero.
    H = np.random.default_rng(0).standard_normal((6, 2))
    A = -1e6 * H @ H.T
    W = random_matrix(6, 10)
    reference = mp_frechet(A.T, W, dps=40)
    assert rel_err(jax.grad(loss(pade_expm, W))(A), reference) > 0.5
    assert rel_err(jax.grad(loss(odeexpm.expm, W))(A), reference) < 1e-8


def test_gradient_in_t_and_finite_differences():
    A = random_matrix(4, 10)
    W = random_matrix(4, 11)
    f = lambda t: jnp.sum(W * odeexpm.expm(A, t))
    # d/dt exp(tA) = A exp(tA).
    assert abs(jax.grad(f)(0.7) - jnp.sum(W * (A @ pade_expm(0.7 * A)))) < 1e-9
    h = 1e-5
    g = jax.grad(lambda A: jnp.sum(W * odeexpm.expm(A)))(A)
    E = random_matrix(4, 12)
    fd = (jnp.sum(W * odeexpm.expm(A + h * E)) - jnp.sum(W * odeexpm.expm(A - h * E))) / (2 * h)
    assert abs(jnp.sum(g * E) - fd) < 1e-7 * max(1.0, abs(fd))


def test_hessian_vector_product_with_direct_adjoint():
    A = random_matrix(4, 13)
    W, V = random_matrix(4, 14), random_matrix(4, 15)
    f = lambda adjoint: lambda A: jnp.sum(W * odeexpm.expm(A, adjoint=adjoint))
    hvp = jax.jvp(jax.grad(f(diffrax.DirectAdjoint())), (A,), (V,))[1]
    reference = jax.jvp(jax.grad(lambda A: jnp.sum(W * pade_expm(A))), (A,), (V,))[1]
    assert rel_err(hvp, reference) < 1e-8


def test_float32_gradient():
    A = random_matrix(5, 16).astype(np.float32)
    W = random_matrix(5, 17).astype(np.float32)
    grad = jax.grad(lambda A: jnp.sum(W * odeexpm.expm(A)))(jnp.asarray(A))
    assert grad.dtype == jnp.float32
    assert rel_err(grad, pade_frechet(A.T.astype(np.float64), W.astype(np.float64))) < 1e-5
