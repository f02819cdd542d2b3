"""Experiment 4: time-dependent generators.

Question: for propagators `dU/dt = A(t) U` of driven quantum systems, what accuracy does
each kind of solver buy per unit of time, and does it keep `U` unitary?

- Work-precision (error against median run time) on a lab-frame driven qubit and on the
  6-spin transverse-field Ising chain (64 x 64), for Runge-Kutta solvers (Tsit5, Dopri5,
  Dopri8), Magnus solvers (Magnus4/6/8, commutator-free CFMagnus4, and
  `odeexpm.propagator`'s default choice) over a sweep of tolerances, and the GRAPE-style
  piecewise-constant Padé product over a sweep of segment counts. Measured by the
  validation harness (`odeexpm.harness.run`): the same cases, references (Dopri8 at
  1e-14 on a plain `ODETerm`) and timing as `odeexpm compare`.
- Unitarity drift `||U^H U - I||_F` along a long run of the driven qubit, for each solver
  at one tolerance.

    python experiments/time_dependent.py [--quick]
"""

import math

import diffrax
import jax.numpy as jnp
import numpy as np
import odeexpm
from odeexpm import harness
from odeexpm.harness._time_dependent import time_dependent

from _common import markdown_table, parse_args, plt, save_figure, write_report

args = parse_args(__doc__.split("\n")[2])
quick = args.quick

# --- work-precision, through the harness -----------------------------------------------
CASES = ("driven-qubit",) if quick else ("driven-qubit", "tfim-6")
RTOLS = (1e-8,) if quick else (1e-6, 1e-8, 1e-10, 1e-12)
METHODS = (
    ("propagator", "rk-dopri8")
    if quick
    else (
        "propagator",
        "magnus8",
        "magnus6",
        "magnus4",
        "cfmagnus4",
        "rk-tsit5",
        "rk-dopri5",
        "rk-dopri8",
        "pwc-pade",
    )
)


def chosen_cases(quick_cases: bool):
    return [case for case in time_dependent(False) if case.name in CASES]


harness.register_suite("experiment-time-dependent", chosen_cases, replace=True)
records = harness.run(
    suites=["experiment-time-dependent"],
    methods=list(METHODS),
    rtols=list(RTOLS),
    repeats=3,
    progress=True,
)

styles = {}
fig, axes = plt.subplots(1, len(CASES), figsize=(6.5 * len(CASES), 5), squeeze=False)
for ax, case in zip(axes[0], CASES):
    rows = [r for r in records if r.case == case]
    for method in METHODS:
        mine = sorted((r for r in rows if r.method == method and r.ok), key=lambda r: r.time_s)
        if not mine:
            continue
        line = ax.plot(
            [r.time_s for r in mine],
            [max(r.error, 1e-17) for r in mine],
            marker="o",
            label=method,
            **styles.get(method, {}),
        )[0]
        styles[method] = dict(color=line.get_color())
    ax.axhline(1e-8, color="grey", linestyle=":", linewidth=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="median run time per propagator [s]",
        ylabel="relative error of U(T, 0)",
        title=f"{case}: work-precision",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
save_figure(args, fig, "work_precision")


def best_at(case: str, method: str, target: float):
    """The fastest ok measurement of `method` on `case` with error <= target."""
    good = [
        r for r in records if r.case == case and r.method == method and r.ok and r.error <= target
    ]
    return min(good, key=lambda r: r.time_s) if good else None


TARGET = 1e-8
summary_rows = []
for case in CASES:
    for method in METHODS:
        best = best_at(case, method, TARGET)
        worst_drift = max(
            (r.unitarity for r in records if r.case == case and r.method == method and r.ok),
            default=None,
        )
        summary_rows.append(
            [
                case,
                method,
                best.label if best else "never reached",
                best.error if best else None,
                best.time_s * 1e3 if best else None,
                best.steps if best else None,
                worst_drift,
            ]
        )
sweep_rows = [
    [r.case, r.label, r.status, r.error, r.time_s * 1e3 if r.time_s else None, r.steps, r.unitarity]
    for r in records
]

# --- unitarity drift along a long run ----------------------------------------------------
DRIFT_T = 50.0 if quick else 2000.0
DRIFT_RTOL = 1e-8
DRIFT_SOLVERS = (
    {"Magnus6": odeexpm.Magnus6(), "Dopri8": diffrax.Dopri8()}
    if quick
    else {
        "Magnus6": odeexpm.Magnus6(),
        "Magnus4": odeexpm.Magnus4(),
        "CFMagnus4": odeexpm.CFMagnus4(),
        "Tsit5": diffrax.Tsit5(),
        "Dopri5": diffrax.Dopri5(),
        "Dopri8": diffrax.Dopri8(),
    }
)
qubit = next(case for case in time_dependent(False) if case.name == "driven-qubit")
generator = qubit.generator({k: jnp.asarray(v) for k, v in qubit.inputs("complex128").items()})
ts = jnp.linspace(0.0, DRIFT_T, 101)[1:]
drift_rows = []
fig, ax = plt.subplots(figsize=(7.5, 5))
for name, solver in DRIFT_SOLVERS.items():
    Us, stats = odeexpm.propagator(
        generator,
        0.0,
        DRIFT_T,
        ts=ts,
        solver=solver,
        rtol=DRIFT_RTOL,
        max_steps=2_000_000,
        return_stats=True,
    )
    eye = jnp.eye(2)
    drift = np.asarray(
        jnp.linalg.norm(jnp.einsum("tji,tjk->tik", Us.conj(), Us) - eye, axis=(1, 2))
    )
    ax.plot(np.asarray(ts), np.maximum(drift, 1e-17), label=name, **styles.get(name.lower(), {}))
    drift_rows.append(
        [name, int(stats.num_steps), float(drift[len(drift) // 10]), float(drift[-1])]
    )
ax.set(
    yscale="log",
    xlabel="t",
    ylabel="||U^H U - I||_F",
    title=(
        f"Driven qubit: unitarity drift over t in [0, {DRIFT_T:g}] (rtol = atol = {DRIFT_RTOL:g})"
    ),
)
ax.grid(True, alpha=0.3)
ax.legend(fontsize="small")
save_figure(args, fig, "unitarity")

# --- report --------------------------------------------------------------------------------
magnus_best = {case: best_at(case, "propagator", TARGET) for case in CASES}
rk_best = {
    case: min(
        (
            b
            for b in (best_at(case, m, TARGET) for m in ("rk-tsit5", "rk-dopri5", "rk-dopri8"))
            if b
        ),
        key=lambda r: r.time_s,
        default=None,
    )
    for case in CASES
}
ratios = [
    f"{case}: fastest Runge-Kutta at error <= {TARGET:g} takes "
    f"{rk_best[case].time_s / magnus_best[case].time_s:.2f}x the time of odeexpm.propagator"
    f" ({rk_best[case].label} vs {magnus_best[case].label})"
    for case in CASES
    if magnus_best[case] and rk_best[case]
]
magnus_drift = max(row[3] for row in drift_rows if row[0].startswith(("Magnus", "CFMagnus")))
rk_drift = max(row[3] for row in drift_rows if not row[0].startswith(("Magnus", "CFMagnus")))
headline = (
    "; ".join(ratios) + f". Unitarity drift at t = {DRIFT_T:g}: Magnus <= {magnus_drift:.1e}, "
    f"Runge-Kutta up to {rk_drift:.1e}."
)
write_report(
    args,
    "Experiment 4: time-dependent generators",
    [
        "## Work-precision\n\n"
        f"Cases: {', '.join(CASES)} (suite `time_dependent` of the harness; reference: "
        "Dopri8 at rtol = atol = 1e-14 on a plain `ODETerm`). Tolerances "
        f"{', '.join(f'{r:g}' for r in RTOLS)} for the adaptive solvers; the piecewise-"
        "constant Padé product at 64, 256 and 1024 segments.\n\n"
        f"![work-precision]({args.name}_work_precision.png)",
        f"### Fastest setting reaching error <= {TARGET:g}\n\n"
        + markdown_table(
            ["case", "method", "setting", "error", "time [ms]", "steps", "max drift ||U^H U - I||"],
            summary_rows,
        ),
        "### Every measurement\n\n"
        + markdown_table(
            ["case", "method", "status", "error", "time [ms]", "steps", "||U^H U - I||"],
            sweep_rows,
        ),
        f"## Unitarity over a long run\n\nThe driven qubit over [0, {DRIFT_T:g}] "
        f"(about {DRIFT_T * 10 / (2 * math.pi):.0f} drive periods), each solver at rtol = atol = "
        f"{DRIFT_RTOL:g}, drift sampled at 100 times.\n\n"
        f"![unitarity]({args.name}_unitarity.png)\n\n"
        + markdown_table(
            ["solver", "steps", f"drift at t = {DRIFT_T / 10:g}", f"drift at t = {DRIFT_T:g}"],
            drift_rows,
        ),
        f"## Headline\n\n{headline}",
    ],
)
