"""A parameter sweep over every device of every process: the same script on one process
or many.

A driven qubit, `H(t) = (delta/2) Z + a s(t) X / 2` with the envelope
`s(t) = (pi / T) (1 - cos(2 pi t / T))` (area pi at `a = 1`), is swept over drive
amplitudes `a`; for each, the infidelity of its propagator to the X gate and the
derivative of the infidelity with respect to `a` (one `odeexpm.propagator` solve and its
gradient per amplitude). The amplitudes form one global array sharded over a mesh of all
devices of all processes; each device solves its own amplitudes, and the answer is
gathered on every process at the end.

    python benchmarks/sweep.py                        # this process and its devices
    # two processes on one machine (each with 2 simulated CPU devices):
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/sweep.py \\
        --coordinator localhost:12355 --num-processes 2 --process-id 0 &
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python benchmarks/sweep.py \\
        --coordinator localhost:12355 --num-processes 2 --process-id 1
    # on a cluster (SLURM, Open MPI, Kubernetes...), each process finds the others itself:
    srun python benchmarks/sweep.py --distributed

Process 0 prints the best amplitude and the time; `--out FILE.npz` saves the sweep.
"""

import argparse
import time

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=256, help="amplitudes in the sweep")
    parser.add_argument("--distributed", action="store_true", help="jax.distributed.initialize()")
    parser.add_argument("--coordinator", help="host:port of process 0 (with --num-processes)")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--out", help="save amplitudes, infidelities and gradients (.npz)")
    options = parser.parse_args()

    if options.coordinator or options.distributed:
        # CPU devices of different processes talk through gloo (no effect on GPUs/TPUs).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            options.coordinator, options.num_processes, options.process_id
        )  # (all None with --distributed: detected from the cluster's environment)
    jax.config.update("jax_enable_x64", True)

    import jax.numpy as jnp
    import numpy as np
    import odeexpm
    from jax.experimental import multihost_utils
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    mesh = jax.make_mesh((jax.device_count(),), ("sweep",), axis_types=(AxisType.Auto,))
    points = options.points - options.points % jax.device_count()  # whole shards
    # Every process knows the sweep; each fills in only the shards on its own devices.
    everything = np.linspace(0.8, 1.2, points)
    amplitudes = jax.make_array_from_callback(
        (points,), NamedSharding(mesh, PartitionSpec("sweep")), lambda index: everything[index]
    )

    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    Z = np.diag([1.0, -1.0])
    duration, detuning = 10.0, 0.05

    def envelope(t, amplitude):
        return amplitude * (jnp.pi / duration) * (1 - jnp.cos(2 * jnp.pi * t / duration))

    generator = odeexpm.Modulated(
        -0.5j * detuning * Z, [-0.5j * X], lambda t, a: jnp.stack([envelope(t, a)])
    )

    def infidelity(amplitude):
        U = odeexpm.propagator(generator, 0.0, duration, args=amplitude)
        return 1 - jnp.abs(jnp.trace(X @ U) / 2) ** 2

    sweep = jax.jit(jax.vmap(jax.value_and_grad(infidelity)))
    jax.block_until_ready(sweep(amplitudes))  # compile
    start = time.perf_counter()
    values, gradients = jax.block_until_ready(sweep(amplitudes))
    seconds = time.perf_counter() - start
    spec = values.sharding.spec
    values, gradients = multihost_utils.process_allgather((values, gradients), tiled=True)

    if jax.process_index() == 0:
        best = int(np.argmin(values))
        print(
            f"{jax.process_count()} process(es), {jax.device_count()} device(s), {points} "
            f"amplitudes (output sharding {spec}): {seconds * 1e3:.1f} ms, "
            f"{seconds / points * 1e6:.0f} us per amplitude (value and gradient)"
        )
        print(
            f"best amplitude {everything[best]:.6f}: infidelity {values[best]:.3e}, "
            f"d/da {gradients[best]:.3e}"
        )
        if options.out:
            np.savez(options.out, amplitudes=everything, values=values, gradients=gradients)


if __name__ == "__main__":
    main()
