"""Cases as data, grouped in named suites.

A `Case` is a generic record: a name, its suite, a `data` dictionary of NumPy arrays, a
`reference` callable giving the exact answers, and `tags` (size, norm, source, ...). A suite
is a factory `factory(quick: bool) -> list[Case]` registered under a name; adding one is a
decorator or a `register_suite` call. `kind` says what the case asks for, so that methods
can declare what they apply to:

- `"expm"`: `exp(A)` of a constant `A` (`data["A"]`), with derivatives on request;
- `"action"`: `exp(tA) B` (`data["A"]` dense, or a sparse `A` as `data["values"]` and
  `data["indices"]`; `data["B"]`, `data["t"]`);
- `"propagator"`: `U(t1, t0)` of a time-dependent generator built by `case.generator`
  from `data` (`data["t0"]`, `data["t1"]`).

The forward quantity of a case is named after its kind.
"""

import dataclasses
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._references import Reference

# The quantities a case of kind "expm" can be asked for: the exponential, and with
# `gradients=True` the reverse and forward derivatives in fixed random directions.
FORWARD = "expm"
DERIVATIVES = ("vjp", "jvp")
ACTION = "action"
PROPAGATOR = "propagator"
KINDS = (FORWARD, ACTION, PROPAGATOR)


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem with an independent reference.

    - `name`: unique within its suite.
    - `suite`: the suite's name (filled in by the registry).
    - `data`: NumPy arrays, e.g. `{"A": ..., "W": ..., "E": ...}`.
    - `reference`: `reference(data, quantity) -> np.ndarray`, never a method under test.
    - `kind`: what kind of problem this is (`"expm"` for `exp(A)` of a constant `A`).
    - `quantities`: which of `"expm"`, `"vjp"`, `"jvp"` the case asks for.
    - `tags`: free-form facts for tables and plots (`n`, `norm1`, `source`, `unitary`, ...).
    - `generator`: for `"propagator"` cases, `generator(data) -> AbstractGenerator` from
      the case's arrays (as JAX arrays in the run's dtype).
    """

    name: str
    data: Mapping[str, np.ndarray]
    reference: Callable[[Mapping[str, np.ndarray], str], np.ndarray]
    suite: str = ""
    kind: str = FORWARD
    quantities: tuple[str, ...] = (FORWARD,)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    generator: Callable[[Mapping[str, Any]], Any] | None = None

    @property
    def n(self) -> int:
        return int(self.tags.get("n", np.shape(self.data.get("A", ()))[-1]))

    @property
    def is_complex(self) -> bool:
        return any(np.iscomplexobj(value) for value in self.data.values())

    @property
    def is_sparse(self) -> bool:
        return "indices" in self.data

    def inputs(self, dtype) -> dict[str, np.ndarray]:
        """The case's arrays rounded to `dtype` (times to its real counterpart; index
        arrays are kept)."""
        return {key: _rounded(key, value, dtype) for key, value in self.data.items()}

    def expected(self, quantity: str, dtype) -> np.ndarray:
        """The reference for `quantity` when the case is run in `dtype`.

        The inputs are first rounded to `dtype`: a float32 method is judged on the problem
        it was actually given, not charged for the rounding of its input.
        """
        rounded = {
            key: value.astype(_wide(value.dtype))
            if np.issubdtype(value.dtype, np.inexact)
            else value
            for key, value in self.inputs(dtype).items()
        }
        return self.reference(rounded, quantity)

    def describe_reference(self, quantity: str) -> str:
        describe = getattr(self.reference, "describe", None)
        if describe is None:
            return getattr(self.reference, "__name__", "custom")
        return (
            describe(quantity, self.n, sparse=True)
            if self.is_sparse
            else describe(quantity, self.n)
        )


def _wide(dtype) -> type:
    return np.complex128 if np.issubdtype(np.dtype(dtype), np.complexfloating) else np.float64


# Times are real in every dtype; every other floating array takes the run's dtype.
TIME_KEYS = ("t", "t0", "t1")


def _rounded(key: str, value, dtype) -> np.ndarray:
    value = np.asarray(value)
    if key == "indices":
        return value
    if key in TIME_KEYS:
        dtype = np.finfo(np.dtype(dtype)).dtype
    return value.astype(dtype)


# Up to this size the condition numbers are SciPy's exact `expm_cond` (n^2 Fréchet
# derivatives); beyond, a power-iteration estimate with SciPy's `expm_frechet`.
EXACT_CONDITION_SIZE = 32
CONDITION_ITERATIONS = 8


def condition_number(A: np.ndarray) -> float:
    """`kappa_exp(A)`, relative, in the Frobenius norm (SciPy's `expm_cond`). For `n >
    EXACT_CONDITION_SIZE`, where that costs `n^2` Fréchet derivatives, an estimate:
    `||L_exp(A)||` by power iteration on `E -> L_exp(A^H, L_exp(A, E))` from a fixed
    random start (never above the exact value, to rounding)."""
    import scipy.linalg

    if A.shape[0] <= EXACT_CONDITION_SIZE:
        return float(scipy.linalg.expm_cond(A))
    rng = np.random.default_rng(0)
    E = rng.standard_normal(A.shape) + (
        1j * rng.standard_normal(A.shape) if np.iscomplexobj(A) else 0
    )
    growth = 0.0
    for _ in range(CONDITION_ITERATIONS):
        E = E / np.linalg.norm(E)
        X, L = scipy.linalg.expm_frechet(A, E)
        growth = np.linalg.norm(L)
        E = scipy.linalg.expm_frechet(A.conj().T, L, compute_expm=False)
    return float(growth * np.linalg.norm(A) / np.linalg.norm(X))


def exact_norm(V: np.ndarray) -> float:
    """The Frobenius norm of `V`, its squares summed exactly (`math.fsum`): the same on
    every machine, where `np.linalg.norm` rounds as the CPU's BLAS kernel does (data
    seeded "never to change" moved by an ulp between machines, and with them the errors
    at the conditioning limit)."""
    return math.sqrt(math.fsum((np.real(V) ** 2 + np.imag(V) ** 2).ravel()))


def expm_case(
    name: str,
    A: np.ndarray,
    *,
    reference: Callable[[Mapping[str, np.ndarray], str], np.ndarray] | None = None,
    gradients: bool = False,
    **tags: Any,
) -> Case:
    """A case asking for `exp(A)`, and with `gradients=True` for its VJP and JVP too.

    The directions `W` (cotangent) and `E` (tangent) are random with unit Frobenius norm,
    seeded by the case name and normalized by `exact_norm`, so that they are the same
    on every machine; complex when `A` is. The tag
    `condition` is `kappa_exp(A)` (`condition_number`) unless given, so that each error
    can be read against the conditioning limit `kappa_exp u`.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import expm_case
        >>> case = expm_case("identity", np.zeros((3, 3)), gradients=True, source="example")
        >>> case.quantities, case.tags["n"], case.tags["norm1"]
        (('expm', 'vjp', 'jvp'), 3, 0.0)
    """
    A = np.asarray(A, np.complex128 if np.iscomplexobj(A) else np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"expm_case {name!r}: A must be square; got shape {A.shape}.")
    rng = np.random.default_rng(zlib.crc32(name.encode()))

    def direction():
        V = rng.standard_normal(A.shape)
        if np.iscomplexobj(A):
            V = V + 1j * rng.standard_normal(A.shape)
        return V / exact_norm(V)

    data = {"A": A, "W": direction(), "E": direction()}
    tags = {"n": A.shape[0], "norm1": float(np.max(np.sum(np.abs(A), axis=0))), **tags}
    if "condition" not in tags:
        tags["condition"] = condition_number(A)
    return Case(
        name=name,
        data=data,
        reference=Reference() if reference is None else reference,
        quantities=(FORWARD, *DERIVATIVES) if gradients else (FORWARD,),
        tags=tags,
    )


SuiteFactory = Callable[[bool], Sequence[Case]]


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named family of cases; `factory(quick)` builds them (fewer and smaller if quick).
    `methods`: the methods a run uses on it when none are named (`None`: all defaults)."""

    name: str
    factory: SuiteFactory
    description: str = ""
    methods: tuple[str, ...] | None = None

    def cases(self, quick: bool = False) -> list[Case]:
        cases = [dataclasses.replace(case, suite=self.name) for case in self.factory(quick)]
        names = [case.name for case in cases]
        if len(set(names)) != len(names):
            raise ValueError(f"Suite {self.name!r} has duplicate case names: {names}.")
        return cases


_SUITES: dict[str, Suite] = {}


def register_suite(
    name: str,
    factory: SuiteFactory,
    *,
    description: str | None = None,
    methods: tuple[str, ...] | None = None,
    replace: bool = False,
) -> Suite:
    """Registers a suite of cases under `name`.

    Examples:
        >>> import numpy as np
        >>> from odeexpm import harness
        >>> def diagonal(quick):
        ...     return [harness.expm_case("diag-3", np.diag([1.0, 2.0, 3.0]))]
        >>> _ = harness.register_suite("diagonal-example", diagonal, description="Diagonal.")
        >>> [case.name for case in harness.get_suite("diagonal-example").cases()]
        ['diag-3']
        >>> harness.unregister_suite("diagonal-example")
    """
    if name in _SUITES and not replace:
        raise ValueError(f"A suite named {name!r} is already registered.")
    if description is None:
        description = (factory.__doc__ or "").strip().split("\n")[0]
    _SUITES[name] = Suite(name=name, factory=factory, description=description, methods=methods)
    return _SUITES[name]


def suite(
    name: str, *, description: str | None = None, methods: tuple[str, ...] | None = None
) -> Callable[[SuiteFactory], SuiteFactory]:
    """Decorator form of `register_suite`; the description defaults to the docstring's
    first line.

    Examples:
        >>> import numpy as np
        >>> from odeexpm import harness
        >>> @harness.suite("zero-example")
        ... def zero(quick):
        ...     '''The zero matrix.'''
        ...     return [harness.expm_case("zero-2", np.zeros((2, 2)))]
        >>> harness.get_suite("zero-example").description
        'The zero matrix.'
        >>> harness.unregister_suite("zero-example")
    """

    def register(factory: SuiteFactory) -> SuiteFactory:
        register_suite(name, factory, description=description, methods=methods)
        return factory

    return register


def unregister_suite(name: str) -> None:
    """Removes a registered suite (for tests and interactive use)."""
    _SUITES.pop(name, None)


def get_suite(name: str) -> Suite:
    try:
        return _SUITES[name]
    except KeyError:
        raise KeyError(f"Unknown suite {name!r}; registered: {', '.join(_SUITES)}.") from None


def list_suites() -> list[Suite]:
    """The registered suites, in registration order."""
    return list(_SUITES.values())


def _size_tags(n: int, norm1: float, tags: Mapping[str, Any]) -> dict[str, Any]:
    return {"n": n, "norm1": float(norm1), **tags}


def action_case(
    name: str,
    A: np.ndarray | tuple[np.ndarray, np.ndarray],
    B: np.ndarray,
    t: float = 1.0,
    *,
    reference: Callable[[Mapping[str, np.ndarray], str], np.ndarray] | None = None,
    **tags: Any,
) -> Case:
    """A case asking for the action `exp(tA) B`.

    `A` is a dense `(n, n)` array or a sparse matrix as a pair `(values, indices)` in
    COO form (`indices` of shape `(nnz, 2)`: row, column), which methods receive as a
    `jax.experimental.sparse.BCOO`. The default reference is `ActionReference()`
    (high precision: mpmath or extended precision, never a method under test).

    Examples:
        >>> import numpy as np
        >>> from odeexpm.harness import action_case
        >>> case = action_case("shift", np.diag([1.0, 2.0]), np.ones(2), t=0.5)
        >>> case.kind, case.n, case.is_sparse
        ('action', 2, False)
    """
    from ._references import ActionReference

    B = np.asarray(B)
    if B.ndim not in (1, 2):
        raise ValueError(f"action_case {name!r}: B must be (n,) or (n, k); got {B.shape}.")
    n = B.shape[0]
    if isinstance(A, tuple):
        values, indices = np.asarray(A[0]), np.asarray(A[1], np.int64)
        if indices.shape != (values.shape[0], 2) or np.any((indices < 0) | (indices >= n)):
            raise ValueError(
                f"action_case {name!r}: indices must be (nnz, 2) in [0, {n}); got shape "
                f"{indices.shape}."
            )
        data = {"values": values, "indices": indices}
        norm1 = np.max(np.bincount(indices[:, 1], np.abs(values), minlength=n))
    else:
        A = np.asarray(A)
        if A.shape != (n, n):
            raise ValueError(f"action_case {name!r}: A must be ({n}, {n}); got {A.shape}.")
        data = {"A": A}
        norm1 = np.max(np.sum(np.abs(A), axis=0))
    data.update(B=B, t=np.asarray(float(t)))
    return Case(
        name=name,
        data=data,
        reference=ActionReference() if reference is None else reference,
        kind=ACTION,
        quantities=(ACTION,),
        tags=_size_tags(n, abs(float(t)) * norm1, tags),
    )


def propagator_case(
    name: str,
    generator: Callable[[Mapping[str, Any]], Any],
    data: Mapping[str, np.ndarray],
    t0: float,
    t1: float,
    *,
    n: int,
    norm1: float,
    reference: Callable[[Mapping[str, np.ndarray], str], np.ndarray] | None = None,
    unitary: bool = False,
    **tags: Any,
) -> Case:
    """A case asking for the propagator `U(t1, t0)` of `dU/dt = A(t) U`, with
    `A = generator(data)` (an `odeexpm.AbstractGenerator` built from the case's arrays,
    which arrive as JAX arrays in the run's dtype).

    `norm1` is a bound on `(t1 - t0) max_t ||A(t)||_1`, for tables. `unitary=True` (a
    skew-Hermitian generator) adds the unitarity drift `||U^H U - I||_F` to the
    measurements. The default reference is `PropagatorReference(generator)`: diffrax's
    Dopri8 at rtol = atol = 1e-14 in double precision on a plain `ODETerm`.

    Examples:
        >>> import numpy as np, jax.numpy as jnp
        >>> import odeexpm
        >>> from odeexpm.harness import propagator_case
        >>> case = propagator_case(
        ...     "rotating",
        ...     lambda d: odeexpm.Modulated(d["drift"], d["operators"], [lambda t, a: jnp.cos(t)]),
        ...     {"drift": np.zeros((2, 2)), "operators": np.array([[[0.0, 1.0], [-1.0, 0.0]]])},
        ...     0.0, 1.0, n=2, norm1=1.0)
        >>> case.kind, case.quantities
        ('propagator', ('propagator',))
    """
    from ._references import PropagatorReference

    data = {key: np.asarray(value) for key, value in data.items()}
    data.update(t0=np.asarray(float(t0)), t1=np.asarray(float(t1)))
    return Case(
        name=name,
        data=data,
        reference=PropagatorReference(generator, key=name) if reference is None else reference,
        kind=PROPAGATOR,
        quantities=(PROPAGATOR,),
        tags=_size_tags(n, norm1, {"unitary": unitary, **tags}),
        generator=generator,
    )
