"""Scaling: how do time and solver work grow with the size `n` and the norm `‖A‖` of `A`?

Two sweeps through `odeexpm.harness.run`, float64:

- size: Gaussian matrices with N(0, 1/n) entries (`‖A‖_2 ≈ 2` at every n), n = 4 to 256;
- norm: one 16 x 16 Gaussian matrix, shifted so that its rightmost eigenvalue is 0 (so
  `exp(A)` stays of size ~1 however large `A` is), scaled to 1-norms 0.1 to 1e4.

Each path: the default `odeexpm.expm` (balancing + one Taylor step on `[0, 2^-k]` + `k`
squarings), the plain single solve (`squarings=0`) with the default Taylor solver and with
Dopri8, and the Padé closed form (`jax.scipy.linalg.expm`). Recorded: time (fastest of
the repeats), ODE steps, squarings, relative error, and failures (the plain path's step
budget, `max_steps = 4096`, the default).

    python experiments/scaling.py [--quick] [--out DIR]
"""

import os

# JAX's LAPACK calls (the LU solve inside Padé) run on OpenBLAS threads, which wait
# actively; on a shared machine such a call stalled for 10-20 ms from n = 32 on. One
# thread measures the arithmetic, not the contention. Set before numpy and jax load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# _common enables float64 and matplotlib's Agg backend.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from odeexpm import harness  # noqa: E402

from _common import markdown_table, parse_args, save_figure, write_report  # noqa: E402

METHODS = ("ode", "ode-plain", "ode-plain-dopri8", "pade")
SIZES = (4, 8, 16, 32, 64, 128, 256)
NORM_N = 16
NORMS = tuple(10.0 ** (p / 2) for p in range(-2, 9))  # 0.1, 0.32, 1, ..., 1e4
# --quick: two shapes and three methods (one compilation each, about 2 s apiece).
QUICK_METHODS = ("ode", "ode-plain", "pade")
QUICK_SIZES = (4, 8)  # small: mpmath references for n = 16 take seconds each
QUICK_NORMS = (0.1, 10.0, 1000.0)
# Many repeats: the fastest call is the measurement, and the machine is shared.
REPEATS = 15
MAX_STEPS = 4096  # odeexpm.expm's default budget, which the harness's methods keep

SIZE_SUITE = "scaling-size"
NORM_SUITE = "scaling-norm"
STYLE = {
    "ode": dict(color="tab:blue", marker="o", linestyle="-"),
    "ode-plain": dict(color="tab:blue", marker="s", linestyle="--"),
    "ode-plain-dopri8": dict(color="tab:orange", marker="D", linestyle="--"),
    "pade": dict(color="black", marker="*", linestyle="-", markersize=9),
}
ERROR_FLOOR = 1e-17


# --- cases ---------------------------------------------------------------------------


def gaussian(n: int, seed: int) -> np.ndarray:
    """N(0, 1/n) entries: the spectrum fills a disc of radius ~1 at every n."""
    return np.random.default_rng(seed).standard_normal((n, n)) / np.sqrt(n)


def size_cases(quick: bool) -> list[harness.Case]:
    return [
        harness.expm_case(f"gaussian-{n}", gaussian(n, 6000 + n), source="N(0, 1/n), seed 6000 + n")
        for n in (QUICK_SIZES if quick else SIZES)
    ]


def norm_cases(quick: bool) -> list[harness.Case]:
    n = QUICK_SIZES[0] if quick else NORM_N
    G = gaussian(n, 7000 + n)
    # Shift the rightmost eigenvalue to 0: exp(c B) stays bounded as c grows, so large
    # norms test the cost of a long solve, not overflow.
    B = G - np.max(np.linalg.eigvals(G).real) * np.eye(n)
    B /= np.abs(B).sum(axis=0).max()
    return [
        harness.expm_case(
            f"shifted-gaussian-{n}-norm-{norm:.2g}",
            norm * B,
            source=f"G - max Re eig(G) I, scaled to ||A||_1 = {norm:g}",
        )
        for norm in (QUICK_NORMS if quick else NORMS)
    ]


def measure(quick: bool) -> list[harness.Record]:
    harness.register_suite(SIZE_SUITE, size_cases, replace=True)
    harness.register_suite(NORM_SUITE, norm_cases, replace=True)
    # One run for both sweeps: the n = 16 executables compiled for the size sweep are
    # reused by the norm sweep.
    return harness.run(
        suites=[SIZE_SUITE, NORM_SUITE],
        methods=list(QUICK_METHODS if quick else METHODS),
        repeats=3 if quick else REPEATS,
        quick=quick,
    )


# --- analysis ------------------------------------------------------------------------


def series(records, suite: str, method: str, x_of) -> list[tuple[float, harness.Record]]:
    """(x, record) pairs of one method in one sweep, sorted by x."""
    mine = [r for r in records if r.suite == suite and r.method == method]
    return sorted(((x_of(r), r) for r in mine), key=lambda pair: pair[0])


def slope(xs, ys) -> float | None:
    """The least-squares exponent p of y ~ x^p (None with fewer than two points)."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def first_failure(pairs) -> tuple[float, str] | None:
    """The smallest x at which the method failed, and how."""
    for x, r in pairs:
        if not r.ok:
            return x, r.status
    return None


# --- figures -------------------------------------------------------------------------


def sweep_figure(records, suite: str, x_of, xlabel: str, title: str, methods):
    """Time, steps, squarings and error against the sweep variable, one line per method;
    failures drawn as crosses (on the error panel at the top)."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels = {
        "time": (axes[0, 0], "time per call, fastest of repeats (ms)", "Time"),
        "steps": (axes[0, 1], "ODE steps (attempted)", "ODE steps"),
        "squarings": (axes[1, 0], "squarings", "Squarings after the solve (default path)"),
        "error": (axes[1, 1], "relative error", "Relative error"),
    }
    error_top = 1e2
    for method in methods:
        pairs = series(records, suite, method, x_of)
        xs = [x for x, _ in pairs]
        style = STYLE[method]
        panels["time"][0].plot(xs, [1e3 * r.time_min_s for _, r in pairs], label=method, **style)
        if method != "pade":
            panels["steps"][0].plot(xs, [r.steps for _, r in pairs], label=method, **style)
        if method != "pade" and "plain" not in method:  # the plain path never squares
            panels["squarings"][0].plot(xs, [r.squarings for _, r in pairs], label=method, **style)
        errors = [max(r.error, ERROR_FLOOR) if r.ok else np.nan for _, r in pairs]
        panels["error"][0].plot(xs, errors, label=method, **style)
        for x, r in ((x, r) for x, r in pairs if not r.ok):
            panels["error"][0].scatter(
                x, error_top, marker="x", s=80, color=style["color"], zorder=4
            )
            if r.steps is not None:
                panels["steps"][0].scatter(x, r.steps, marker="x", s=80, color="red", zorder=4)
            panels["time"][0].scatter(
                x, 1e3 * r.time_min_s, marker="x", s=80, color="red", zorder=4
            )
    xs = sorted({x_of(r) for r in records if r.suite == suite})
    if suite == SIZE_SUITE:
        # Orientation: dense n x n products cost n^3.
        # Orientation where arithmetic rather than call overhead dominates (n >= 32).
        ode_times = [1e3 * r.time_min_s for _, r in series(records, suite, "ode", x_of)]
        big = np.array([x for x in xs if x >= 32] or xs[-1:])
        panels["time"][0].plot(
            big, ode_times[-1] * (big / xs[-1]) ** 3, color="grey", linestyle=":", label="∝ n³"
        )
    else:
        # Drawn wide and pale: it may coincide with the measured squarings.
        panels["squarings"][0].plot(
            xs,
            np.maximum(0, np.ceil(np.log2(xs))),
            color="grey",
            linewidth=6,
            alpha=0.3,
            label="⌈log2 ‖A‖₁⌉",
        )
    steps = [r.steps for r in records if r.suite == suite and r.steps is not None]
    if max(steps) > MAX_STEPS / 10:  # only where the budget is in sight
        panels["steps"][0].axhline(
            MAX_STEPS, color="red", linestyle=":", linewidth=1, label=f"step budget ({MAX_STEPS})"
        )
    panels["error"][0].axhline(error_top / 10, color="grey", linestyle=":", linewidth=1)
    panels["error"][0].text(
        0.02,
        error_top * 2,
        "failed (x)",
        color="dimgrey",
        transform=panels["error"][0].get_yaxis_transform(),
    )
    for name, (ax, ylabel, panel_title) in panels.items():
        ax.set_xscale("log")
        if name != "squarings":
            ax.set_yscale("log")
        else:
            ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{panel_title} against {xlabel.split(' ')[0]}")
        ax.grid(True, which="major", alpha=0.3)
    panels["error"][0].set_ylim(ERROR_FLOOR / 3, error_top * 30)
    panels["steps"][0].legend(fontsize="small")
    panels["squarings"][0].legend(fontsize="small")
    panels["time"][0].legend(fontsize="small", title="x: failed", title_fontsize="small")
    fig.suptitle(title)
    return fig


# --- report --------------------------------------------------------------------------


def sweep_table(records, suite: str, x_of, x_name: str, methods) -> str:
    """One row per sweep point: per method, time (ms), steps/squarings, error or failure."""
    xs = sorted({x_of(r) for r in records if r.suite == suite})
    rows = []
    for x in xs:
        row = [f"{x:.3g}"]
        for method in methods:
            r = next(r for r in records if r.suite == suite and r.method == method and x_of(r) == x)
            work = "" if r.steps is None else f"{r.steps}/{r.squarings}"
            outcome = f"{r.error:.0e}" if r.ok else f"**{r.status}**"
            row.append(
                f"{1e3 * r.time_min_s:.3g} ms" + (f", {work}" if work else "") + f", {outcome}"
            )
        rows.append(row)
    return (
        "Each cell: time (fastest call), steps/squarings (ODE paths), relative error or "
        "failure.\n\n" + markdown_table([x_name, *methods], rows)
    )


def norm_of(record) -> float:
    return record.norm1


def size_of(record) -> float:
    return float(record.n)


def findings(records, methods) -> tuple[list[str], dict]:
    """Statements read off the records, and the numbers the headline quotes."""
    lines, numbers = [], {}
    # Size: the exponent of time ~ n^p over the larger sizes, where arithmetic (O(n^3)
    # products) rather than call overhead should dominate.
    for method in methods:
        pairs = [
            (x, r) for x, r in series(records, SIZE_SUITE, method, size_of) if r.ok and x >= 32
        ]
        p = slope([x for x, _ in pairs], [r.time_min_s for _, r in pairs])
        all_pairs = series(records, SIZE_SUITE, method, size_of)
        (n0, r0), (n1, r1) = all_pairs[0], all_pairs[-1]
        numbers[f"time-{method}"] = (n0, r0.time_min_s, n1, r1.time_min_s)
        work = ""
        if r0.steps is not None:
            work = f"; steps {r0.steps} -> {r1.steps}, squarings {r0.squarings} -> {r1.squarings}"
        lines.append(
            f"- size, `{method}`: time {1e3 * r0.time_min_s:.3g} ms at n = {n0:g} -> "
            f"{1e3 * r1.time_min_s:.3g} ms at n = {n1:g}"
            + (f" (time ~ n^{p:.1f} for n >= 32)" if p is not None else "")
            + work
            + "."
        )
    if "pade" in methods:
        ratios = [
            f"{x:g}: {r.time_min_s / p.time_min_s:.2g}"
            for (x, r), (_, p) in zip(
                series(records, SIZE_SUITE, "ode", size_of),
                series(records, SIZE_SUITE, "pade", size_of),
            )
        ]
        lines.append("- size, time of `ode` / time of `pade` at n = " + ", ".join(ratios) + ".")
    for method in methods:
        pairs = series(records, NORM_SUITE, method, norm_of)
        ok = [(x, r) for x, r in pairs if r.ok]
        failed = [f"{x:.2g}" for x, r in pairs if not r.ok]
        numbers[f"norm-failure-{method}"] = first_failure(pairs)
        parts = []
        if pairs[0][1].steps is not None and ok:
            parts.append(
                f"steps {ok[0][1].steps} at ‖A‖₁ = {ok[0][0]:.2g} -> "
                f"{ok[-1][1].steps} at {ok[-1][0]:.2g}"
            )
            big = [(x, r) for x, r in ok if x >= 10]
            p = slope([x for x, _ in big], [r.steps for _, r in big])
            if p is not None and abs(p) > 0.05:
                parts.append(f"steps ~ ‖A‖^{p:.2f} for ‖A‖₁ >= 10")
            parts.append(f"squarings {pairs[0][1].squarings} -> {pairs[-1][1].squarings}")
        parts.append(
            f"time {1e3 * pairs[0][1].time_min_s:.3g} -> {1e3 * pairs[-1][1].time_min_s:.3g} ms"
        )
        if ok:
            parts.append(f"largest error {max(r.error for _, r in ok):.1e}")
        if failed:
            parts.append(f"fails ({first_failure(pairs)[1]}) at ‖A‖₁ = {', '.join(failed)}")
        lines.append(f"- norm, `{method}`: " + "; ".join(parts) + ".")
    return lines, numbers


def main():
    args = parse_args(__doc__.split("\n")[0])
    records = measure(args.quick)
    methods = list(dict.fromkeys(r.method for r in records))
    n_norm = next(r.n for r in records if r.suite == NORM_SUITE)
    save_figure(
        args,
        sweep_figure(
            records,
            SIZE_SUITE,
            size_of,
            "n (matrix size)",
            "Cost against size: Gaussian N(0, 1/n) matrices, float64",
            methods,
        ),
        "size",
    )
    save_figure(
        args,
        sweep_figure(
            records,
            NORM_SUITE,
            norm_of,
            "‖A‖₁ (1-norm)",
            f"Cost against norm: shifted Gaussian, n = {n_norm}, float64",
            methods,
        ),
        "norm",
    )
    lines, numbers = findings(records, methods)
    sections = [
        __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
        f"Times are the fastest of up to {REPEATS} calls after compilation (the harness's "
        "`time_min_s`; repeats stop after 1 s): "
        "the 2-core machine is shared with other work, and the fastest call suffers least "
        "from it. Small sizes measure call overhead more than arithmetic. OpenBLAS, which "
        "runs JAX's LAPACK calls (Padé's LU solve), is limited to "
        f"{os.environ['OPENBLAS_NUM_THREADS']} thread(s) (`OPENBLAS_NUM_THREADS`, set by "
        "the script unless already set): with its default threads, Padé's calls stalled "
        "by 10-20 ms from n = 32 on this shared machine.",
        "## What the numbers show\n\n" + "\n".join(lines),
        "## Against size\n\n![cost against n](scaling_size.png)\n\n"
        + sweep_table(records, SIZE_SUITE, size_of, "n", methods),
        f"## Against norm (n = {n_norm})\n\n![cost against norm](scaling_norm.png)\n\n"
        + sweep_table(records, NORM_SUITE, norm_of, "‖A‖₁", methods),
    ]
    write_report(args, "Scaling with size and norm", sections)

    n0, t0, n1, t1 = numbers["time-ode"]
    _, p0, _, p1 = numbers["time-pade"]
    plain = numbers.get("norm-failure-ode-plain")
    ode_norm = series(records, NORM_SUITE, "ode", norm_of)
    print(
        f"scaling: n {n0:g}->{n1:g}: ode {1e3 * t0:.3g}->{1e3 * t1:.3g} ms, "
        f"pade {1e3 * p0:.3g}->{1e3 * p1:.3g} ms; ||A||_1 {ode_norm[0][0]:.2g}->"
        f"{ode_norm[-1][0]:.2g}: ode steps {ode_norm[0][1].steps}->{ode_norm[-1][1].steps}, "
        f"squarings {ode_norm[0][1].squarings}->{ode_norm[-1][1].squarings}; plain (Taylor) "
        + (f"fails ({plain[1]}) from ||A||_1 = {plain[0]:.2g}" if plain else "never fails")
    )


if __name__ == "__main__":
    main()
