"""`expm_frechet` and `expm_cond` against SciPy, block-exponential identities and
finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
import scipy.linalg

from .helpers import count_compiles, random_matrix, rel_err


def second_frechet(M, E, F):
    """`d/de L_exp(M + eF, E)`: the (1,3) blocks of two 3n x 3n block exponentials
    (Higham, Functions of Matrices, Theorem 3.6 and its second-order analogue)."""
    n = M.shape[0]
    Z = np.zeros_like(M)

    def corner(P, Q):
        return scipy.linalg.expm(np.block([[M, P, Z], [Z, M, Q], [Z, Z, M]]))[:n, 2 * n :]

    return corner(E, F) + corner(F, E)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("n, scale", [(1, 1.0), (5, 0.1), (5, 1.0), (12, 30.0)])
def test_matches_scipy(n, scale, complex_):
    A = random_matrix(n, 1, complex_=complex_, scale=scale)
    E = random_matrix(n, 2, complex_=complex_)
    X, L = odeexpm.expm_frechet(A, E)
    X_ref, L_ref = scipy.linalg.expm_frechet(A, E)
    assert rel_err(X, X_ref) < 1e-12 and rel_err(L, L_ref) < 1e-12


def test_t_batches_and_one_compile(caplog):
    A = np.stack([random_matrix(4, s) for s in range(3)])
    E = np.stack([random_matrix(4, 10 + s) for s in range(3)])
    f = jax.jit(lambda A, E, t: odeexpm.expm_frechet(A, E, t, compute_expm=False))
    L = f(A, E, 0.3)
    for b in range(3):
        ref = scipy.linalg.expm_frechet(0.3 * A[b], E[b], compute_expm=False)
        assert rel_err(L[b], ref) < 1e-12
    assert count_compiles(caplog, f, A + 1, E, 0.7) == 0
    # Under vmap too.
    L_vmap = jax.vmap(lambda A, E: odeexpm.expm_frechet(A, E, 0.3)[1])(A, E)
    assert rel_err(L_vmap, L) < 1e-14


def test_derivatives_in_every_argument():
    rng = np.random.default_rng(3)
    n, t = 4, 0.7
    A, E, F, W = (rng.standard_normal((n, n)) for _ in range(4))

    def loss(A, E, t):
        return jnp.sum(W * odeexpm.expm_frechet(A, E, t, compute_expm=False))

    # Forward mode in A: the second Fréchet derivative (direction t F of tA).
    _, dL = jax.jvp(lambda A: odeexpm.expm_frechet(A, E, t)[1], (A,), (F,))
    assert rel_err(dL, second_frechet(t * A, E, t * F)) < 1e-11
    gA, gE, gt = jax.grad(loss, argnums=(0, 1, 2))(A, E, t)
    # Reverse mode in A agrees with forward mode; in E, L is linear with the transpose
    # G -> L(M^T, G); in t, the direction of tA is A.
    assert abs(np.sum(gA * F) - np.sum(W * dL)) < 1e-11 * np.abs(W * dL).sum()
    assert rel_err(gE, scipy.linalg.expm_frechet(t * A.T, W, compute_expm=False)) < 1e-12
    assert abs(gt - np.sum(W * second_frechet(t * A, E, A))) < 1e-11 * abs(gt)
    # exp(tA) too: its derivative in A is L(tA, t F).
    _, (dX, _) = jax.jvp(lambda A: odeexpm.expm_frechet(A, E, t), (A,), (F,))
    assert rel_err(dX, scipy.linalg.expm_frechet(t * A, t * F, compute_expm=False)) < 1e-12


@pytest.mark.slow
def test_second_derivative_in_t():
    A, E, W = random_matrix(3, 4), random_matrix(3, 5), random_matrix(3, 6)
    f = lambda t: jnp.sum(W * odeexpm.expm_frechet(A, E, t, compute_expm=False))  # noqa: E731
    h = 1e-4  # central differences of the exact first derivative (by SciPy's blocks)
    exact_first = lambda t: np.sum(W * second_frechet(t * A, E, A))  # noqa: E731
    reference = (exact_first(0.5 + h) - exact_first(0.5 - h)) / (2 * h)
    assert abs(jax.hessian(f)(0.5) - reference) < 1e-6 * abs(reference)


def test_bad_and_empty_input():
    A = np.eye(3)
    with pytest.raises(ValueError, match="`E` must have the shape of `A`"):
        odeexpm.expm_frechet(A, np.eye(2))
    E = np.eye(3).copy()
    E[0, 0] = np.nan
    (X, L), stats = odeexpm.expm_frechet(A, E, throw=False, return_stats=True)
    assert np.all(np.isnan(L)) and stats.result == odeexpm.RESULTS.nonfinite_values
    X, L = odeexpm.expm_frechet(np.zeros((2, 0, 0)), np.zeros((2, 0, 0), np.complex128))
    assert L.shape == (2, 0, 0) and L.dtype == np.complex128
    assert odeexpm.expm_cond(np.zeros((0, 0))).shape == ()


@pytest.mark.parametrize(
    "A",
    [
        random_matrix(5, 7),
        random_matrix(6, 8, complex_=True, scale=3.0),
        np.array([[0.1, 1e6], [0.0, 0.1]]),
        pytest.param(np.array([[-1.0, 1e4], [0.0, -2.0]]), marks=pytest.mark.slow),
        pytest.param(
            -50 * np.diag(np.arange(1.0, 5.0)) + np.triu(np.ones((4, 4)), 1),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["random", "complex", "non-normal", "triangular", "stiff"],
)
def test_cond_within_a_few_percent_of_scipy(A):
    estimate, exact = float(odeexpm.expm_cond(A)), scipy.linalg.expm_cond(A)
    # A Lanczos estimate: from below, and at most 14% below (the goal is a factor 3).
    assert 0.86 * exact <= estimate <= exact * (1 + 1e-10)


@pytest.mark.slow
def test_cond_batched_and_differentiable():
    A = np.stack([random_matrix(3, s) for s in range(2)])
    kappa = jax.jit(odeexpm.expm_cond)(A)
    assert kappa.shape == (2,)
    # At convergence the derivative is that of the exact condition number: for a 2x2,
    # whose L_exp(M, .) acts on a 4-dimensional space, 4 Lanczos steps are exact.
    B, F = random_matrix(2, 10), random_matrix(2, 9)
    g = jax.grad(lambda B: odeexpm.expm_cond(B, num_iterations=4))(B)
    h = 1e-6
    fd = (scipy.linalg.expm_cond(B + h * F) - scipy.linalg.expm_cond(B - h * F)) / (2 * h)
    assert abs(np.sum(g * F) - fd) < 1e-5 * abs(fd)
    with pytest.raises(ValueError, match="num_iterations"):
        odeexpm.expm_cond(A, num_iterations=0)
