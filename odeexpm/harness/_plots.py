"""PNG plots of a run (matplotlib, Agg backend): work-precision per suite, cost against n
and against ||A||_1, and derivatives per method.

Failures stay visible: where a failed measurement has a time it is drawn as an 'x' at that
time (on error axes, in a band above the data marked "failed"); measurements without a
time are listed under the figure.
"""

import pathlib
from collections import defaultdict
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ._cases import KINDS  # noqa: E402
from ._run import Record  # noqa: E402

QUANTITY_TITLES = {"expm": "exp(A)", "action": "exp(tA) B", "propagator": "U(t1, t0)"}

ERROR_FLOOR = 1e-17  # exact answers (error 0) are drawn here on log axes
# Errors beyond this are meaningless answers; drawn hollow here so that they do not
# stretch the axis over the range where methods differ.
ERROR_CEILING = 1.0
ERROR_AXIS_NOTE = (
    f"(exact: drawn at {ERROR_FLOOR:g}; >= {ERROR_CEILING:g}: hollow at {ERROR_CEILING:g})"
)
MARKERS = "osD^v<>pP*hX"
DPI = 130


def _styles(labels: Sequence[str]) -> dict[str, dict]:
    """A stable colour and marker per label, the same in every figure of a run."""
    colours = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    return {
        label: dict(color=colours[i % len(colours)], marker=MARKERS[i % len(MARKERS)])
        for i, label in enumerate(sorted(set(labels)))
    }


def _legend(fig, styles: dict[str, dict], labels: Sequence[str], title: str, failures: bool):
    handles = [
        Line2D([], [], linestyle="", markersize=7, label=label, **styles[label])
        for label in sorted(set(labels))
    ]
    if failures:
        handles.append(
            Line2D([], [], linestyle="", marker="x", color="black", markersize=8, label="failed")
        )
    fig.legend(handles=handles, loc="outside right upper", title=title, fontsize="small")


def _error_point(ax, x, error: float, style: dict, size: int) -> float:
    """Draws an error on a log axis, clipped to [ERROR_FLOOR, ERROR_CEILING]; returns its y."""
    y = min(max(error, ERROR_FLOOR), ERROR_CEILING)
    if error >= ERROR_CEILING:
        ax.scatter(
            x, y, s=size, facecolors="none", edgecolors=style["color"], marker=style["marker"]
        )
    else:
        ax.scatter(x, y, s=size, alpha=0.85, **style)
    return y


def _failure_band(ax, values: list[float]) -> float:
    """A y value above the data on a log axis, marked as the failure band."""
    top = max(values) if values else ERROR_CEILING
    band = top * 100
    ax.axhline(band / 10, color="grey", linestyle=":", linewidth=1)
    ax.text(
        0.995,
        band / 8,
        "failed (x) ",
        transform=ax.get_yaxis_transform(),
        va="bottom",
        ha="right",
        color="dimgrey",
        fontsize="small",
    )
    if not values:  # keep the line and its label in view
        ax.set_ylim(band / 1000, band * 10)
    return band


def _unplotted_note(fig, records: Sequence[Record]) -> None:
    """Lists, under the figure, the failures that have no time to be drawn at."""
    if not records:
        return
    lines = sorted({f"{r.label} [{r.quantity}] on {r.case}: {r.status}" for r in records})
    shown = lines[:6] + ([f"... and {len(lines) - 6} more"] if len(lines) > 6 else [])
    # supxlabel, unlike fig.text, gets room from the constrained layout.
    fig.supxlabel(
        "Not plotted (failed before a time was measured): " + "; ".join(shown),
        x=0.01,
        ha="left",
        fontsize="small",
        color="firebrick",
        wrap=True,
    )


def plot_error_vs_time(records: Sequence[Record], suite: str, path: pathlib.Path) -> bool:
    """Work-precision: relative error against median run time, one marker per method."""
    rows = [
        r for r in records if r.suite == suite and r.quantity in KINDS and r.status != "skipped"
    ]
    if not rows:
        return False
    styles = _styles([r.label for r in records if r.quantity in KINDS])
    fig, ax = plt.subplots(figsize=(9.5, 5.5), layout="constrained")
    ok = [r for r in rows if r.ok]
    plotted = [_error_point(ax, r.time_s, r.error, styles[r.label], 36) for r in ok]
    # A tolerance sweep (--rtol), or a fixed-step method's segment counts, joins the
    # points of one method on one case into a curve.
    sweeps = defaultdict(list)
    for r in ok:
        if r.rtol is not None or r.segments is not None:
            sweeps[(r.method, r.case, r.dtype)].append(r)
    for sweep in sweeps.values():
        if len(sweep) > 1:
            sweep.sort(key=lambda r: r.time_s)
            ax.plot(
                [r.time_s for r in sweep],
                [min(max(r.error, ERROR_FLOOR), ERROR_CEILING) for r in sweep],
                color=styles[sweep[0].label]["color"],
                alpha=0.4,
                linewidth=1,
            )
    failed = [r for r in rows if not r.ok and r.time_s is not None]
    if failed:
        band = _failure_band(ax, plotted)
        for r in failed:
            ax.scatter(r.time_s, band, marker="x", s=60, color=styles[r.label]["color"])
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="median run time per call [s] (after compilation)",
        ylabel=f"relative error ||X - X_ref||_F / ||X_ref||_F\n{ERROR_AXIS_NOTE}",
        title=f"Work-precision, suite '{suite}': {QUANTITY_TITLES[rows[0].quantity]}, "
        "one point per case",
    )
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, styles, [r.label for r in rows], "method", bool(failed))
    _unplotted_note(fig, [r for r in rows if not r.ok and r.time_s is None])
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def _cost_panel(ax, rows: Sequence[Record], styles, x_of, y_of, connect: bool) -> bool:
    """Scatter (and, by label, connect) points; failures as 'x'. Returns whether any failed."""
    any_failed = False
    by_label = defaultdict(list)
    for r in rows:
        if y_of(r) is not None:
            by_label[r.label].append(r)
    for label, group in by_label.items():
        group.sort(key=x_of)
        style = styles[label]
        if connect:
            ax.plot(
                [x_of(r) for r in group],
                [y_of(r) for r in group],
                color=style["color"],
                alpha=0.5,
                linewidth=1,
            )
        for r in group:
            if r.ok:
                ax.scatter(x_of(r), y_of(r), s=36, **style)
            else:
                any_failed = True
                ax.scatter(x_of(r), y_of(r), marker="x", s=60, color=style["color"])
    return any_failed


def plot_time_vs_n(records: Sequence[Record], path: pathlib.Path, suite: str = "random") -> bool:
    """Median run time against n, on the Gaussian suite (norms comparable across n)."""
    rows = [
        r for r in records if r.suite == suite and r.quantity == "expm" and r.time_s is not None
    ]
    if len({r.n for r in rows}) < 2:
        return False
    styles = _styles([r.label for r in records if r.quantity in KINDS])
    fig, ax = plt.subplots(figsize=(9.5, 5.5), layout="constrained")
    failed = _cost_panel(ax, rows, styles, lambda r: r.n, lambda r: r.time_s, connect=True)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="matrix size n",
        ylabel="median run time per call [s]",
        title=f"Cost against size, suite '{suite}': exp(A) (x: failed, time still real)",
    )
    sizes = sorted({r.n for r in rows})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, styles, [r.label for r in rows], "method", failed)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_cost_vs_norm(records: Sequence[Record], path: pathlib.Path) -> bool:
    """Run time and solver steps against ||A||_1, every suite."""
    rows = [r for r in records if r.quantity == "expm" and r.time_s is not None]
    if not rows:
        return False
    styles = _styles([r.label for r in records if r.quantity in KINDS])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
    failed = _cost_panel(left, rows, styles, lambda r: r.norm1, lambda r: r.time_s, connect=False)
    stepped = [r for r in rows if r.steps is not None]
    failed |= _cost_panel(
        right, stepped, styles, lambda r: r.norm1, lambda r: r.steps, connect=False
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="||A||_1",
        ylabel="median run time per call [s]",
        title="Run time against ||A||_1 (all suites)",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="||A||_1",
        ylabel="ODE solver steps (accepted + rejected)",
        title="Solver steps against ||A||_1 (ODE methods)",
    )
    for ax in (left, right):
        ax.grid(True, which="major", alpha=0.3)
    _legend(fig, styles, [r.label for r in rows], "method", failed)
    fig.suptitle("Cost of exp(A) against the norm of A (x: failed; its time and steps are real)")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_gradients(records: Sequence[Record], path: pathlib.Path) -> bool:
    """Derivative error and run time per method and mode (VJP, JVP), one point per case."""
    rows = [r for r in records if r.quantity in ("vjp", "jvp") and r.status != "skipped"]
    if not rows:
        return False
    columns = sorted({(r.quantity, r.label) for r in rows})
    position = {column: i for i, column in enumerate(columns)}
    cases = sorted({r.case for r in rows})
    styles = _styles(cases)
    spread = {
        case: (i - (len(cases) - 1) / 2) * 0.5 / max(len(cases), 1) for i, case in enumerate(cases)
    }

    def x_of(r: Record) -> float:
        return position[(r.quantity, r.label)] + spread[r.case]

    width = max(11.0, 0.75 * len(columns) + 5)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(width, 9), layout="constrained", sharex=True)
    ok = [r for r in rows if r.ok]
    plotted = [_error_point(top, x_of(r), r.error, styles[r.case], 30) for r in ok]
    failed = [r for r in rows if not r.ok]
    if failed:
        band = _failure_band(top, plotted)
        for r in failed:
            top.scatter(x_of(r), band, marker="x", s=60, color=styles[r.case]["color"])
    for r in rows:
        if r.time_s is not None:
            marker = (
                dict(styles[r.case]) if r.ok else dict(color=styles[r.case]["color"], marker="x")
            )
            bottom.scatter(x_of(r), r.time_s, s=30 if r.ok else 60, **marker)
    top.set(
        yscale="log",
        ylabel=f"relative error vs Fréchet reference\n{ERROR_AXIS_NOTE}",
        title="Derivatives of Re sum(W * exp(A)): "
        "VJP = jax.grad vs L_exp(A^T, W); JVP = jax.jvp vs L_exp(A, E)",
    )
    bottom.set(
        yscale="log",
        ylabel="median run time per call [s]",
        title="Run time of the derivative (forward pass included)",
    )
    bottom.set_xticks(
        range(len(columns)),
        [f"{label} · {quantity.upper()}" for quantity, label in columns],
        rotation=30,
        ha="right",
        rotation_mode="anchor",
        fontsize="small",
    )
    for ax in (top, bottom):
        ax.grid(True, axis="y", alpha=0.3)
        for i in range(1, len(columns)):
            ax.axvline(i - 0.5, color="lightgrey", linewidth=0.8)
    _legend(fig, styles, [r.case for r in rows], "case", bool(failed))
    _unplotted_note(fig, [r for r in failed if r.time_s is None])
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_unitarity(records: Sequence[Record], path: pathlib.Path) -> bool:
    """Unitarity drift `||U^H U - I||_F` against the error, for skew-Hermitian propagators:
    structure-preserving methods sit at rounding whatever their error; others drift with it."""
    rows = [r for r in records if r.unitarity is not None and r.ok]
    if not rows:
        return False
    styles = _styles([r.label for r in records if r.quantity in KINDS])
    fig, ax = plt.subplots(figsize=(9.5, 5.5), layout="constrained")
    for r in rows:
        ax.scatter(
            min(max(r.error, ERROR_FLOOR), ERROR_CEILING),
            max(r.unitarity, ERROR_FLOOR),
            s=36,
            alpha=0.85,
            **styles[r.label],
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"relative error of U\n{ERROR_AXIS_NOTE}",
        ylabel="unitarity drift ||U^H U - I||_F",
        title="Unitarity against accuracy: skew-Hermitian generators, one point per case",
    )
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, styles, [r.label for r in rows], "method", False)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def write_plots(records: Sequence[Record], out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes every plot the records support; returns `{name: path}` of those written."""
    out_dir = pathlib.Path(out_dir)
    written = {}
    for suite in dict.fromkeys(r.suite for r in records):
        path = out_dir / f"error_vs_time_{suite}.png"
        if plot_error_vs_time(records, suite, path):
            written[f"error_vs_time_{suite}"] = path
    for name, plot in [
        ("time_vs_n", plot_time_vs_n),
        ("cost_vs_norm", plot_cost_vs_norm),
        ("gradients", plot_gradients),
        ("unitarity", plot_unitarity),
    ]:
        path = out_dir / f"{name}.png"
        if plot(records, path):
            written[name] = path
    return written
