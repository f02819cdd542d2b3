"""The one linear-ODE solve that every public function goes through, and its defaults.

`solve_linear` integrates `dy/dt = A(t, args) @ y` with `diffrax.diffeqsolve` (or, for
`expm`'s scaled solve, which one step is known to take, with that step alone). This
module owns the library's one policy for what a user does not choose: the solver
(`default_solver`), the tolerances (`default_tolerances`), the translation of the
`rtol`/`atol` shortcut into a `PIDController`, and which solver goes with which adjoint.
It also holds what every public function does around its solve: zeroing non-finite
input (`without_nonfinite`), compiling once per shape with batches and errors
(`compiled`), and running batches of small matrices in chunks (`InChunks`).
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool, Inexact, PyTree, Real

from ._adjoint import FrechetAdjoint
from ._complex import merge_complex, split_complex
from ._generator import AbstractGenerator, Constant, Lindblad, Modulated
from ._generator.affine import as_modulated
from ._linalg import SKIP_PASSES_FROM
from ._operator import is_operator
from ._scaling import SCALED_NORM
from ._solution import RESULTS, Stats, raise_if_failed
from ._solver import AbstractLinearSolver, AbstractMagnus, Lawson, Magnus6, Magnus8, Taylor
from ._solver.commutators import Commutators
from ._solver.modulated_series import has_control_series
from ._solver.polynomial import cheapest_degree, largest_alpha
from ._term import LinearTerm

# Most operator products one Taylor action step may use. A step of degree m covers a
# shifted norm ||h (A - cI)|| of about m - 5.6 sqrt(m) at rtol 1e-13 (44 for m = 100),
# so higher degrees need fewer products per unit of ||tA|| on dissipative problems; on
# oscillatory ones rounding caps the step well below that, and a rejected step of a high
# degree costs more. 100 balances the two (150: 12% fewer products on a Markov chain,
# 20% more on a skew-symmetric generator). The series stops early when fewer terms suffice.
ACTION_DEGREE = 100
# Terms of a Taylor step in time for a time-dependent `Modulated` operator generator
# (`m (K + 1)` products for K controls). In a fixed-step prototype on the driven Ising
# chain (N = 10), degrees 20, 30 and 40 took within 10% of the same time (50, 49, 45 ms),
# 30 at the smallest error (5e-12, against 2e-10 and 2e-9).
MODULATED_DEGREE = 30
MODULATED_DEGREE_SINGLE = 16


def _is_double(dtype) -> bool:
    return jnp.finfo(dtype).bits == 64


def _tight_tolerance(dtype) -> float:
    return 1e-13 if _is_double(dtype) else 1e-6


def default_tolerances(solver: diffrax.AbstractSolver, dtype) -> tuple[float, float]:
    """`(rtol, atol)` used when neither `rtol`, `atol` nor a controller is given: a Magnus
    or Lawson solver's own `tolerances`, else `1e-13` in double and `1e-6` in single
    precision."""
    if isinstance(solver, (AbstractMagnus, Lawson)):
        tolerance = solver.tolerances[0 if _is_double(dtype) else 1]
    else:
        tolerance = _tight_tolerance(dtype)
    return tolerance, tolerance


def default_solver(
    generator: AbstractGenerator,
    dtype,
    *,
    operator_valued: bool,
    adjoint: diffrax.AbstractAdjoint | None,
    rtol: float | None,
    stepsize_controller: diffrax.AbstractStepSizeController | None,
    exponential: bool,
    expandable: bool = False,
) -> diffrax.AbstractSolver:
    """The solver used when `solver=None`, for a generator whose values are sparse or
    matrix-free operators (`operator_valued`) or dense matrices:

    - with `diffrax.BacksolveAdjoint`, whose adjoint equation is no linear ODE of the
      form the other solvers take: `diffrax.Dopri8()` in double precision, where tight
      tolerances reward a high order, and `diffrax.Tsit5()` in single precision;
    - for `expm` (`exponential`): `Taylor` of the degree whose scaling and squaring
      costs the fewest matrix products at `rtol` (`cheapest_degree`: 21, in 5 products,
      at every tolerance from 1e-16 to 1e-4);
    - for a constant sparse or matrix-free operator (`expm_multiply`): `Taylor` action
      steps of up to `ACTION_DEGREE` products, the series stopping at `rtol`;
    - for a Lindblad master equation: `Lawson(Dopri8())` (`Lawson(Tsit5())` in single
      precision): the oscillations of the Hamiltonian's diagonal (detunings, Kerr
      terms) are integrated exactly, so the steps follow the accuracy asked for, not
      the explicit method's stability at the largest energy;
    - for a time-dependent `Modulated` operator whose controls `jax.experimental.jet`
      can expand in time (`expandable`: smooth functions written with JAX's elementwise
      primitives; not `PiecewiseConstant` or `Interpolated` controls): `Taylor` steps in
      time of degree 30 (16 in single precision), `m (K + 1)` products each, which at
      tight tolerances cover many times the span of a Runge-Kutta step of that cost;
    - for another time-dependent operator: Dopri8 (Tsit5 in single precision). The
      commutator-free Magnus solvers take such generators too, with unitary steps, but
      cost more: on the sparse Ising chain (`n = 1024`, error `2e-8`) `CFMagnus6` took 9
      times the Taylor steps' time and 3.4 times Dopri8's;
    - for a dense generator: `Magnus8` where its precomputed commutators pay (a
      `Modulated` generator with one control and `12 <= n <= 427`, or two and
      `98 <= n <= 146`), otherwise `Magnus6`: unitary steps for skew-Hermitian `A`.

    `solve_linear` hands a function that is a `Modulated` generator written out to this
    rule as that generator (`as_modulated`).
    """
    runge_kutta = diffrax.Dopri8() if _is_double(dtype) else diffrax.Tsit5()
    if isinstance(adjoint, diffrax.BacksolveAdjoint):
        return runge_kutta
    if exponential:
        if rtol is None or isinstance(rtol, jax.core.Tracer):
            # The degree is static: a traced tolerance gets the dtype's default one.
            rtol = _tight_tolerance(dtype)
        return Taylor(degree=cheapest_degree(rtol))
    if isinstance(generator, Lindblad):
        return Lawson(runge_kutta)
    if operator_valued:
        if isinstance(generator, Constant):
            tolerance = _series_tolerance(rtol, stepsize_controller, dtype)
            return Taylor(degree=ACTION_DEGREE, tolerance=tolerance)
        if expandable:
            degree = MODULATED_DEGREE if _is_double(dtype) else MODULATED_DEGREE_SINGLE
            return Taylor(degree=degree)
        return runge_kutta
    if Commutators.pay(generator, Magnus8.commutator_depth):
        return Magnus8()
    return Magnus6()


def solver_for(
    generator: AbstractGenerator,
    dtype,
    options: dict,
    *,
    exponential: bool,
    t0=0.0,
    args: PyTree = None,
) -> diffrax.AbstractSolver:
    """`options["solver"]`, or where it is `None` the `default_solver` for `generator`
    under the solve's `adjoint`, `rtol` and `stepsize_controller` (also in `options`)."""
    if options["solver"] is not None:
        return options["solver"]
    value = eqx.filter_eval_shape(generator, t0, args)  # A(t0, args): shapes only
    operator_valued = is_operator(value)
    expandable = (
        operator_valued
        and isinstance(generator, Modulated)
        and has_control_series(generator, t0, args)
    )
    return default_solver(
        generator, dtype, operator_valued=operator_valued, adjoint=options["adjoint"],
        rtol=options["rtol"], stepsize_controller=options["stepsize_controller"],
        exponential=exponential, expandable=expandable,
    )  # fmt: skip


def _series_tolerance(rtol, stepsize_controller, dtype) -> float:
    """Where the Taylor action series stops: the relative tolerance the solve is asked for."""
    if isinstance(rtol, (int, float)):
        return float(rtol)
    if isinstance(stepsize_controller, diffrax.PIDController):
        controller_rtol = stepsize_controller.rtol
        if isinstance(controller_rtol, (int, float)) and 0 < controller_rtol < 1:
            return float(controller_rtol)
    return _tight_tolerance(dtype)


def make_controller(stepsize_controller, rtol, atol, defaults: tuple[float, float]):
    """The step-size controller: `stepsize_controller`, or a `PIDController` from the
    `rtol`/`atol` shortcut (one given: the other takes its value; none: `defaults`)."""
    if stepsize_controller is not None:
        if rtol is not None or atol is not None:
            raise ValueError(
                "Pass either `stepsize_controller` or the `rtol`/`atol` shortcut, not both."
            )
        return stepsize_controller
    if rtol is None and atol is None:
        rtol, atol = defaults
    elif atol is None:
        atol = rtol
    elif rtol is None:
        rtol = atol
    return diffrax.PIDController(rtol=rtol, atol=atol)


def _clip_to_times(controller, generator, saveat, time_dtype):
    """An adaptive `controller` that also steps exactly to the generator's jump times and
    to the saved times `saveat.subs.ts` (so outputs are never interpolated)."""
    jump_ts, step_ts = generator.jump_ts, saveat.subs.ts
    if not isinstance(controller, diffrax.AbstractAdaptiveStepSizeController) or (
        jump_ts is None and step_ts is None
    ):
        return controller

    def as_times(ts):
        return None if ts is None else jnp.asarray(ts, time_dtype)

    return diffrax.ClipStepSizeController(
        controller, step_ts=as_times(step_ts), jump_ts=as_times(jump_ts)
    )


def _as_time(x, time_dtype):
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


def _check_combination(solver, adjoint, exponential: bool) -> None:
    if isinstance(adjoint, diffrax.BacksolveAdjoint) and isinstance(solver, AbstractLinearSolver):
        raise ValueError(
            "odeexpm: diffrax.BacksolveAdjoint solves an augmented adjoint system with "
            f"the same solver, and odeexpm.{type(solver).__name__} handles only "
            "dy/dt = A(t) y. Use the default RecursiveCheckpointAdjoint with it, or a "
            "Runge-Kutta solver (e.g. diffrax.Dopri8()) with BacksolveAdjoint."
        )
    if isinstance(adjoint, FrechetAdjoint) and not exponential:
        raise ValueError(
            "odeexpm.FrechetAdjoint differentiates exp(tA) of a constant matrix: it "
            "applies to odeexpm.expm only. Use a diffrax adjoint here."
        )


def solve_linear(
    generator: AbstractGenerator,
    y0: Array,
    t0,
    t1,
    *,
    args: PyTree = None,
    saveat: diffrax.SaveAt | None = None,
    dt0=None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    exponential: bool = False,
    precomputed: PyTree = None,
) -> tuple[PyTree, dict, RESULTS]:
    """Solves `dy/dt = generator(t, args) @ y`, `y(t0) = y0` with `diffrax.diffeqsolve`.

    A generator written as a function of time that is a sum of scalar controls times
    fixed matrices is solved as the `Modulated` generator it is (`as_modulated`), so that
    its defaults and steps are those of that form.

    `exponential` marks the solves of `expm` (a dense constant generator propagating the
    identity, to be squared), which the default solver treats apart. `precomputed` is
    what `solver.precompute` gives, where the caller computed it already.

    Returns `(ys, stats, result)` with diffrax's `ys`, its `stats` dictionary (with the
    `"solver"` that ran) and `result` (promoted to `odeexpm.RESULTS`). Never raises on a
    failed solve: callers report the failure through `raise_if_failed` or their
    statistics, as their `throw` asks.
    """
    dtype = y0.dtype
    time_dtype = jnp.finfo(dtype).dtype
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.BacksolveAdjoint):
        # (Backsolving takes Runge-Kutta steps, for which the two forms cost the same.)
        generator = as_modulated(generator, jnp.asarray(t0, time_dtype), args)
    options = dict(
        solver=solver, adjoint=adjoint, rtol=rtol, stepsize_controller=stepsize_controller
    )
    solver = solver_for(generator, dtype, options, exponential=exponential, t0=t0, args=args)
    _check_combination(solver, adjoint, exponential)
    controller = make_controller(stepsize_controller, rtol, atol, default_tolerances(solver, dtype))
    saveat = diffrax.SaveAt(t1=True) if saveat is None else saveat
    controller = _clip_to_times(controller, generator, saveat, time_dtype)
    # What the solver computes once per solve goes into the term, which diffrax closes
    # over, not into its solver state, which reverse mode checkpoints at every step.
    if precomputed is None and isinstance(solver, AbstractLinearSolver):
        precomputed = solver.precompute(generator, t0, y0, args)
    term = LinearTerm(split_complex(generator), split_complex(precomputed))
    if (
        stepsize_controller is None
        and saveat.subs.ts is None
        and _one_step_suffices(solver, adjoint, controller, t0, t1, dt0, dtype)
    ):
        return _one_taylor_step(solver, controller, term, y0)
    solution = diffrax.diffeqsolve(
        term,
        solver,
        _as_time(t0, time_dtype),
        _as_time(t1, time_dtype),
        _as_time(dt0, time_dtype),
        split_complex(y0),
        split_complex(args),  # complex args too travel as real pairs (LinearTerm merges them)
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
        throw=False,
    )
    stats = {**solution.stats, "solver": solver}
    return merge_complex(solution.ys), stats, RESULTS.promote(solution.result)


def _one_step_suffices(solver, adjoint, controller, t0, t1, dt0, dtype) -> bool:
    """Whether the solve is `expm`'s scaled one, which one step covers: a polynomial
    `Taylor` step over `[0, 1]` (`dt0 = 1`), of a degree that covers the scaled norm
    (`largest_alpha >= SCALED_NORM`: `scaled_exponent` then keeps its truncation error
    below the unit roundoff), checked by the `PIDController` of the `rtol`/`atol`
    shortcut at an `rtol` no tighter than that, and differentiated in forward mode
    (`FrechetAdjoint`)."""
    if not (
        isinstance(solver, Taylor)
        and isinstance(adjoint, FrechetAdjoint)
        and isinstance(controller, diffrax.PIDController)
        and all(isinstance(x, (int, float)) for x in (t0, t1, dt0))
        and (t0, t1, dt0) == (0, 1, 1)
    ):
        return False
    rtol, atol = controller.rtol, controller.atol
    if not all(isinstance(x, (int, float)) for x in (rtol, atol)):
        return False
    return (
        rtol >= float(jnp.finfo(dtype).eps) and largest_alpha(solver.degree, dtype) >= SCALED_NORM
    )


def _one_taylor_step(solver, controller, term, y0) -> tuple[PyTree, dict, RESULTS]:
    """`solve_linear`'s output for a solve `_one_step_suffices` for: the step, taken as
    diffrax would take it (bitwise the same), without the loop around it (a quarter of
    `expm`'s compile time; about a tenth of its run time on batches of small matrices).
    The controller still judges the step (from `SKIP_PASSES_FROM` rows on, only where
    its truncation bound is above the unit roundoff): past the reach of 64 squarings
    (`||tA||_1` above `1e19`) the step alone is not accurate, and the solve fails
    (`RESULTS.beyond_scaling`) rather than return a wrong number."""
    rows = y0.shape[0]
    y0 = split_complex(y0)
    y1, y_error, *_ = solver.step(term, 0.0, 1.0, y0, None, None, False)

    def judged():
        error_order = solver.error_order(term)
        _, state = controller.init(term, 0.0, 1.0, y0, 1.0, None, None, error_order)
        accepted, *_ = controller.adapt_step_size(
            0.0, 1.0, y0, y1, None, y_error, error_order, state
        )
        return accepted

    # The controller accepts an error of at most `atol + rtol |y1|` in norm. One at most
    # `u |y1|` entrywise (`within_roundoff`) is within it, as `rtol >= eps = 2u` here: its
    # norm, a pass over the state, is then not needed (from `SKIP_PASSES_FROM` rows on).
    if rows < SKIP_PASSES_FROM:
        accepted = judged()
    else:
        unjudged = eqxi.unvmap_all(solver.within_roundoff(term, 0.0, 1.0, y0, None))
        accepted = jax.lax.cond(unjudged, lambda: jnp.ones((), bool), judged)
    one = jnp.ones((), jnp.int32)
    stats = dict(
        num_steps=one,
        num_accepted_steps=accepted.astype(jnp.int32),
        num_rejected_steps=one - accepted,
        solver=solver,
    )
    result = RESULTS.where(accepted, RESULTS.successful, RESULTS.beyond_scaling)
    return merge_complex(y1)[None], stats, result


def without_nonfinite(tree: PyTree) -> tuple[PyTree, Bool[Array, ""]]:
    """`(tree', bad)`: whether any inexact array in `tree` holds a NaN or an infinity,
    and `tree` with every inexact array zeroed where so. A NaN would make the step-size
    controller reject every step: a harmless problem is solved instead, and the bad input
    reported (`outcome`). For a solve's inputs with their times, see
    `without_nonfinite_solve_inputs`."""
    leaves = [x for x in jtu.tree_leaves(tree) if eqx.is_inexact_array(x)]
    bad = jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))
    zeroed = jtu.tree_map(lambda x: jnp.where(bad, 0, x) if eqx.is_inexact_array(x) else x, tree)
    return zeroed, bad


def without_nonfinite_solve_inputs(
    data: PyTree, times: PyTree
) -> tuple[PyTree, PyTree, Bool[Array, ""]]:
    """`(data', times', bad)`: `without_nonfinite` of a solve's inputs (`data`) and of
    its times apart, `bad` if either holds a NaN or an infinity.

    The times are zeroed only where they are themselves non-finite: times known at
    compile time then stay constants, and XLA folds what diffrax computes from them
    (`t1` stepped down by 100 ulps, a chain of 100 `nextafter`s that otherwise compiled
    into about 1,600 instructions per solve)."""
    data, bad_data = without_nonfinite(data)
    times, bad_times = without_nonfinite(times)
    return data, times, bad_data | bad_times


# On a CPU, a batch of small matrices runs as a loop over chunks of at most this many
# entries (and at most `_CHUNK_MATRICES` matrices), each chunk vmapped: the
# intermediates of a chunk stay in cache, where one vmap over the whole batch streams
# every one of them through memory. 100,000 3x3 exponentials: 2.2x faster; 300 64x64:
# 2.7x. Fewer matrices per chunk than 128 cost more in loop iterations than they save.
_CHUNK_ENTRIES = 32768
_CHUNK_MATRICES = 128


def matrix_chunk(n: int) -> int | None:
    """How many `n x n` matrices of a batch `InChunks` maps at once: on a single CPU
    device only (`None` elsewhere). An accelerator wants the whole batch at once, and a
    batch sharded over devices is already split (a loop over chunks would cross
    devices)."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return None
    return max(1, min(_CHUNK_MATRICES, _CHUNK_ENTRIES // n**2))


class InChunks(eqx.Module):
    """`fn(A, t)`, whose `jax.vmap` over a batch of matrices `A` runs as a loop over
    chunks of `matrix_chunk` matrices, each computed by `on_chunk(A, t, mapped)` (`A`
    and, where batched, `t` with a leading axis over the chunk; `mapped`: `fn` under
    `jax.vmap`, the default): under the caller's `jax.vmap` as under `compiled`'s. `fn`
    and `on_chunk` are differentiated in forward mode only (as `FrechetAdjoint` does; a
    `custom_vmap` has no reverse mode)."""

    fn: Callable
    on_chunk: Callable | None = None

    def __call__(self, A: Inexact[Array, "n n"], t: Real[Array, ""]):
        @custom_vmap
        def chunked(A, t):
            return self.fn(A, t)

        @chunked.def_vmap
        def _rule(axis_size, in_batched, A, t):
            chunk = matrix_chunk(A.shape[-1])
            A_batched, t_batched = in_batched
            if not (A_batched or t_batched):  # (asked so where only tangents are batched)
                out = self.fn(A, t)
                return out, jtu.tree_map(lambda _: False, out)
            in_axes = tuple(0 if batched else None for batched in in_batched)
            mapped = jax.vmap(self.fn, in_axes=in_axes)
            if axis_size == 0:  # (nothing to map: the empty outputs of the right shapes)
                shapes = jax.eval_shape(mapped, A, t)
                out = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
                return out, jtu.tree_map(lambda _: True, out)
            if not A_batched or chunk is None:
                out = mapped(A, t)
            else:
                out = _map_chunks(self._on_chunk(mapped), A, t, t_batched, chunk)
            return out, jtu.tree_map(lambda _: True, out)

        return chunked(A, t)

    def _on_chunk(self, mapped):
        if self.on_chunk is None:
            return mapped
        return lambda A, t: self.on_chunk(A, t, mapped)


def _map_chunks(on_chunk: Callable, A, t, t_batched: bool, chunk: int) -> PyTree:
    """`on_chunk` over the chunks of `chunk` matrices of `A` (and of `t` where batched),
    in a loop; where `chunk` does not divide the batch, the last chunk overlaps the one
    before and only its new rows are kept (each matrix's outputs come from one chunk).
    One chunk's computation to compile, not one more for a remainder."""
    count = A.shape[0]
    if count <= chunk:
        return on_chunk(A, t)

    def part(start):
        A_part = jax.lax.dynamic_slice_in_dim(A, start, chunk)
        return on_chunk(A_part, jax.lax.dynamic_slice_in_dim(t, start, chunk) if t_batched else t)

    starts = jnp.minimum(jnp.arange(0, count, chunk), count - chunk)
    chunks = jax.lax.map(part, starts)
    overlap = len(starts) * chunk - count

    def joined(x):
        whole = x.reshape(-1, *x.shape[2:])
        if not overlap:
            return whole
        return jnp.concatenate([whole[:-chunk], x[-1, overlap:]])

    return jtu.tree_map(joined, chunks)


@eqx.filter_jit
def compiled(
    single: Callable[..., tuple[PyTree[Array], Stats]],
    inputs: tuple,
    *,
    batch_ndim: int,
    in_axes: tuple,
    throw: bool,
    max_steps: int | None,
) -> tuple[PyTree[Array], Stats]:
    """`single(*inputs) -> (y, stats)`, mapped (`jax.vmap`) over `batch_ndim` leading
    axes of the inputs marked in `in_axes` (flattened into one, so that an `InChunks`
    inside sees the whole batch), compiled once per structure, shapes, dtypes and
    options (`single` is an `equinox.Partial`), and raising failures where `throw`
    (under `jax.jit` too)."""
    if batch_ndim:
        mapped = [i for i, axis in enumerate(in_axes) if axis == 0]
        batch_shape = jtu.tree_leaves(inputs[mapped[0]])[0].shape[:batch_ndim]
        inputs = tuple(
            jtu.tree_map(lambda x: x.reshape(-1, *x.shape[batch_ndim:]), x) if axis == 0 else x
            for x, axis in zip(inputs, in_axes)
        )
        y, stats = jax.vmap(single, in_axes=in_axes)(*inputs)
        y, stats = jtu.tree_map(lambda x: x.reshape(*batch_shape, *x.shape[1:]), (y, stats))
    else:
        y, stats = single(*inputs)
    if throw:
        y = raise_if_failed(y, stats.result, max_steps)
    return y, stats
