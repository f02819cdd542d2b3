"""Adjoints: how accurate, fast and memory-hungry is each way of differentiating exp(A)?

The gradient of the loss `Re sum(W * exp(A))` (reverse mode, `jax.grad`) and the
directional derivative `L_exp(A, E)` (forward mode, `jax.jvp`), through `odeexpm.expm`
with each adjoint: `odeexpm.FrechetAdjoint` (the default), diffrax's
`RecursiveCheckpointAdjoint`, `BacksolveAdjoint`, `DirectAdjoint` and `ForwardMode`; on
the default path (balancing, a solve on `[0, 2^-k]`, `k` squarings) and on the plain
path (`squarings=0`, one Dopri8 solve over `[0, 1]`); next to autodiff through Padé and
the closed-form `expm_frechet`. The error is measured against the Fréchet derivative from
the block identity at 40 digits (mpmath, `odeexpm.harness.precise_frechet`).

The cases are stiff and dissipative, `c` times a fixed generator for `c` = 1 to 1000: the
graph Laplacian of a path (`-c L`, symmetric) and a decay chain (a bidiagonal Markov
generator, strongly non-normal). `BacksolveAdjoint` integrates the state `X(s)` backwards
from `X(1)`, i.e. applies `exp(-(1 - s) A)`, which grows like `e^(c |lambda| (1 - s))`:
the question is where, and on which path, that growth destroys the gradient.

    python experiments/adjoints.py [--quick] [--out DIR]
"""

import math

import diffrax
import matplotlib.pyplot as plt
import numpy as np
import odeexpm
from odeexpm import harness

# First: _common enables float64 and matplotlib's Agg backend.
from _common import markdown_table, parse_args, save_figure, write_report

N = 8
STIFFNESS = (1.0, 2.0, 5.0, 10.0, 30.0, 100.0, 1000.0)
QUICK_N = 2
QUICK_STIFFNESS = (1.0, 10.0, 100.0)
SUITE = "adjoint-stiffness"
EPS = float(np.finfo(np.float64).eps)
ERROR_FLOOR = 1e-17
BROKEN = 1e-6  # a gradient error above this is counted as broken

# The plain path: one solve over [0, 1] with Dopri8 for every adjoint, so that only the
# adjoint differs (BacksolveAdjoint needs a Runge-Kutta solver; Taylor cannot solve the
# adjoint equation).
PLAIN_ADJOINTS = {
    "plain-frechet": (odeexpm.FrechetAdjoint, ("vjp",)),
    "plain-checkpoint": (diffrax.RecursiveCheckpointAdjoint, ("vjp",)),
    "plain-backsolve": (diffrax.BacksolveAdjoint, ("vjp",)),
    "plain-direct": (diffrax.DirectAdjoint, ("vjp", "jvp")),
    "plain-forward": (diffrax.ForwardMode, ("jvp",)),
}
DEFAULT_PATH_METHODS = (
    "ode-frechet",
    "ode-checkpoint",
    "ode-backsolve",
    "ode-direct",
    "ode-forward",
)
CLOSED_FORM_METHODS = ("pade-autodiff", "pade-frechet")
# The plain Dopri8 solve itself (no derivative): is the forward pass accurate?
PLAIN_FORWARD = "ode-plain-dopri8"
METHODS = DEFAULT_PATH_METHODS + tuple(PLAIN_ADJOINTS) + CLOSED_FORM_METHODS + (PLAIN_FORWARD,)
# --quick: the default adjoint, the failing one, and Padé (one compilation each).
QUICK_METHODS = ("ode-frechet", "plain-backsolve", "pade-autodiff")

ADJOINT_OF = {
    "frechet": "FrechetAdjoint",
    "checkpoint": "RecursiveCheckpointAdjoint",
    "backsolve": "BacksolveAdjoint",
    "direct": "DirectAdjoint",
    "forward": "ForwardMode",
}
COLOURS = {
    "frechet": "tab:blue",
    "checkpoint": "tab:green",
    "backsolve": "tab:red",
    "direct": "tab:purple",
    "forward": "tab:cyan",
    "autodiff": "black",
    "pade-frechet": "grey",
}


# --- methods and cases ---------------------------------------------------------------


def plain_method(name: str, adjoint, quantities) -> harness.Method:
    """`odeexpm.expm(A, squarings=0, solver=Dopri8(), adjoint=adjoint())`, differentiated."""

    def make_forward():
        def forward(A):
            return odeexpm.expm(
                A,
                squarings=0,
                solver=diffrax.Dopri8(),
                adjoint=adjoint(),
                throw=False,
                return_stats=True,
            )

        return forward

    derive = {"vjp": harness.vjp_of, "jvp": harness.jvp_of}
    return harness.Method(
        name,
        f"odeexpm.expm(squarings=0, solver=Dopri8(), adjoint={adjoint.__name__}())",
        # A fresh forward per build: JAX caches compilations per function object.
        build=lambda quantity, rtol: derive[quantity](make_forward()),
        quantities=quantities,
    )


def path_laplacian(n: int) -> np.ndarray:
    """The graph Laplacian of the path on `n` vertices: symmetric, eigenvalues in [0, 4)."""
    L = 2 * np.eye(n) - np.diag(np.ones(n - 1), 1) - np.diag(np.ones(n - 1), -1)
    L[0, 0] = L[-1, -1] = 1.0
    return L


def decay_chain(n: int) -> np.ndarray:
    """A decay chain 0 -> 1 -> ... -> n-1 (absorbing) with rates 1..4: a Markov generator
    (columns sum to 0), lower bidiagonal, so strongly non-normal; eigenvalues -rates, 0."""
    rates = np.linspace(1.0, 4.0, n - 1)
    return np.diag(np.append(-rates, 0.0)) + np.diag(rates, -1)


FAMILIES = {"laplacian": lambda n: -path_laplacian(n), "decay-chain": decay_chain}


def stiffness_cases(quick: bool) -> list[harness.Case]:
    n = QUICK_N if quick else N
    families = ("laplacian",) if quick else tuple(FAMILIES)
    return [
        harness.expm_case(
            f"{family}-{n}-c{c:g}",
            c * FAMILIES[family](n),
            gradients=True,
            family=family,
            stiffness=c,
        )
        for family in families
        for c in (QUICK_STIFFNESS if quick else STIFFNESS)
    ]


def measure(quick: bool) -> tuple[list[harness.Record], list[harness.Record], dict]:
    """(derivative records, forward records, cases by name)."""
    for name, (adjoint, quantities) in PLAIN_ADJOINTS.items():
        harness.register_method(plain_method(name, adjoint, quantities), replace=True)
    harness.register_suite(SUITE, stiffness_cases, replace=True)
    records = harness.run(
        suites=[SUITE],
        methods=list(QUICK_METHODS if quick else METHODS),
        repeats=3 if quick else 5,
        quick=quick,
    )
    cases = {case.name: case for case in harness.get_suite(SUITE).cases(quick)}
    derivatives = [r for r in records if r.quantity in ("vjp", "jvp")]
    forward = [r for r in records if r.quantity == "expm"]
    return derivatives, forward, cases


# --- analysis ------------------------------------------------------------------------


def backward_growth_log10(A: np.ndarray, interval: float) -> float:
    """log10 of `e^(T max(-Re lambda))`, the growth of the state integrated backwards over
    `[0, T]`: `‖exp(-TA)‖_2` for normal `A`, a lower bound otherwise."""
    return interval * float(np.max(-np.linalg.eigvals(A).real)) / math.log(10)


def parts(method: str) -> tuple[str, str]:
    """(path, adjoint key) of a method name."""
    if method.startswith("pade"):
        return "closed form", "autodiff" if method == "pade-autodiff" else "pade-frechet"
    path, key = method.split("-", 1)
    return ("plain" if path == "plain" else "default"), key


def describe(method: str) -> str:
    path, key = parts(method)
    if path == "closed form":
        return "autodiff through jax.scipy.linalg.expm" if key == "autodiff" else "expm_frechet"
    return f"{ADJOINT_OF[key]}, {path} path"


def curve(records, method: str, quantity: str, family: str, cases) -> list[tuple]:
    """(c, error or None, record) for one method, quantity and family, sorted by c."""
    mine = [
        r
        for r in records
        if r.method == method and r.quantity == quantity and cases[r.case].tags["family"] == family
    ]
    points = [(cases[r.case].tags["stiffness"], r.error if r.ok else None, r) for r in mine]
    return sorted(points, key=lambda p: p[0])


def first_broken(points) -> float | None:
    """The smallest c at which the error exceeds BROKEN or the method failed."""
    for c, error, _ in points:
        if error is None or error > BROKEN:
            return c
    return None


# --- figures -------------------------------------------------------------------------


def style(method: str) -> dict:
    path, key = parts(method)
    return dict(
        color=COLOURS[key],
        linestyle="--" if path == "plain" else (":" if path == "closed form" else "-"),
        marker="s" if path == "plain" else ("*" if path == "closed form" else "o"),
    )


def stiffness_figure(records, cases):
    """Error against stiffness: rows reverse/forward mode, columns families; the last
    column holds the legend."""
    families = list(dict.fromkeys(cases[r.case].tags["family"] for r in records))
    quantities = [q for q in ("vjp", "jvp") if any(r.quantity == q for r in records)]
    fig = plt.figure(figsize=(6.0 * len(families) + 3.6, 4.6 * len(quantities)))
    grid = fig.add_gridspec(
        len(quantities), len(families) + 1, width_ratios=[1.0] * len(families) + [0.6]
    )
    fail_level = 1e4
    handles = {}
    for i, quantity in enumerate(quantities):
        for j, family in enumerate(families):
            ax = fig.add_subplot(grid[i, j])
            methods = dict.fromkeys(r.method for r in records if r.quantity == quantity)
            for method in methods:
                points = curve(records, method, quantity, family, cases)
                cs = [c for c, _, _ in points]
                ys = [
                    fail_level if e is None or e > fail_level else max(e, ERROR_FLOOR)
                    for _, e, _ in points
                ]
                (line,) = ax.plot(cs, ys, markersize=5, **style(method))
                handles.setdefault(describe(method), line)
                for c, e, _ in points:
                    if e is None:
                        ax.scatter(c, fail_level, marker="x", s=80, color="black", zorder=4)
            if quantity == "vjp":
                # The mechanism of BacksolveAdjoint's failure (reverse mode only): eps
                # amplified by the backward growth over [0, 1].
                cs = sorted(
                    {c for c, _, _ in curve(records, next(iter(methods)), quantity, family, cases)}
                )
                guide = [
                    EPS
                    * 10
                    ** min(
                        backward_growth_log10(cases[case_name(cases, family, c)].data["A"], 1.0),
                        300,
                    )
                    for c in cs
                ]
                (line,) = ax.plot(
                    cs, np.minimum(guide, fail_level), color="red", linewidth=5, alpha=0.2
                )
                handles.setdefault(
                    "eps × e^(c |λ|max): error growth when\nintegrating X backwards over [0, 1]",
                    line,
                )
            ax.axhline(BROKEN, color="grey", linestyle=":", linewidth=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(ERROR_FLOOR / 3, fail_level * 30)
            ax.set_xlabel("stiffness c")
            mode = "reverse, jax.grad" if quantity == "vjp" else "forward, jax.jvp"
            ax.set_ylabel(f"relative error ({mode})")
            what = "gradient" if quantity == "vjp" else "JVP"
            ax.set_title(f"{family} (n = {cases[next(iter(cases))].n}): {what} error")
            ax.grid(True, which="major", alpha=0.3)
    legend_ax = fig.add_subplot(grid[:, -1])
    legend_ax.axis("off")
    legend_ax.legend(
        list(handles.values()),
        list(handles),
        loc="center",
        fontsize="small",
        title=f"errors > {fail_level:g} drawn at {fail_level:g};\nx: failed; "
        f"grey dotted: {BROKEN:g}",
        title_fontsize="small",
    )
    fig.suptitle(
        "Derivative error against stiffness c (solid: default path; dashed, "
        "squares: plain path, squarings=0; dotted: closed form)"
    )
    return fig


def case_name(cases, family: str, c: float) -> str:
    return next(
        name
        for name, case in cases.items()
        if case.tags["family"] == family and case.tags["stiffness"] == c
    )


def cost_figure(rows):
    """Memory and time per method (bars, log scale)."""
    labels = [f"{row['method']} ({row['quantity']})" for row in rows]
    y = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.42 * len(rows) + 1.8), sharey=True)
    memory = [row["memory"] / 1024 if row["memory"] else np.nan for row in rows]
    colours = [COLOURS[parts(row["method"])[1]] for row in rows]
    left.barh(y, memory, color=colours)
    left.set_xscale("log")
    left.set_xlabel("XLA memory estimate, temporaries + outputs (KiB)")
    left.set_title("Memory of the compiled derivative")
    height = 0.38
    right.barh(
        y - height / 2,
        [1e3 * row["time_low"] for row in rows],
        height,
        color=colours,
        alpha=0.5,
        label=f"c = {rows[0]['c_low']:g}",
    )
    right.barh(
        y + height / 2,
        [1e3 * row["time_high"] for row in rows],
        height,
        color=colours,
        label=f"c = {rows[0]['c_high']:g}",
    )
    right.set_xscale("log")
    right.set_xlabel("time per call, fastest of repeats (ms)")
    right.set_title(
        f"Time ({rows[0]['family']}; pale: c = {rows[0]['c_low']:g}, "
        f"dark: c = {rows[0]['c_high']:g})"
    )
    left.set_yticks(y, labels)
    left.invert_yaxis()
    for ax in (left, right):
        ax.grid(True, axis="x", which="major", alpha=0.3)
    return fig


# --- report --------------------------------------------------------------------------


def cost_rows(records, cases) -> list[dict]:
    """Per method and quantity: memory, compile time, time at the mildest and stiffest
    case of the first family, worst error per family, and where it breaks."""
    families = list(dict.fromkeys(cases[r.case].tags["family"] for r in records))
    rows = []
    for method, quantity in dict.fromkeys((r.method, r.quantity) for r in records):
        first = curve(records, method, quantity, families[0], cases)
        row = dict(
            method=method,
            quantity=quantity,
            family=families[0],
            memory=first[0][2].memory_bytes,
            compile=first[0][2].compile_s,
            c_low=first[0][0],
            time_low=first[0][2].time_min_s,
            c_high=first[-1][0],
            time_high=first[-1][2].time_min_s,
            steps_high=first[-1][2].steps,
        )
        for family in families:
            points = curve(records, method, quantity, family, cases)
            errors = [e for _, e, _ in points if e is not None]
            row[f"worst-{family}"] = max(errors) if errors else None
            row[f"failed-{family}"] = sum(e is None for _, e, _ in points)
            row[f"broken-{family}"] = first_broken(points)
        rows.append(row)
    return rows


def cost_table(rows, families) -> str:
    headers = [
        "method",
        "adjoint, path",
        "mode",
        "memory KiB",
        "compile s",
        f"ms at c = {rows[0]['c_low']:g}",
        f"ms at c = {rows[0]['c_high']:g}",
        f"steps at c = {rows[0]['c_high']:g}",
    ]
    for family in families:
        headers += [f"worst error, {family}", f"breaks at c ({family})"]
    table = []
    for row in rows:
        line = [
            row["method"],
            describe(row["method"]),
            "reverse" if row["quantity"] == "vjp" else "forward",
            f"{row['memory'] / 1024:.0f}" if row["memory"] else "-",
            f"{row['compile']:.1f}",
            f"{1e3 * row['time_low']:.3g}",
            f"{1e3 * row['time_high']:.3g}",
            row["steps_high"],
        ]
        for family in families:
            worst = row[f"worst-{family}"]
            failed = row[f"failed-{family}"]
            line += [
                ("-" if worst is None else f"{worst:.1e}")
                + (f" ({failed} failed)" if failed else ""),
                "-" if row[f"broken-{family}"] is None else f"{row[f'broken-{family}']:g}",
            ]
        table.append(line)
    return markdown_table(headers, table)


def error_table(records, cases, quantity: str) -> str:
    """Rows: cases with their backward growth; columns: methods; cells: error or status."""
    methods = list(dict.fromkeys(r.method for r in records if r.quantity == quantity))
    found = {(r.case, r.method): r for r in records if r.quantity == quantity}
    rows = []
    for name, case in cases.items():
        row = [name, f"{backward_growth_log10(case.data['A'], 1.0):.3g}"]
        for method in methods:
            r = found.get((name, method))
            row.append("-" if r is None else (f"{r.error:.1e}" if r.ok else f"**{r.status}**"))
        rows.append(row)
    return markdown_table(["case", "log10 growth, plain", *methods], rows)


def power_of_ten(log10: float) -> str:
    """10^x as text, also where it overflows a float."""
    return f"{10**log10:.1e}" if log10 < 300 else f"1e+{log10:.0f}"


def find(records, case: str, method: str, quantity: str):
    return next(
        (r for r in records if r.case == case and r.method == method and r.quantity == quantity),
        None,
    )


def backsolve_section(records, cases) -> tuple[str, dict]:
    """The plain path's BacksolveAdjoint against the prediction eps x backward growth."""
    rows, offsets = [], []
    for name, case in cases.items():
        r = find(records, name, "plain-backsolve", "vjp")
        if r is None:
            continue
        growth = backward_growth_log10(case.data["A"], 1.0)
        predicted = math.log10(EPS) + growth
        finite = r.ok and math.isfinite(r.error)
        observed = f"{r.error:.1e}" if finite else ("overflow" if r.ok else r.status)
        rows.append([name, f"{growth:.3g}", power_of_ten(predicted), observed])
        # Compare where the growth, not the solver tolerance, should dominate.
        if finite and predicted > -12:
            offsets.append(math.log10(r.error) - predicted)
    if not rows:
        return "", {}
    table = markdown_table(["case", "log10 growth", "eps × growth", "observed error"], rows)
    agreement = (
        f"Wherever eps × growth exceeds 1e-12 and the error is finite, the observed error "
        f"is between 10^{min(offsets):.1f} and 10^{max(offsets):.1f} times the prediction "
        f"({len(offsets)} cases)."
        if offsets
        else ""
    )
    text = f"""### BacksolveAdjoint on the plain path: the backward growth, measured

`BacksolveAdjoint` recovers `X(s)` by integrating `dX/ds = A X` backwards from `X(1)`: an
error `delta` in `X(1)` (rounding, at least eps relative) comes back as
`exp(-(1 - s) A) delta`, up to `e^(max(-Re lambda))` times larger at `s = 0`. The
prediction eps × growth against the measured gradient error:

{table}

{agreement}
"""
    return text, dict(offsets=offsets)


def default_backsolve_sentence(records, cases, rows) -> str:
    """Backsolve on the default path: how short the interval is, and the worst error."""
    growths, ks = [], []
    for name, case in cases.items():
        r = find(records, name, "ode-backsolve", "vjp")
        if r is not None and r.squarings is not None:
            ks.append(r.squarings)
            growths.append(backward_growth_log10(case.data["A"], 2.0**-r.squarings))
    row = next((row for row in rows if row["method"] == "ode-backsolve"), None)
    if not growths or row is None:
        return ""
    worst = max(v for k, v in row.items() if k.startswith("worst-") and v is not None)
    return (
        f"On the default path `BacksolveAdjoint` integrates backwards only over the scaled "
        f"interval `[0, 2^-k]` (k = {min(ks)} to {max(ks)} here), where the growth is at most "
        f"10^{max(growths):.2f}; the squarings are differentiated by ordinary reverse mode. "
        f"Its worst gradient error over all cases is {worst:.1e}: the scaling hides the "
        f"instability."
    )


def plain_forward_mode_sentence(rows, forward, cases) -> str:
    """Where the plain path's FrechetAdjoint (a forward-mode tangent of the adaptive
    solve) breaks, next to reverse mode through the same kind of solve and the solve's own
    forward error."""
    by = {(row["method"], row["quantity"]): row for row in rows}
    frechet, checkpoint = by.get(("plain-frechet", "vjp")), by.get(("plain-checkpoint", "vjp"))
    tangent = by.get(("plain-forward", "jvp"))
    if frechet is None or checkpoint is None:
        return ""
    lines = []
    for family in dict.fromkeys(cases[name].tags["family"] for name in cases):
        if frechet[f"broken-{family}"] is None:
            continue
        solve = [r.error for r in forward if r.ok and cases[r.case].tags["family"] == family]
        lines.append(
            f"On {family}, the plain path's `FrechetAdjoint` (the forward-mode tangent of "
            f"the adaptive Dopri8 solve at `A^T`) has errors above {BROKEN:g} from c = "
            f"{frechet[f'broken-{family}']:g} (worst {frechet[f'worst-{family}']:.1e}), while "
            f"reverse mode through the same solver (`RecursiveCheckpointAdjoint`) stays at "
            f"{checkpoint[f'worst-{family}']:.1e} or below"
            + (
                f", and the plain solve itself (`{PLAIN_FORWARD}`, forward) at {max(solve):.1e}"
                if solve
                else ""
            )
            + (
                f". `ForwardMode` on the plain path (`jax.jvp`) reaches "
                f"{tangent[f'worst-{family}']:.1e}"
                if tangent
                else ""
            )
            + ". The cause is not isolated here; it concerns `squarings=0` only: on the "
            "default path every adjoint stays accurate."
        )
    return "\n\n".join(lines)


def cost_sentence(rows) -> str:
    """The default adjoint's memory and time against the others in reverse mode."""
    reverse = {row["method"]: row for row in rows if row["quantity"] == "vjp"}
    base = reverse.get("ode-frechet")
    if base is None or len(reverse) < 2:
        return ""
    others = [
        f"`{m}` {row['memory'] / 1024:.0f} KiB, {1e3 * row['time_high']:.3g} ms"
        for m, row in reverse.items()
        if m != "ode-frechet" and row["memory"]
    ]
    return (
        f"Reverse mode at c = {base['c_high']:g} ({base['family']}): `ode-frechet` needs "
        f"{base['memory'] / 1024:.0f} KiB and {1e3 * base['time_high']:.3g} ms; "
        + "; ".join(others)
        + "."
    )


def findings(rows, families) -> list[str]:
    lines = []
    for row in rows:
        parts_ = [
            f"worst error {row[f'worst-{f}']:.1e} on {f}"
            if row[f"worst-{f}"] is not None
            else f"no success on {f}"
            for f in families
        ]
        broken = [
            f"{f} from c = {row[f'broken-{f}']:g}"
            for f in families
            if row[f"broken-{f}"] is not None
        ]
        failed = [f"{row[f'failed-{f}']} failed on {f}" for f in families if row[f"failed-{f}"]]
        lines.append(
            f"- `{row['method']}` ({describe(row['method'])}, "
            f"{'reverse' if row['quantity'] == 'vjp' else 'forward'}): "
            + "; ".join(parts_)
            + (
                f"; error above {BROKEN:g} for {', '.join(broken)}"
                if broken
                else f"; never above {BROKEN:g}"
            )
            + (f"; {', '.join(failed)}" if failed else "")
            + "."
        )
    return lines


def main():
    args = parse_args(__doc__.split("\n")[0])
    records, forward, cases = measure(args.quick)
    families = list(dict.fromkeys(cases[r.case].tags["family"] for r in records))
    rows = cost_rows(records, cases)
    save_figure(args, stiffness_figure(records, cases), "stiffness")
    save_figure(args, cost_figure(rows), "cost")
    backsolve_text, _ = backsolve_section(records, cases)
    paragraphs = [
        default_backsolve_sentence(records, cases, rows),
        plain_forward_mode_sentence(rows, forward, cases),
        cost_sentence(rows),
    ]
    sections = [
        __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
        "Memory is XLA's estimate (`compiled.memory_analysis()`: temporaries + outputs) of "
        "the compiled derivative, measured by the harness; times are the fastest of the "
        "calls after compilation (the machine, 2 cores, is shared with other work). "
        "`log10 growth` is log10 of `e^(max(-Re lambda))`, the factor by which integrating "
        "the state backwards over `[0, 1]` amplifies an error in `X(1)` (exact for the "
        "symmetric Laplacian, a lower bound for the non-normal chain).",
        "## What the numbers show\n\n"
        + "\n".join(findings(rows, families))
        + "\n\n"
        + "\n\n".join(p for p in paragraphs if p),
        backsolve_text,
        "## Error against stiffness\n\n![error against stiffness](adjoints_stiffness.png)",
        "## Cost\n\n![memory and time](adjoints_cost.png)\n\n" + cost_table(rows, families),
        "## Reverse mode (jax.grad): relative error per case\n\n"
        + error_table(records, cases, "vjp"),
        "## Forward mode (jax.jvp): relative error per case\n\n"
        + error_table(records, cases, "jvp"),
    ]
    write_report(
        args,
        "Adjoints: accuracy, time and memory of each derivative",
        [section for section in sections if section],
    )

    by_method = {(row["method"], row["quantity"]): row for row in rows}

    def worst(method: str) -> float | None:
        """The worst error of a reverse-mode method over every family."""
        row = by_method.get((method, "vjp"))
        errors = [row[f"worst-{f}"] for f in families if row and row[f"worst-{f}"] is not None]
        return max(errors) if errors else None

    back = by_method.get(("plain-backsolve", "vjp"))
    onsets = [
        f"{back[f'broken-{f}']:g} ({f})"
        for f in families
        if back and back[f"broken-{f}"] is not None
    ]
    c_high = by_method[("ode-frechet", "vjp")]["c_high"]
    print(
        f"adjoints: FrechetAdjoint (default) worst gradient error {worst('ode-frechet'):.1e} "
        f"over c = 1..{c_high:g}; plain-path BacksolveAdjoint error above {BROKEN:g} from c = "
        + (", ".join(onsets) if onsets else "never")
        + (
            f"; default-path BacksolveAdjoint worst {worst('ode-backsolve'):.1e}"
            if worst("ode-backsolve") is not None
            else ""
        )
    )


if __name__ == "__main__":
    main()
