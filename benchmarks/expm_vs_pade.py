"""Speed and accuracy of `odeexpm.expm` against the Padé closed form, side by side.

Prints, for random N(0,1)/sqrt(n) matrices scaled to a target 1-norm, the forward and
reverse-gradient errors and median times of `odeexpm.expm` (defaults) and of Padé
(`jax.scipy.linalg.expm`, bare and wrapped in a no-op `equinox.error_if`, which runs
faster on some CPUs: the faster of the two is the baseline) with its autodiff gradient,
their ratios, and first-call compile times; then batches of small matrices, passed
whole and under vmap (with `torch.linalg.matrix_exp` where torch is installed); then the
hard inputs with their step counts. Everything runs in one process, float64, after
compilation; the runs of the compared functions alternate.

    python benchmarks/expm_vs_pade.py [--repeats 20] [--sizes 8,32,128,256,512]
                                      [--tables dense,batch,hard]
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import odeexpm  # noqa: E402
from odeexpm.reference import mp_expm, pade_expm, pade_frechet  # noqa: E402

from _common import median_times  # noqa: E402


def rel_err(x, ref):
    return float(np.linalg.norm(np.asarray(x) - np.asarray(ref)) / np.linalg.norm(np.asarray(ref)))


def compile_and_time(fns, *args, repeats):
    """For each jitted fn: (compile seconds, median run seconds, output); the runs
    interleaved in a new random order each round (`_common.median_times`)."""
    compile_s, outputs = [], []
    for fn in fns:
        start = time.perf_counter()
        outputs.append(jax.block_until_ready(fn(*args)))
        compile_s.append(time.perf_counter() - start)
    calls = {i: (lambda a, fn=fn: fn(*a)) for i, fn in enumerate(fns)}
    medians = median_times(calls, args, repeats)
    return [(c, medians[i], o) for i, (c, o) in enumerate(zip(compile_s, outputs))]


def pade_checked(A):
    # Padé behind a no-op check: on some CPUs XLA schedules it faster than the bare call.
    return eqx.error_if(pade_expm(A), jnp.zeros((), bool), "never raised")


def random_case(n, norm, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    A *= norm / np.abs(A).sum(axis=0).max()
    W = rng.standard_normal((n, n))
    return jnp.asarray(A), jnp.asarray(W)


def dense_table(repeats, sizes):
    print("Random matrices, float64; times are medians, ratios = odeexpm / Padé (the faster form)")
    header = (
        f"{'n':>4} {'||A||1':>7} | {'fwd err':>8} {'pade err':>8} | {'fwd ms':>8} {'pade ms':>8} "
        f"{'ratio':>6} | {'grad err':>8} {'grad ms':>8} {'pade ms':>8} {'ratio':>6} | "
        f"{'compile fwd/grad s':>18}"
    )
    print(header)
    print("-" * len(header))
    for n, norm in [(n, 1.0) for n in sizes] + [(128, 30.0)]:
        A, W = random_case(n, norm, seed=n)
        loss = lambda expm_fn: jax.jit(jax.grad(lambda A: jnp.sum(W * expm_fn(A))))  # noqa: E731
        # The timed runs of odeexpm alternate with those of the Padé forms.
        reps = max(3, repeats * 32 // max(n, 32))
        fwd = compile_and_time(
            [jax.jit(odeexpm.expm), jax.jit(pade_expm), jax.jit(pade_checked)], A, repeats=reps
        )
        grad = compile_and_time(
            [loss(odeexpm.expm), loss(pade_expm), loss(pade_checked)], A, repeats=reps
        )
        (c_fwd, _, X), (_, _, X_pade), c_grad = fwd[0], fwd[1], grad[0][0]
        t_fwd, t_pade = fwd[0][1], min(fwd[1][1], fwd[2][1])
        t_grad, t_pade_grad, G = grad[0][1], min(grad[1][1], grad[2][1]), grad[0][2]
        X_ref = mp_expm(A, dps=30) if n <= 32 else X_pade
        G_ref = pade_frechet(A.T, W)
        print(
            f"{n:>4} {norm:>7.0f} | {rel_err(X, X_ref):8.1e} {rel_err(X_pade, X_ref):8.1e} | "
            f"{t_fwd * 1e3:8.3f} {t_pade * 1e3:8.3f} {t_fwd / t_pade:6.2f} | "
            f"{rel_err(G, G_ref):8.1e} {t_grad * 1e3:8.3f} {t_pade_grad * 1e3:8.3f} "
            f"{t_grad / t_pade_grad:6.2f} | {c_fwd:8.2f} / {c_grad:6.2f}"
        )
    print(
        "(reference: mpmath at 30 digits for n <= 32, Padé beyond; gradients against expm_frechet)"
    )


def batch_table(repeats):
    print(
        "\nBatches, float64: forward and gradient; ratios = odeexpm / Padé (vmap'd). odeexpm "
        "takes the batch itself (leading axes), and under vmap ('vmap'd')"
    )
    try:
        import torch
    except ImportError:
        torch = None
    for count, n in [(1000, 4), (100_000, 3), (20_000, 8)]:
        rng = np.random.default_rng(n)
        A = jnp.asarray(rng.standard_normal((count, n, n)) / 2)
        W = jnp.asarray(rng.standard_normal((count, n, n)))
        batched = [
            odeexpm.expm,
            jax.vmap(odeexpm.expm),
            jax.vmap(pade_expm),
            jax.vmap(pade_checked),
        ]
        fwd = compile_and_time([jax.jit(f) for f in batched], A, repeats=repeats)
        grad = compile_and_time(
            [jax.jit(jax.grad(lambda A, f=f: jnp.sum(W * f(A)))) for f in batched],
            A,
            repeats=repeats,
        )
        t_pade, t_pade_grad = min(fwd[2][1], fwd[3][1]), min(grad[2][1], grad[3][1])
        difference = float(jnp.max(jnp.abs(fwd[0][2] - fwd[2][2])))
        row = (
            f"{count:>7} x {n}x{n}: odeexpm {fwd[0][1] * 1e3:8.2f} ms (vmap'd "
            f"{fwd[1][1] * 1e3:.2f}), Padé {t_pade * 1e3:8.2f} ms, ratio "
            f"{fwd[0][1] / t_pade:5.2f} (vmap'd {fwd[1][1] / t_pade:.2f}); gradient "
            f"{grad[0][1] * 1e3:8.2f} ms (vmap'd {grad[1][1] * 1e3:.2f}) against "
            f"{t_pade_grad * 1e3:8.2f}, ratio {grad[0][1] / t_pade_grad:5.2f} (vmap'd "
            f"{grad[1][1] / t_pade_grad:.2f}); max difference {difference:.1e}"
        )
        if torch is not None:
            At = torch.from_numpy(np.asarray(A))
            torch.linalg.matrix_exp(At)
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                torch.linalg.matrix_exp(At)
                runs.append(time.perf_counter() - start)
            row += f"; torch.linalg.matrix_exp {statistics.median(runs) * 1e3:.2f} ms"
        print(row)


def hard_inputs():
    rng = np.random.default_rng(1)
    H = rng.standard_normal((20, 5))
    L = 2 * np.eye(30) - np.eye(30, k=1) - np.eye(30, k=-1)
    L[0, 0] = L[-1, -1] = 1
    S = rng.uniform(-3, 3, (6, 6))
    cases = {
        "rotation 1000 rad": 1000 * np.array([[0.0, 1.0], [-1.0, 0.0]]),
        "entries ~1e3 (skew - 50I)": 1000 * (S - S.T) - 50 * np.eye(6),
        "-1e6 H H^T (projector)": -1e6 * H @ H.T,
        "-1e4 * Laplacian (n=30)": -1e4 * L,
        "Moler badly scaled 3x3": np.array(
            [[0, 1e-8, 0], [-(2e10 + 4e8 / 6), -3, 2e10], [200 / 3, 0, -200 / 3]]
        ),
        "Jordan block 5x5": 2 * np.eye(5) + np.eye(5, k=1),
        "nilpotent 4x4 (6s)": np.diag([6.0, 6.0, 6.0], 1),
        "triangular 10x10": np.triu(rng.standard_normal((10, 10)) * 5),
        "[[-49,24],[-64,31]]": np.array([[-49.0, 24.0], [-64.0, 31.0]]),
    }
    print("\nHard inputs (float64, reference mpmath at 60 digits):")
    header = (
        f"{'case':28s} | {'ode err':>8} {'steps':>5} {'sq':>3} {'ms':>7} | "
        f"{'plain err':>9} {'steps':>6} {'ms':>8} | {'pade err':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, A in cases.items():
        ref = mp_expm(A, dps=60)
        row = f"{name:28s} |"
        for squarings in [None, 0]:
            fn = jax.jit(
                lambda A: odeexpm.expm(
                    A, squarings=squarings, throw=False, return_stats=True, max_steps=20_000
                )
            )
            [(_, t, (X, stats))] = compile_and_time([fn], jnp.asarray(A), repeats=3)
            err = rel_err(X, ref) if bool(stats.successful) else float("nan")
            status = "" if bool(stats.successful) else " (budget)"
            if squarings is None:
                steps, squarings = int(stats.num_steps), int(stats.num_squarings)
                row += f" {err:8.1e} {steps:5d} {squarings:3d} {t * 1e3:7.2f} |"
            else:
                row += f" {err:9.1e} {int(stats.num_steps):6d} {t * 1e3:8.2f}{status} |"
        row += f" {rel_err(pade_expm(A), ref):8.1e}"
        print(row)
    print("(plain = squarings=0, one ODE solve over [0, 1], max_steps=20000; nan = failed)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="8,32,128,256,512")
    parser.add_argument("--tables", default="dense,batch,hard")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}\n")
    tables = args.tables.split(",")
    if "dense" in tables:
        dense_table(args.repeats, [int(n) for n in args.sizes.split(",")])
    if "batch" in tables:
        batch_table(args.repeats)
    if "hard" in tables:
        hard_inputs()
