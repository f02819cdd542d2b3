"""The one linear-ODE solve that every public function goes through.

`solve_linear` integrates `dy/dt = A(t, args) @ y` with `diffrax.diffeqsolve`. It owns the
defaults (solver, tolerances), the translation of the `rtol`/`atol` shortcut into a
`PIDController`, the check for non-finite input, and the reporting of failures: raised
as an error naming the problem when `throw=True`, or recorded in `Stats.result`.
"""

import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int

from ._generators import AbstractGenerator, Constant
from ._taylor import Taylor
from ._term import LinearTerm, merge_complex, split_complex


class RESULTS(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcomes of a solve: diffrax's, plus the ones odeexpm checks for itself."""

    nonfinite_values = (
        "odeexpm: the input contains non-finite values (NaN or inf); there is no "
        "meaningful exponential to return."
    )
    overflow = (
        "odeexpm: the result overflowed (inf or NaN from finite input): exp(tA) exceeds "
        "the range of the dtype. Use a wider dtype or a smaller t."
    )


class Stats(eqx.Module):
    """Solver statistics of one call, returned with `return_stats=True`.

    Every field has the batch shape of the call (a scalar for a single matrix).

    - `num_steps`: steps the solver attempted (accepted plus rejected).
    - `num_accepted_steps`, `num_rejected_steps`: as in `diffrax.Solution.stats`.
    - `num_squarings`: squarings applied after the ODE solve (0 for a plain solve).
    - `result`: an `odeexpm.RESULTS` item; `RESULTS.successful` unless something went
      wrong (with `throw=False` a failure is reported here instead of raised).
    """

    num_steps: Int[Array, "..."]
    num_accepted_steps: Int[Array, "..."]
    num_rejected_steps: Int[Array, "..."]
    num_squarings: Int[Array, "..."]
    result: RESULTS

    @property
    def successful(self) -> Bool[Array, "..."]:
        """Whether the call succeeded (elementwise over a batch)."""
        return self.result == RESULTS.successful


def real_dtype(dtype) -> jnp.dtype:
    """The real dtype of the same precision (float32 for complex64, and so on)."""
    return jnp.finfo(dtype).dtype


def is_double(dtype) -> bool:
    return real_dtype(dtype) == jnp.float64


def default_tolerances(dtype) -> tuple[float, float]:
    """`(rtol, atol)` used when neither `rtol`, `atol` nor a controller is given."""
    return (1e-13, 1e-13) if is_double(dtype) else (1e-6, 1e-6)


def default_solver(dtype, generator, adjoint, rtol) -> diffrax.AbstractSolver:
    """The solver used when `solver=None`.

    For a constant generator: `odeexpm.Taylor`, of the lowest degree `m` whose first
    omitted term `1/(m+1)!` is ten times below `rtol` (16 at the double-precision
    default), so that a step over an interval with `||hA|| <= 1` is accepted at once.
    Otherwise (time-dependent generators, or `BacksolveAdjoint`, whose adjoint equation
    Taylor cannot solve) an explicit Runge-Kutta method: Dormand-Prince 8(5,3) in double
    precision, where tight tolerances reward a high order, and Tsit5 in single precision.
    """
    if isinstance(generator, Constant) and not isinstance(adjoint, diffrax.BacksolveAdjoint):
        if rtol is None or isinstance(rtol, jax.core.Tracer):
            # The degree is static: a traced tolerance gets the dtype's default one.
            rtol = default_tolerances(dtype)[0]
        degree = 1
        while math.factorial(degree + 1) * rtol < 10:
            degree += 1
        return Taylor(degree=degree)
    return diffrax.Dopri8() if is_double(dtype) else diffrax.Tsit5()


def make_controller(stepsize_controller, rtol, atol, dtype):
    if stepsize_controller is not None:
        if rtol is not None or atol is not None:
            raise ValueError(
                "Pass either `stepsize_controller` or the `rtol`/`atol` shortcut, not both."
            )
        return stepsize_controller
    if rtol is None and atol is None:
        rtol, atol = default_tolerances(dtype)
    elif atol is None:
        atol = rtol
    elif rtol is None:
        rtol = atol
    return diffrax.PIDController(rtol=rtol, atol=atol)


def clip_to_times(controller, generator, saveat, time_dtype):
    """An adaptive `controller` that also steps exactly to the generator's jump times and
    to the saved times `saveat.subs.ts` (so outputs are never interpolated)."""
    jump_ts, step_ts = generator.jump_ts, saveat.subs.ts
    if not isinstance(controller, diffrax.AbstractAdaptiveStepSizeController) or (
        jump_ts is None and step_ts is None
    ):
        return controller
    as_times = lambda ts: None if ts is None else jnp.asarray(ts, time_dtype)
    return diffrax.ClipStepSizeController(
        controller, step_ts=as_times(step_ts), jump_ts=as_times(jump_ts)
    )


def as_time(x, time_dtype):
    """A time for diffrax in `time_dtype`.

    A Python number stays one where it would become `time_dtype` anyway: diffrax checks
    the sign of `dt0` at trace time for static times, but with a runtime callback (which
    also keeps JAX from caching the compiled program) for array times.
    """
    if x is None:
        return None
    if isinstance(x, (int, float)) and jax.dtypes.canonicalize_dtype(float) == time_dtype:
        return float(x)
    return jnp.asarray(x, time_dtype)


def outcome(y, stats: dict, result: RESULTS, bad_input, num_squarings=0) -> tuple[Array, Stats]:
    """The answer and `Stats` of a public function, from its solve's output.

    Flags an overflowed answer and non-finite input (`bad_input`) in the result, and
    replaces a failed answer by NaN: a partial solve is never handed out as a number.
    """
    finite = jnp.all(jnp.isfinite(y))
    # A solve whose state grows past sqrt(max) stalls instead of overflowing: the
    # controller's error norm squares the state, overflows, and rejects every step until
    # the budget runs out. diffrax hands back the last accepted state, so that is seen here.
    # (Or the step accepted an infinite state, and the solve never reached its end.)
    exhausted = result == RESULTS.max_steps_reached
    stalled = exhausted & (_beyond_norm_range(y) | jnp.logical_not(finite))
    overflow = (jnp.logical_not(finite) & (result == RESULTS.successful)) | stalled
    result = RESULTS.where(overflow, RESULTS.overflow, result)
    result = RESULTS.where(bad_input, RESULTS.nonfinite_values, result)
    y = jnp.where(result == RESULTS.successful, y, jnp.nan)
    return y, Stats(
        num_steps=stats["num_steps"],
        num_accepted_steps=stats["num_accepted_steps"],
        num_rejected_steps=stats["num_rejected_steps"],
        num_squarings=jnp.asarray(num_squarings, jnp.int32),
        result=result,
    )


def _beyond_norm_range(y) -> Array:
    magnitude = jnp.abs(y)
    largest = jnp.sqrt(jnp.finfo(magnitude.dtype).max)
    return jnp.any(jnp.where(jnp.isfinite(magnitude), magnitude, 0) > largest)


def raise_if_failed(x, result: RESULTS, max_steps) -> Any:
    """Raises an error naming the failure recorded in `result` (under jit and vmap too)."""
    x = eqx.error_if(
        x,
        result == RESULTS.max_steps_reached,
        f"odeexpm: the ODE solver used its whole step budget (max_steps={max_steps}) "
        "before reaching the final time. Increase `max_steps`, loosen `rtol`/`atol`, "
        "use a stiff solver, or (for `expm`) let it scale with `squarings=None`.",
    )
    return result.error_if(x, result != RESULTS.successful)


def solve_linear(
    generator: AbstractGenerator,
    y0: Array,
    t0,
    t1,
    *,
    args=None,
    saveat: diffrax.SaveAt | None = None,
    dt0=None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
) -> tuple[Any, dict, RESULTS]:
    """Solves `dy/dt = generator(t, args) @ y`, `y(t0) = y0` with `diffrax.diffeqsolve`.

    Returns `(ys, stats, result)` with diffrax's `ys`, `stats` dictionary and `result`
    (promoted to `odeexpm.RESULTS`). Never raises on a failed solve: callers report the
    failure through `raise_if_failed` or their statistics, as their `throw` asks.
    """
    dtype = y0.dtype
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if solver is None:
        solver = default_solver(dtype, generator, adjoint, rtol)
    controller = make_controller(stepsize_controller, rtol, atol, dtype)
    saveat = diffrax.SaveAt(t1=True) if saveat is None else saveat
    time_dtype = real_dtype(dtype)
    controller = clip_to_times(controller, generator, saveat, time_dtype)
    sol = diffrax.diffeqsolve(
        LinearTerm(split_complex(generator)),
        solver,
        as_time(t0, time_dtype),
        as_time(t1, time_dtype),
        as_time(dt0, time_dtype),
        split_complex(y0),
        split_complex(args),  # complex args too travel as real pairs (LinearTerm merges them)
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=False,
    )
    return merge_complex(sol.ys), sol.stats, RESULTS.promote(sol.result)
