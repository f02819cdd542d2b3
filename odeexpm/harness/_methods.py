"""The methods under test, as a registry of named recipes.

A `Method` builds, for each quantity it supports (`"expm"`, `"vjp"`, `"jvp"`), a function

    fn(A, V, rtol) -> (value, stats)

with `V` the direction (`None` for `"expm"`, the cotangent `W` for `"vjp"`, the tangent
`E` for `"jvp"`), `rtol` `None` (the library's default tolerance) or a scalar array (traced,
so that one compilation serves every tolerance), and `stats` an `odeexpm.Stats` or `None`.
The runner jits it. Derivatives are taken of the loss `Re sum(W * exp(A))`: `jax.grad` of it
is `L_exp(A^T, W)` (see `Reference`).
"""

import dataclasses
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .. import expm, reference
from ._cases import Case

MethodFn = Callable[..., tuple]
# A forward recipe: `forward(A, rtol) -> (exp(A), stats or None)`.
Forward = Callable[..., tuple]


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to compute one or more quantities of a case.

    - `name`: unique; how `--methods` selects it.
    - `description`: one line for `--list` and the report.
    - `build`: `build(quantity)` returns a fresh `fn(A, V, rtol) -> (value, stats)`.
    - `quantities`: the quantities it computes (`"expm"`, `"vjp"`, `"jvp"`).
    - `uses_tolerance`: whether it runs once per requested `rtol` (the ODE methods).
    - `applies_to`: the case kinds it handles.
    - `max_n`, `limit_reason`: cases larger than this are recorded as skipped, with the reason.
    """

    name: str
    description: str
    build: Callable[[str], MethodFn]
    quantities: tuple[str, ...] = ("expm",)
    uses_tolerance: bool = False
    applies_to: frozenset[str] = frozenset({"expm"})
    max_n: int | None = None
    limit_reason: str = ""

    def quantities_for(self, case: Case) -> tuple[str, ...]:
        """The quantities this method computes for `case` (empty if it does not apply)."""
        if case.kind not in self.applies_to:
            return ()
        return tuple(q for q in self.quantities if q in case.quantities)

    def skip_reason(self, case: Case) -> str | None:
        if self.max_n is not None and case.n > self.max_n:
            return f"n = {case.n} > {self.max_n}: {self.limit_reason}"
        return None


_METHODS: dict[str, Method] = {}


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Adds a method to the registry.

    Example:
        >>> import jax.scipy.linalg as jsl
        >>> from odeexpm import harness
        >>> method = harness.Method(
        ...     name="pade-example", description="Padé again.",
        ...     build=lambda quantity: lambda A, V, rtol: (jsl.expm(A), None))
        >>> _ = harness.register_method(method)
        >>> harness.get_method("pade-example").quantities
        ('expm',)
        >>> harness.unregister_method("pade-example")
    """
    if method.name in _METHODS and not replace:
        raise ValueError(f"A method named {method.name!r} is already registered.")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Removes a registered method (for tests and interactive use)."""
    _METHODS.pop(name, None)


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"Unknown method {name!r}; registered: {', '.join(_METHODS)}.") from None


def list_methods() -> list[Method]:
    """The registered methods, in registration order."""
    return list(_METHODS.values())


def vjp_of(forward: Forward) -> MethodFn:
    """`jax.grad` of `Re sum(W * X)` through `forward`, with `forward`'s stats as aux."""

    def fn(A, W, rtol):
        def loss(A):
            X, stats = forward(A, rtol)
            return jnp.real(jnp.sum(W * X)), stats

        return jax.grad(loss, has_aux=True)(A)

    return fn


def jvp_of(forward: Forward) -> MethodFn:
    """`jax.jvp` of `forward` at `A` in the direction `E`."""

    def fn(A, E, rtol):
        _, tangent, stats = jax.jvp(lambda A: forward(A, rtol), (A,), (E,), has_aux=True)
        return tangent, stats

    return fn


def from_forward(
    make_forward: Callable[[], Forward], derive: dict[str, Callable[[Forward], MethodFn]]
) -> Callable[[str], MethodFn]:
    """A `build` that derives each quantity from a freshly made forward recipe.

    Fresh closures on every build: JAX caches compilations per function object, and a
    compile time measured against a warm cache would be no measurement.
    """
    return lambda quantity: derive[quantity](make_forward())


FORWARD_ONLY = {"expm": lambda forward: lambda A, V, rtol: forward(A, rtol)}


def pade_forward() -> Forward:
    return lambda A, rtol: (jsl.expm(A), None)


def taylor_forward() -> Forward:
    return lambda A, rtol: (reference.taylor_expm(A), None)


def ode_forward(*, squarings=None, solver=None, adjoint=None) -> Callable[[], Forward]:
    """A maker of `odeexpm.expm` recipes; failures are returned (NaN + `stats.result`),
    not raised, so that the harness can record them."""

    def make() -> Forward:
        def forward(A, rtol):
            return expm(
                A,
                squarings=squarings,
                solver=None if solver is None else solver(),
                adjoint=None if adjoint is None else adjoint(),
                rtol=rtol,
                throw=False,
                return_stats=True,
            )

        return forward

    return make


def pade_frechet_build(quantity: str) -> MethodFn:
    # The closed-form derivative, in the same convention as jax.grad (see `Reference`).
    if quantity == "vjp":
        return lambda A, W, rtol: (reference.pade_frechet(A.T, W), None)
    return lambda A, E, rtol: (reference.pade_frechet(A, E), None)


KVAERNO_MAX_N = 8
KVAERNO_REASON = (
    "Kvaerno5's Newton iterations form the dense n^2 x n^2 Jacobian of X -> AX "
    "(about 20 s per solve at n = 32)"
)

for _method in [
    Method(
        "pade",
        "jax.scipy.linalg.expm: Padé scaling and squaring (at most 16 squarings)",
        from_forward(pade_forward, FORWARD_ONLY),
    ),
    Method(
        "taylor",
        "the naive 60-term Taylor series, no scaling: a cautionary row",
        from_forward(taylor_forward, FORWARD_ONLY),
    ),
    Method(
        "ode",
        "odeexpm.expm defaults: balancing, solve on [0, 2^-k], k squarings; Dopri8 (Tsit5 in single)",
        from_forward(ode_forward(), FORWARD_ONLY),
        uses_tolerance=True,
    ),
    Method(
        "ode-plain",
        "odeexpm.expm(squarings=0): one ODE solve over [0, 1], default solver",
        from_forward(ode_forward(squarings=0), FORWARD_ONLY),
        uses_tolerance=True,
    ),
    Method(
        "ode-tsit5",
        "odeexpm.expm with solver=diffrax.Tsit5() (structured: balancing + squarings)",
        from_forward(ode_forward(solver=diffrax.Tsit5), FORWARD_ONLY),
        uses_tolerance=True,
    ),
    Method(
        "ode-plain-tsit5",
        "odeexpm.expm(squarings=0, solver=diffrax.Tsit5())",
        from_forward(ode_forward(squarings=0, solver=diffrax.Tsit5), FORWARD_ONLY),
        uses_tolerance=True,
    ),
    Method(
        "ode-kvaerno5",
        "odeexpm.expm with the implicit solver=diffrax.Kvaerno5() (structured)",
        from_forward(ode_forward(solver=diffrax.Kvaerno5), FORWARD_ONLY),
        uses_tolerance=True,
        max_n=KVAERNO_MAX_N,
        limit_reason=KVAERNO_REASON,
    ),
    Method(
        "ode-plain-kvaerno5",
        "odeexpm.expm(squarings=0, solver=diffrax.Kvaerno5()): implicit, for stiff plain solves",
        from_forward(ode_forward(squarings=0, solver=diffrax.Kvaerno5), FORWARD_ONLY),
        uses_tolerance=True,
        max_n=KVAERNO_MAX_N,
        limit_reason=KVAERNO_REASON,
    ),
    Method(
        "pade-autodiff",
        "jax.grad / jax.jvp through jax.scipy.linalg.expm",
        from_forward(pade_forward, {"vjp": vjp_of, "jvp": jvp_of}),
        quantities=("vjp", "jvp"),
    ),
    Method(
        "pade-frechet",
        "jax.scipy.linalg.expm_frechet, the closed-form derivative (A^T, W) / (A, E)",
        pade_frechet_build,
        quantities=("vjp", "jvp"),
    ),
    Method(
        "ode-checkpoint",
        "jax.grad through odeexpm.expm, default adjoint (RecursiveCheckpointAdjoint)",
        from_forward(ode_forward(), {"vjp": vjp_of}),
        quantities=("vjp",),
        uses_tolerance=True,
    ),
    Method(
        "ode-backsolve",
        "jax.grad through odeexpm.expm with diffrax.BacksolveAdjoint (continuous adjoint)",
        from_forward(ode_forward(adjoint=diffrax.BacksolveAdjoint), {"vjp": vjp_of}),
        quantities=("vjp",),
        uses_tolerance=True,
    ),
    Method(
        "ode-direct",
        "jax.grad and jax.jvp through odeexpm.expm with diffrax.DirectAdjoint",
        from_forward(ode_forward(adjoint=diffrax.DirectAdjoint), {"vjp": vjp_of, "jvp": jvp_of}),
        quantities=("vjp", "jvp"),
        uses_tolerance=True,
    ),
    Method(
        "ode-forward",
        "jax.jvp through odeexpm.expm with diffrax.ForwardMode",
        from_forward(ode_forward(adjoint=diffrax.ForwardMode), {"jvp": jvp_of}),
        quantities=("jvp",),
        uses_tolerance=True,
    ),
]:
    register_method(_method)

# What `run` and `odeexpm compare` use when no methods are named.
DEFAULT_METHODS = (
    "pade",
    "taylor",
    "ode",
    "ode-plain",
    "ode-tsit5",
    "ode-plain-kvaerno5",
    "pade-autodiff",
    "pade-frechet",
    "ode-checkpoint",
    "ode-backsolve",
    "ode-direct",
    "ode-forward",
)
QUICK_METHODS = ("pade", "taylor", "ode", "ode-plain", "pade-autodiff", "ode-checkpoint", "ode-forward")
