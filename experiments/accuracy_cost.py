"""Accuracy against cost: what does each way of computing exp(A) buy, and for how much?

On the hard suite (Moler & Van Loan, Ward, Burkardt), every variant of the ODE path (the
default Taylor solver, Dopri8 and Tsit5; with balancing + scaling + squaring, and plain,
`squarings=0`) runs at several tolerances, next to the Padé closed form and the naive
Taylor series. Each measurement is a point (run time, relative error): a
work-precision diagram per case.

A second part explains the naive series' failure on `[[-49, 24], [-64, 31]]` (and on
Ward's `[[0, 1], [-39, -40]]`) with numbers: how large its terms grow, how small the
answer is, and how much of the error is truncation and how much rounding (cancellation
of the large terms).

    python experiments/accuracy_cost.py [--quick] [--out DIR]
"""

import math
from collections import defaultdict

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import mpmath
import numpy as np
from odeexpm import harness

# First: _common enables float64 and matplotlib's Agg backend.
from _common import markdown_table, parse_args, save_figure, write_report

ODE_METHODS = ("ode", "ode-dopri8", "ode-tsit5", "ode-plain", "ode-plain-dopri8", "ode-plain-tsit5")
CLOSED_FORMS = ("pade", "taylor")
RTOLS = (1e-4, 1e-7, 1e-10, "default")
# --quick: one tolerance, so that each method compiles once (about 2 s each).
QUICK_ODE_METHODS = ("ode", "ode-plain")
QUICK_RTOLS = ("default",)

# The 2 x 2 matrices of the hard suite on which the naive series fails: Moler & Van
# Loan's (the classic example), and Ward's, whose terms grow far larger.
SERIES_CASES = {
    "moler-vanloan-2x2": np.array([[-49.0, 24.0], [-64.0, 31.0]]),
    "ward-2x2": np.array([[0.0, 1.0], [-39.0, -40.0]]),
}
TAYLOR_TERMS = 60  # what reference.taylor_expm (the harness's `taylor`) sums
# How many terms the series study follows: past the peak and the float64 floor.
SERIES_TERMS = 150
MP_DIGITS = 50
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}

ERROR_FLOOR = 1e-17  # exact answers are drawn here on log axes
FAIL_LEVEL = 1e3  # failures and errors above 1 are drawn here, as crosses


# --- measurements ------------------------------------------------------------------


def measure_suite(quick: bool) -> list[harness.Record]:
    """Every method on the hard suite; the ODE methods at every tolerance."""
    methods = (QUICK_ODE_METHODS if quick else ODE_METHODS) + CLOSED_FORMS
    return harness.run(
        suites=["hard"],
        methods=list(methods),
        rtols=list(QUICK_RTOLS if quick else RTOLS),
        repeats=3 if quick else 7,
        quick=quick,
    )


def rtol_value(record: harness.Record) -> float | None:
    """The tolerance as a number (the library default is 1e-13 in float64)."""
    if record.rtol is None:
        return None
    return 1e-13 if record.rtol == "default" else float(record.rtol)


def series_study(A: np.ndarray, X: np.ndarray) -> dict:
    """The naive series of `A`, term by term: term norms, and the error of each partial
    sum in float32, float64 and exact (50-digit) arithmetic, against `X = exp(A)`."""
    norm_X = np.linalg.norm(X)
    term_norms = []
    errors = {"float32": [], "float64": []}
    for dtype in errors:
        # The algorithm of reference.taylor_expm: term = term @ A / k; total += term.
        A_d = A.astype(dtype)
        term = np.eye(len(A), dtype=dtype)
        total = term.copy()
        for k in range(1, SERIES_TERMS + 1):
            errors[dtype].append(np.linalg.norm(total.astype(np.float64) - X) / norm_X)
            if dtype == "float64":
                term_norms.append(np.linalg.norm(term))
            term = term @ A_d / np.dtype(dtype).type(k)
            total = total + term
    errors["exact"] = exact_truncation_errors(A, X)
    return dict(
        term_norms=np.array(term_norms),
        errors={key: np.array(value) for key, value in errors.items()},
        norm_X=norm_X,
    )


def exact_truncation_errors(A: np.ndarray, X: np.ndarray) -> list[float]:
    """Errors of the partial sums computed with 50 digits: truncation alone."""
    with mpmath.workdps(MP_DIGITS):
        M = mpmath.matrix(A.tolist())
        term = mpmath.eye(len(A))
        total = mpmath.eye(len(A))
        errors = []
        for k in range(1, SERIES_TERMS + 1):
            S = np.array(total.tolist(), dtype=float)
            errors.append(np.linalg.norm(S - X) / np.linalg.norm(X))
            term = term * M / k
            total = total + term
    return errors


# --- tables --------------------------------------------------------------------------


def error_cell(record: harness.Record) -> str:
    """An error, or the failure status."""
    return f"{record.error:.1e}" if record.ok else record.status


def steps_cell(record: harness.Record) -> str:
    """Steps and squarings of an ODE method, with the status if it failed."""
    if record.steps is None:
        return "-"
    return f"{record.steps}/{record.squarings}" + ("" if record.ok else f" ({record.status})")


def per_case_table(records, rtol: str, cell=error_cell) -> str:
    """Rows: cases; columns: methods at tolerance `rtol` (closed forms have none)."""
    cases = list(dict.fromkeys(r.case for r in records))
    methods = list(dict.fromkeys(r.method for r in records))
    found = {
        (r.case, r.method): r for r in records if r.rtol in (rtol, None) and r.quantity == "expm"
    }
    rows = []
    for case in cases:
        first = next(r for r in records if r.case == case)
        rows.append(
            [case, f"{first.norm1:.3g}"]
            + [cell(found[case, m]) if (case, m) in found else "-" for m in methods]
        )
    return markdown_table(["case", "‖A‖₁", *methods], rows)


def summary_rows(records) -> list[list]:
    """One row per method and tolerance: failures, error and cost over the suite."""
    groups = defaultdict(list)
    for r in records:
        groups[r.method, r.rtol].append(r)
    rows = []
    for (method, rtol), group in groups.items():
        ok = [r for r in group if r.ok]
        failed = [f"{r.case} ({r.status})" for r in group if not r.ok]
        errors = [r.error for r in ok]
        steps = [r.steps for r in ok if r.steps is not None]
        rows.append(
            [
                method,
                rtol or "-",
                f"{len(ok)}/{len(group)}",
                f"{np.median(errors):.1e}" if errors else "-",
                f"{max(errors):.1e}" if errors else "-",
                f"{1e6 * np.median([r.time_min_s for r in group]):.0f}",
                f"{np.median([r.compile_s for r in group]):.1f}",
                f"{np.median(steps):.0f}" if steps else "-",
                ", ".join(failed) or "-",
            ]
        )
    return rows


# --- figures -------------------------------------------------------------------------

SOLVER_COLOURS = {"ode": "tab:blue", "dopri8": "tab:orange", "tsit5": "tab:green"}


def style_of(method: str) -> dict:
    """Colour by solver, line by path (solid: scaled + squared; dashed: plain)."""
    plain = "plain" in method
    solver = method.split("-")[-1] if method not in ("ode", "ode-plain") else "ode"
    return dict(
        color=SOLVER_COLOURS[solver],
        linestyle="--" if plain else "-",
        marker="s" if plain else "o",
    )


def drawn_error(record) -> float:
    """Where a record's error is drawn: failures and errors > 1 at FAIL_LEVEL."""
    if not record.ok or record.error > 1:
        return FAIL_LEVEL
    return max(record.error, ERROR_FLOOR)


def microsecond_axis(ax) -> None:
    """A log time axis labelled 20, 50, 100, ... rather than 2 x 10^1."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def work_precision_figure(records):
    """One panel per case: error against (fastest) time; ODE methods as lines over rtol.
    The last panel holds the legend."""
    cases = list(dict.fromkeys(r.case for r in records))
    columns = 2 if len(cases) < 4 else 3
    rows = math.ceil((len(cases) + 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.8 * rows), squeeze=False)
    for ax, case in zip(axes.flat, cases):
        mine = [r for r in records if r.case == case]
        for method in dict.fromkeys(r.method for r in mine):
            points = sorted(
                (r for r in mine if r.method == method),
                key=lambda r: -(rtol_value(r) or 0),
            )
            times = [1e6 * r.time_min_s for r in points]
            errors = [drawn_error(r) for r in points]
            if method in CLOSED_FORMS:
                colour = "black" if method == "pade" else "tab:red"
                marker = "*" if method == "pade" else "P"
                ax.scatter(
                    times, errors, marker=marker, s=110, color=colour, zorder=3, label=method
                )
            else:
                ax.plot(times, errors, label=method, markersize=5, **style_of(method))
            for t, e in zip(times, errors):
                if e == FAIL_LEVEL:
                    ax.scatter(t, e, marker="x", s=70, color="black", zorder=4)
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        microsecond_axis(ax)
        ax.set_yscale("log")
        ax.set_ylim(ERROR_FLOOR / 3, FAIL_LEVEL * 30)
        ax.set_title(f"{case} (‖A‖₁ = {mine[0].norm1:.3g})", fontsize="medium")
        ax.set_xlabel("time per call, fastest of repeats (µs)")
        ax.set_ylabel("relative error")
        ax.grid(True, which="major", alpha=0.3)
    legend_ax = axes.flat[len(cases)]
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], linestyle="", marker="x", color="black", markersize=8))
    labels.append(f"failed, or error > 1 (drawn at {FAIL_LEVEL:g})")
    legend_ax.legend(
        handles,
        labels,
        loc="center",
        title="method (a line joins one ODE method's tolerances)",
        fontsize="small",
        title_fontsize="small",
    )
    for ax in axes.flat[len(cases) :]:
        ax.axis("off")
    fig.suptitle("Work-precision on the hard suite: error against time, float64")
    return fig


def series_figure(studies: dict[str, dict]):
    """Per matrix, left: term norms of the series; right: errors of its partial sums."""
    fig, axes = plt.subplots(len(studies), 2, figsize=(15, 4.2 * len(studies)), squeeze=False)
    colours = {"exact": "black", "float64": "tab:blue", "float32": "tab:red"}
    for (left, right), (name, study) in zip(axes, studies.items()):
        A = SERIES_CASES[name]
        k = np.arange(len(study["term_norms"]))
        left.semilogy(k, study["term_norms"], color="tab:blue", label="‖A^k / k!‖_F")
        left.axhline(study["norm_X"], color="black", linestyle="--", label="‖exp(A)‖_F")
        peak = study["peak_k"]
        left.annotate(
            f"largest term: k = {peak}, {study['peak']:.2g}",
            (peak, study["peak"]),
            xytext=(peak + 20, study["peak"] * 10),
            arrowprops=dict(arrowstyle="->"),
        )
        left.set_ylim(ERROR_FLOOR, study["peak"] * 1e4)
        left.set_xlabel("k")
        left.set_ylabel("Frobenius norm")
        left.set_title(f"{name}: terms of the series, A = {A.astype(int).tolist()}")
        left.legend(loc="lower left")
        n_terms = np.arange(1, len(k) + 1)
        for key, errors in study["errors"].items():
            label = "exact arithmetic (truncation only)" if key == "exact" else key
            right.semilogy(
                n_terms, np.maximum(errors, ERROR_FLOOR), color=colours[key], label=label
            )
            if key != "exact":
                right.axhline(
                    study["predicted"][key],
                    color=colours[key],
                    linestyle=":",
                    label=f"eps({key}) × largest term / ‖exp(A)‖",
                )
        right.axvline(
            TAYLOR_TERMS,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"{TAYLOR_TERMS} terms (reference.taylor_expm)",
        )
        right.set_xlabel("terms summed")
        right.set_ylabel("relative error of the partial sum")
        right.set_title(f"{name}: error of the partial sums")
        right.set_ylim(ERROR_FLOOR, max(1e3, 100 * study["errors"]["exact"].max()))
        right.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


# --- report --------------------------------------------------------------------------


def findings(records) -> list[str]:
    """Statements read off the records (nothing asserted that the numbers do not show)."""
    at = lambda method, rtol: [r for r in records if r.method == method and r.rtol == rtol]
    lines = []
    for method, rtol in [("ode", "default"), ("pade", None), ("taylor", None)]:
        group = at(method, rtol)
        if not group:
            continue
        ok = [r for r in group if r.ok]
        worst = max(ok, key=lambda r: r.error) if ok else None
        failed = [r.case for r in group if not r.ok]
        lines.append(
            f"- `{method}`: {len(ok)} of {len(group)} cases succeed"
            + (f"; largest error {worst.error:.1e} ({worst.case})" if worst else "")
            + (f"; fails on {', '.join(failed)}" if failed else "")
            + "."
        )
    for method in ODE_METHODS:
        group = [r for r in records if r.method == method]
        if not group:
            continue
        medians = []
        for rtol in dict.fromkeys(r.rtol for r in group):
            ok = [r.error for r in group if r.rtol == rtol and r.ok]
            steps = [r.steps for r in group if r.rtol == rtol and r.ok]
            n_failed = sum(1 for r in group if r.rtol == rtol and not r.ok)
            if ok:
                medians.append(
                    f"rtol {rtol}: median error {np.median(ok):.0e}, median steps "
                    f"{np.median(steps):.0f}" + (f", {n_failed} failed" if n_failed else "")
                )
        lines.append(f"- `{method}`: " + "; ".join(medians) + ".")
    return lines


def summarise_series(study: dict) -> dict:
    """Adds the numbers the report quotes: the largest term, predictions, floors."""
    term_norms, norm_X = study["term_norms"], study["norm_X"]
    peak_k = int(np.argmax(term_norms))
    study.update(
        peak_k=peak_k,
        peak=float(term_norms[peak_k]),
        total=float(term_norms.sum()),
        # Each term is rounded to eps times its own size, and the answer is what is left
        # after the terms cancel: a floor of eps * largest term / ||X|| (at most
        # eps * sum of the terms / ||X||).
        predicted={d: EPS[d] * float(term_norms[peak_k]) / norm_X for d in EPS},
        predicted_sum={d: EPS[d] * float(term_norms.sum()) / norm_X for d in EPS},
        floor={d: float(study["errors"][d][-1]) for d in EPS},
        at_taylor_terms={d: float(study["errors"][d][TAYLOR_TERMS - 1]) for d in EPS},
        truncation=float(study["errors"]["exact"][TAYLOR_TERMS - 1]),
    )
    return study


def between(study: dict, dtype: str) -> str:
    """Where the observed floor lies relative to the two rounding estimates."""
    low, high = study["predicted"][dtype], study["predicted_sum"][dtype]
    floor = study["floor"][dtype]
    if low <= floor <= high:
        return "between the two estimates"
    return f"{floor / low:.2g} times the first estimate"


def series_section(studies: dict[str, dict], records) -> str:
    taylor = {r.case: r for r in records if r.method == "taylor"}
    rows, notes = [], []
    for name, st in studies.items():
        for dtype in ("float64", "float32"):
            rows.append(
                [
                    name,
                    dtype,
                    f"{st['peak']:.1e} (k = {st['peak_k']})",
                    f"{st['norm_X']:.2g}",
                    f"{st['predicted'][dtype]:.1e}",
                    f"{st['predicted_sum'][dtype]:.1e}",
                    f"{st['floor'][dtype]:.1e}",
                    f"{st['truncation']:.1e}",
                    f"{st['at_taylor_terms'][dtype]:.1e}",
                ]
            )
        if name in taylor and taylor[name].ok:
            notes.append(
                f"`{name}`: the harness's `taylor` row (`reference.taylor_expm`, compiled by "
                f"XLA) measured {taylor[name].error:.1e}; the NumPy loop above "
                f"{st['at_taylor_terms']['float64']:.1e}."
            )
    table = markdown_table(
        [
            "matrix",
            "dtype",
            "largest ‖T_k‖_F",
            "‖X‖_F",
            "eps·max‖T_k‖/‖X‖",
            "eps·Σ‖T_k‖/‖X‖",
            f"observed, {SERIES_TERMS} terms",
            f"truncation, {TAYLOR_TERMS} terms",
            f"observed, {TAYLOR_TERMS} terms",
        ],
        rows,
    )
    mvl = studies["moler-vanloan-2x2"]
    eig = np.sort(np.linalg.eigvals(SERIES_CASES["moler-vanloan-2x2"]).real)
    ward = studies["ward-2x2"]
    return f"""## Why the naive series fails

The naive series `sum_k T_k`, `T_k = A^k / k!`, computed as `reference.taylor_expm` does
(`T_k = T_(k-1) @ A / k`, summed in order) in NumPy, term by term: its term norms, and the
error of every partial sum in float32, float64 and in exact arithmetic (mpmath, {MP_DIGITS}
digits: truncation alone), against the closed form of `exp(A)`.

`[[-49, 24], [-64, 31]]` has eigenvalues {eig[0]:g} and {eig[1]:g}. Its terms grow until
k = {mvl["peak_k"]}, where `‖T_k‖_F` = {mvl["peak"]:.2e}, then decay; the answer has
`‖X‖_F` = {mvl["norm_X"]:.3g}, so every digit of it is what is left after terms
{mvl["peak"] / mvl["norm_X"]:.1e} times larger cancel. Each term is rounded to about eps
times its own size, so no partial sum comes closer to `X` than about
eps × (largest term) / ‖X‖ = {mvl["predicted"]["float64"]:.1e} in float64 (at most
eps × Σ‖T_k‖ / ‖X‖ = {mvl["predicted_sum"]["float64"]:.1e}); the observed floor is
{mvl["floor"]["float64"]:.1e} ({between(mvl, "float64")}): about
{-math.log10(mvl["floor"]["float64"]):.1f} of 16 digits survive. In float32 the prediction
is {mvl["predicted"]["float32"]:.1e}, and the observed error {mvl["floor"]["float32"]:.1e}
({between(mvl, "float32")}). At the {TAYLOR_TERMS} terms `reference.taylor_expm` sums, truncation
adds {mvl["truncation"]:.1e} (exact arithmetic), so the `taylor` row of the harness mixes
truncation and rounding.

Ward's `[[0, 1], [-39, -40]]` (eigenvalues -1, -39) is worse: its terms reach
{ward["peak"]:.1e} (k = {ward["peak_k"]}) for an answer of size {ward["norm_X"]:.2g}, so
even the float64 floor is {ward["floor"]["float64"]:.1e}, and after {TAYLOR_TERMS} terms
the series has not converged at all (truncation error {ward["truncation"]:.1e}).

{table}

{chr(10).join("- " + note for note in notes)}

Scaling is the cure: with `‖A / 2^s‖ <= 1` no term exceeds 1 and nothing cancels; the
default ODE path and Padé both scale, then square `s` times.

![naive series](accuracy_cost_series.png)
"""


def main():
    args = parse_args(__doc__.split("\n")[0])
    records = measure_suite(args.quick)
    fig = work_precision_figure(records)
    save_figure(args, fig, "work_precision")

    studies = {
        name: summarise_series(series_study(A, harness.closed_form_2x2(A)))
        for name, A in SERIES_CASES.items()
    }
    save_figure(args, series_figure(studies), "series")

    cases = list(dict.fromkeys(r.case for r in records))
    rtols = list(dict.fromkeys(r.rtol for r in records if r.rtol is not None))
    sections = [
        f"""Every method on the {len(cases)} cases of the `hard` suite (float64), through
`odeexpm.harness.run`: relative error `‖X - X_ref‖_F / ‖X_ref‖_F` against mpmath (40
digits) or a closed form, run time after compilation, and ODE steps. ODE methods
run at rtol = {", ".join(map(str, rtols))} (`default` is 1e-13); `ode` is `odeexpm.expm`
at its defaults (balancing, a Taylor step on `[0, 2^-k]`, `k` squarings), `-plain` means
`squarings=0` (one solve over `[0, 1]`), `-dopri8`/`-tsit5` swap the solver; `pade` is
`jax.scipy.linalg.expm`, `taylor` the naive 60-term series. Times are the fastest of 7
calls after compilation (the harness's `time_min_s`): this 2-core machine is shared with
other work, and the fastest call suffers least from it. For these tiny matrices they
measure dispatch overhead as much as arithmetic.""",
        "## Work-precision\n\n![work-precision](accuracy_cost_work_precision.png)",
        "## What the numbers show\n\n" + "\n".join(findings(records)),
        "## Summary per method and tolerance\n\nTime: median over the cases of the fastest "
        "call, in µs; compile time in s; steps: median over the successful cases.\n\n"
        + markdown_table(
            [
                "method",
                "rtol",
                "ok",
                "median error",
                "max error",
                "fastest µs",
                "compile s",
                "steps",
                "failures",
            ],
            summary_rows(records),
        ),
        "## Errors per case at the default tolerance\n\n" + per_case_table(records, "default"),
        "## Steps/squarings per case at the default tolerance\n\n"
        + per_case_table([r for r in records if r.steps is not None], "default", steps_cell),
        series_section(studies, records),
    ]
    write_report(args, "Accuracy against cost", sections)

    ode = [r for r in records if r.method == "ode" and r.rtol == "default"]
    worst = max((r.error for r in ode if r.ok), default=math.nan)
    pade_failed = sum(1 for r in records if r.method == "pade" and not r.ok)
    mvl = studies["moler-vanloan-2x2"]
    print(
        f"accuracy_cost: default ode max error {worst:.1e} on {len(ode)} hard cases "
        f"({sum(not r.ok for r in ode)} failed; Padé failed {pade_failed}); naive Taylor on "
        f"[[-49,24],[-64,31]]: largest term {mvl['peak']:.1e} (k={mvl['peak_k']}) for "
        f"||exp(A)|| = {mvl['norm_X']:.2g}, eps*max/||X|| = {mvl['predicted']['float64']:.1e}, "
        f"observed {mvl['floor']['float64']:.1e} ({mvl['at_taylor_terms']['float64']:.1e} "
        f"at {TAYLOR_TERMS} terms)"
    )


if __name__ == "__main__":
    main()
