"""`propagator` and `evolve`: time-ordered exponentials of a time-dependent generator."""

import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Inexact, PyTree

from ._checks import as_array, as_real_scalar, checked_dtype, warn, warn_if_below_precision
from ._generator import AbstractGenerator, Lindblad
from ._generator.function import from_callable
from ._operator import LineaxOperator, is_operator
from ._solution import Stats, outcome
from ._solve import compiled, solve_linear, without_nonfinite_solve_inputs


def propagator(
    A: AbstractGenerator | Callable,
    t0: ArrayLike,
    t1: ArrayLike,
    *,
    args: PyTree = None,
    ts: ArrayLike | None = None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
) -> Inexact[Array, "*times n n"] | tuple[Inexact[Array, "*times n n"], Stats]:
    """The time-ordered exponential `U(t1, t0)`: the solution of `dU/dt = A(t, args) U`,
    `U(t0) = I`, computed with `diffrax.diffeqsolve`.

    **Arguments:**

    - `A`: the generator: an `odeexpm.AbstractGenerator` (`Constant`,
      `PiecewiseConstant`, `Modulated`, `Interpolated`, or your own subclass, whose
      array fields are differentiable parameters) or any callable `A(t, args)` returning
      an `(n, n)` array, real or complex (float32, float64, complex64, complex128). A
      Magnus step samples `A` at its nodes under `jax.vmap` (one evaluation per step). For
      an `odeexpm.Lindblad` master equation the result is its `(n^2, n^2)`
      superoperator on column-stacked `vec(rho)`.
    - `t0`, `t1`: real scalars; `t1 < t0` integrates backwards.
    - `args`: passed to `A(t, args)`; its arrays are differentiable.
    - `ts`: optional increasing times in `[t0, t1]` (or `[t1, t0]`): then `U(ts[i], t0)`
      is returned, stacked on a leading axis. The solver steps exactly to each of them.
    - `solver`: any `diffrax.AbstractSolver`. Default: `odeexpm.Magnus8()` for a dense
      `Modulated` generator whose commutators it can use cheaply and store (one control
      and `12 <= n <= 427`, two and `98 <= n <= 146`; a function such as
      `lambda t, a: -1j * (H0 + a * jnp.sin(t) * H1)` is solved as the `Modulated`
      generator it is), `odeexpm.Magnus6()` for other
      dense generators (both with unitary steps for skew-Hermitian `A`);
      for sparse or matrix-free ones, `odeexpm.Taylor` steps in time of degree 30 for a
      `Modulated` generator whose controls `jax.experimental.jet` can expand, action
      steps for a constant one, `diffrax.Dopri8()` otherwise;
      `odeexpm.Lawson(diffrax.Dopri8())` for an `odeexpm.Lindblad` master equation
      (rtol = atol = 1e-10); with `adjoint=diffrax.BacksolveAdjoint()`,
      `diffrax.Dopri8()`, as backsolving needs a solver for general vector fields.
      `Tsit5` replaces `Dopri8` in single precision.
    - `stepsize_controller`, `rtol`, `atol`: as in `odeexpm.expm`. Default tolerances
      for the Magnus solvers: `rtol = atol = 3e-10` for `Magnus8` and `1e-9` for
      `Magnus6` (relative errors about 1e-10), `1e-12` for `Magnus4`/`CFMagnus4`, `1e-8`
      for `Magnus2`, in double precision; `3e-6` (`Magnus8`), `1e-5` (`Magnus6`,
      `Magnus2`) or `1e-6` in single precision. Other solvers use `odeexpm.expm`'s
      defaults. Jump times of the generator (`A.jump_ts`) and `ts` are added to any
      adaptive controller (`diffrax.ClipStepSizeController`).
    - `dt0`: the initial step; required with `diffrax.ConstantStepSize()` (which never
      sees the jump times: choose `dt0` to land on them). Default: chosen by the
      adaptive controller.
    - `adjoint`: how gradients flow, as in `odeexpm.expm`. Default
      `diffrax.RecursiveCheckpointAdjoint()` (reverse mode, exact gradients of the
      discrete solve, robust). `diffrax.ForwardMode()` for `jax.jvp`/`jax.jacfwd`;
      `diffrax.DirectAdjoint()` for both and for second derivatives;
      `diffrax.BacksolveAdjoint()` for O(1) memory in the number of steps, but it
      integrates `U` backwards, which is unstable when `A` is stiff or dissipative, and
      it does not work with the Magnus solvers.
    - `max_steps`: step budget of the solve.
    - `throw`: if `True` (default) failures (non-finite input, exhausted step budget)
      raise an error, under `jax.jit` too; if `False` the result is NaN and the failure
      is reported in the statistics.
    - `return_stats`: if `True` return `(U, stats)` with an `odeexpm.Stats`.

    **Returns:** `U(t1, t0)` of shape `(n, n)`, or `(len(ts), n, n)` with `ts`; with
    `return_stats=True` also the `Stats`. The dtype is that of `A(t0, args)`.

    Compiled once per generator structure, shapes, dtypes and options: pass a generator
    defined once (not a new `lambda` per call) to reuse the compilation.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> Z = jnp.array([[1.0, 0.0], [0.0, -1.0]])
        >>> def A(t, amplitude):       # a driven qubit, A = -i H(t)
        ...     return -1j * (0.5 * Z + amplitude * jnp.cos(t) * X)
        >>> Us = odeexpm.propagator(A, 0.0, 10.0, args=0.3, ts=jnp.linspace(0.0, 10.0, 5))
        >>> Us.shape
        (5, 2, 2)
        >>> bool(jnp.allclose(Us[-1].conj().T @ Us[-1], jnp.eye(2), atol=1e-5))   # unitary
        True

        Gradients with respect to `args` (or to the arrays of a generator):

        ```python
        population = lambda a: jnp.abs(odeexpm.propagator(A, 0.0, 10.0, args=a)[1, 0]) ** 2
        dp_da = jax.grad(population)(0.3)
        ```
    """
    caller = "odeexpm.propagator"
    generator = _as_generator(A, caller)
    n, dtype = _signature(generator, t0, args, caller)
    y0 = jnp.eye(n, dtype=dtype)
    options = dict(
        solver=solver,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        rtol=rtol,
        atol=atol,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    warn_if_below_precision(rtol, atol, stepsize_controller, y0.dtype, caller)
    return _run(generator, y0, t0, t1, args, ts, caller, options, throw, return_stats)


def evolve(
    A: AbstractGenerator | Callable,
    y0: ArrayLike,
    t0: ArrayLike,
    t1: ArrayLike,
    *,
    args: PyTree = None,
    ts: ArrayLike | None = None,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
) -> Inexact[Array, " ..."] | tuple[Inexact[Array, " ..."], Stats]:
    """The state `y(t1) = U(t1, t0) y0` of `dy/dt = A(t, args) y`, without forming `U`.

    **Arguments:** as `odeexpm.propagator`, and

    - `y0`: the initial state: a vector `(n,)`, or `(n, k)` for `k` states as columns
      (one solve with shared steps: the cheapest way to evolve many states). Further
      leading axes `(..., n, k)` are a batch solved independently (as with `jax.vmap`,
      each with its own steps). A real `y0` with a complex generator is promoted. With
      an `odeexpm.Lindblad` generator: a density matrix `(n, n)`, or a batch
      `(..., n, n)` solved independently.

    **Returns:** `y(t1)` with the shape of `y0` (`(len(ts),) + y0.shape` with `ts`),
    in the common dtype of `y0` and `A`; with `return_stats=True` also the `Stats`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = odeexpm.Constant(jnp.array([[0.0, 1.0], [-1.0, 0.0]]))
        >>> y = odeexpm.evolve(A, jnp.array([1.0, 0.0]), 0.0, jnp.pi / 2)   # a rotation
        >>> bool(jnp.allclose(y, jnp.array([0.0, -1.0]), atol=1e-5))
        True
    """
    caller = "odeexpm.evolve"
    generator = _as_generator(A, caller)
    n, dtype = _signature(generator, t0, args, caller)
    y0 = as_array(y0, "y0", caller)
    if isinstance(generator, Lindblad):
        y0, size, batched = _vectorized(y0, math.isqrt(n), caller)
    elif y0.ndim == 0 or y0.shape[-2 if y0.ndim >= 2 else -1] != n:
        raise ValueError(
            f"{caller}: `y0` must have shape (n,) or (..., n, k) with n = {n} (the "
            f"generator is {n}x{n}); got shape {tuple(y0.shape)}."
        )
    y0 = jnp.asarray(y0, checked_dtype(jnp.result_type(dtype, y0.dtype), "y0", caller))
    options = dict(
        solver=solver,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        rtol=rtol,
        atol=atol,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    warn_if_below_precision(rtol, atol, stepsize_controller, y0.dtype, caller)
    out = _run(generator, y0, t0, t1, args, ts, caller, options, throw, return_stats)
    if not isinstance(generator, Lindblad):
        return out
    y, stats = out if return_stats else (out, None)
    y = _matrices(y, size, batched)
    return (y, stats) if return_stats else y


def _vectorized(rho0, size: int, caller: str) -> tuple[Inexact[Array, " ..."], int, bool]:
    """`(y0, size, batched)`: density matrices `(..., n, n)` as the column-stacked states
    of the Lindblad solve: `(n^2,)` for one, `(..., n^2, 1)` for a batch (each solved
    with its own steps, as `evolve`'s batches are)."""
    if rho0.ndim < 2 or rho0.shape[-2:] != (size, size):
        raise ValueError(
            f"{caller}: with an odeexpm.Lindblad generator, `y0` must be a density matrix "
            f"of shape (n, n), or a batch (..., n, n), with n = {size} (the size of its "
            f"Hamiltonian); got shape {tuple(rho0.shape)}."
        )
    batch = tuple(rho0.shape[:-2])
    vectors = jnp.swapaxes(jnp.asarray(rho0), -1, -2).reshape(batch + (size * size,))
    return (vectors[..., None] if batch else vectors), size, bool(batch)


def _matrices(y: Inexact[Array, " ..."], size: int, batched: bool) -> Inexact[Array, " ..."]:
    """The inverse of `_vectorized` (with any leading axis of times)."""
    lead = y.shape[:-2] if batched else y.shape[:-1]
    return jnp.swapaxes(y.reshape(lead + (size, size)), -1, -2)


def _as_generator(A, caller: str) -> AbstractGenerator:
    if isinstance(A, AbstractGenerator):
        return A
    if callable(A):
        return from_callable(A, "A", caller)
    raise TypeError(
        f"{caller}: `A` must be an odeexpm.AbstractGenerator or a callable A(t, args); "
        f"got {type(A).__name__}. For a constant matrix use odeexpm.Constant(A) or "
        "odeexpm.expm."
    )


def _signature(generator: AbstractGenerator, t0, args, caller: str) -> tuple[int, jnp.dtype]:
    """`(n, dtype)` of `generator(t0, args)`, found by tracing it (no computation)."""
    t = jnp.asarray(t0)  # a Python float stays weakly typed: A's own precision decides
    value = eqx.filter_eval_shape(lambda g, t, a: g(t, a), generator, t, args)
    if isinstance(value, lx.AbstractLinearOperator):
        value = LineaxOperator(value)
    if not (isinstance(value, jax.ShapeDtypeStruct) or is_operator(value)):
        got = type(value).__name__
    elif len(value.shape) != 2 or value.shape[0] != value.shape[1]:
        got = f"shape {tuple(value.shape)}"
    else:
        return value.shape[0], checked_dtype(value.dtype, "A(t, args)", caller)
    raise ValueError(
        f"{caller}: the generator must return a square (n, n) array; A(t0, args) returned {got}."
    )


def _traced(x):
    # Python and NumPy scalars would be static in `compiled` (a compilation per value);
    # as arrays they are traced, as `jax.jit` traces them.
    return jnp.asarray(x) if isinstance(x, (bool, int, float, complex, np.generic)) else x


def _warn_if_hermitian(generator, t0, args, caller: str) -> None:
    """A warning where a complex dense generator is Hermitian at `t0` (`H` passed where
    the generator `-iH` was meant), checked where everything is concrete."""
    if any(isinstance(x, jax.core.Tracer) for x in jtu.tree_leaves((generator, t0, args))):
        return
    A = generator(t0, args)
    concrete = isinstance(A, (jax.Array, np.ndarray)) and not isinstance(A, jax.core.Tracer)
    if not (concrete and jnp.iscomplexobj(A)):  # (inside a trace: no values to check)
        return
    A = np.asarray(A)
    size = np.linalg.norm(A)
    if size > 0 and np.linalg.norm(A - A.conj().T) <= 1e-12 * size:
        warn(
            f"{caller}: the generator A(t0) is complex and Hermitian: dy/dt = A y then grows "
            "or decays, it does not oscillate. For quantum dynamics pass -iH, "
            "odeexpm.schrodinger(H), not H. (For imaginary-time evolution, ignore this.)",
        )


def _run(generator, y0, t0, t1, args, ts, caller, options, throw, return_stats):
    time_dtype = jnp.finfo(y0.dtype).dtype
    args = jtu.tree_map(_traced, args)
    _warn_if_hermitian(generator, t0, args, caller)
    t0 = as_real_scalar(t0, y0.dtype, "t0", caller)
    t1 = as_real_scalar(t1, y0.dtype, "t1", caller)
    if options["dt0"] is not None:
        options = dict(options, dt0=as_real_scalar(options["dt0"], y0.dtype, "dt0", caller))
    if ts is not None:
        ts = jnp.asarray(ts)
        if ts.ndim != 1 or ts.shape[0] == 0 or jnp.issubdtype(ts.dtype, jnp.complexfloating):
            raise ValueError(
                f"{caller}: `ts` must be a non-empty 1-D array of real times; got shape "
                f"{tuple(ts.shape)} and dtype {ts.dtype}."
            )
        ts = ts.astype(time_dtype)
        _check_times(ts, t0, t1, caller)
    batch_ndim = max(y0.ndim - 2, 0)
    y, stats = compiled(
        eqx.Partial(_solve_single, options=options),
        (generator, y0, t0, t1, ts, args),
        batch_ndim=batch_ndim,
        in_axes=(None, 0, None, None, None, None),
        throw=throw,
        max_steps=options["max_steps"],
    )
    if ts is not None and batch_ndim:
        y = jnp.moveaxis(y, batch_ndim, 0)  # the times axis leads, then the batch
    return (y, stats) if return_stats else y


def _check_times(ts, t0, t1, caller: str) -> None:
    """`ts` must run from `t0` towards `t1` without leaving `[t0, t1]` (checked where all
    three are concrete)."""
    if any(isinstance(x, jax.core.Tracer) for x in (ts, t0, t1)):
        return
    ts, t0, t1 = np.asarray(ts), float(t0), float(t1)
    forward = t1 >= t0
    ordered = np.all(np.diff(ts) >= 0) if forward else np.all(np.diff(ts) <= 0)
    inside = np.all((ts >= min(t0, t1)) & (ts <= max(t0, t1)))
    if not (ordered and inside):
        raise ValueError(
            f"{caller}: `ts` must lie in [t0, t1] = [{t0:g}, {t1:g}] and run from t0 "
            f"towards t1; got {ts}."
        )


def _solve_single(generator, y0, t0, t1, ts, args, *, options):
    (generator, y0, args), (t0, t1, ts), bad = without_nonfinite_solve_inputs(
        (generator, y0, args), (t0, t1, ts)
    )
    saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
    ys, stats, result = solve_linear(generator, y0, t0, t1, args=args, saveat=saveat, **options)
    y = ys[0] if ts is None else ys
    return outcome(y, stats, result, bad)
