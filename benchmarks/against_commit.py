"""`odeexpm.expm` of the working tree against an earlier commit, in one process.

The commit's `odeexpm/` is extracted with `git archive` into a temporary folder and
imported under another name, so both versions run side by side: forward and reverse
gradient (loss `sum(W * expm(A))`) on random `N(0,1)/sqrt(n)` matrices, and under
`jax.vmap` on a batch of 1000 4x4 matrices. The calls run in a new random order each
round (on a CPU, a small program that follows a large one runs slower: a fixed order
would favour some). Prints medians and the ratio working tree / commit.

    python benchmarks/against_commit.py de23c1e [--rounds 1500] [--cases n8,n32,n128,vmap4x4]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commit")
    parser.add_argument("--rounds", type=int, default=1500)
    parser.add_argument("--cases", default="n8,n32,n128,vmap4x4")
    options = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import odeexpm

    with tempfile.TemporaryDirectory() as folder:
        versions = {"tree": odeexpm, "commit": import_commit(options.commit, Path(folder))}
        rng = np.random.default_rng(0)
        cases = {
            f"n{n}": (rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((n, n)), False)
            for n in (8, 32, 128)
        }
        cases["vmap4x4"] = (*rng.standard_normal((2, 1000, 4, 4)), True)
        names = options.cases.split(",")
        calls = {}
        for case in names:
            A, W, batched = cases[case]
            A, W = jnp.asarray(A), jnp.asarray(W)
            for version, module in versions.items():
                expm = jax.vmap(module.expm) if batched else module.expm
                loss = lambda A, expm=expm, W=W: jnp.sum(W * expm(A))  # noqa: E731
                for mode, f in (("forward", jax.jit(expm)), ("gradient", jax.jit(jax.grad(loss)))):
                    calls[case, mode, version] = lambda _, f=f, A=A: f(A)
        median = median_times(calls, None, options.rounds)
    print(f"working tree against {options.commit}, medians of {options.rounds} rounds")
    print(f"{'case':9s} {'mode':9s} {'commit ms':>10s} {'tree ms':>9s} {'ratio':>6s}")
    for case in names:
        for mode in ("forward", "gradient"):
            old, new = median[case, mode, "commit"], median[case, mode, "tree"]
            print(f"{case:9s} {mode:9s} {old * 1e3:10.3f} {new * 1e3:9.3f} {new / old:6.2f}")


if __name__ == "__main__":
    main()
