"""`expm_frechet`: the Fréchet derivative of the matrix exponential, and `exp(tA)` with it."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact

from ._adjoint import frechet, no_tangent
from ._checks import as_real_scalar, as_square_matrices, warn_if_below_precision
from ._expm import check_squarings, exponential_solve
from ._solution import RESULTS, Stats, nothing_to_solve
from ._solve import compiled, without_nonfinite


def expm_frechet(
    A: ArrayLike,
    E: ArrayLike,
    t: ArrayLike = 1.0,
    *,
    compute_expm: bool = True,
    squarings: int | None = None,
    solver=None,
    stepsize_controller=None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
):
    """The Fréchet derivative `L_exp(tA, E)` of the matrix exponential at `tA` in the
    direction `E`, and `exp(tA)` with it.

    `L_exp(M, E) = d/de exp(M + eE) at e = 0 = int_0^1 exp(sM) E exp((1-s)M) ds` is
    computed as the forward-mode tangent of the same balanced, scaled, solved and squared
    computation as `odeexpm.expm` (one pass gives both `exp(tA)` and `L_exp(tA, E)`), so
    it is as accurate and as robust on stiff or non-normal input. It is differentiable
    in every mode, in `A`, `E` and `t`: derivatives are Fréchet derivatives of the block
    exponential `exp([[M, E], [0, M]]) = [[exp(M), L_exp(M, E)], [0, exp(M)]]`
    (Najfeld and Havel), computed the same way at size `2n`.

    **Arguments:**

    - `A`: array of shape `(..., n, n)`, real or complex; leading axes are a batch.
    - `E`: the direction, of the same shape as `A` (the two are promoted to a common
      dtype).
    - `t`: real scalar; the derivative is taken at `tA` (`L_exp(tA, E)`, with `E` the
      direction of `tA` itself, as in `scipy.linalg.expm_frechet(t * A, E)`).
    - `compute_expm`: if `True` (default) return `(exp(tA), L_exp(tA, E))`, else only
      `L_exp(tA, E)` (`exp(tA)` is computed either way).
    - `squarings`, `solver`, `stepsize_controller`, `rtol`, `atol`, `max_steps`,
      `throw`: as for `odeexpm.expm`.
    - `return_stats`: if `True` also return the `odeexpm.Stats` of the solve.

    **Returns:** `(exp(tA), L_exp(tA, E))`, each of shape `(..., n, n)`, or
    `L_exp(tA, E)` alone with `compute_expm=False`; with `return_stats=True`, followed by
    the `Stats`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[1.0, 2.0], [0.0, 1.0]])
        >>> X, L = odeexpm.expm_frechet(A, jnp.eye(2))   # L(A, I) = exp(A): A and I commute
        >>> bool(jnp.allclose(L, X))
        True
    """
    caller = "odeexpm.expm_frechet"
    A = as_square_matrices(A, "A", caller)
    E = as_square_matrices(E, "E", caller)
    if E.shape != A.shape:
        raise ValueError(
            f"{caller}: `E` must have the shape of `A`, {tuple(A.shape)}; got {tuple(E.shape)}."
        )
    dtype = jnp.result_type(A, E)
    A, E = A.astype(dtype), E.astype(dtype)
    t = as_real_scalar(t, dtype, "t", caller)
    warn_if_below_precision(rtol, atol, stepsize_controller, dtype, caller)
    check_squarings(squarings, caller)
    if A.size == 0:
        (X, L), stats = nothing_to_solve((0 * A + 0 * t, 0 * E), A.shape[:-2])
    else:
        forward = exponential_solve(
            squarings=squarings,
            solver=solver,
            stepsize_controller=stepsize_controller,
            rtol=rtol,
            atol=atol,
            adjoint=None,
            max_steps=max_steps,
        )
        (X, L), stats = compiled(
            eqx.Partial(_expm_frechet_single, forward=forward),
            (A, E, t),
            batch_ndim=A.ndim - 2,
            in_axes=(0, 0, None),
            throw=throw,
            max_steps=max_steps,
        )
    out = (X, L) if compute_expm else L
    return (out, stats) if return_stats else out


def _expm_frechet_single(A, E, t, *, forward):
    (E,), bad = without_nonfinite((E,))
    (X, L), stats = expm_and_frechet(forward, t * A, E)
    # The solve checks its own input (A, t); a non-finite direction is flagged here.
    result = RESULTS.where(bad, RESULTS.nonfinite_values, stats.result)
    L = jnp.where(result == RESULTS.successful, L, jnp.nan)
    return (X, L), eqx.tree_at(lambda s: s.result, stats, result)


def expm_and_frechet(
    forward: eqx.Partial, M: Inexact[Array, "n n"], E: Inexact[Array, "n n"]
) -> tuple[tuple[Inexact[Array, "n n"], Inexact[Array, "n n"]], Stats]:
    """`((exp(M), L_exp(M, E)), stats)` by one forward-mode pass of `forward` (which
    computes `(exp(tM), stats)`); differentiable in every mode in `M` and `E` through
    the block exponential."""

    @jax.custom_jvp
    def pair(M, E):
        one = jnp.ones((), jnp.finfo(M.dtype).dtype)
        (X, stats), (L, _) = jax.jvp(lambda M: forward(M, one), (M,), (E,))
        return (X, L), stats

    @pair.defjvp
    def _jvp(primals, tangents):
        M, E = primals
        dM, dE = tangents
        out = pair(M, E)
        # exp([[M, E], [0, M]]) = [[exp(M), L(M, E)], [0, exp(M)]]: the derivative of
        # both blocks is the Fréchet derivative of the block exponential.
        n = M.shape[-1]
        block = frechet(forward, _upper_block(M, E), _upper_block(dM, dE))
        tangent = (block[:n, :n], block[:n, n:])
        return out, (tangent, jax.tree_util.tree_map(no_tangent, out[1]))

    return pair(M, E)


def _upper_block(M: Inexact[Array, "n n"], E: Inexact[Array, "n n"]) -> Inexact[Array, "2n 2n"]:
    return jnp.block([[M, E], [jnp.zeros_like(M), M]])
