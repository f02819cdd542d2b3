"""Experiment 6: quantum control, GRAPE-style. Optimise the controls `u_k(t)` of
`H(t) = H0 + sum_k u_k(t) H_k` (an `odeexpm.Modulated` generator `A = -i H`) for a gate
fidelity `|tr(V^H U)|^2 / d^2`, with gradients through `odeexpm.propagator` (default
solver `Magnus6`, default adjoint), against the piecewise-constant Padé product
`prod_j expm(-i H_j dt)` differentiated by autodiff, for the same parametrisation.

(a) An X gate on a qubit, `H = omega/2 Z + u(t) X`, with piecewise-constant controls
(`odeexpm.PiecewiseConstant`) and with a smooth control (a sine series, ODE only).
(b) A CNOT on two qubits, drift `J/2 Z Z`, controls `X1, Y1, X2, Y2`, piecewise constant.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.scipy.linalg as jsl
import matplotlib.pyplot as plt
import numpy as np
import odeexpm
import optax

from _common import (
    markdown_table,
    median_time,
    optax_step,
    parse_args,
    save_figure,
    train,
    write_report,
)

TARGET_INFIDELITY = 1e-4
I2 = jnp.eye(2)
X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
Y = jnp.array([[0.0, -1j], [1j, 0.0]])
Z = jnp.diag(jnp.array([1.0, -1.0]))


class GateProblem(eqx.Module):
    """A gate to reach with `H(t) = drift + sum_k u_k(t) controls[k]` over `[0, duration]`."""

    name: str = eqx.field(static=True)
    drift: jax.Array  # H0, Hermitian
    controls: jax.Array  # H_k, shape (K, d, d)
    target: jax.Array  # V
    duration: float = eqx.field(static=True)

    def infidelity(self, U):
        d = self.target.shape[0]
        return 1 - jnp.abs(jnp.trace(self.target.conj().T @ U)) ** 2 / d**2

    def generator(self, coefficients) -> odeexpm.Modulated:
        return odeexpm.Modulated(-1j * self.drift, -1j * self.controls, coefficients)


class SineSeries(eqx.Module):
    """A smooth control `u(t) = sum_k a_k sin(k pi t / T)`, zero at both ends."""

    amplitudes: jax.Array
    duration: float = eqx.field(static=True)

    def __call__(self, t, args=None):
        k = jnp.arange(1, self.amplitudes.shape[0] + 1)
        return jnp.sum(self.amplitudes * jnp.sin(k * jnp.pi * t / self.duration))[None]


def switching_times(problem, segments):
    return jnp.linspace(0.0, problem.duration, segments + 1)


def ode_piecewise(problem, u):
    """`U(T)` for controls `u` of shape (segments, K), constant on each segment, by
    `odeexpm.propagator` (Magnus6; the switching times are jump times of the solve)."""
    controls = odeexpm.PiecewiseConstant(switching_times(problem, u.shape[0]), u)
    return odeexpm.propagator(problem.generator(controls), 0.0, problem.duration)


def ode_smooth(problem, amplitudes):
    controls = SineSeries(amplitudes, problem.duration)
    return odeexpm.propagator(problem.generator(controls), 0.0, problem.duration)


def pade_piecewise(problem, u):
    """The same `U(T)` as a product of closed-form exponentials, later segments on the left."""
    dt = problem.duration / u.shape[0]
    H = problem.drift + jnp.tensordot(u, problem.controls, axes=1)  # (segments, d, d)
    steps = jsl.expm(-1j * dt * H)
    U, _ = jax.lax.scan(lambda U, E: (E @ U, None), jnp.eye(H.shape[-1], dtype=steps.dtype), steps)
    return U


def slicing_study(problem, amplitudes, slice_counts=(20, 100, 500, 2000)):
    """How well the ODE solution and Padé products of `N` slices (the smooth control
    sampled at the slices' midpoints) reproduce `U(T)` for a smooth control, against
    `odeexpm.propagator` at tolerance 1e-12. Rows: method, slices, error
    `||U - U_ref||_F / sqrt(d)`, ms per evaluation (forward)."""
    control = SineSeries(amplitudes, problem.duration)
    reference = odeexpm.propagator(
        problem.generator(control), 0.0, problem.duration, rtol=1e-12, atol=1e-12
    )
    error = lambda U: float(jnp.linalg.norm(U - reference) / np.sqrt(reference.shape[0]))
    ode = jax.jit(lambda a: ode_smooth(problem, a))
    rows = [
        [
            "ODE (Magnus6, default tolerance)",
            None,
            error(ode(amplitudes)),
            median_time(ode, amplitudes) * 1e3,
        ]
    ]
    for slices in slice_counts:
        midpoints = (jnp.arange(slices) + 0.5) * problem.duration / slices
        pade = jax.jit(
            lambda a, midpoints=midpoints: pade_piecewise(
                problem, jax.vmap(SineSeries(a, problem.duration))(midpoints)
            )
        )
        rows.append(
            ["Padé product", slices, error(pade(amplitudes)), median_time(pade, amplitudes) * 1e3]
        )
    return rows


def make_step(problem, propagate, optimiser):
    loss = lambda params: problem.infidelity(propagate(problem, params))
    return optax_step(loss, optimiser, metric="infidelity")


def first_below(values, threshold):
    """The 1-based iteration at which `values` first drops below `threshold`, or None."""
    hits = np.flatnonzero(np.asarray(values) < threshold)
    return int(hits[0]) + 1 if hits.size else None


def problems():
    qubit = GateProblem("X gate (1 qubit)", 0.5 * Z, X[None], X, duration=float(np.pi))
    cnot = jnp.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=float)
    two_qubits = GateProblem(
        "CNOT (2 qubits)",
        0.5 * jnp.kron(Z, Z),
        jnp.stack([jnp.kron(X, I2), jnp.kron(Y, I2), jnp.kron(I2, X), jnp.kron(I2, Y)]),
        cnot,
        duration=4.0,
    )
    return qubit, two_qubits


def main():
    args = parse_args(__doc__.splitlines()[0])
    qubit, two_qubits = problems()
    segments, modes = 20, 8
    key_qubit, key_smooth, key_cnot = jr.split(jr.key(0), 3)
    u_qubit = 0.3 * jr.normal(key_qubit, (segments, 1))
    u_cnot = 0.5 * jr.normal(key_cnot, (2 * segments, 4))
    # Per gate: its iterations and its runs (method, controls, propagate, start); the
    # runs of one gate train in lockstep. The quick run covers the qubit's
    # piecewise-constant case only: each ODE gradient takes 10 to 20 s to compile.
    gates = [
        (
            qubit,
            300,
            [
                ("ode", "piecewise", ode_piecewise, u_qubit),
                ("pade", "piecewise", pade_piecewise, u_qubit),
                ("ode", "smooth", ode_smooth, 0.3 * jr.normal(key_smooth, (modes,))),
            ],
        ),
        (
            two_qubits,
            600,
            [
                ("ode", "piecewise", ode_piecewise, u_cnot),
                ("pade", "piecewise", pade_piecewise, u_cnot),
            ],
        ),
    ]
    if args.quick:
        gates = [(qubit, 30, gates[0][2][:2])]
    optimiser = optax.adam(0.02)

    results = []
    for problem, iterations, runs in gates:
        steps = {
            (method, kind): make_step(problem, propagate, optimiser)
            for method, kind, propagate, _ in runs
        }
        states = {(method, kind): (u0, optimiser.init(u0)) for method, kind, _, u0 in runs}
        for (method, kind), r in train(steps, states, iterations).items():
            results.append(
                dict(
                    r,
                    method=method,
                    kind=kind,
                    problem=problem,
                    params=r["state"][0],
                    elapsed=np.cumsum(r["step_s"]),
                )
            )
            print(
                f"{problem.name}, {kind}, {method}: infidelity {r['history']['infidelity'][-1]:.2e}"
            )

    label = lambda r: f"{'ODE' if r['method'] == 'ode' else 'Padé product'}, {r['kind']}"
    rows = []
    for r in results:
        infidelity = r["history"]["infidelity"]
        reached = first_below(infidelity, TARGET_INFIDELITY)
        rows.append(
            [
                r["problem"].name,
                label(r),
                r["params"].size,
                len(infidelity),
                float(infidelity[-1]),
                reached,
                np.median(r["step_s"]) * 1e3,
                float(r["elapsed"][reached - 1]) if reached else None,
                r["compile_s"],
            ]
        )
    table = markdown_table(
        [
            "gate",
            "method, controls",
            "parameters",
            "iterations",
            "final infidelity",
            f"iterations to 1-F < {TARGET_INFIDELITY:g}",
            "ms / iteration (median)",
            f"s to 1-F < {TARGET_INFIDELITY:g}",
            "compile s",
        ],
        rows,
    )

    # The ODE and Padé runs of the same gate share the parametrisation and the start.
    agreement = []
    for problem in {r["problem"].name: r["problem"] for r in results}.values():
        pair = {
            r["method"]: r for r in results if r["problem"] is problem and r["kind"] == "piecewise"
        }
        if len(pair) < 2:
            continue
        g_ode, g_pade = (pair[m]["history"]["gradient"][0] for m in ("ode", "pade"))
        f_ode, f_pade = (pair[m]["history"]["infidelity"] for m in ("ode", "pade"))
        agreement.append(
            [
                problem.name,
                float(np.linalg.norm(g_ode - g_pade) / np.linalg.norm(g_pade)),
                float(abs(f_ode[0] - f_pade[0])),
                float(abs(f_ode[-1] - f_pade[-1])),
                np.median(pair["ode"]["step_s"]) / np.median(pair["pade"]["step_s"]),
            ]
        )
    agreement_table = markdown_table(
        [
            "gate",
            "relative gradient difference at the start",
            "infidelity difference at the start (absolute)",
            "at the end",
            "time per iteration ODE / Padé",
        ],
        agreement,
    )
    setup = (
        f"Adam (learning rate 0.02), loss `1 - F`, `F = |tr(V^H U)|^2 / d^2`, float64, jitted "
        f"steps. X gate: `H = Z/2 + u(t) X`, `T = pi`, {segments} piecewise-constant "
        f"segments (ODE and Padé product) or a smooth `u(t) = sum_k a_k sin(k pi t / T)`, "
        f"{modes} modes (ODE only). CNOT: `H = ZZ/2 + sum_k u_k(t) H_k`, "
        f"`H_k = X1, Y1, X2, Y2`, `T = 4`, {2 * segments} segments. Random starting "
        "controls, the same for ODE and Padé. The ODE path is `odeexpm.propagator` at "
        "its defaults (`Magnus6`, tolerance 1e-9, `RecursiveCheckpointAdjoint`); the "
        "Padé product is `prod_j jax.scipy.linalg.expm(-i H_j dt)` with autodiff. The runs "
        "of one gate train in lockstep (one step of each in turn) so that their times share "
        "the machine's load; times per iteration are medians over the run (on a shared "
        "machine they vary by tens of percent between runs). Infidelities "
        "near 1e-15 are rounding errors (they can come out slightly negative)."
        + (" Quick run: the X gate's piecewise-constant case only." if args.quick else "")
    )
    findings = [
        f"- {a[0]}: the piecewise-constant ODE and Padé runs start with gradients {a[1]:.0e} "
        f"apart and reach 1-F < {TARGET_INFIDELITY:g} after {pair_rows[0][5] or '(not reached)'} "
        f"and {pair_rows[1][5] or '(not reached)'} iterations (of {pair_rows[0][3]}); an ODE "
        f"iteration costs {a[4]:.1f} times a Padé one."
        for a in agreement
        for pair_rows in [[row for row in rows if row[0] == a[0] and "piecewise" in row[1]]]
    ]
    sections = [
        setup,
        table,
        "Agreement of the two gradients (same parametrisation, same start):",
        agreement_table,
    ]
    smooth = [r for r in results if r["kind"] == "smooth"]
    if smooth:
        rows_slicing = slicing_study(smooth[0]["problem"], smooth[0]["params"])
        ode_error, finest = rows_slicing[0][2], rows_slicing[-1]
        smooth_row = next(row for row in rows if "smooth" in row[1])
        findings.append(
            f"- The smooth pulse ({smooth_row[2]} parameters) reaches 1-F < {TARGET_INFIDELITY:g} "
            f"after {smooth_row[5] or '(not reached)'} iterations of {smooth_row[6]:.1f} ms. "
            "Evaluated as a Padé "
            f"product of {finest[1]} slices it is off by {finest[2]:.1e} "
            f"({finest[3]:.1f} ms per evaluation), against {ode_error:.1e} for the ODE solve "
            f"({rows_slicing[0][3]:.1f} ms)."
        )
        sections += [
            "A smooth control has no exact Padé product: sliced into `N` constant pieces "
            "(midpoint samples) it converges like `1/N^2`. Forward `U(T)` for the "
            "optimised smooth X-gate pulse, against `odeexpm.propagator` at tolerance 1e-12:",
            markdown_table(
                ["method", "slices N", "error ‖U - U_ref‖_F / √d", "ms / evaluation"], rows_slicing
            ),
        ]
    sections.append("\n".join(findings))
    sections += [
        f"![infidelity curves]({args.name}.png)",
        f"![optimised controls]({args.name}_controls.png)",
    ]
    write_report(args, "Quantum control with optax (GRAPE)", sections)

    trained = list({r["problem"].name: r["problem"] for r in results}.values())
    fig, axes = plt.subplots(len(trained), 2, figsize=(11, 3.8 * len(trained)), squeeze=False)
    for row, problem in zip(axes, trained):
        for r in (r for r in results if r["problem"] is problem):
            infidelity = np.maximum(r["history"]["infidelity"], 1e-16)
            style = dict(label=label(r), ls="--" if r["method"] == "pade" else "-")
            row[0].semilogy(np.arange(1, len(infidelity) + 1), infidelity, **style)
            row[1].semilogy(r["elapsed"], infidelity, **style)
        for ax, xlabel in zip(row, ["iteration", "wall time (s, compilation excluded)"]):
            ax.axhline(
                TARGET_INFIDELITY, color="gray", ls=":", label=f"1-F = {TARGET_INFIDELITY:g}"
            )
            ax.set(xlabel=xlabel, ylabel="infidelity 1 - F", title=problem.name)
            ax.legend(fontsize=8)
    save_figure(args, fig)

    fig, axes = plt.subplots(1, len(trained), figsize=(11, 3.5), squeeze=False)
    for ax, problem in zip(axes[0], trained):
        for r in (r for r in results if r["problem"] is problem and r["method"] == "ode"):
            ts = np.linspace(0.0, problem.duration, 400)
            if r["kind"] == "smooth":
                control = SineSeries(r["params"], problem.duration)
            else:
                times = switching_times(problem, r["params"].shape[0])
                control = odeexpm.PiecewiseConstant(times, r["params"])
            u = np.asarray(jax.vmap(control)(ts))  # (times, K)
            names = ["u"] if u.shape[1] == 1 else ["u(X1)", "u(Y1)", "u(X2)", "u(Y2)"]
            for k in range(u.shape[1]):
                ax.plot(ts, u[:, k], label=f"{names[k]}, {r['kind']}")
        ax.set(
            xlabel="t",
            ylabel="control amplitude",
            title=f"{problem.name}: optimised controls (ODE)",
        )
        ax.legend(fontsize=8)
    save_figure(args, fig, "controls")

    reached = "; ".join(
        f"{row[0]}, {row[1]}: {row[5] if row[5] else 'not reached'}" for row in rows
    )
    print(
        f"HEADLINE quantum_control: iterations to 1-F < {TARGET_INFIDELITY:g}: {reached}; time per "
        "iteration ODE / Padé "
        + ", ".join(f"{a[0]} {a[4]:.1f}" for a in agreement)
        + "; start gradients agree to "
        + ", ".join(f"{a[1]:.0e}" for a in agreement)
    )


if __name__ == "__main__":
    main()
