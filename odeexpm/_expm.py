"""`expm`: the matrix exponential as the solution of `dX/ds = A X`, `X(0) = I`."""

import functools

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact, Real

from ._adjoint import FrechetAdjoint, forward_mode, with_frechet_gradient
from ._checks import as_real_scalar, as_square_matrices
from ._generators import Constant
from ._solve import Stats, outcome, raise_if_failed, solve_linear

# The automatic scaling solves on [0, t / 2^s] with ||t A||_1 / 2^s <= SCALED_NORM, where
# a high-order explicit step covers the interval in a few steps, then squares s times.
SCALED_NORM = 1.0
# More squarings than this are never applied: 2^64 already exceeds any norm whose
# exponential is representable, and the bound sizes the reverse-mode checkpoints.
MAX_SQUARINGS = 64
# Sweeps of the (simultaneous) balancing iteration; each costs O(n^2).
BALANCE_SWEEPS = 8


def expm(
    A: Inexact[ArrayLike, "... n n"],
    t: Real[ArrayLike, ""] = 1.0,
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
) -> Inexact[Array, "... n n"] | tuple[Inexact[Array, "... n n"], Stats]:
    """The matrix exponential `exp(t A)`, computed as the solution of a linear ODE.

    `X(s) = exp(s A)` solves `dX/ds = A X`, `X(0) = I`. By default `expm` uses the
    semigroup property `exp(tA) = exp(tA / 2^k)^(2^k)`: it solves the ODE with
    `diffrax.diffeqsolve` over the short interval `[0, t / 2^k]`, where
    `||t A||_1 / 2^k <= 1`, then squares the result `k` times. The cost then grows
    like `log ||A||` rather than `||A||`, and stiff inputs (`-1e6 * H @ H.T`) stay
    cheap. `squarings=0` asks for the plain single ODE solve over `[0, t]`.

    **Arguments:**

    - `A`: array of shape `(..., n, n)`, real or complex (float32, float64, complex64,
      complex128; integers are promoted to the default float dtype). Leading axes are a
      batch. The output has the dtype of `A`.
    - `t`: real scalar time; differentiable.
    - `squarings`: `None` (default) picks the number of squarings from `||t A||_1`;
      an `int` `k >= 0` forces exactly `k` (`0` is the plain ODE solve).
    - `solver`: any `diffrax.AbstractSolver`. Default: `odeexpm.Taylor`, a Taylor
      polynomial step for constant generators (degree 16 at the double-precision
      tolerance); with `adjoint=diffrax.BacksolveAdjoint()`, `diffrax.Dopri8()` in double
      precision and `diffrax.Tsit5()` in single precision.
    - `stepsize_controller`: any diffrax step-size controller; or use the shortcut
      `rtol`/`atol` for a `diffrax.PIDController` (if only one is given the other takes
      the same value). Default tolerances: `1e-13` (double), `1e-6` (single).
    - `adjoint`: how gradients flow. Default `odeexpm.FrechetAdjoint()`: reverse mode
      (`jax.grad`, `jax.vjp`), the gradient being the Fréchet derivative at `A^T`,
      computed by one more (forward-mode) pass of the same solve: as accurate and
      robust as the forward pass, about twice its cost. Any diffrax adjoint
      differentiates the discrete solve instead:
      `diffrax.RecursiveCheckpointAdjoint()` (reverse mode, exact gradient of the
      discrete solve), `diffrax.BacksolveAdjoint()` (continuous adjoint solved
      backwards, O(1) memory, unstable when `A` is stiff or dissipative),
      `diffrax.DirectAdjoint()` (reverse and forward mode, needed for second
      derivatives such as Hessian-vector products `jax.jvp(jax.grad(f), ...)`),
      `diffrax.ForwardMode()` (forward mode: `jax.jvp`, `jax.jacfwd`).
    - `max_steps`: step budget of the ODE solve.
    - `throw`: if `True` (default) a failure (non-finite input, exhausted step budget)
      raises an error, under `jax.jit` too. If `False` the failed entries are NaN and
      the failure is reported in the statistics (use `return_stats=True`).
    - `return_stats`: if `True` return `(X, stats)` with an `odeexpm.Stats`
      (`num_steps`, `num_accepted_steps`, `num_rejected_steps`, `num_squarings`,
      `result`).

    **Returns:** `exp(t A)`, shape `(..., n, n)`; with `return_stats=True` also the
    `Stats`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> X = odeexpm.expm(A, jnp.pi / 2)      # a rotation by 90 degrees
        >>> bool(jnp.allclose(X, jnp.array([[0.0, 1.0], [-1.0, 0.0]]), atol=1e-5))
        True
        >>> grad = jax.grad(lambda A: odeexpm.expm(A).trace())(A)
        >>> X, stats = odeexpm.expm(A, 100.0, return_stats=True)
        >>> int(stats.num_squarings)
        7
    """
    caller = "odeexpm.expm"
    A = as_square_matrices(A, "A", caller)
    t = as_real_scalar(t, A.dtype, "t", caller)
    if squarings is not None and (
        isinstance(squarings, bool) or not isinstance(squarings, int) or squarings < 0
    ):
        raise ValueError(f"{caller}: `squarings` must be None or an int >= 0; got {squarings!r}.")
    X, stats = _expm(
        A,
        t,
        squarings=squarings,
        throw=throw,
        solve_options=dict(
            solver=solver,
            stepsize_controller=stepsize_controller,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
            max_steps=max_steps,
        ),
    )
    return (X, stats) if return_stats else X


# Compiled once per shape, dtype and options, so that eager calls are cached too.
@eqx.filter_jit
def _expm(A, t, *, squarings, throw, solve_options):
    adjoint = solve_options["adjoint"]
    adjoint = FrechetAdjoint() if adjoint is None else adjoint
    solve_options = {**solve_options, "adjoint": forward_mode(adjoint)}
    single = functools.partial(_expm_single, squarings=squarings, solve_options=solve_options)
    if isinstance(adjoint, FrechetAdjoint):
        single = with_frechet_gradient(single)
    for _ in range(A.ndim - 2):
        single = jax.vmap(single, in_axes=(0, None))
    X, stats = single(A, t)
    if throw:
        X = raise_if_failed(X, stats.result, solve_options["max_steps"])
    return X, stats


def num_squarings(A: Array, t: Array) -> Array:
    """The `k` with `||t A||_1 / 2^k <= SCALED_NORM`, clipped to `[0, MAX_SQUARINGS]`."""
    norm = jnp.max(jnp.sum(jnp.abs(t * A), axis=-2))
    _, exponent = jnp.frexp(jax.lax.stop_gradient(norm) / SCALED_NORM)
    # frexp gives norm = m 2^e with m in [0.5, 1): e squarings reach a norm below 1.
    return jnp.clip(exponent, 0, MAX_SQUARINGS).astype(jnp.int32)


def balance(A: Array) -> tuple[Array, Array]:
    """A diagonal similarity `B = D^-1 A D`, `D = diag(d)`, that evens out row and column
    norms (as LAPACK's `gebal`, without permutations); returns `(B, d)`.

    Badly scaled matrices (Moler's 3x3 has an entry 2e10 but eigenvalues below 64) have a
    norm far above their spectral radius, which would ask for needless squarings, each
    amplifying rounding errors. The scales are powers of two, so the similarity is exact.
    `B` is used only where it lowers the 1-norm.
    """
    real = jnp.finfo(A.dtype).dtype
    magnitude = jnp.abs(jax.lax.stop_gradient(A)) * (1 - jnp.eye(A.shape[-1], dtype=real))

    def sweep(_, log2_d):
        d = jnp.exp2(log2_d)
        scaled = magnitude * d[None, :] / d[:, None]
        column, row = jnp.sum(scaled, axis=0), jnp.sum(scaled, axis=1)
        usable = (column > 0) & (row > 0)
        # Multiplying column i by f and row i by 1/f balances them at f = sqrt(row / column).
        step = jnp.round(0.5 * jnp.log2(jnp.where(usable, row / jnp.where(usable, column, 1), 1)))
        return log2_d + step

    log2_d = jax.lax.fori_loop(0, BALANCE_SWEEPS, sweep, jnp.zeros(A.shape[-1], real))
    d = jnp.exp2(log2_d)
    B = A * (d[None, :] / d[:, None])
    norm = lambda M: jnp.max(jnp.sum(jnp.abs(M), axis=-2))
    better = norm(jax.lax.stop_gradient(B)) < norm(jax.lax.stop_gradient(A))
    return jnp.where(better, B, A), jnp.where(better, d, jnp.ones_like(d))


def _loop_kind(adjoint) -> str:
    # The squaring loop must be differentiable in the same modes as the solve.
    if adjoint is None or isinstance(adjoint, diffrax.ForwardMode):
        return "lax"
    if isinstance(adjoint, diffrax.DirectAdjoint):
        return "bounded"
    return "checkpointed"


def square(X: Array, k, *, kind: str) -> Array:
    """`X^(2^k)` by `k` squarings; `k` a Python int or a traced integer."""
    if isinstance(k, int):
        for _ in range(k):
            X = X @ X
        return X
    _, X = eqxi.while_loop(
        lambda carry: carry[0] < k,
        lambda carry: (carry[0] + 1, carry[1] @ carry[1]),
        (jnp.zeros((), jnp.int32), X),
        max_steps=MAX_SQUARINGS,
        kind=kind,
        checkpoints=8 if kind == "checkpointed" else None,
    )
    return X


def _expm_single(A, t, *, squarings, solve_options):
    n = A.shape[-1]
    bad = jnp.logical_not(jnp.all(jnp.isfinite(A)) & jnp.isfinite(t))
    # A NaN would make the step-size controller reject every step; solve a harmless
    # problem instead and report the bad input.
    A = jnp.where(bad, 0, A)
    t = jnp.where(bad, 0, t)
    identity = jnp.eye(n, dtype=A.dtype)
    if squarings is None:
        A, d = balance(A)
        k = num_squarings(A, t)
        # Solve dX/ds = (h A) X over [0, 1] with h = t / 2^k: the times stay static
        # Python numbers, and a first step over the whole interval is usually accepted.
        h = jnp.ldexp(t, -k)
        ys, stats, result = solve_linear(
            Constant(h * A), identity, 0.0, 1.0, dt0=1.0, **solve_options
        )
    else:
        k = squarings
        ys, stats, result = solve_linear(
            Constant(A), identity, 0.0, t / 2**k, **solve_options
        )
    X = square(ys[0], k, kind=_loop_kind(solve_options["adjoint"]))
    if squarings is None:
        X = X * (d[:, None] / d[None, :])
    return outcome(X, stats, result, bad, num_squarings=k)
