"""What every experiment script shares: its command line, where results go, Markdown
tables, timing by medians, and saving figures.

Each experiment is `python experiments/NAME.py [--quick] [--out DIR]`; it writes
`DIR/NAME.md` (its tables, with the command that produced them) and `DIR/NAME*.png`.
`DIR` defaults to `experiments/results/`, whose contents are committed from full runs;
`--quick` runs write to `experiments/results/quick/` unless `--out` says otherwise, so a
quick run never overwrites committed results.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    """The experiment's command line: `--quick`, `--out`, and whatever `extra` adds.

    The returned namespace carries `out` as a `Path` (created) and `name`, the script's
    stem, used to name the outputs.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a short run (seconds to a minute) for CI"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: experiments/results, or experiments/results/quick "
        "with --quick)",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.out is None:
        args.out = RESULTS / "quick" if args.quick else RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    args.name = Path(sys.argv[0]).stem
    return args


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table; floats in 3 significant digits, `None` as a dash."""

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def median_time(fn: Callable, *args, repeats: int = 5, budget_s: float = 2.0) -> float:
    """Median wall time of `fn(*args)` (blocked until ready) over `repeats` calls after one
    warm-up call; stops repeating once `budget_s` has been spent."""
    jax.block_until_ready(fn(*args))
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget_s:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    """One line about where the numbers were measured."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.default_backend()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )


def write_report(args, title: str, sections: Sequence[str]) -> Path:
    """Writes `out/NAME.md`: a title, the command, the machine, then the sections."""
    command = " ".join(["python", f"experiments/{args.name}.py", *sys.argv[1:]])
    text = "\n\n".join([f"# {title}", f"Command: `{command}`  \nMachine: {machine()}", *sections])
    path = args.out / f"{args.name}.md"
    path.write_text(text + "\n")
    print(text)
    return path


def save_figure(args, fig, suffix: str = "") -> Path:
    """Saves `fig` as `out/NAME[_suffix].png` and closes it."""
    path = args.out / f"{args.name}{'_' + suffix if suffix else ''}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def train(steps, states, iterations):
    """Runs several trainings in lockstep, one step of each in turn, so that their
    timings share whatever load the machine has. `steps[name](state)` returns
    `(state, metrics)`; each step is called once first, to compile it.

    Returns, per name, a dict: `state` (final), `history` (the metrics of every step,
    stacked: `history[metric][i]`), `step_s` (the wall time of each step, compilation
    excluded) and `compile_s`.
    """
    runs = {}
    for name, step in steps.items():
        start = time.perf_counter()
        jax.block_until_ready(step(states[name]))  # compiles; the result is discarded
        runs[name] = dict(
            state=states[name], history=[], step_s=[], compile_s=time.perf_counter() - start
        )
    for _ in range(iterations):
        for name, step in steps.items():
            run = runs[name]
            start = time.perf_counter()
            run["state"], metrics = step(run["state"])
            run["history"].append(jax.device_get(metrics))  # waits for the step
            run["step_s"].append(time.perf_counter() - start)
    for run in runs.values():
        run["history"] = jax.tree.map(lambda *values: np.stack(values), *run["history"])
        run["step_s"] = np.array(run["step_s"])
    return runs


def optax_step(loss: Callable, optimiser, metric: str = "loss") -> Callable:
    """A jitted training step `step((params, opt_state)) -> ((params, opt_state),
    metrics)` of `optimiser` on `loss(params)`; `metrics` holds the loss (under the name
    `metric`) and the gradient, for `train` to record."""

    @jax.jit
    def step(state):
        params, opt_state = state
        value, grad = jax.value_and_grad(loss)(params)
        updates, opt_state = optimiser.update(grad, opt_state)
        return (optax.apply_updates(params, updates), opt_state), {metric: value, "gradient": grad}

    return step
