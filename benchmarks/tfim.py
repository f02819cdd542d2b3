"""Speed of `odeexpm.propagator` on a driven transverse-field Ising chain, against plain
diffrax with Runge-Kutta solvers.

Workload: N = 6 spins (64x64 complex), open chain,
`H(t) = sum_i Z_i Z_{i+1} + a sin(t) sum_i X_i`, `A = -iH`, `a = 0.7`, `T = 10`;
the propagator `U(T, 0)`. Reference: Dopri8 at rtol = atol = 1e-13.

Baselines: `diffrax.diffeqsolve` with an `ODETerm` (the complex state split into a real
pair, the product `A(t) @ U` in complex arithmetic, as a diffrax user would write it),
`PIDController`, `RecursiveCheckpointAdjoint`, with Tsit5, Dopri5 and Dopri8, each at the
loosest tolerance of the grid 1e-6, 1e-7, ... that reaches a relative error <= 1e-8.

odeexpm: `odeexpm.propagator` of a `Modulated` generator at its defaults (Magnus8 with
precomputed commutators, rtol = atol = 3e-10), and at the loosest tolerance of the same
grid reaching 1e-8 (as the baselines get); and of the same generator written as a plain
function `A(t, a) = -1j * (HZZ + a * sin(t) * HX)`, as users write it first, at the
defaults and at the loosest tolerance.

Measured in one process, after compilation, in interleaved rounds in a new random order
each round (`_common.median_times`: a change in the machine's load hits every method
alike): median forward time and median time of the
gradient of `L = Re <W, U>` (fixed random W) with respect to the amplitude `a`; error;
steps; unitarity drift `||U^H U - I||_F`. Speed-ups are fastest baseline time / odeexpm
time (Magnus6 at its default tolerance, Magnus4 and CFMagnus4 at rtol = 1e-10 are shown
for comparison).

    python benchmarks/tfim.py [--repeats 7]
"""

import argparse

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import odeexpm  # noqa: E402
from odeexpm.harness._time_dependent import ising_chain  # noqa: E402

from _common import median_times  # noqa: E402

N, T, AMPLITUDE = 6, 10.0, 0.7
TOLERANCES = [10.0**-k for k in range(6, 13)]


HZZ, HX = (jnp.asarray(M, complex) for M in ising_chain(N))
DIM = HZZ.shape[0]
W = jnp.asarray(np.random.default_rng(0).standard_normal((DIM, DIM)), complex)


def loss(U):
    return jnp.real(jnp.vdot(W, U))


def diffrax_propagator(a, solver, rtol, atol):
    """Plain diffrax: dU/dt = -i H(t) U with U stored as (Re U, Im U)."""

    def vector_field(t, y, args):
        U = y[0] + 1j * y[1]
        dU = -1j * (HZZ + args * jnp.sin(t) * HX) @ U
        return jnp.stack([dU.real, dU.imag])

    y0 = jnp.stack([jnp.eye(DIM), jnp.zeros((DIM, DIM))])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        0.0,
        T,
        None,
        y0,
        a,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=diffrax.RecursiveCheckpointAdjoint(),
    )
    return sol.ys[0, 0] + 1j * sol.ys[0, 1], sol.stats["num_steps"]


GENERATOR = odeexpm.Modulated(-1j * HZZ, (-1j * HX)[None], lambda t, a: a * jnp.sin(t))


def A(t, a):  # the same generator as a plain function
    return -1j * (HZZ + a * jnp.sin(t) * HX)


def odeexpm_propagator(a, rtol=None, generator=GENERATOR):
    U, stats = odeexpm.propagator(
        generator, 0.0, T, args=a, rtol=rtol, atol=rtol, return_stats=True
    )
    return U, stats.num_steps


def odeexpm_callable(a, rtol=None):
    return odeexpm_propagator(a, rtol, generator=A)


def rel_err(U, ref):
    return float(jnp.linalg.norm(U - ref) / jnp.linalg.norm(ref))


def drift(U):
    return float(jnp.linalg.norm(U.conj().T @ U - jnp.eye(DIM)))


def loosest(solve_at, ref):
    """The loosest tolerance of the grid reaching error <= 1e-8."""
    for tol in TOLERANCES:
        U, _ = jax.jit(lambda a: solve_at(a, tol))(AMPLITUDE)
        if rel_err(U, ref) <= 1e-8:
            return tol
    raise RuntimeError("no tolerance of the grid reaches 1e-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    print(f"{jax.devices()[0].device_kind}, {N} spins ({DIM}x{DIM} complex), T = {T}")
    reference, _ = jax.jit(lambda a: diffrax_propagator(a, diffrax.Dopri8(), 1e-13, 1e-13))(
        AMPLITUDE
    )

    methods = []  # (name, tolerance label, solve: a -> (U, num_steps))
    for solver in [diffrax.Tsit5(), diffrax.Dopri5(), diffrax.Dopri8()]:
        solve_at = lambda a, tol, solver=solver: diffrax_propagator(a, solver, tol, tol)
        tol = loosest(solve_at, reference)
        methods.append(
            (f"diffrax {type(solver).__name__}", f"{tol:.0e}", lambda a, s=solve_at, t=tol: s(a, t))
        )
    featured = []
    for name, solve in [("odeexpm", odeexpm_propagator), ("odeexpm callable", odeexpm_callable)]:
        tol = loosest(solve, reference)
        featured.append(len(methods))
        methods.append((f"{name} (defaults)", "default", solve))
        featured.append(len(methods))
        methods.append((f"{name} (loosest tol)", f"{tol:.0e}", lambda a, s=solve, t=tol: s(a, t)))
    for solver, tol in [
        (odeexpm.Magnus6(), None),
        (odeexpm.Magnus4(), 1e-10),
        (odeexpm.CFMagnus4(), 1e-10),
    ]:

        def solve(a, solver=solver, tol=tol):
            U, stats = odeexpm.propagator(
                GENERATOR, 0.0, T, args=a, solver=solver, rtol=tol, return_stats=True
            )
            return U, stats.num_steps

        methods.append(
            (f"odeexpm {type(solver).__name__}", "default" if tol is None else f"{tol:.0e}", solve)
        )

    forwards = [jax.jit(solve) for _, _, solve in methods]
    gradients = [
        jax.jit(jax.grad(lambda a, solve=solve: loss(solve(a)[0]))) for _, _, solve in methods
    ]
    outputs = [fn(AMPLITUDE) for fn in forwards]  # compiles
    forward_times = median_times(dict(enumerate(forwards)), AMPLITUDE, options.repeats)
    gradient_times = median_times(dict(enumerate(gradients)), AMPLITUDE, options.repeats)

    print(
        f"{'method':<22} {'tol':>8} {'error':>9} {'steps':>6} {'fwd [ms]':>10} "
        f"{'grad [ms]':>10} {'||U^H U-I||':>11}"
    )
    rows = []
    for i, ((name, tol, _), (U, steps)) in enumerate(zip(methods, outputs)):
        tf, tg = forward_times[i], gradient_times[i]
        rows.append(dict(name=name, forward=tf, gradient=tg, error=rel_err(U, reference)))
        print(
            f"{name:<22} {tol:>8} {rel_err(U, reference):9.1e} {int(steps):6d} "
            f"{tf * 1e3:10.1f} {tg * 1e3:10.1f} {drift(U):11.1e}"
        )
    baselines = rows[:3]
    best_forward = min(baselines, key=lambda r: r["forward"])
    best_gradient = min(baselines, key=lambda r: r["gradient"])
    print(f"\nfastest baseline: forward {best_forward['name']}, gradient {best_gradient['name']}")
    for row in (rows[i] for i in featured):
        print(
            f"{row['name']}: forward {best_forward['forward'] / row['forward']:.2f}x, "
            f"gradient {best_gradient['gradient'] / row['gradient']:.2f}x as fast as the "
            f"fastest baseline (error {row['error']:.1e})"
        )


if __name__ == "__main__":
    main()
