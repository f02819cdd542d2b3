"""Sharded calls compared with single-device ones, run in a subprocess with simulated CPU
devices (`python tests/sharded_checks.py [batch] [rows] [--quick]`; `tests/test_sharding.py`
runs it).

Each check prints one JSON line: its name, the largest difference from the unsharded
call (relative to the answer's size), whether the output kept the sharding it should
have, and the cross-device operations in the compiled program (op -> {shape: count}).
"""

import json
import os
import re
import sys
import time
from collections import Counter, defaultdict

DEVICES = 4


def collectives(compiled_text: str) -> dict:
    """The cross-device operations of compiled HLO text: `{op: {result shape: count}}`."""
    found = defaultdict(Counter)
    ops = "all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter"
    for line in compiled_text.splitlines():
        match = re.search(rf"= (.+?) ({ops})(-start)?\(", line)
        if match:
            found[match.group(2)][match.group(1)] += 1
    return {op: dict(shapes) for op, shapes in found.items()}


# The checks of the default test run (`--quick`); the others are marked slow.
QUICK = {
    "expm",
    "failure",
    "expm_multiply sparse",
    "evolve sparse Ising",
    "sparse product",
}


def main(which: list[str], quick: bool) -> None:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES}"
    import diffrax
    import jax
    import jax.numpy as jnp
    import lineax as lx
    import numpy as np
    import scipy.sparse as ss
    from jax.experimental import sparse
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    jax.config.update("jax_enable_x64", True)
    import odeexpm

    mesh = jax.make_mesh((DEVICES,), ("devices",), axis_types=(AxisType.Auto,))
    sharded = NamedSharding(mesh, PartitionSpec("devices"))
    rng = np.random.default_rng(0)

    def report(name, f, *inputs, reference=None, output_sharded=True, axis=0):
        """`f` on `inputs` sharded along their axis `axis`, against `reference` (by
        default `f`) on unsharded inputs, and whether the output is sharded along that
        axis too."""
        if quick and name not in QUICK:
            return
        start = time.perf_counter()
        f = jax.jit(lambda *inputs, call=f: call(*inputs))
        spec = PartitionSpec(*[None] * axis, "devices")
        placed = [jax.device_put(x, NamedSharding(mesh, spec)) for x in inputs]
        compiled = f.lower(*placed).compile()
        got = compiled(*placed)
        want = jax.jit(reference or f)(*[jnp.asarray(x) for x in inputs])
        error = max(
            float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-300))
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want))
        )
        kept = not output_sharded or all(
            isinstance(leaf.sharding, NamedSharding)
            and tuple(leaf.sharding.spec)[axis : axis + 1] == ("devices",)
            for leaf in jax.tree.leaves(got)
        )
        ops = collectives(compiled.as_text())
        seconds = time.perf_counter() - start
        record = dict(name=name, error=error, sharded=kept, collectives=ops, seconds=seconds)
        print(json.dumps(record), flush=True)

    if "batch" in which:
        A = rng.standard_normal((8, 5, 5))
        E = rng.standard_normal((8, 5, 5))
        B = rng.standard_normal((8, 5))
        a = np.linspace(0.1, 1.0, 8)
        H0, H1 = rng.standard_normal((2, 5, 5))
        trace = lambda X: jnp.trace(X, axis1=-2, axis2=-1)  # noqa: E731

        report("expm", odeexpm.expm, A)
        report("expm complex", lambda A: odeexpm.expm(A * 1j), A)
        report("expm grad", jax.grad(lambda A: trace(odeexpm.expm(A)).sum()), A)
        report("expm jvp", lambda A, E: jax.jvp(odeexpm.expm, (A,), (E,)), A, E)
        report("expm t", jax.vmap(odeexpm.expm), A, a)
        report("expm_frechet", odeexpm.expm_frechet, A, E)
        report("expm_cond", odeexpm.expm_cond, A)
        report("expm_multiply", jax.vmap(odeexpm.expm_multiply), A, B)
        report(
            "expm_multiply grad",
            jax.grad(lambda A, B: jnp.sum(jax.vmap(odeexpm.expm_multiply)(A, B) ** 2), (0, 1)),
            A,
            B,
        )

        def generator(amplitude):
            return odeexpm.Modulated(H0, [H1], lambda t, u: jnp.stack([u * jnp.sin(t)]))

        def propagate(u):
            return odeexpm.propagator(generator(u), 0.0, 1.0, args=u)

        def evolve(u, y):
            return odeexpm.evolve(generator(u), y, 0.0, 1.0, args=u, ts=jnp.array([0.5, 1.0]))

        report("propagator", jax.vmap(propagate), a)
        report("propagator grad", jax.vmap(jax.grad(lambda u: trace(propagate(u)))), a)
        report("evolve", jax.vmap(evolve), a, B)
        report("evolve grad", jax.grad(lambda a, B: jax.vmap(evolve)(a, B).sum(), (0, 1)), a, B)
        report(
            "evolve y0 batch",
            lambda B: odeexpm.evolve(odeexpm.Constant(H0), B[..., None], 0.0, 1.0),
            B,
        )
        controls = rng.standard_normal((8, 6))

        def piecewise(c):
            pulse = odeexpm.PiecewiseConstant(jnp.linspace(0.0, 1.0, 7), c)
            return odeexpm.propagator(odeexpm.Modulated(H0, [H1], pulse), 0.0, 1.0)

        report("PiecewiseConstant", jax.vmap(piecewise), controls)
        layer = odeexpm.ExpmLinear(5, key=jax.random.key(0))
        report("ExpmLinear", jax.vmap(layer), B)
        report("ExpmLinear grad", jax.vmap(jax.grad(lambda x: jnp.sum(layer(x) ** 2))), B)
        # A failure in one member of a sharded batch: NaN there only (throw=False), and
        # an error (throw=True), not a hang.
        bad = A.copy()
        bad[3, 0, 0] = np.nan
        X = jax.jit(lambda A: odeexpm.expm(A, throw=False))(jax.device_put(bad, sharded))
        nan_rows = [bool(np.isnan(x).any()) for x in np.asarray(X)]
        try:
            jax.jit(odeexpm.expm)(jax.device_put(bad, sharded)).block_until_ready()
            raised = False
        except Exception as error:  # noqa: BLE001 (eqx's runtime error type is private)
            raised = "non-finite" in str(error)
        print(json.dumps(dict(name="failure", nan_rows=nan_rows, raised=raised)), flush=True)

    if "rows" in which:
        n = 4096

        def laplacian(n, periodic):
            L = ss.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)).tolil()
            if periodic:
                L[0, n - 1] = L[n - 1, 0] = 1.0
            return sparse.BCOO.from_scipy_sparse(L.tocoo())

        grid = np.arange(n)
        y0 = np.exp(-(((grid - n / 2) / 40.0) ** 2))
        L = laplacian(n, periodic=True)
        shifted = lambda v: jnp.roll(v, 1) - 2 * v + jnp.roll(v, -1)  # noqa: E731
        stencil = lx.FunctionLinearOperator(shifted, jax.ShapeDtypeStruct((n,), jnp.float64))

        report("expm_multiply stencil", lambda y: odeexpm.expm_multiply(stencil, y, 5.0), y0)
        report("evolve stencil", lambda y: odeexpm.evolve(odeexpm.Constant(stencil), y, 0, 5), y0)
        # Each ShardedSparse result against the same call with the BCOO on one device.
        # First products alone, with an irregular pattern: entries out of order, repeated
        # entries (summed), empty rows, links between every pair of devices.
        rng_sparse = ss.random(64, 64, density=0.1, random_state=1, format="coo")
        order = rng.permutation(rng_sparse.nnz)
        rows = np.concatenate([rng_sparse.row[order], [5, 5]])
        columns = np.concatenate([rng_sparse.col[order], [60, 60]])
        values = np.concatenate([rng_sparse.data[order], [1.0, 2.0]]) * (1 + 0.5j)
        irregular = sparse.BCOO((values, np.stack([rows, columns], 1)), shape=(64, 64))
        product = odeexpm.ShardedSparse(irregular, mesh).mv
        states = rng.standard_normal((64, 3))
        report("sparse product", product, states, reference=lambda y: irregular @ y)
        local = odeexpm.ShardedSparse(L, mesh)

        def action(y, A=local, t=5.0):
            return odeexpm.expm_multiply(A, y, t)

        def action_forward(y, A):  # forward mode
            return odeexpm.expm_multiply(A, y, 5.0, adjoint=diffrax.ForwardMode())

        report("expm_multiply sparse", action, y0, reference=lambda y: action(y, L))
        times = jnp.array([1.0, 5.0])
        report(
            "expm_multiply sparse ts",
            lambda y: action(y, t=times).T,
            y0,
            reference=lambda y: action(y, L, times).T,
        )
        block = np.stack([y0, np.roll(y0, 100)], axis=1)
        report("expm_multiply sparse block", action, block, reference=lambda y: action(y, L))

        report(
            "expm_multiply sparse jvp",
            lambda y: jax.jvp(lambda y: action_forward(y, local), (y,), (jnp.sin(y),))[1],
            y0,
            reference=lambda y: jax.jvp(lambda y: action_forward(y, L), (y,), (jnp.sin(y),))[1],
        )
        # A batch of states, each sharded by rows.
        states = np.stack([np.roll(y0, 500 * i) for i in range(3)])
        report(
            "expm_multiply sparse vmap",
            jax.vmap(lambda y: action(y, local, 1.0)),
            states,
            reference=jax.vmap(lambda y: action(y, L, 1.0)),
            axis=1,
        )

        def sharded_matrix(data):
            return odeexpm.ShardedSparse(sparse.BCOO((data, L.indices), shape=L.shape), mesh)

        def bcoo_matrix(data):
            return sparse.BCOO((data, L.indices), shape=L.shape)

        def population_grads(y, matrix=sharded_matrix):
            population = lambda data, y: action(y, matrix(data))[n // 2]  # noqa: E731
            return jax.grad(population, argnums=(0, 1))(L.data, y)

        report(
            "expm_multiply sparse grad y0",
            lambda y: population_grads(y)[1],
            y0,
            reference=lambda y: population_grads(y, bcoo_matrix)[1],
        )
        # The values are held whole on every device, and so is their gradient.
        report(
            "expm_multiply sparse grad data",
            lambda y: population_grads(y)[0],
            y0,
            reference=lambda y: population_grads(y, bcoo_matrix)[0],
            output_sharded=False,
        )

        # A driven transverse-field Ising chain, N = 10 spins: X_i flips bit i, so the
        # highest bits link rows on every device.
        spins = 10
        m = 2**spins
        states = np.arange(m)
        z = 1 - 2 * ((states[:, None] >> np.arange(spins)) & 1)
        H0 = ss.diags([-(z[:, :-1] * z[:, 1:]).sum(1).astype(float)], [0])
        H1 = sum(
            ss.coo_matrix((np.ones(m), (states, states ^ (1 << i))), shape=(m, m))
            for i in range(spins)
        )
        parts = [sparse.BCOO.from_scipy_sparse((-1j * H).tocoo()) for H in (H0, H1)]
        drift, drive = (odeexpm.ShardedSparse(P, mesh) for P in parts)
        psi0 = np.zeros(m, complex)
        psi0[0] = 1.0

        def chain(drift, drive, psi):
            g = odeexpm.Modulated(drift, [drive], lambda t, u: jnp.stack([u * jnp.sin(t)]))
            return odeexpm.evolve(g, psi, 0.0, 2.0, args=0.7)

        report(
            "evolve sparse Ising",
            lambda psi: chain(drift, drive, psi),
            psi0,
            reference=lambda psi: chain(*parts, psi),
        )


if __name__ == "__main__":
    main(sys.argv[1:], quick="--quick" in sys.argv[1:])
