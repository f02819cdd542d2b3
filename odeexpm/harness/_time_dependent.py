"""The time-dependent suite and its methods: propagators `U(t1, t0)` of `dU/dt = A(t) U`.

The Ising chain appears twice: with dense matrices, and with sparse (BCOO) ones, which
the default solves with Taylor steps in time (Magnus steps and Padé need dense matrices
and skip it).

Methods: `odeexpm.propagator` with each Magnus solver and with Runge-Kutta solvers, and
the GRAPE-style piecewise-constant product of Padé exponentials at midpoints. References:
closed forms where the generators commute, else diffrax's Dopri8 at 1e-14 on a plain
`ODETerm` (`PropagatorReference`). Skew-Hermitian cases also record the unitarity drift.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.experimental import sparse
from jaxtyping import Array

from .. import (
    AbstractMagnus,
    CFMagnus4,
    Magnus2,
    Magnus4,
    Magnus6,
    Magnus8,
    Modulated,
    propagator,
)
from ._cases import PROPAGATOR, Case, propagator_case, suite
from ._methods import Method, register_method
from ._references import PropagatorReference, precise_expm

PAULI_X = np.array([[0.0, 1.0], [1.0, 0.0]])
PAULI_Z = np.diag([1.0, -1.0])


def ising_chain(spins: int) -> tuple[np.ndarray, np.ndarray]:
    """`sum_i Z_i Z_{i+1}` (open chain) and `sum_i X_i` on `spins` spins, as dense arrays."""

    def site(op, i):
        out = np.eye(1)
        for j in range(spins):
            out = np.kron(out, op if j == i else np.eye(2))
        return out

    zz = sum(site(PAULI_Z, i) @ site(PAULI_Z, i + 1) for i in range(spins - 1))
    xs = sum(site(PAULI_X, i) for i in range(spins))
    return zz, xs


class Sinusoid(eqx.Module):
    """`f(t) = offset + amplitude cos(frequency t + phase)`, its parameters an array
    `[offset, amplitude, frequency, phase]`: data, not code, so cases of the same shapes
    share one compilation per method."""

    parameters: Array

    def __call__(self, t, args=None):
        # A complex run rounds every array of a case to its dtype; f stays real.
        offset, amplitude, frequency, phase = jnp.real(self.parameters)
        return offset + amplitude * jnp.cos(frequency * t + phase)


def _sinusoidally_driven(data):
    """`A(t) = drift + f(t) operators[0]`, `f` the `Sinusoid` of `data["drive"]`."""
    return Modulated(data["drift"], data["operators"], [Sinusoid(data["drive"])])


def _sparse_sinusoidally_driven(data, nse: tuple[int, int]):
    """`_sinusoidally_driven` with the drift and the operator as BCOO matrices (`nse`:
    their numbers of stored entries, static so that it runs under `jax.jit`)."""
    drift, operator = (
        sparse.BCOO.fromdense(M, nse=count)
        for M, count in zip((data["drift"], data["operators"][0]), nse)
    )
    return Modulated(drift, [operator], [Sinusoid(data["drive"])])


def _drive(offset=0.0, amplitude=1.0, frequency=1.0, phase=0.0) -> np.ndarray:
    return np.array([offset, amplitude, frequency, phase])


def _norm1(A: np.ndarray) -> float:
    return float(np.max(np.sum(np.abs(A), axis=0)))


def _driven_qubit() -> Case:
    omega, rabi, T = 10.0, 1.0, 10.0
    drift = -0.5j * omega * PAULI_Z
    operator = -1j * PAULI_X
    return propagator_case(
        "driven-qubit",
        _sinusoidally_driven,
        {"drift": drift, "operators": operator[None], "drive": _drive(0.0, rabi, omega)},
        0.0,
        T,
        n=2,
        norm1=T * (_norm1(drift) + rabi * _norm1(operator)),
        unitary=True,
        source=f"Lab frame H = {omega:g}/2 Z + {rabi:g} cos({omega:g} t) X, resonant, T = {T:g}.",
    )


@suite("time_dependent")
def time_dependent(quick: bool) -> list[Case]:
    """Propagators of time-dependent generators: qubits, a Mathieu oscillator, an Ising chain."""
    if quick:
        return [_driven_qubit()]
    T = 10.0
    A0 = -1j * (PAULI_X + PAULI_Z) / np.sqrt(2)
    zz, xs = ising_chain(6)
    tfim_amplitude = 0.7
    mathieu_drift = np.array([[0.0, 1.0], [-1.0, -0.1]])
    mathieu_operator = np.array([[0.0, 0.0], [-0.5, 0.0]])
    mathieu_T = 20.0
    tfim_data = {
        "drift": -1j * zz,
        "operators": (-1j * xs)[None],
        "drive": _drive(0.0, tfim_amplitude, 1.0, -np.pi / 2),  # 0.7 sin(t)
    }
    tfim_options = dict(
        t0=0.0,
        t1=T,
        n=64,
        norm1=T * (_norm1(zz) + tfim_amplitude * _norm1(xs)),
        unitary=True,
    )
    return [
        propagator_case(
            "commuting-qubit",
            _sinusoidally_driven,
            {"drift": np.zeros((2, 2), complex), "operators": A0[None], "drive": _drive(1.0)},
            0.0,
            T,
            n=2,
            norm1=2 * T * _norm1(A0),
            unitary=True,
            # A(t) = f(t) A0 commutes with itself at all times: U = exp(F(T) A0).
            reference=PropagatorReference(
                _sinusoidally_driven,
                exact=lambda data: precise_expm(
                    (data["t1"] + np.sin(data["t1"]) - data["t0"] - np.sin(data["t0"]))
                    * data["operators"][0]
                ),
            ),
            source="A(t) = (1 + cos t) A0, A0 = -i(X + Z)/sqrt 2: U = exp((T + sin T) A0).",
        ),
        _driven_qubit(),
        propagator_case(
            "mathieu",
            _sinusoidally_driven,
            {
                "drift": mathieu_drift,
                "operators": mathieu_operator[None],
                "drive": _drive(0.0, 1.0, 2.0),
            },
            0.0,
            mathieu_T,
            n=2,
            norm1=mathieu_T * (_norm1(mathieu_drift) + _norm1(mathieu_operator)),
            source="Damped Mathieu oscillator x'' + 0.1 x' + (1 + 0.5 cos 2t) x = 0, "
            f"T = {mathieu_T:g} (real, not unitary).",
        ),
        propagator_case(
            "tfim-6",
            _sinusoidally_driven,
            tfim_data,
            source="Transverse-field Ising chain, 6 spins: H = sum Z_i Z_{i+1} + "
            f"{tfim_amplitude} sin(t) sum X_i, T = {T:g} (issue 4's workload).",
            **tfim_options,
        ),
        propagator_case(
            "tfim-6-sparse",
            functools.partial(
                _sparse_sinusoidally_driven,
                nse=(int(np.count_nonzero(zz)), int(np.count_nonzero(xs))),
            ),
            tfim_data,
            sparse=True,
            # The dense generator of the same arrays, solved by plain diffrax.
            reference=PropagatorReference(_sinusoidally_driven, key="tfim-6-sparse"),
            source="tfim-6 with BCOO matrices (Taylor steps in time by default).",
            **tfim_options,
        ),
    ]


def propagator_with(solver):
    """A method building `odeexpm.propagator` with `solver` (a class; `None`: the
    library's default choice)."""

    def build(quantity: str, rtol: float | None):
        def fn(generator, t0, t1):
            return propagator(
                generator,
                t0,
                t1,
                solver=None if solver is None else solver(),
                rtol=rtol,
                max_steps=100_000,
                throw=False,
                return_stats=True,
            )

        return fn

    return build


def piecewise_constant_pade(quantity: str, segments: int):
    """GRAPE's propagator: `A` frozen at each of `segments` midpoints, the Padé
    exponentials of the segments multiplied in time order (second order in the step)."""

    def fn(generator, t0, t1):
        step = (t1 - t0) / segments
        midpoints = t0 + step * (jnp.arange(segments) + 0.5)
        exponentials = jax.vmap(lambda t: jsl.expm(step * generator(t, None)))(midpoints)
        U = jax.lax.fori_loop(
            0,
            segments,
            lambda j, U: exponentials[j] @ U,
            jnp.eye(exponentials.shape[-1], dtype=exponentials.dtype),
        )
        return U, None

    return fn


def _propagator_method(name: str, description: str, solver) -> Method:
    return Method(
        name,
        description,
        propagator_with(solver),
        quantities=(PROPAGATOR,),
        uses_tolerance=True,
        applies_to=frozenset({PROPAGATOR}),
        dense_only=isinstance(solver, type) and issubclass(solver, AbstractMagnus),
    )


for _method in [
    _propagator_method(
        "propagator",
        "odeexpm.propagator with its defaults (Magnus8 or Magnus6 for dense generators, "
        "Taylor steps in time for sparse ones)",
        None,
    ),
    _propagator_method("magnus8", "odeexpm.propagator(solver=odeexpm.Magnus8())", Magnus8),
    _propagator_method("magnus6", "odeexpm.propagator(solver=odeexpm.Magnus6())", Magnus6),
    _propagator_method("magnus4", "odeexpm.propagator(solver=odeexpm.Magnus4())", Magnus4),
    _propagator_method("cfmagnus4", "odeexpm.propagator(solver=odeexpm.CFMagnus4())", CFMagnus4),
    _propagator_method("magnus2", "odeexpm.propagator(solver=odeexpm.Magnus2())", Magnus2),
    _propagator_method("rk-tsit5", "odeexpm.propagator(solver=diffrax.Tsit5())", diffrax.Tsit5),
    _propagator_method("rk-dopri5", "odeexpm.propagator(solver=diffrax.Dopri5())", diffrax.Dopri5),
    _propagator_method("rk-dopri8", "odeexpm.propagator(solver=diffrax.Dopri8())", diffrax.Dopri8),
    Method(
        "pwc-pade",
        "GRAPE-style: A frozen at N midpoints, product of jax.scipy.linalg.expm per segment",
        piecewise_constant_pade,
        quantities=(PROPAGATOR,),
        applies_to=frozenset({PROPAGATOR}),
        segments=(64, 256, 1024),
        dense_only=True,
    ),
]:
    register_method(_method)

# Each method compiles once per case shape and dtype, which dominates the run: the
# default run leaves out Magnus8 and Magnus6 (the defaults' choices, so `propagator`
# runs one of them), CFMagnus4, Magnus2 and Dopri5 (Dopri8 needs fewer steps on every
# case); name them to run them.
TIME_DEPENDENT_METHODS = ("propagator", "magnus4", "rk-tsit5", "rk-dopri8", "pwc-pade")
QUICK_TIME_DEPENDENT_METHODS = ("propagator", "rk-dopri8")
