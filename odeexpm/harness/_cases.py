"""Cases as data, grouped in named suites.

A `Case` is a generic record: a name, its suite, a `data` dictionary of NumPy arrays, a
`reference` callable giving the exact answers, and `tags` (size, norm, source, ...). A suite
is a factory `factory(quick: bool) -> list[Case]` registered under a name; adding one is a
decorator or a `register_suite` call. `kind` says what the case asks for, so that methods
can declare what they apply to: `"expm"` (a constant generator; `data["A"]`) today;
time-dependent propagators or actions `exp(tA) B` are further kinds.
"""

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._references import Reference

# The quantities a case of kind "expm" can be asked for: the exponential, and with
# `gradients=True` the reverse and forward derivatives in fixed random directions.
FORWARD = "expm"
DERIVATIVES = ("vjp", "jvp")


@dataclasses.dataclass(frozen=True)
class Case:
    """One problem with an independent reference.

    - `name`: unique within its suite.
    - `suite`: the suite's name (filled in by the registry).
    - `data`: NumPy arrays, e.g. `{"A": ..., "W": ..., "E": ...}`.
    - `reference`: `reference(data, quantity) -> np.ndarray`, never a method under test.
    - `kind`: what kind of problem this is (`"expm"` for `exp(A)` of a constant `A`).
    - `quantities`: which of `"expm"`, `"vjp"`, `"jvp"` the case asks for.
    - `tags`: free-form facts for tables and plots (`n`, `norm1`, `source`, ...).
    """

    name: str
    data: Mapping[str, np.ndarray]
    reference: Callable[[Mapping[str, np.ndarray], str], np.ndarray]
    suite: str = ""
    kind: str = "expm"
    quantities: tuple[str, ...] = (FORWARD,)
    tags: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.tags.get("n", np.shape(self.data["A"])[-1]))

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self.data["A"]))

    def expected(self, quantity: str, dtype) -> np.ndarray:
        """The reference for `quantity` when the case is run in `dtype`.

        The inputs are first rounded to `dtype`: a float32 method is judged on the problem
        it was actually given, not charged for the rounding of its input.
        """
        rounded = {
            key: np.asarray(value).astype(dtype).astype(_wide(dtype))
            for key, value in self.data.items()
        }
        return self.reference(rounded, quantity)

    def describe_reference(self, quantity: str) -> str:
        describe = getattr(self.reference, "describe", None)
        return (
            describe(quantity, self.n)
            if describe
            else getattr(self.reference, "__name__", "custom")
        )


def _wide(dtype) -> type:
    return np.complex128 if np.issubdtype(np.dtype(dtype), np.complexfloating) else np.float64


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
    seeded by the case name so that they never change; complex when `A` is.

    Example:
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
        return V / np.linalg.norm(V)

    data = {"A": A, "W": direction(), "E": direction()}
    tags = {"n": A.shape[0], "norm1": float(np.max(np.sum(np.abs(A), axis=0))), **tags}
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
    """A named family of cases; `factory(quick)` builds them (fewer and smaller if quick)."""

    name: str
    factory: SuiteFactory
    description: str = ""

    def cases(self, quick: bool = False) -> list[Case]:
        cases = [dataclasses.replace(case, suite=self.name) for case in self.factory(quick)]
        names = [case.name for case in cases]
        if len(set(names)) != len(names):
            raise ValueError(f"Suite {self.name!r} has duplicate case names: {names}.")
        return cases


_SUITES: dict[str, Suite] = {}


def register_suite(
    name: str, factory: SuiteFactory, *, description: str | None = None, replace: bool = False
) -> Suite:
    """Registers a suite of cases under `name`.

    Example:
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
    _SUITES[name] = Suite(name=name, factory=factory, description=description)
    return _SUITES[name]


def suite(name: str, *, description: str | None = None) -> Callable[[SuiteFactory], SuiteFactory]:
    """Decorator form of `register_suite`; the description defaults to the docstring's
    first line.

    Example:
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
        register_suite(name, factory, description=description)
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
