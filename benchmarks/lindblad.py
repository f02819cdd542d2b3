"""odeexpm's Lindblad master equation against dynamiqs' and QuTiP's `mesolve`.

A driven Kerr oscillator with loss, truncated to `n` levels:

    H(t) = Delta a^H a + K/2 a^H a^H a a + eps cos(t) (a + a^H),   L = sqrt(kappa) a,

from the vacuum to `T = 10`. odeexpm runs at its defaults (`odeexpm.evolve` of an
`odeexpm.Lindblad` with sparse operators), or at `rtol = atol = --tolerance`. Each
baseline runs at the loosest tolerance (from 3e-5 down to 1e-13, in steps of 3 and 10/3)
whose error is at most odeexpm's, so that times compare at matched error. Errors are
relative Frobenius-norm errors of `rho(T)` against an independent reference: the
vectorized `n^2 x n^2` Liouvillian (Kronecker products, sparse) solved by plain diffrax
`Dopri8` at `rtol = atol = 1e-13`. Gradients are of the mean photon number at `T` with
respect to `eps` (reverse mode). Times are medians of interleaved repeats after
compilation, in one process.

dynamiqs and QuTiP are benchmark dependencies only (`pip install dynamiqs qutip`); a
missing one is skipped. QuTiP has no gradients.

    python benchmarks/lindblad.py [--n 32] [--repeats 5] [--tolerance 1e-9]
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import odeexpm  # noqa: E402
from jax.experimental import sparse  # noqa: E402

from _common import block, matched, median_times, print_ratios  # noqa: E402

DELTA, KERR, EPS, KAPPA, T = 1.0, 0.5, 2.0, 1.0, 10.0
# In steps of about half a decade: a baseline runs at most 3.3 times tighter than it needs.
TOLERANCES = sorted((float(f"{m}e-{k}") for k in range(5, 14) for m in (1, 3)), reverse=True)


def operators(n):
    a = np.diag(np.sqrt(np.arange(1.0, n)), 1)
    H0 = DELTA * a.T @ a + 0.5 * KERR * a.T @ a.T @ a @ a
    return a, H0, a + a.T


def reference(n):
    """`rho(T)` from the vectorized Liouvillian (column stacking), plain diffrax."""
    a, H0, H1 = operators(n)
    eye = np.eye(n)
    K = KAPPA * a.T @ a

    def commutator(H):
        return -1j * (np.kron(eye, H) - np.kron(H.T, eye))

    S0 = commutator(H0) + KAPPA * np.kron(a, a) - 0.5 * (np.kron(eye, K) + np.kron(K.T, eye))
    S0, S1 = (sparse.BCOO.fromdense(jnp.asarray(S)) for S in (S0, commutator(H1)))
    term = diffrax.ODETerm(lambda t, y, e: S0 @ y + (e * jnp.cos(t)) * (S1 @ y))
    y0 = np.zeros(n * n, complex)
    y0[0] = 1.0
    solution = diffrax.diffeqsolve(
        term, diffrax.Dopri8(), 0.0, T, 0.01, jnp.asarray(y0), args=EPS,
        stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13), max_steps=10**6,
    )  # fmt: skip
    return np.asarray(solution.ys[-1]).reshape(n, n).T


def error(rho, ref):
    return float(np.linalg.norm(np.asarray(rho) - ref) / np.linalg.norm(ref))


def odeexpm_functions(n, tolerance=None, module=odeexpm):
    """Jitted `rho(T)` and the gradient of the mean photon number, as functions of the
    drive's amplitude, with `module` as odeexpm (another version of it: `against_commit.py`)."""
    a, H0, H1 = operators(n)
    bcoo = lambda x: sparse.BCOO.fromdense(jnp.asarray(x))  # noqa: E731
    H = module.Modulated(bcoo(H0), [bcoo(H1)], [lambda t, eps: eps * jnp.cos(t)])
    lindblad = module.Lindblad(H, [bcoo(np.sqrt(KAPPA) * a)])
    rho0 = np.zeros((n, n))
    rho0[0, 0] = 1.0
    number = jnp.asarray(a.T @ a)
    final = jax.jit(
        lambda eps: module.evolve(lindblad, rho0, 0.0, T, args=eps, rtol=tolerance, atol=tolerance)
    )
    photons = lambda eps: jnp.real(jnp.trace(number @ final(eps)))  # noqa: E731
    return final, jax.jit(jax.grad(photons))


def dynamiqs_functions(n, method_name, tolerance):
    import dynamiqs as dq

    a = dq.destroy(n)
    H0 = DELTA * a.dag() @ a + 0.5 * KERR * a.dag() @ a.dag() @ a @ a
    method = getattr(dq.method, method_name)(rtol=tolerance, atol=tolerance, max_steps=10**6)
    number = (a.dag() @ a).to_jax()

    def final(eps):
        H = H0 + dq.modulated(lambda t: eps * jnp.cos(t), a + a.dag())
        result = dq.mesolve(
            H, [np.sqrt(KAPPA) * a], dq.fock_dm(n, 0), jnp.array([0.0, T]),
            method=method, progress_meter=False,
        )  # fmt: skip
        return result.states[-1].to_jax()

    photons = lambda eps: jnp.real(jnp.trace(number @ final(eps)))  # noqa: E731
    return jax.jit(final), jax.jit(jax.grad(photons))


def qutip_function(n, tolerance):
    import qutip

    a = qutip.destroy(n)
    H0 = DELTA * a.dag() * a + 0.5 * KERR * a.dag() * a.dag() * a * a
    H = [H0, [EPS * (a + a.dag()), lambda t: np.cos(t)]]
    options = {"atol": tolerance, "rtol": tolerance, "nsteps": 10**7, "progress_bar": False}

    def final(eps):
        del eps
        result = qutip.mesolve(
            H, qutip.fock_dm(n, 0), [0.0, T], [np.sqrt(KAPPA) * a], options=options
        )
        return result.states[-1].full()

    return final


def main():
    global REF
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--tolerance", type=float, help="odeexpm's rtol = atol (default: its defaults)"
    )
    options = parser.parse_args()
    n = options.n
    REF = reference(n)
    final, gradient = odeexpm_functions(n, options.tolerance)
    rho = block(final(EPS))
    block(gradient(EPS))
    ours = error(rho, REF)
    rho = np.asarray(rho)
    print(
        f"driven Kerr oscillator, n = {n}, T = {T:g}: odeexpm error {ours:.2e}, trace drift "
        f"{abs(np.trace(rho) - 1):.1e}, Hermiticity {np.abs(rho - rho.conj().T).max():.1e}, "
        f"smallest eigenvalue {np.linalg.eigvalsh(rho).min():.1e}"
    )
    forward = {"odeexpm": final}
    backward = {"odeexpm": gradient}
    setting = "defaults" if options.tolerance is None else f"tol {options.tolerance:g}"
    rows = {"odeexpm": (setting, ours)}
    candidates = []
    try:
        import dynamiqs  # noqa: F401

        candidates += [
            (f"dynamiqs {m}", lambda tol, m=m: dynamiqs_functions(n, m, tol))
            for m in ("Tsit5", "Dopri5", "Dopri8")
        ]
    except ImportError:
        print("dynamiqs not installed: skipped")
    try:
        import qutip  # noqa: F401

        # (no gradient: a tuple of the forward function alone)
        candidates.append(("qutip mesolve", lambda tol: (qutip_function(n, tol),)))
    except ImportError:
        print("qutip not installed: skipped")
    for label, make in candidates:
        setting, err, functions = matched(
            make, lambda fs: error(block(fs[0](EPS)), REF), ours, TOLERANCES, label
        )
        rows[label] = (setting, err)
        if functions is not None:
            forward[label] = functions[0]
            if len(functions) > 1:
                block(functions[1](EPS))
                backward[label] = functions[1]
    forward_times = median_times(forward, EPS, options.repeats)
    backward_times = median_times(backward, EPS, options.repeats)
    print_ratios(rows, forward_times, backward_times)


if __name__ == "__main__":
    main()
