"""First-call times (tracing and XLA's compilation) of a gate optimisation's loss, odeexpm
against a plain diffrax solve of the same loss.

The loss: the infidelity to a CNOT of the propagator of `H(t) = H0 + u_1(t) X_1 +
u_2(t) X_2` on 2 qubits (`--qubits 3`: 3 qubits and 3 controls), with `--pieces`
piecewise-constant values per control on `[0, 5]`. The first call of
`jax.jit(jax.value_and_grad(loss))` is timed in a fresh process each time (nothing is
cached between them), split into tracing (`lower`) and compilation (`compile`), the
processes of the two alternating. Times are the process's CPU time (`time.process_time`):
on a shared virtual machine wall time also counts the time the machine was not running
it, which moved the medians by 20%.

- odeexpm: `odeexpm.propagator` of an `odeexpm.Modulated` generator with
  `odeexpm.PiecewiseConstant` controls, at its defaults (Magnus6);
- diffrax: `diffrax.diffeqsolve` of `dU/dt = -i H(t) U` with `diffrax.Dopri8()`, an
  `ODETerm` looking up the pieces with `jnp.searchsorted`, a `PIDController` at `1e-10`
  with the switching times as `jump_ts`, as a user would write it.

    python benchmarks/compile_times.py [--runs 3] [--qubits 2] [--pieces 40]

Pin the process to one core (`taskset -c 0`) and run nothing beside it.
"""

import argparse
import statistics
import subprocess
import sys
import time

DURATION = 5.0


def loss_functions(qubits: int, pieces: int, module=None):
    """`(odeexpm_loss, diffrax_loss, u)`: the two losses of the controls `u`, shape
    `(pieces, qubits)`, and random controls (`module`: odeexpm, or another version of
    it)."""
    import diffrax
    import jax.numpy as jnp
    import numpy as np

    if module is None:
        import odeexpm as module

    eye, x, z = jnp.eye(2), jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.diag(jnp.array([1.0, -1.0]))

    def on(site, op):  # `op` on one qubit, the identity on the others
        out = jnp.ones((1, 1))
        for k in range(qubits):
            out = jnp.kron(out, op if k == site else eye)
        return out

    drift = sum(0.5 * on(k, z) @ on(k + 1, z) + on(k, z) for k in range(qubits - 1))
    controls = jnp.stack([on(k, x) for k in range(qubits)])
    d = 2**qubits
    target = np.eye(d, dtype=complex)
    target[[d - 2, d - 1]] = target[[d - 1, d - 2]]  # CNOT on the last two qubits
    target = jnp.asarray(target)
    times = jnp.linspace(0.0, DURATION, pieces + 1)

    def infidelity(U):
        return 1 - jnp.abs(jnp.trace(target.conj().T @ U)) ** 2 / d**2

    def odeexpm_loss(u):
        coefficients = module.PiecewiseConstant(times, u)
        generator = module.Modulated(-1j * drift, -1j * controls, coefficients)
        return infidelity(module.propagator(generator, 0.0, DURATION))

    def diffrax_loss(u):
        def vector_field(t, U, args):
            piece = jnp.clip(jnp.searchsorted(times, t, side="right") - 1, 0, pieces - 1)
            return -1j * (drift + jnp.tensordot(u[piece], controls, axes=1)) @ U

        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            diffrax.Dopri8(),
            0.0,
            DURATION,
            0.01,
            jnp.eye(d, dtype=complex),
            stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10, jump_ts=times),
            max_steps=100_000,
        )
        return infidelity(solution.ys[-1])

    u = jnp.asarray(np.random.default_rng(0).standard_normal((pieces, qubits)))
    return odeexpm_loss, diffrax_loss, u


def first_call(which: str, qubits: int, pieces: int) -> None:
    """In this process: time the first call of one loss's `value_and_grad`, and print
    `trace compile loss` on the last line."""
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    warnings.filterwarnings("ignore", message="Complex dtype support")
    odeexpm_loss, diffrax_loss, u = loss_functions(qubits, pieces)
    loss = odeexpm_loss if which == "odeexpm" else diffrax_loss
    function = jax.jit(jax.value_and_grad(loss))
    start = time.process_time()
    lowered = function.lower(u)
    traced = time.process_time()
    compiled = lowered.compile()
    done = time.process_time()
    value, _ = jax.block_until_ready(compiled(u))
    print(f"{traced - start} {done - traced} {float(value)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--qubits", type=int, default=2)
    parser.add_argument("--pieces", type=int, default=40)
    parser.add_argument("--only", choices=["odeexpm", "diffrax"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.only:
        first_call(options.only, options.qubits, options.pieces)
        return
    runs = {"odeexpm": [], "diffrax": []}
    for _ in range(options.runs):
        for which in runs:
            command = [sys.argv[0], "--only", which]
            command += ["--qubits", str(options.qubits), "--pieces", str(options.pieces)]
            out = subprocess.run(
                [sys.executable, *command], check=True, capture_output=True, text=True
            ).stdout
            trace, compile_, loss = map(float, out.split()[-3:])
            runs[which].append((trace, compile_, loss))
    print(
        f"{options.qubits} qubits, {options.pieces} pieces per control: first call of "
        "jax.jit(jax.value_and_grad(loss)), CPU seconds (median, range over "
        f"{options.runs} fresh processes)"
    )
    for which, rows in runs.items():
        trace, compile_ = [r[0] for r in rows], [r[1] for r in rows]
        total = [a + b for a, b in zip(trace, compile_)]
        print(
            f"{which:8s} total {statistics.median(total):5.2f} ({min(total):.2f} to "
            f"{max(total):.2f}), trace {statistics.median(trace):5.2f}, compile "
            f"{statistics.median(compile_):5.2f}; loss {rows[0][2]:.12f}"
        )


if __name__ == "__main__":
    main()
