"""Experiment 7: a matrix-exponential layer. `odeexpm.ExpmLinear` has the weight
`W = exp(P - P^T)`, orthogonal for every parameter `P`; trained with optax on a
long-horizon linear recurrence `h_k = W^k h_0`, with the weight and its gradient from
`odeexpm.expm` (the layer's own, `FrechetAdjoint`) or from the Padé closed form
(`jax.scipy.linalg.expm` of the same exponent, autodiff).

Orthogonality matters here: with a general weight, `W^k` explodes or vanishes with the
horizon `k`, and so do its gradients; `exp(skew)` keeps every power orthogonal.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
import odeexpm
import optax
from odeexpm.reference import mp_frechet, pade_expm

from _common import markdown_table, parse_args, save_figure, train, write_report

WEIGHTS = {
    "ode": lambda layer: layer.weight,  # odeexpm.expm(P - P^T)
    "pade": lambda layer: pade_expm(layer.exponent),
}
LABELS = {"ode": "odeexpm.expm (FrechetAdjoint)", "pade": "Padé (jax.scipy.linalg.expm, autodiff)"}


def recurrence_loss(W, h0, targets, horizon):
    """Mean squared error of `W^horizon h0` (rows of `h0`) against `targets`."""
    h = h0
    for _ in range(horizon):  # unrolled: `horizon` is small and static
        h = h @ W.T
    return jnp.mean((h - targets) ** 2)


def make_step(weight, optimiser, h0, targets, horizon):
    def loss(layer):
        W = weight(layer)
        return recurrence_loss(W, h0, targets, horizon), W  # W as aux: computed once

    @eqx.filter_jit
    def step(state):
        layer, opt_state = state
        (value, W), grads = eqx.filter_value_and_grad(loss, has_aux=True)(layer)
        updates, opt_state = optimiser.update(grads, opt_state)
        metrics = {
            "loss": value,
            # The gradient and the point it was taken at, for the accuracy check.
            "gradient": grads.generator,
            "generator": layer.generator,
            "weight": W,
            "orthogonality": jnp.linalg.norm(W.T @ W - jnp.eye(W.shape[0])),
        }
        return (eqx.apply_updates(layer, updates), opt_state), metrics

    return step


def main():
    args = parse_args(__doc__.splitlines()[0])
    # The quick run (for CI) is smaller: most of its time is compilation anyway.
    n, iterations = (8, 60) if args.quick else (16, 1500)
    horizon, samples = 10, 256
    noise = 1e-2
    key_target, key_data, key_noise, key_layer = jr.split(jr.key(0), 4)
    B = jr.normal(key_target, (n, n)) / np.sqrt(2 * n)
    R = pade_expm(0.5 * (B - B.T))  # the orthogonal map to learn
    h0 = jr.normal(key_data, (samples, n))
    targets = h0 @ jnp.linalg.matrix_power(R, horizon).T + noise * jr.normal(
        key_noise, (samples, n)
    )
    layer0 = odeexpm.ExpmLinear(n, key=key_layer, use_bias=False)
    # A decaying learning rate: at constant rate, adam's steps become erratic once the
    # gradient is tiny near a minimum (spikes in the loss).
    optimiser = optax.adam(optax.cosine_decay_schedule(0.01, iterations))

    @jax.jit
    def cotangent(W):
        return jax.grad(recurrence_loss)(W, h0, targets, horizon)

    def reference_gradient(P, W):
        # The backward pass of a run, redone with mpmath's Fréchet derivative (30 digits,
        # block identity): dL/dW by autodiff at the run's own weight W (no exponential
        # involved), then dL/dA = L_exp(A^T, dL/dW) and, as A = P - P^T,
        # dL/dP = dL/dA - dL/dA^T. Using the run's own W matters: near the minimum the
        # loss turns a rounding-level change of W into a change of 1e-12 or more in its
        # gradient, which would be charged to the backward pass.
        A, G = P - P.T, np.asarray(cotangent(W))
        dA = mp_frechet(A.T, G, dps=30)
        return dA - dA.T, G

    steps = {
        name: make_step(weight, optimiser, h0, targets, horizon) for name, weight in WEIGHTS.items()
    }
    state0 = (layer0, optimiser.init(eqx.filter(layer0, eqx.is_array)))
    runs = train(steps, {name: state0 for name in steps}, iterations)
    # Gradient accuracy along the training, at a few of the visited points (mpmath takes
    # a second or two per point).
    checked = np.unique(np.linspace(0, iterations - 1, 2 if args.quick else 6).astype(int))
    for r in runs.values():
        r["layer"] = r["state"][0]
        r["elapsed"] = np.cumsum(r["step_s"])
        errors, scaled_errors = [], []
        for i in checked:
            reference, G = reference_gradient(
                r["history"]["generator"][i], r["history"]["weight"][i]
            )
            difference = np.linalg.norm(r["history"]["gradient"][i] - reference)
            errors.append(float(difference / np.linalg.norm(reference)))
            # Near a minimum the gradient is far smaller than the cotangent dL/dW it is
            # made of; relative to ||dL/dW|| the error shows the accuracy of the Fréchet
            # derivative itself, free of that cancellation.
            scaled_errors.append(float(difference / np.linalg.norm(G)))
        r["errors"], r["scaled_errors"] = np.array(errors), np.array(scaled_errors)

    rows = []
    for name, r in runs.items():
        rows.append(
            [
                LABELS[name],
                float(r["history"]["loss"][-1]),
                float(r["errors"].max()),
                float(r["scaled_errors"].max()),
                float(r["history"]["orthogonality"].max()),
                np.median(r["step_s"]) * 1e3,
                float(r["elapsed"][-1]),
                r["compile_s"],
            ]
        )
    table = markdown_table(
        [
            "weight and gradient",
            "final loss",
            "max gradient error vs mpmath",
            "max error / ‖dL/dW‖",
            "max ‖WᵀW - I‖_F over training",
            "ms / step (median)",
            "training s",
            "compile s",
        ],
        rows,
    )
    ratio = np.median(runs["ode"]["step_s"]) / np.median(runs["pade"]["step_s"])
    gap = float(
        np.linalg.norm(runs["ode"]["layer"].generator - runs["pade"]["layer"].generator)
        / np.linalg.norm(runs["pade"]["layer"].generator)
    )
    setup = (
        f"`odeexpm.ExpmLinear({n}, structure='skew', use_bias=False)`; task: from {samples} "
        f"random `h_0`, predict `R^{horizon} h_0 + noise` (sd {noise:g}) as `W^{horizon} h_0`, "
        f"`R = exp(S)` a random rotation; mean squared error; optax adam, learning rate "
        f"0.01 with cosine decay, {iterations} full-batch steps, float64, jitted steps. "
        "The gradient "
        "reference is the chain rule with mpmath's Fréchet derivative "
        "(`odeexpm.reference.mp_frechet`, 30 digits; `dL/dP = D - D^T`, "
        f"`D = L_exp(A^T, dL/dW)`, `dL/dW` at the run's own weight), at {len(checked)} "
        "points of each run. "
        "The two trainings run in lockstep (one step of each in turn) so that their times "
        "share the machine's load; times per step are medians over the run."
    )
    ode, pade = runs["ode"], runs["pade"]
    findings = (
        f"- Gradient error against mpmath, at most: {ode['errors'].max():.1e} (ODE) and "
        f"{pade['errors'].max():.1e} (Padé) relative to the gradient; "
        f"{ode['scaled_errors'].max():.1e} and {pade['scaled_errors'].max():.1e} relative to "
        "`‖dL/dW‖`."
        + (
            " The relative errors grow as the training converges, where the gradient becomes "
            "small against the cotangent it is computed from."
            if ode["errors"][-1] > 10 * ode["errors"][0]
            else ""
        )
        + "\n"
        f"- `‖WᵀW - I‖_F` stays below {ode['history']['orthogonality'].max():.1e} (ODE) and "
        f"{pade['history']['orthogonality'].max():.1e} (Padé) over the whole training.\n"
        f"- The two trainings end {gap:.1e} apart (relative difference of the generators), at "
        f"losses {ode['history']['loss'][-1]:.3e} and {pade['history']['loss'][-1]:.3e}.\n"
        f"- Time per step ODE / Padé = {ratio:.2f}; compiling the step took "
        f"{ode['compile_s']:.1f} s (ODE) and {pade['compile_s']:.1f} s (Padé)."
    )
    write_report(
        args,
        "A matrix-exponential layer (equinox + optax)",
        [
            setup,
            table,
            findings,
            f"![training]({args.name}.png)",
        ],
    )

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for name, r in runs.items():
        style = dict(
            label=LABELS[name],
            ls="--" if name == "pade" else "-",
            color="C1" if name == "pade" else "C0",
        )
        steps = np.arange(1, iterations + 1)
        axes[0, 0].semilogy(steps, r["history"]["loss"], **style)
        axes[0, 1].semilogy(r["elapsed"], r["history"]["loss"], **style)
        axes[1, 0].semilogy(steps, np.maximum(r["history"]["orthogonality"], 1e-17), **style)
        axes[1, 1].semilogy(
            checked + 1,
            np.maximum(r["errors"], 1e-17),
            "o" + style["ls"],
            color=style["color"],
            label=style["label"] + ", relative",
        )
        axes[1, 1].semilogy(
            checked + 1,
            np.maximum(r["scaled_errors"], 1e-17),
            "s:",
            color=style["color"],
            label=style["label"] + ", / ||dL/dW||",
            alpha=0.6,
        )
    for ax in axes[0]:
        ax.axhline(noise**2, color="gray", ls=":", label="noise variance")
    axes[0, 0].set(xlabel="iteration", ylabel="mean squared error", title="Training loss")
    axes[0, 1].set(
        xlabel="wall time (s, compilation excluded)",
        ylabel="mean squared error",
        title="Training loss against wall time",
    )
    axes[1, 0].set(
        xlabel="iteration", ylabel="||W^T W - I||_F", title="Orthogonality of the weight"
    )
    axes[1, 1].set(
        xlabel="iteration",
        ylabel="relative error",
        title="Gradient error vs mpmath's Fréchet derivative",
    )
    for ax in axes.flat:
        ax.legend(fontsize=8)
    save_figure(args, fig)
    print(
        f"HEADLINE expm_layer: final loss {rows[0][1]:.2e} (ODE) vs {rows[1][1]:.2e} (Padé); "
        f"gradient error <= {rows[0][2]:.1e} relative, {rows[0][3]:.1e} per ||dL/dW|| (ODE), "
        f"{rows[1][2]:.1e}, {rows[1][3]:.1e} (Padé); "
        f"||W^T W - I|| <= {rows[0][4]:.1e}; ODE/Padé time per step {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
