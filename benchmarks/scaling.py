"""Strong and weak scaling over devices: a batch of matrix exponentials, and one large
state sharded by rows.

Meshes over the first 1, 2, 4, ... devices of this process are timed side by side in one
process. On a CPU the devices are simulated (`--devices`, default 4, sets
`XLA_FLAGS=--xla_force_host_platform_device_count`): they share the machine's cores, so
this shows the overheads of sharding (collectives, halo exchanges, partitioned
programs), not a speed-up; on a machine with several accelerators it shows the scaling.

- batch: `odeexpm.expm` of a batch of 16 x 16 matrices sharded over the mesh, forward,
  and the gradient of a sum of traces;
- state: `odeexpm.expm_multiply` of a periodic 1-D Laplacian (a `odeexpm.ShardedSparse`
  matrix) on a state sharded by rows, forward, and the gradient with respect to the state.

Strong scaling keeps the problem fixed (batch 256, state 2^19); weak scaling grows it with
the devices (64 matrices, 2^17 entries per device). The state's first row is the plain
BCOO matrix on one device, without a mesh. Times are medians of `--repeats`.

    python benchmarks/scaling.py [--devices 4] [--repeats 5]
"""

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=4, help="simulated CPU devices")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={options.devices}")
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.sparse as ss
    from jax.experimental import sparse
    from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

    jax.config.update("jax_enable_x64", True)
    import odeexpm

    devices = jax.devices()
    counts = [k for k in (1, 2, 4, 8, 16, 32) if k <= len(devices)]
    print(f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), float64")

    def median_time(f, *args):
        jax.block_until_ready(f(*args))  # compile
        times = []
        for _ in range(options.repeats):
            start = time.perf_counter()
            jax.block_until_ready(f(*args))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    rng = np.random.default_rng(0)
    expm = jax.jit(odeexpm.expm)
    expm_grad = jax.jit(jax.grad(lambda A: jnp.sum(jnp.trace(odeexpm.expm(A), axis1=-2, axis2=-1))))

    def batch_times(k, size):
        mesh = Mesh(np.array(devices[:k]), ("devices",), axis_types=(AxisType.Auto,))
        A = rng.standard_normal((size, 16, 16)) / 4
        A = jax.device_put(A, NamedSharding(mesh, PartitionSpec("devices")))
        return median_time(expm, A), median_time(expm_grad, A)

    def state_times(k, n):
        mesh = Mesh(np.array(devices[: max(k, 1)]), ("devices",), axis_types=(AxisType.Auto,))
        L = ss.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)).tolil()
        L[0, n - 1] = L[n - 1, 0] = 1.0
        L = L.tocoo()
        grid = np.arange(n)
        y0 = np.exp(-(((grid - n / 2) / (n / 64)) ** 2))
        if k == 0:
            # The plain BCOO on one device, no mesh: its values an argument, its indices
            # closed over (concrete, so odeexpm plans its sliced ELLPACK form once).
            indices = np.stack([L.row, L.col], 1)

            def action(data, y):
                return odeexpm.expm_multiply(sparse.BCOO((data, indices), shape=(n, n)), y, 20.0)

            A = jnp.asarray(L.data)
        else:
            # The operator is an argument, not a constant of the compiled program (which
            # the compiler would spend seconds folding).
            A = odeexpm.ShardedSparse(sparse.BCOO.from_scipy_sparse(L), mesh)
            y0 = jax.device_put(y0, NamedSharding(mesh, PartitionSpec("devices")))

            def action(A, y):
                return odeexpm.expm_multiply(A, y, 20.0)

        forward = eqx.filter_jit(action)
        gradient = eqx.filter_jit(jax.grad(lambda y, A: action(A, y)[n // 2]))
        return median_time(forward, A, y0), median_time(gradient, y0, A)

    for title, measure, strong, weak in [
        ("batch of 16x16 expm", batch_times, 256, 64),
        ("state expm_multiply (1-D Laplacian, t = 20)", state_times, 2**19, 2**17),
    ]:
        print(f"\n{title}")
        print("| devices | strong: size | fwd ms | grad ms | speed-up | weak: size | fwd ms "
              "| grad ms | efficiency |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        base_strong = base_weak = None
        if measure is state_times:  # a first row: the plain BCOO on one device
            fs, gs = measure(0, strong)
            fw, gw = measure(0, weak)
            print(
                f"| BCOO, no mesh | {strong} | {fs * 1e3:.1f} | {gs * 1e3:.1f} | | {weak} | "
                f"{fw * 1e3:.1f} | {gw * 1e3:.1f} | |"
            )
        for k in counts:
            fs, gs = measure(k, strong)
            fw, gw = measure(k, weak * k)
            base_strong = base_strong or (fs, gs)
            base_weak = base_weak or (fw, gw)
            print(
                f"| {k} | {strong} | {fs * 1e3:.1f} | {gs * 1e3:.1f} | "
                f"{base_strong[0] / fs:.2f} / {base_strong[1] / gs:.2f} | {weak * k} | "
                f"{fw * 1e3:.1f} | {gw * 1e3:.1f} | "
                f"{base_weak[0] / fw:.2f} / {base_weak[1] / gw:.2f} |"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
