"""The methods under test, as a registry of named recipes.

A `Method` builds, for a quantity and a setting (a tolerance, or a number of segments for
fixed-step methods), a function returning `(value, stats)`, `stats` an `odeexpm.Stats` or
`None`. Its arguments depend on the kind of case (see `harness.arguments`): for
`"expm"`, `"vjp"`, `"jvp"` it is

    fn(A, V) -> (value, stats)

with `V` the direction (`None` for `"expm"`, the cotangent `W` for `"vjp"`, the tangent
`E` for `"jvp"`); for `"action"` `fn(A, B, t)`, for `"propagator"`
`fn(generator, t0, t1)`. The runner jits it (unless the method says how else it is
called). Tolerances are static (the library chooses its solver from them), so each
compiles separately.
Derivatives are taken of the loss `Re sum(W * exp(A))`: `jax.grad` of it is
`L_exp(A^T, W)` (see `Reference`).

Methods named after the library's defaults (`ode`, `ode-plain`, `ode-frechet`) pass
`None` and so follow whatever `odeexpm.expm` chooses; the others name their solver or
adjoint explicitly.
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
# A forward recipe: `forward(A) -> (exp(A), stats or None)`.
Forward = Callable[..., tuple]


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to compute one or more quantities of a case.

    - `name`: unique; how `--methods` selects it.
    - `description`: one line for `--list` and the report.
    - `build`: `build(quantity, rtol)` returns a fresh `fn(A, V) -> (value, stats)`;
      `rtol` is `None` (the default) unless `uses_tolerance`.
    - `quantities`: the quantities it computes (`"expm"`, `"vjp"`, `"jvp"`).
    - `uses_tolerance`: whether it runs once per requested `rtol` (the ODE methods).
    - `applies_to`: the case kinds it handles.
    - `max_n`, `limit_reason`: cases larger than this are recorded as skipped, with the reason.
    - `call`: how the runner calls it: `"jit"` (under `jax.jit`, compiled once per shape),
      `"eager"` (on JAX arrays as a user would outside `jax.jit`: for functions that
      compile on their own and need concrete inputs, such as a sparse matrix's indices),
      `"host"` (on NumPy/SciPy inputs: SciPy).
    - `segments`: for fixed-step methods, the numbers of steps it runs at (each a
      measurement; `build` receives the number as its setting).
    - `dense_only`: the method needs the generator's values as dense matrices (Magnus
      steps, Padé exponentials): cases tagged `sparse` are recorded as skipped.
    """

    name: str
    description: str
    build: Callable[[str, float | None], MethodFn]
    quantities: tuple[str, ...] = ("expm",)
    uses_tolerance: bool = False
    applies_to: frozenset[str] = frozenset({"expm"})
    max_n: int | None = None
    limit_reason: str = ""
    call: str = "jit"
    segments: tuple[int, ...] = ()
    dense_only: bool = False

    def quantities_for(self, case: Case) -> tuple[str, ...]:
        """The quantities this method computes for `case` (empty if it does not apply)."""
        if case.kind not in self.applies_to:
            return ()
        return tuple(q for q in self.quantities if q in case.quantities)

    def skip_reason(self, case: Case) -> str | None:
        if self.max_n is not None and case.n > self.max_n:
            return f"n = {case.n} > {self.max_n}: {self.limit_reason}"
        if self.dense_only and case.tags.get("sparse"):
            return "needs dense matrices; the case's generator is sparse"
        return None


_METHODS: dict[str, Method] = {}


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Adds a method to the registry.

    Examples:
        >>> import jax.scipy.linalg as jsl
        >>> from odeexpm import harness
        >>> method = harness.Method(
        ...     name="pade-example", description="Padé again.",
        ...     build=lambda quantity, rtol: lambda A, V: (jsl.expm(A), None))
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


def value_of(forward: Forward) -> MethodFn:
    """The forward recipe itself, as a method function (the direction is unused)."""
    return lambda A, V: forward(A)


def vjp_of(forward: Forward) -> MethodFn:
    """`jax.grad` of `Re sum(W * X)` through `forward`, with `forward`'s stats as aux."""

    def fn(A, W):
        def loss(A):
            X, stats = forward(A)
            return jnp.real(jnp.sum(W * X)), stats

        return jax.grad(loss, has_aux=True)(A)

    return fn


def jvp_of(forward: Forward) -> MethodFn:
    """`jax.jvp` of `forward` at `A` in the direction `E`, with `forward`'s stats."""

    def fn(A, E):
        _, tangent, stats = jax.jvp(forward, (A,), (E,), has_aux=True)
        return tangent, stats

    return fn


def from_forward(
    make_forward: Callable[[float | None], Forward],
    derive: dict[str, Callable[[Forward], MethodFn]],
) -> Callable[[str, float | None], MethodFn]:
    """A `build` that derives each quantity from a freshly made forward recipe.

    Fresh closures on every build: JAX caches compilations per function object, and a
    compile time measured against a warm cache would be no measurement.
    """
    return lambda quantity, rtol: derive[quantity](make_forward(rtol))


VALUE = {"expm": value_of}
VJP = {"vjp": vjp_of}
JVP = {"jvp": jvp_of}


def pade_forward(rtol: float | None = None) -> Forward:
    return lambda A: (jsl.expm(A), None)


def taylor_forward(rtol: float | None = None) -> Forward:
    return lambda A: (reference.taylor_expm(A), None)


def ode_forward(*, squarings=None, solver=None, adjoint=None) -> Callable[[float | None], Forward]:
    """A maker of `odeexpm.expm` recipes; failures are returned (NaN + `stats.result`),
    not raised, so that the harness can record them. `solver` and `adjoint` are classes
    (or `None`: the library's choice)."""

    def make(rtol: float | None) -> Forward:
        def forward(A):
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


def pade_frechet_build(quantity: str, rtol: float | None = None) -> MethodFn:
    # The closed-form derivative, in the same convention as jax.grad (see `Reference`).
    if quantity == "vjp":
        return lambda A, W: (reference.pade_frechet(A.T, W), None)
    return lambda A, E: (reference.pade_frechet(A, E), None)


def scipy_build(quantity: str, rtol: float | None = None) -> MethodFn:
    # On the host: SciPy's Padé (Al-Mohy and Higham 2009) and its Fréchet derivative,
    # in the same convention as jax.grad (see `Reference`).
    import scipy.linalg

    if quantity == "expm":
        return lambda A, V: (scipy.linalg.expm(A), None)
    if quantity == "vjp":
        return lambda A, W: (scipy.linalg.expm_frechet(A.T, W, compute_expm=False), None)
    return lambda A, E: (scipy.linalg.expm_frechet(A, E, compute_expm=False), None)


KVAERNO_MAX_N = 8
KVAERNO_REASON = (
    "Kvaerno5's Newton iterations form the dense n^2 x n^2 Jacobian of X -> AX "
    "(about 20 s per solve at n = 32)"
)


def _ode(name, description, quantities=VALUE, **options) -> Method:
    kvaerno = options.get("solver") is diffrax.Kvaerno5
    return Method(
        name,
        description,
        from_forward(ode_forward(**options), quantities),
        quantities=tuple(quantities),
        uses_tolerance=True,
        max_n=KVAERNO_MAX_N if kvaerno else None,
        limit_reason=KVAERNO_REASON if kvaerno else "",
    )


for _method in [
    Method(
        "pade",
        "jax.scipy.linalg.expm: Padé scaling and squaring (at most 16 squarings)",
        from_forward(pade_forward, VALUE),
    ),
    Method(
        "scipy",
        "scipy.linalg.expm and expm_frechet (Padé, Al-Mohy & Higham 2009), on the host",
        scipy_build,
        quantities=("expm", "vjp", "jvp"),
        call="host",
    ),
    Method(
        "taylor",
        "the naive 60-term Taylor series without scaling (reference.taylor_expm): a cautionary row",
        from_forward(taylor_forward, VALUE),
    ),
    _ode("ode", "odeexpm.expm with its defaults (balancing, solve on [0, 2^-k], k squarings)"),
    _ode(
        "ode-plain",
        "odeexpm.expm(squarings=0): one ODE solve over [0, 1], default solver",
        squarings=0,
    ),
    _ode(
        "ode-dopri8",
        "odeexpm.expm(solver=diffrax.Dopri8()): balancing + squarings",
        solver=diffrax.Dopri8,
    ),
    _ode(
        "ode-plain-dopri8",
        "odeexpm.expm(squarings=0, solver=diffrax.Dopri8())",
        squarings=0,
        solver=diffrax.Dopri8,
    ),
    _ode(
        "ode-tsit5",
        "odeexpm.expm(solver=diffrax.Tsit5()): balancing + squarings",
        solver=diffrax.Tsit5,
    ),
    _ode(
        "ode-plain-tsit5",
        "odeexpm.expm(squarings=0, solver=diffrax.Tsit5())",
        squarings=0,
        solver=diffrax.Tsit5,
    ),
    _ode(
        "ode-kvaerno5",
        "odeexpm.expm(solver=diffrax.Kvaerno5()): implicit, balancing + squarings",
        solver=diffrax.Kvaerno5,
    ),
    _ode(
        "ode-plain-kvaerno5",
        "odeexpm.expm(squarings=0, solver=diffrax.Kvaerno5()): implicit, for stiff plain solves",
        squarings=0,
        solver=diffrax.Kvaerno5,
    ),
    Method(
        "pade-autodiff",
        "jax.grad / jax.jvp through jax.scipy.linalg.expm",
        from_forward(pade_forward, {**VJP, **JVP}),
        quantities=("vjp", "jvp"),
    ),
    Method(
        "pade-frechet",
        "jax.scipy.linalg.expm_frechet, the closed-form derivative at (A^T, W) and (A, E)",
        pade_frechet_build,
        quantities=("vjp", "jvp"),
    ),
    _ode(
        "ode-frechet",
        "jax.grad and jax.jvp through odeexpm.expm with its default adjoint, "
        "odeexpm.FrechetAdjoint",
        {**VJP, **JVP},
    ),
    _ode(
        "ode-checkpoint",
        "jax.grad through odeexpm.expm, adjoint=diffrax.RecursiveCheckpointAdjoint()",
        VJP,
        adjoint=diffrax.RecursiveCheckpointAdjoint,
    ),
    _ode(
        "ode-backsolve",
        "jax.grad through odeexpm.expm, adjoint=diffrax.BacksolveAdjoint()",
        VJP,
        adjoint=diffrax.BacksolveAdjoint,
    ),
    _ode(
        "ode-direct",
        "jax.grad and jax.jvp through odeexpm.expm, adjoint=diffrax.DirectAdjoint()",
        {**VJP, **JVP},
        adjoint=diffrax.DirectAdjoint,
    ),
    _ode(
        "ode-forward",
        "jax.jvp through odeexpm.expm, adjoint=diffrax.ForwardMode()",
        JVP,
        adjoint=diffrax.ForwardMode,
    ),
]:
    register_method(_method)

# The constant-generator methods `run` and `odeexpm compare` use when no methods are
# named; the action and time-dependent modules add theirs (`harness.DEFAULT_METHODS`).
CONSTANT_METHODS = (
    "pade",
    "scipy",
    "taylor",
    "ode",
    "ode-plain",
    "ode-dopri8",
    "ode-tsit5",
    "ode-plain-kvaerno5",
    "pade-autodiff",
    "pade-frechet",
    "ode-frechet",
    "ode-checkpoint",
    "ode-backsolve",
    "ode-direct",
    "ode-forward",
)
QUICK_CONSTANT_METHODS = (
    "pade",
    "taylor",
    "ode",
    "ode-plain",
    "pade-autodiff",
    "ode-frechet",
    "ode-forward",
)
