"""`expm_cond`: the relative condition number of the matrix exponential, estimated."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact, Real

from ._adjoint import frechet
from ._checks import as_real_scalar, as_square_matrices
from ._expm import exponential_solve
from ._expm_frechet import expm_and_frechet
from ._solution import nothing_to_solve
from ._solve import compiled


def expm_cond(
    A: ArrayLike,
    t: ArrayLike = 1.0,
    *,
    num_iterations: int = 4,
    max_steps: int | None = 4096,
    throw: bool = True,
) -> Real[Array, "*batch"]:
    """An estimate of the relative condition number of the matrix exponential at `tA`
    in the Frobenius norm (SciPy's `expm_cond`):
    `kappa_exp(M) = ||L_exp(M)|| ||M||_F / ||exp(M)||_F`, `M = tA`, where `||L_exp(M)||`
    is the largest `||L_exp(M, E)||_F` over `||E||_F = 1`.

    A relative error `kappa_exp * u` in `exp(tA)` is what rounding the input alone to the
    unit roundoff `u` can cause: where a computed exponential's error is near it, no
    method can do better. The norm of the Fréchet derivative is estimated by Lanczos
    (Golub-Kahan) iteration on `E -> L_exp(M, E)` and its adjoint
    `G -> L_exp(M^H, G)` from a fixed pseudo-random start, each iteration two Fréchet
    derivatives (forward-mode passes of `expm`'s computation), instead of SciPy's `n^2`
    of them: the estimate does not exceed the exact value (to rounding), and was at most
    14% below it on the matrices tried (8% on 40 random ones; raise `num_iterations`
    for more). Differentiable in `A` and `t` (at the estimated direction
    of largest growth).

    **Arguments:**

    - `A`: array of shape `(..., n, n)`, real or complex; leading axes are a batch.
    - `t`: real scalar; the condition number is that at `tA`.
    - `num_iterations`: Lanczos iterations (each two Fréchet derivatives, plus one at
      the end).
    - `max_steps`, `throw`: as for `odeexpm.expm`.

    **Returns:** the estimate, a real array of shape `(...)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.diag(jnp.array([1.0, 2.0]))   # e^2 sqrt(5) / sqrt(e^2 + e^4) = 2.09
        >>> round(float(odeexpm.expm_cond(A)), 1)
        2.1
    """
    caller = "odeexpm.expm_cond"
    A = as_square_matrices(A, "A", caller)
    t = as_real_scalar(t, A.dtype, "t", caller)
    if (
        isinstance(num_iterations, bool)
        or not isinstance(num_iterations, int)
        or num_iterations < 1
    ):
        raise ValueError(f"{caller}: `num_iterations` must be an int >= 1; got {num_iterations!r}.")
    if A.size == 0:
        real = jnp.finfo(A.dtype).dtype
        return nothing_to_solve(jnp.zeros(A.shape[:-2], real), A.shape[:-2])[0]
    forward = exponential_solve(
        squarings=None, solver=None, stepsize_controller=None, rtol=None, atol=None,
        adjoint=None, max_steps=max_steps,
    )  # fmt: skip
    kappa, _ = compiled(
        eqx.Partial(_expm_cond_single, forward=forward, num_iterations=num_iterations),
        (A, t),
        batch_ndim=A.ndim - 2,
        in_axes=(0, None),
        throw=throw,
        max_steps=max_steps,
    )
    return kappa


def _expm_cond_single(A, t, *, forward, num_iterations):
    M = t * A
    E = _largest_growth(forward, jax.lax.stop_gradient(M), num_iterations)
    # At the direction of largest growth, the derivative of max ||L(M, E)||_F is that of
    # ||L(M, E)||_F with E held fixed.
    (X, L), stats = expm_and_frechet(forward, M, E)
    kappa = _norm(L) * _norm(M) / _norm(X)
    return kappa, stats


def _largest_growth(forward, M, steps: int) -> Inexact[Array, "n n"]:
    """A unit `E` with `||L(M, E)||_F` near its maximum, by `steps` of Golub-Kahan
    bidiagonalization of `K: E -> L(M, E)` (Lanczos on `K^H K`): `2 steps` Fréchet
    derivatives, converging much faster than the power method on the same count."""
    # The adjoint of K in the Frobenius inner product is G -> L(M^H, G).
    K = lambda E: frechet(forward, M, E)  # noqa: E731
    K_adjoint = lambda G: frechet(forward, M.conj().T, G)  # noqa: E731
    # A generic start: a fixed one could be orthogonal to the direction of largest growth.
    real = jnp.finfo(M.dtype).dtype
    v = _normalized(jax.random.normal(jax.random.key(0), M.shape, real).astype(M.dtype))
    u = K(v)
    alpha = _norm(u)

    def step(carry, _):
        u, v, alpha = carry
        v = K_adjoint(u / alpha) - alpha * v
        beta = _norm(v)
        v = v / beta
        u = K(v) - (beta / alpha) * u
        return (u, v, _norm(u)), (v, alpha, beta)

    # One traced body for all steps: each holds two solves, compiled once.
    (_, _, last), (vs, alphas, betas) = jax.lax.scan(step, (u, v, alpha), length=steps - 1)
    vs = jnp.concatenate([v[None], vs])
    alphas = jnp.concatenate([alphas, last[None]])
    # K V = U B with B upper bidiagonal: the top right singular vector y of B gives V y.
    B = jnp.diag(alphas) + jnp.diag(betas, 1)
    _, _, right = jnp.linalg.svd(B)
    E = jnp.tensordot(right[0].conj(), vs, axes=1)
    return jax.lax.stop_gradient(_normalized(E))


def _norm(X: Inexact[Array, "n n"]) -> Real[Array, ""]:
    return jnp.linalg.norm(X)  # Frobenius


def _normalized(E: Inexact[Array, "n n"]) -> Inexact[Array, "n n"]:
    return E / _norm(E)
