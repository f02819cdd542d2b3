"""Running methods on cases and measuring them: one `Record` per (case, method, quantity,
dtype, tolerance).

Every function is compiled once per shape, dtype and tolerance (jitted, unless the
method is called as a user would outside `jax.jit` or on the host: then its first call
is the compile time), called once to obtain the answer, then timed over repeats. Failures are
results: a NaN or inf output, a failure reported in `odeexpm.Stats.result` or an
exception are recorded with their message, never dropped or turned into a number.
"""

import dataclasses
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import RESULTS
from ._action import ACTION_METHODS, QUICK_ACTION_METHODS
from ._cases import ACTION, PROPAGATOR, Case, get_suite, list_suites
from ._methods import CONSTANT_METHODS, QUICK_CONSTANT_METHODS, Method, get_method
from ._time_dependent import QUICK_TIME_DEPENDENT_METHODS, TIME_DEPENDENT_METHODS

# What `run` and `odeexpm compare` use when no methods are named. A method runs only on
# the kinds of case it applies to.
DEFAULT_METHODS = CONSTANT_METHODS + ACTION_METHODS + TIME_DEPENDENT_METHODS
QUICK_METHODS = QUICK_CONSTANT_METHODS + QUICK_ACTION_METHODS + QUICK_TIME_DEPENDENT_METHODS

DTYPES = ("float32", "float64", "complex64", "complex128")
# Each tolerance costs every ODE method one more compilation per shape and dtype; a
# work-precision sweep is opt-in: `rtols=("default", 1e-6, 1e-8, 1e-10)`.
DEFAULT_RTOLS: tuple[str | float, ...] = ("default",)
# Timing stops repeating once this much time was spent on one measurement, so that a
# slow failure (an exhausted step budget at n = 128) does not hold up the run.
TIMING_BUDGET_S = 1.0
MESSAGE_CHARS = 300

# Status values. Statuses of failures reported by odeexpm.Stats come from `FAILURES`.
OK = "ok"
NONFINITE = "nonfinite"
ERROR = "error"
SKIPPED = "skipped"
FAILED = "failed"  # any other failure in Stats.result
FAILURES = {
    "max_steps": RESULTS.max_steps_reached,
    "overflow": RESULTS.overflow,
    "bad_input": RESULTS.nonfinite_values,
}


@dataclasses.dataclass(frozen=True)
class Record:
    """The measurements of one method on one case, in one dtype and at one tolerance.

    - `quantity`: `"expm"`, `"vjp"` or `"jvp"`.
    - `rtol`: `"default"` or the tolerance (`"1e-08"`) for ODE methods; `None` for others.
    - `reference`: which reference the error is measured against (`"mpmath-40"`, ...).
    - `status`: `"ok"`, `"nonfinite"` (NaN or inf without a reported failure), `"error"`
      (an exception), `"skipped"` (outside the method's declared limits), or a failure
      reported by the solver: `"max_steps"`, `"overflow"`, `"bad_input"`, `"failed"`.
    - `message`: why, for every status but `"ok"`.
    - `error`: `||X - X_ref||_F / ||X_ref||_F` (`None` unless `status == "ok"`).
    - `time_s`, `time_min_s`: median and fastest run time over `repeats` calls after
      compilation (failures are timed too; the minimum resists a busy machine).
    - `compile_s`: tracing, lowering and compiling, once per shape, dtype and tolerance;
      `compile_cache_hit`: whether JAX's persistent compilation cache supplied it.
    - `steps`, `rejected_steps`, `squarings`: from `odeexpm.Stats` (ODE methods).
    - `memory_bytes`: XLA's estimate of temporaries + outputs of the compiled function.
    - `segments`: the number of fixed steps, for fixed-step methods (`pwc-pade`).
    - `unitarity`: `||U^H U - I||_F` of a propagator whose generator is skew-Hermitian.
    - `condition`: the case's condition number `kappa_exp` where it gives one: a
      backward-stable method's error is at most about `u kappa_exp`.
    """

    suite: str
    case: str
    method: str
    quantity: str
    dtype: str
    rtol: str | None
    n: int
    norm1: float
    reference: str
    status: str
    message: str = ""
    error: float | None = None
    time_s: float | None = None
    time_min_s: float | None = None
    repeats: int = 0
    compile_s: float | None = None
    compile_cache_hit: bool | None = None
    steps: int | None = None
    rejected_steps: int | None = None
    squarings: int | None = None
    memory_bytes: int | None = None
    segments: int | None = None
    unitarity: float | None = None
    condition: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def failed(self) -> bool:
        """A real failure: anything but `"ok"` and `"skipped"`."""
        return self.status not in (OK, SKIPPED)

    @property
    def label(self) -> str:
        """The method, with its tolerance when not the default, `"ode (rtol=1e-08)"`, or
        its number of segments, `"pwc-pade (N=256)"`."""
        if self.segments is not None:
            return f"{self.method} (N={self.segments})"
        return (
            self.method if self.rtol in (None, "default") else f"{self.method} (rtol={self.rtol})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rtol_label(rtol: str | float | None) -> str | None:
    """`"default"` for the library default, else the tolerance as `"1e-08"`."""
    if rtol is None or rtol == "default":
        return "default"
    return f"{float(rtol):g}"


def dtypes_for(case: Case, dtypes: Sequence[str]) -> list[str]:
    """The dtypes a case runs in: complex cases take the complex dtype of each requested
    precision (a real dtype cannot hold them); duplicates are dropped."""
    resolved = []
    for name in dtypes:
        dtype = np.dtype(name)
        if case.is_complex and not np.issubdtype(dtype, np.complexfloating):
            dtype = np.result_type(dtype, np.complex64)
        if dtype.name not in resolved:
            resolved.append(dtype.name)
    return resolved


@dataclasses.dataclass(frozen=True)
class Task:
    case: Case
    method: Method
    quantity: str
    dtype: str
    rtol: str | None
    segments: int | None = None


def plan(
    cases: Iterable[Case],
    methods: Sequence[Method],
    dtypes: Sequence[str],
    rtols: Sequence[str | float],
) -> list[Task]:
    """Every (case, dtype, method, quantity, tolerance) combination that applies."""
    tasks = []
    for case in cases:
        for dtype in dtypes_for(case, dtypes):
            for method in methods:
                for quantity in method.quantities_for(case):
                    for segments in method.segments or (None,):
                        tolerances = (
                            [rtol_label(r) for r in rtols] if method.uses_tolerance else [None]
                        )
                        for rtol in dict.fromkeys(tolerances):
                            tasks.append(Task(case, method, quantity, dtype, rtol, segments))
    return tasks


# Counts hits of JAX's persistent compilation cache, to tell a compile time from a load time.
_persistent_cache_hits = 0
_listening = False


def _count_cache_hits(event: str, **kwargs) -> None:
    global _persistent_cache_hits
    if event == "/jax/compilation_cache/cache_hits":
        _persistent_cache_hits += 1


def _listen_for_cache_hits() -> None:
    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count_cache_hits)
        _listening = True


@dataclasses.dataclass
class _Compiled:
    # `call(dynamic)`: the arrays of the arguments (`eqx.partition`'s first half).
    call: Any
    compile_s: float
    cache_hit: bool | None
    memory_bytes: int | None
    first_result: Any = None  # the answer of a first call that stood for the compile


def _memory_bytes(executable) -> int | None:
    try:
        analysis = executable.memory_analysis()
        return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)
    except Exception:  # not every backend or version reports it
        return None


def _status_of(value, stats) -> tuple[str, str]:
    if stats is not None and not bool(np.all(np.asarray(stats.successful))):
        message = RESULTS[stats.result]
        for status, item in FAILURES.items():
            if bool(stats.result == item):
                return status, message
        return FAILED, message
    if not bool(np.all(np.isfinite(np.asarray(value)))):
        return NONFINITE, "the output contains NaN or inf, and no failure was reported"
    return OK, ""


def relative_error(value, expected) -> float:
    """`||value - expected||_F / ||expected||_F`, in double precision."""
    value = np.asarray(value).astype(np.complex128 if np.iscomplexobj(value) else np.float64)
    expected = np.asarray(expected)
    error, size = _frobenius(value - expected), _frobenius(expected)
    if size == 0:
        return 0.0 if error == 0 else math.inf
    return error / size


def _frobenius(x: np.ndarray) -> float:
    if not np.all(np.isfinite(x)):
        return math.nan  # never a perfect score for a NaN
    # Scaled before the norm squares the entries: an error of 1e200 is a number, not inf.
    largest = float(np.max(np.abs(x), initial=0.0))
    return largest * float(np.linalg.norm(x / largest)) if largest > 0 else 0.0


def unitarity_drift(U) -> float:
    """`||U^H U - I||_F`, in double precision."""
    U = np.asarray(U).astype(np.complex128)
    return float(np.linalg.norm(U.conj().T @ U - np.eye(U.shape[-1])))


def _short(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}".strip()
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def arguments(case: Case, quantity: str, dtype: str, host: bool = False) -> tuple:
    """What a method's function is called with, from the case's arrays in `dtype`:

    - `"expm"`, `"vjp"`, `"jvp"`: `(A, V)`, `V` the direction (`None` for `"expm"`);
    - `"action"`: `(A, B, t)`, `A` a dense array or a `jax.experimental.sparse.BCOO`
      (with `host=True`: NumPy arrays, and a `scipy.sparse.csr_array` for sparse `A`;
      NumPy arrays for the other kinds too);
    - `"propagator"`: `(generator, t0, t1)`.
    """
    data = case.inputs(dtype)
    if case.kind == PROPAGATOR:
        arrays = {key: jnp.asarray(value) for key, value in data.items()}
        return case.generator(arrays), arrays["t0"], arrays["t1"]
    if case.kind == ACTION:
        if case.is_sparse:
            values, indices, n = data["values"], data["indices"], case.n
            if host:
                import scipy.sparse

                A = scipy.sparse.csr_array((values, (indices[:, 0], indices[:, 1])), (n, n))
            else:
                A = jsparse.BCOO((jnp.asarray(values), jnp.asarray(indices)), shape=(n, n))
        else:
            A = data["A"] if host else jnp.asarray(data["A"])
        if host:
            return A, data["B"], float(data["t"])
        return A, jnp.asarray(data["B"]), jnp.asarray(data["t"])
    direction = {"expm": None, "vjp": "W", "jvp": "E"}[quantity]
    as_array = np.asarray if host else jnp.asarray
    V = None if direction is None else as_array(data[direction])
    return as_array(data["A"]), V


class _Session:
    """One run: owns the compiled executables it creates, so that each (method, quantity,
    setting, shape, dtype) compiles once per run and compile times are measured, not
    inherited."""

    def __init__(self, repeats: int):
        self.repeats = repeats
        self.compiled: dict[tuple, _Compiled] = {}

    def _compile(self, task: Task, args) -> _Compiled:
        setting = task.segments if task.segments is not None else _rtol_value(task.rtol)
        dynamic, static = eqx.partition(args, eqx.is_array)
        dynamic_leaves, dynamic_structure = jax.tree.flatten(dynamic)
        static_leaves, static_structure = jax.tree.flatten(static)
        key = (
            task.method.name,
            task.quantity,
            setting,
            dynamic_structure,
            tuple((x.shape, x.dtype) for x in dynamic_leaves),
            static_structure,
            tuple(map(id, static_leaves)),  # e.g. a generator's coefficient functions
        )
        if key in self.compiled:
            return self.compiled[key]
        fn = task.method.build(task.quantity, setting)
        if task.method.call == "jit":
            function = jax.jit(lambda dynamic: fn(*eqx.combine(dynamic, static)))
            hits = _persistent_cache_hits
            start = time.perf_counter()
            executable = function.lower(dynamic).compile()
            compiled = _Compiled(
                executable,
                compile_s=time.perf_counter() - start,
                cache_hit=_persistent_cache_hits > hits,
                memory_bytes=_memory_bytes(executable),
            )
        else:
            # Called as a user would outside jax.jit (the library compiles on first use):
            # the first call's time stands for the compile time.
            def call(dynamic):
                return fn(*eqx.combine(dynamic, static))

            start = time.perf_counter()
            first_result = jax.block_until_ready(call(dynamic))
            # Not kept: a sparse matrix's index pattern, which shapes the library's own
            # compilation, is data here, so every case pays (and reports) its first call.
            return _Compiled(call, time.perf_counter() - start, None, None, first_result)
        self.compiled[key] = compiled
        return compiled

    def measure(self, task: Task) -> Record:
        case = task.case
        common = dict(
            suite=case.suite,
            case=case.name,
            method=task.method.name,
            quantity=task.quantity,
            dtype=task.dtype,
            rtol=task.rtol,
            segments=task.segments,
            n=case.n,
            norm1=float(case.tags.get("norm1", math.nan)),
            condition=case.tags.get("condition"),
            reference=case.describe_reference(task.quantity),
        )
        reason = task.method.skip_reason(case)
        if reason is not None:
            return Record(**common, status=SKIPPED, message=reason)
        measured: dict[str, Any] = {}
        try:
            args = arguments(case, task.quantity, task.dtype, host=task.method.call == "host")
            compiled = self._compile(task, args)
            measured.update(
                compile_s=compiled.compile_s,
                compile_cache_hit=compiled.cache_hit,
                memory_bytes=compiled.memory_bytes,
            )
            dynamic = eqx.partition(args, eqx.is_array)[0]
            value, stats = compiled.first_result or jax.block_until_ready(compiled.call(dynamic))
            measured.update(self._time(compiled.call, dynamic))
            if stats is not None:
                measured.update(
                    steps=int(stats.num_steps),
                    rejected_steps=int(stats.num_rejected_steps),
                    squarings=int(stats.num_squarings),
                )
            status, message = _status_of(value, stats)
        except Exception as exception:
            return Record(**common, status=ERROR, message=_short(exception), **measured)
        # Outside the `try`: a reference that fails is a bug of the harness, not a result.
        if status == OK:
            measured["error"] = relative_error(value, case.expected(task.quantity, task.dtype))
            if case.tags.get("unitary"):
                measured["unitarity"] = unitarity_drift(value)
        return Record(**common, status=status, message=message, **measured)

    def _time(self, call, dynamic) -> dict[str, Any]:
        times: list[float] = []
        while len(times) < self.repeats and sum(times) < TIMING_BUDGET_S:
            start = time.perf_counter()
            jax.block_until_ready(call(dynamic))
            times.append(time.perf_counter() - start)
        return dict(time_s=statistics.median(times), time_min_s=min(times), repeats=len(times))


def _rtol_value(rtol: str | None) -> float | None:
    return None if rtol in (None, "default") else float(rtol)


def _check_dtypes(dtypes: Sequence[str]) -> list[str]:
    names = []
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"Unknown dtype {name!r}; choose from {', '.join(DTYPES)}.")
        if name in ("float64", "complex128"):
            if jax.dtypes.canonicalize_dtype(np.dtype(name)) != np.dtype(name):
                raise RuntimeError(
                    f"{name} needs JAX's 64-bit mode: call "
                    "jax.config.update('jax_enable_x64', True) first (odeexpm compare does)."
                )
        names.append(name)
    return names


def run(
    suites: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    dtypes: Sequence[str] = ("float64",),
    rtols: Sequence[str | float] | None = None,
    repeats: int = 5,
    quick: bool = False,
    progress: bool = False,
    console: Console | None = None,
) -> list[Record]:
    """Runs methods on the cases of some suites and returns one `Record` per measurement.

    **Arguments:**

    - `suites`: suite names (default: all registered suites).
    - `methods`: method names (default: `DEFAULT_METHODS`, or `QUICK_METHODS` if `quick`,
      narrowed to a suite's own `methods` where it names them).
    - `dtypes`: any of `"float32"`, `"float64"`, `"complex64"`, `"complex128"`; complex
      cases run in the complex dtype of each requested precision. 64-bit dtypes need
      `jax_enable_x64`.
    - `rtols`: tolerances for the ODE methods, `"default"` (the library's) or numbers;
      default `("default",)`. Each costs the ODE methods one compilation per shape.
    - `repeats`: timed calls per measurement (fewer once they exceed ~1 s in total).
    - `quick`: each suite's quick (2 x 2) cases only.
    - `progress`: show a progress bar (on `console`, by default standard error).

    Examples:
        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> from odeexpm import harness
        >>> records = harness.run(suites=["hard"], methods=["pade"], quick=True, repeats=1)
        >>> [(r.case, r.status) for r in records]  # doctest: +NORMALIZE_WHITESPACE
        [('moler-vanloan-2x2', 'ok'), ('ward-2x2', 'ok'), ('near-defective-2x2', 'ok')]
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}.")
    suite_names = list(suites) if suites else [s.name for s in list_suites()]
    chosen_suites = [get_suite(name) for name in suite_names]
    method_names = list(methods) if methods else list(QUICK_METHODS if quick else DEFAULT_METHODS)
    chosen_methods = [get_method(name) for name in method_names]
    dtype_names = _check_dtypes(dtypes)
    rtols = DEFAULT_RTOLS if rtols is None else rtols
    for rtol in rtols:
        if rtol != "default" and not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
            raise ValueError(f"rtol must be 'default' or a number in (0, 1); got {rtol!r}.")
    cases = [case for s in chosen_suites for case in s.cases(quick)]
    tasks = plan(cases, chosen_methods, dtype_names, rtols)
    if not methods:  # a suite may narrow the default methods
        narrowed = {s.name: s.methods for s in chosen_suites if s.methods is not None}
        tasks = [
            task
            for task in tasks
            if task.method.name in narrowed.get(task.case.suite, (task.method.name,))
        ]
    _listen_for_cache_hits()
    session = _Session(repeats)
    records = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[current]}"),
        console=console or Console(stderr=True),
        disable=not progress,
        transient=False,
    ) as bar:
        bar_task = bar.add_task("odeexpm compare", total=len(tasks), current="")
        for task in tasks:
            label = f"{task.case.suite}/{task.case.name} {task.method.name} {task.quantity}"
            bar.update(bar_task, current=label)
            records.append(session.measure(task))
            bar.advance(bar_task)
        bar.update(bar_task, current="done")
    return records
