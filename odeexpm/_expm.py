"""`expm`: the matrix exponential as the solution of `dX/ds = A X`, `X(0) = I`."""

import math
from functools import partial

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact

from ._adjoint import FrechetAdjoint, with_frechet_derivative
from ._checks import as_real_scalar, as_square_matrices, warn_if_below_precision
from ._generator import Constant
from ._linalg import matmul
from ._scaling import (
    BALANCE_FROM,
    balance,
    fitted_by_powers,
    halved,
    scaled_exponent,
    square,
    triangularity,
    unshifted_exponent,
)
from ._solution import RESULTS, Stats, nothing_to_solve, outcome
from ._solve import InChunks, compiled, solve_linear, solver_for, without_nonfinite
from ._solver.polynomial import taylor_step_polynomial


def expm(
    A: ArrayLike,
    t: ArrayLike = 1.0,
    *,
    squarings: int | None = None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
) -> Inexact[Array, "*batch n n"] | tuple[Inexact[Array, "*batch n n"], Stats]:
    """The matrix exponential `exp(t A)`, computed as the solution of a linear ODE.

    `X(s) = exp(s A)` solves `dX/ds = A X`, `X(0) = I`. By default `expm` uses the
    semigroup property `exp(tA) = exp(tA / 2^k)^(2^k)`: it solves the ODE over the
    short interval `[0, t / 2^k]`, where the powers of `t A / 2^k` are small enough for
    a truncation error below the unit roundoff (Al-Mohy and Higham's bound, far below
    `||t A||_1` for non-normal `A`), so that at the defaults one `odeexpm.Taylor` step
    covers it (taken without `diffrax.diffeqsolve`'s loop; another `solver`,
    `stepsize_controller` or diffrax `adjoint` runs `diffrax.diffeqsolve`), then
    squares the result `k` times (exactly on the diagonal and first off-diagonal for
    triangular `A`); where taking out the mean eigenvalue `mu` would leave no squaring
    of several, it takes `exp(mu) exp(tA - mu I)` instead, with none (a near multiple
    of `I` squared would amplify rounding errors). The cost then grows like `log ||A||`
    rather than `||A||`, and stiff inputs (`-1e6 * H @ H.T`) stay cheap.
    `squarings=0` asks for the plain single ODE solve over `[0, t]`.

    **Arguments:**

    - `A`: array of shape `(..., n, n)`, real or complex (float32, float64, complex64,
      complex128; integers are promoted to the default float dtype). Leading axes are a
      batch. The output has the dtype of `A`.
    - `t`: real scalar time; differentiable.
    - `squarings`: `None` (default) picks the number of squarings from the powers of
      `t A` (from `||t A||_1` for solvers other than `odeexpm.Taylor`);
      an `int` `k >= 0` forces exactly `k` (`0` is the plain ODE solve).
    - `solver`: any `diffrax.AbstractSolver`. Default: `odeexpm.Taylor`, a Taylor
      polynomial step for constant generators (degree 21, in 5 matrix products; degree
      12, in 4, for matrices of 64 rows or more that need no squaring); with
      `adjoint=diffrax.BacksolveAdjoint()`, `diffrax.Dopri8()` in double precision and
      `diffrax.Tsit5()` in single precision.
    - `stepsize_controller`: any diffrax step-size controller; or use the shortcut
      `rtol`/`atol` for a `diffrax.PIDController` (if only one is given the other takes
      the same value). Default tolerances: `1e-13` (double), `1e-6` (single).
    - `adjoint`: how derivatives are computed. Default `odeexpm.FrechetAdjoint()`: every
      mode (`jax.grad`, `jax.vjp`, `jax.jvp`, `jax.jacfwd`, `jax.hessian`), through the
      Fréchet derivative (at `A^T` for a gradient), computed by one more forward-mode
      pass of the same solve: as accurate and robust as the forward pass, about twice
      its cost. Any diffrax adjoint differentiates the discrete solve instead:
      `diffrax.RecursiveCheckpointAdjoint()` (reverse mode, exact gradient of the
      discrete solve), `diffrax.BacksolveAdjoint()` (continuous adjoint solved
      backwards, O(1) memory, unstable when `A` is stiff or dissipative),
      `diffrax.DirectAdjoint()` (reverse and forward mode, needed for second
      derivatives such as Hessian-vector products `jax.jvp(jax.grad(f), ...)`),
      `diffrax.ForwardMode()` (forward mode: `jax.jvp`, `jax.jacfwd`).
    - `max_steps`: step budget of the ODE solve.
    - `throw`: if `True` (default) a failure (non-finite input, exhausted step budget,
      `||tA||_1` beyond the reach of 64 squarings)
      raises an error, under `jax.jit` too. If `False` the failed entries are NaN and
      the failure is reported in the statistics (use `return_stats=True`).
    - `return_stats`: if `True` return `(X, stats)` with an `odeexpm.Stats`
      (`num_steps`, `num_accepted_steps`, `num_rejected_steps`, `num_squarings`,
      `result`).

    **Returns:** `exp(t A)`, shape `(..., n, n)`; with `return_stats=True` also the
    `Stats`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> X = odeexpm.expm(A, jnp.pi / 2)      # a rotation by 90 degrees
        >>> bool(jnp.allclose(X, jnp.array([[0.0, 1.0], [-1.0, 0.0]]), atol=1e-5))
        True
        >>> grad = jax.grad(lambda A: odeexpm.expm(A).trace())(A)
        >>> X, stats = odeexpm.expm(A, 100.0, return_stats=True)
        >>> int(stats.num_squarings)
        6
    """
    caller = "odeexpm.expm"
    A = as_square_matrices(A, "A", caller)
    t = as_real_scalar(t, A.dtype, "t", caller)
    warn_if_below_precision(rtol, atol, stepsize_controller, A.dtype, caller)
    check_squarings(squarings, caller)
    if A.size == 0:  # exp of 0 x 0 matrices, or of an empty batch: empty too
        X, stats = nothing_to_solve(0 * A + 0 * t, A.shape[:-2])
        return (X, stats) if return_stats else X
    forward = exponential_solve(
        squarings=squarings,
        solver=solver,
        stepsize_controller=stepsize_controller,
        rtol=rtol,
        atol=atol,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    frechet = adjoint is None or isinstance(adjoint, FrechetAdjoint)
    X, stats = compiled(
        eqx.Partial(_expm_single, forward=forward, frechet=frechet),
        (A, t),
        batch_ndim=A.ndim - 2,
        in_axes=(0, None),
        throw=throw,
        max_steps=max_steps,
    )
    return (X, stats) if return_stats else X


def check_squarings(squarings, caller: str) -> None:
    """A `ValueError` unless `squarings` is `None` or an int `>= 0`."""
    if squarings is not None and (
        isinstance(squarings, bool) or not isinstance(squarings, int) or squarings < 0
    ):
        raise ValueError(f"{caller}: `squarings` must be None or an int >= 0; got {squarings!r}.")


def exponential_solve(*, squarings: int | None, adjoint, **options) -> eqx.Module:
    """`forward(A, t) -> (exp(tA), stats)`: the balanced, scaled, solved and squared
    computation that `expm` and `expm_frechet` share (`options`: the solve's `solver`,
    `stepsize_controller`, `rtol`, `atol`, `max_steps`)."""
    adjoint = FrechetAdjoint() if adjoint is None else adjoint
    options = {**options, "adjoint": adjoint}
    forward = eqx.Partial(_solve_and_square, squarings=squarings, options=options)
    if not isinstance(adjoint, FrechetAdjoint):
        return forward
    # Differentiated in forward mode only, where batches can run in chunks.
    at_defaults = squarings is None and all(
        options[name] is None for name in ("solver", "stepsize_controller", "rtol", "atol")
    )
    on_chunk = eqx.Partial(_unguarded_where_safe, options=options) if at_defaults else None
    return InChunks(forward, on_chunk=on_chunk)


def _expm_single(A, t, *, forward, frechet: bool):
    return (with_frechet_derivative(forward) if frechet else forward)(A, t)


def _solve_and_square(A, t, *, squarings, options):
    (A, t), bad = without_nonfinite((A, t))
    identity = jnp.eye(A.shape[-1], dtype=A.dtype)
    # Chosen here, as the scaling depends on it.
    solver = solver_for(Constant(A), A.dtype, options, exponential=True)
    options = {**options, "solver": solver}
    if squarings is None:
        A, d, norm = balance(A, t)
        X, k, precomputed, mu = scaled_exponent(A, t, solver, norm)
        # Solve dY/ds = X Y over [0, 1]: the times stay static Python numbers, and a
        # first step over the whole interval is usually accepted.
        ys, stats, result = solve_linear(
            Constant(X), identity, 0.0, 1.0, dt0=1.0, exponential=True,
            precomputed=precomputed, **options,
        )  # fmt: skip
    else:
        k = squarings
        X = (t / 2**k) * A
        ys, stats, result = solve_linear(
            Constant(A), identity, 0.0, t / 2**k, exponential=True, **options
        )
    Y = square(ys[0], k, X, options["adjoint"])
    if squarings is None:
        Y = Y * (jnp.exp(mu) * (d[:, None] / d[None, :]))
    return outcome(Y, stats, result, bad, num_squarings=k)


# `||tA||_1 <= BALANCE_FROM` needs at most this many squarings (`halved`; the powers
# only lower it).
_MOST_MODEST_SQUARINGS = math.floor(math.log2(BALANCE_FROM)) + 1


def _unguarded_where_safe(A, t, mapped, *, options):
    """`_solve_and_square` at its defaults (`options`) over a chunk of matrices (`A` of
    shape `(c, n, n)`, `t` of shape `()` or `(c,)`), `mapped` being its `jax.vmap`.

    On small matrices the cost of `_solve_and_square` is the number of its operations,
    not their size, and most of them are its safeguards: the checks for non-finite input,
    balancing, the shift, the exact band of triangular matrices, and the step's and the
    answer's checks. Where none of them would act on any matrix of the chunk (every
    `||tA||_1 <= BALANCE_FROM`, so finite, with no balancing and at most
    `_MOST_MODEST_SQUARINGS` squarings; nothing triangular; no shift promising), the same
    scaled exponent, Taylor polynomial and squarings are evaluated without them (the
    step is then accepted and the answer finite): the same answer, in 0.6 to 0.65 of the
    time on batches of 3x3 to 8x8 matrices. Other chunks run `mapped`.
    """
    solver = solver_for(Constant(A[0]), A.dtype, options, exponential=True)
    if not fitted_by_powers(solver, A.shape[-1]):
        return mapped(A, t)

    t_axis = 0 if t.ndim else None
    X, k0, norm = jax.vmap(halved, in_axes=(0, t_axis))(A, t)

    def unguarded(powers, alpha, k):
        Y, _ = jax.vmap(partial(taylor_step_polynomial, degree=solver.degree))(powers, alpha)
        for i in range(_MOST_MODEST_SQUARINGS):  # (a chunk skips a squaring none of it needs)
            more = k > i
            Y = jax.lax.cond(
                eqxi.unvmap_any(jnp.any(more)),
                lambda Y: jnp.where(more[:, None, None], jax.vmap(matmul)(Y, Y), Y),
                lambda Y: Y,
                Y,
            )
        return Y, jax.vmap(partial(_one_step_stats, solver=solver))(k)

    def scaled(_):
        powers, alpha, k, promising = jax.vmap(partial(unshifted_exponent, solver=solver))(X, k0)
        # (At these norms `k <= _MOST_MODEST_SQUARINGS` always; checked all the same.)
        few = eqxi.unvmap_all(jnp.all((k <= _MOST_MODEST_SQUARINGS) & jnp.logical_not(promising)))
        return jax.lax.cond(few, lambda: unguarded(powers, alpha, k), lambda: mapped(A, t))

    # Checked in two stages, the first before anything but the halving is computed. (A
    # NaN or an infinity in `t` or `A` makes the norm NaN or infinite: not modest.)
    upper, lower = jax.vmap(triangularity)(jax.lax.stop_gradient(A))
    modest = (norm <= BALANCE_FROM) & ~(upper | lower)
    return jax.lax.cond(eqxi.unvmap_all(jnp.all(modest)), scaled, lambda _: mapped(A, t), None)


def _one_step_stats(num_squarings, *, solver) -> Stats:
    one = jnp.ones((), jnp.int32)
    return Stats(one, one, 0 * one, num_squarings, RESULTS.successful, repr(solver))
