"""odeexpm of the working tree against an earlier commit, in one process.

The commit's `odeexpm/` is extracted with `git archive` into a temporary folder and
imported under another name, so both versions run side by side, forward and reverse
gradient: `expm` on random matrices and batches (`n8,n32,n128,vmap4x4`, the default;
`batch3x3`, `batch3x3_wide`, `batch3x3_rotations`, `batch8x8`, `n128_norm30`), `expm_multiply` with
sparse matrices (`grid,grid_jit,markov,markov_jit`), a driven spin chain (`ising`), a gate
optimisation's loss (`gate`) and a driven Kerr oscillator with loss (`kerr`,
`odeexpm.Lindblad`): see `expm_cases`, `action_cases`, `ising_case`, `gate_case` and
`kerr_case`. The calls run in a new random order each round (on a CPU, a small program
that follows a large one runs slower: a fixed order would favour some). Prints medians,
the ratio working tree / commit, and the largest difference of the two versions' results.

    python benchmarks/against_commit.py de23c1e [--rounds 1500] [--cases n8,n32,n128,vmap4x4]
    python benchmarks/against_commit.py 05fbcf3 --rounds 15 --cases grid,grid_jit,markov

Pin the process to one core (`taskset -c 0`) and run nothing beside it.
"""

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import median_times


def import_commit(commit: str, folder: Path):
    """The package `odeexpm` as of `commit`, imported as `odeexpm_at_commit`."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "odeexpm"], check=True, capture_output=True
    ).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
    (folder / "odeexpm").rename(folder / "odeexpm_at_commit")  # (imports inside are relative)
    sys.path.insert(0, str(folder))
    return importlib.import_module("odeexpm_at_commit")


def expm_cases(rng):
    """`odeexpm.expm` on `N(0,1)/sqrt(n)` matrices (n = 8 to 512), `jax.vmap` of it on
    1000 4x4, and 100,000 3x3 (`N(0,1/4)`; `N(0,100)`: `batch3x3_wide`; rotation
    generators: `batch3x3_rotations`) and 20,000 8x8 passed whole: forward, and the
    gradient of `sum(W * expm(A))`."""

    def case(A, W, batched):
        A, W = jnp.asarray(A), jnp.asarray(W)

        def functions(module):
            expm = jax.vmap(module.expm) if batched else module.expm
            loss = lambda A: jnp.sum(W * expm(A))  # noqa: E731
            return {"forward": (expm, A), "gradient": (jax.grad(loss), A)}

        return functions

    cases = {
        f"n{n}": case(rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((n, n)), False)
        for n in (8, 32, 128, 256, 512)
    }
    cases["vmap4x4"] = case(*rng.standard_normal((2, 1000, 4, 4)), True)
    cases["batch3x3"] = case(*rng.standard_normal((2, 100_000, 3, 3)) / 2, False)
    # Norms of about 40: balancing and squarings in every chunk.
    cases["batch3x3_wide"] = case(*rng.standard_normal((2, 100_000, 3, 3)) * 10, False)
    # Rotation generators of angles 5 to 6.5 (norms below 8), needing 2 or 3 squarings.
    R = np.zeros((100_000, 3, 3))
    R[:, 0, 1], R[:, 0, 2], R[:, 1, 2] = rng.uniform(2.8, 3.7, (3, 100_000))
    R *= rng.choice([-1, 1], R.shape)
    cases["batch3x3_rotations"] = case(R - R.mT, rng.standard_normal(R.shape), False)
    cases["batch8x8"] = case(*rng.standard_normal((2, 20_000, 8, 8)) / 2, False)
    # 1-norm 30 (expm_vs_pade.py's last dense row): balancing tried, 3 squarings, the
    # shift looked for. (Its own generator: the cases above keep their matrices.)
    own = np.random.default_rng(30)
    A30 = own.standard_normal((128, 128))
    cases["n128_norm30"] = case(
        A30 * 30 / np.abs(A30).sum(0).max(), own.standard_normal(A30.shape), False
    )
    return cases


def ising_case():
    """`evolve` of the 10-spin chain of `ising.py` (a sparse `Modulated` Hamiltonian,
    stepped in time by Taylor steps): forward, and the gradient of the population of
    `|0...0>` in the drive amplitude (`ising.odeexpm_functions`)."""
    import ising

    def functions(module):
        final, gradient = ising.odeexpm_functions(10, module=module)
        amplitude = jnp.asarray(ising.AMPLITUDE)
        return {"forward": (final, amplitude), "gradient": (gradient, amplitude)}

    return functions


def gate_case():
    """The 2-qubit gate infidelity of `compile_times.py` (`propagator` of a `Modulated`
    generator with `PiecewiseConstant` controls, 40 pieces each, Magnus6): its value, and
    its gradient in the controls."""
    import compile_times

    def functions(module):
        loss, _, u = compile_times.loss_functions(2, 40, module=module)
        return {"forward": (loss, u), "gradient": (jax.grad(loss), u)}

    return functions


def action_cases(rng):
    """`odeexpm.expm_multiply` with sparse matrices: `exp(5L) v` for the 5-point
    Laplacian of a 300x300 grid (`grid`: the BCOO closed over; `grid_jit`: passed to the
    jitted function, indices traced), and a 1000-state Markov chain (5 random exits per
    state) at 10 times (`markov`; `markov_jit`: its indices passed to the jitted
    function). Forward, and the gradient of `sum(W * result)` in the
    BCOO's values."""
    from jax.experimental import sparse

    from expm_multiply_vs_scipy import grid_laplacian

    laplacian = sparse.BCOO.from_scipy_sparse(grid_laplacian(300))
    n = laplacian.shape[0]
    v, W = jnp.asarray(rng.standard_normal(n)), jnp.asarray(rng.standard_normal(n))

    def grid(traced):
        def functions(module):
            def solve(data, indices):
                A = sparse.BCOO((data, indices), shape=laplacian.shape)
                return module.expm_multiply(A, v, 5.0)

            def loss(data, indices):
                return jnp.sum(W * solve(data, indices))

            if traced:  # the indices an argument of the jitted function
                x = (laplacian.data, laplacian.indices)
                return {
                    "forward": (lambda x: solve(*x), x),
                    "gradient": (lambda x: jax.grad(loss)(*x), x),
                }
            forward = lambda data: solve(data, laplacian.indices)  # noqa: E731
            gradient = jax.grad(lambda data: loss(data, laplacian.indices))
            return {"forward": (forward, laplacian.data), "gradient": (gradient, laplacian.data)}

        return functions

    states = 1000
    exits = rng.integers(0, states, (states, 5))
    pairs = np.unique(np.stack([exits.ravel(), np.repeat(np.arange(states), 5)], 1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # (to, from): columns sum to zero
    rates = jnp.asarray(rng.uniform(0.2, 2.0, len(pairs)))
    indices = np.concatenate([pairs, np.stack([np.arange(states)] * 2, 1)])
    order = np.lexsort((indices[:, 1], indices[:, 0]))
    p0 = jnp.zeros(states).at[0].set(1.0)
    times = jnp.linspace(0.5, 5.0, 10)
    W_chain = jnp.asarray(rng.standard_normal((10, states)))

    def markov(traced):
        def functions(module):
            def solve(rates, chain_indices):
                leaving = jax.ops.segment_sum(rates, jnp.asarray(pairs[:, 1]), states)
                data = jnp.concatenate([rates, -leaving])[order]
                Q = sparse.BCOO((data, chain_indices), shape=(states, states))
                return module.expm_multiply(Q, p0, times)

            def loss(rates, chain_indices):
                return jnp.sum(W_chain * solve(rates, chain_indices))

            chain_indices = jnp.asarray(indices[order])
            if traced:  # the indices an argument of the jitted function
                x = (rates, chain_indices)
                return {
                    "forward": (lambda x: solve(*x), x),
                    "gradient": (lambda x: jax.grad(loss)(*x), x),
                }
            forward = lambda rates: solve(rates, chain_indices)  # noqa: E731
            gradient = jax.grad(lambda rates: loss(rates, chain_indices))
            return {"forward": (forward, rates), "gradient": (gradient, rates)}

        return functions

    return {
        "grid": grid(False),
        "grid_jit": grid(True),
        "markov": markov(False),
        "markov_jit": markov(True),
    }


def kerr_case():
    """`odeexpm.evolve` of the driven Kerr oscillator with loss of `lindblad.py` (n = 32,
    sparse operators, defaults) to `T = 10`: forward, and the gradient of the mean photon
    number in the drive's amplitude."""
    import lindblad

    def functions(module):
        final, gradient = lindblad.odeexpm_functions(32, module=module)
        eps = jnp.asarray(lindblad.EPS)
        return {"forward": (final, eps), "gradient": (gradient, eps)}

    return functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commit")
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--cases", default="n8,n32,n128,vmap4x4")
    options = parser.parse_args()

    jax.config.update("jax_enable_x64", True)
    import odeexpm

    with tempfile.TemporaryDirectory() as folder:
        versions = {"tree": odeexpm, "commit": import_commit(options.commit, Path(folder))}
        rng = np.random.default_rng(0)
        cases = {
            **expm_cases(rng),
            **action_cases(rng),
            "ising": ising_case(),
            "gate": gate_case(),
            "kerr": kerr_case(),
        }
        names = options.cases.split(",")
        calls, results = {}, {}
        for case in names:
            for version, module in versions.items():
                for mode, (f, x) in cases[case](module).items():
                    calls[case, mode, version] = lambda _, f=jax.jit(f), x=x: f(x)
                    results[case, mode, version] = calls[case, mode, version](None)
        median = median_times(calls, None, options.rounds)
    print(f"working tree against {options.commit}, medians of {options.rounds} rounds")
    print(f"{'case':9s} {'mode':9s} {'commit ms':>10s} {'tree ms':>9s} {'ratio':>6s} {'diff':>8s}")
    for case in names:
        for mode in ("forward", "gradient"):
            old, new = median[case, mode, "commit"], median[case, mode, "tree"]
            diff = max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(
                    jax.tree.leaves(results[case, mode, "commit"]),
                    jax.tree.leaves(results[case, mode, "tree"]),
                )
            )
            print(
                f"{case:9s} {mode:9s} {old * 1e3:10.3f} {new * 1e3:9.3f} {new / old:6.2f} "
                f"{diff:8.1e}"
            )


if __name__ == "__main__":
    main()
