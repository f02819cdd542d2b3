"""odeexpm on a large sparse driven Ising chain, against dynamiqs' `sesolve` and plain
diffrax.

Workload: `N` spins (`n = 2^N` states), open chain,
`H(t) = sum_i Z_i Z_(i+1) + a sin(t) sum_i X_i`, `a = 0.7`, from `|0...0>` to `T = 10`;
the state `psi(T)`. Every method gets `H` as sparse matrices and never a dense `n x n`
array (odeexpm: BCOO, dynamiqs: its 'dia' layout).

odeexpm runs at its defaults, as users write it: the generator is built inside the
jitted function that takes the drive amplitude `a`, and the gradient is `jax.grad` of
another jitted function; with `--commutator-free` its commutator-free Magnus solvers
(`CFMagnus6`, `CFMagnus8`) are matched like the baselines. Each baseline runs at the
loosest tolerance (from 1e-5 down to 1e-14) whose error is at most odeexpm's, so that
times compare at matched error (a baseline that never gets there is listed with its
error at 1e-14, untimed):
dynamiqs `sesolve` with Tsit5, Dopri5 and Dopri8, and plain `diffrax.diffeqsolve` with a
complex `ODETerm` applying the BCOO matrices, with Tsit5 and Dopri8. Errors are
2-norm errors of `psi(T)` against plain diffrax Dopri8 at `rtol = atol = 1e-14`, as
independent of odeexpm as the baselines. Gradients are of the population of `|0...0>`
at `T` with respect to `a` (reverse mode). Times are medians of interleaved repeats
after compilation, in one process. The norm drift is `| ||psi(T)|| - 1 |`.

dynamiqs is a benchmark dependency only (`pip install dynamiqs`); if it is missing its
rows are skipped.

    python benchmarks/ising.py [--spins 12] [--repeats 5] [--commutator-free]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import odeexpm  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from jax.experimental import sparse  # noqa: E402

from _common import block, matched, median_times, print_ratios  # noqa: E402

AMPLITUDE, T = 0.7, 10.0
TOLERANCES = [10.0**-k for k in range(5, 15)]


def chain(spins):
    """`(H0, H1)` as SciPy sparse matrices: the couplings and the transverse field."""
    eye, x, z = sp.identity(2), sp.csr_matrix([[0.0, 1.0], [1.0, 0.0]]), sp.diags([1.0, -1.0])

    def site(op, i):
        out = sp.identity(1)
        for j in range(spins):
            out = sp.kron(out, op if j == i else eye, format="csr")
        return out

    couplings = sum(site(z, i) @ site(z, i + 1) for i in range(spins - 1))
    field = sum(site(x, i) for i in range(spins))
    return couplings.tocsr(), field.tocsr()


def initial_state(n):
    psi0 = np.zeros(n, complex)
    psi0[0] = 1.0
    return psi0


def bcoo(matrix):
    return sparse.BCOO.from_scipy_sparse(matrix.astype(complex).tocoo())


def plain_diffrax(spins, solver, tolerance):
    """`(final, gradient)`: plain diffrax, `d psi/dt = -i H(t) psi` in complex arithmetic."""
    H0, H1 = (bcoo(m) for m in chain(spins))
    psi0 = jnp.asarray(initial_state(H0.shape[0]))

    def final(a):
        def vector_field(t, psi, a):
            return -1j * (H0 @ psi + (a * jnp.sin(t)) * (H1 @ psi))

        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), solver, 0.0, T, 0.01, psi0, args=a,
            stepsize_controller=diffrax.PIDController(rtol=tolerance, atol=tolerance),
            max_steps=10**6,
        )  # fmt: skip
        return solution.ys[-1]

    return _pair(final)


def odeexpm_functions(spins, solver=None, tolerance=None, module=odeexpm):
    """odeexpm at its defaults, or with `solver` at `rtol = atol = tolerance` (`module`:
    another version of the package, for `against_commit.py`)."""
    H0, H1 = chain(spins)
    psi0 = initial_state(H0.shape[0])
    H0, H1 = bcoo(H0), bcoo(H1)

    def final(a):
        H = module.Modulated(H0, [H1], [lambda t, a: a * jnp.sin(t)])
        return module.evolve(
            module.schrodinger(H), psi0, 0.0, T, args=a, solver=solver, rtol=tolerance
        )

    return _pair(final)


def dynamiqs_functions(spins, method_name, tolerance):
    import dynamiqs as dq

    H0, H1 = (m.toarray() for m in chain(spins))
    H0 = dq.asqarray(H0, layout=dq.dia)
    H1 = dq.asqarray(H1, layout=dq.dia)
    psi0 = initial_state(H0.shape[0])[:, None]
    method = getattr(dq.method, method_name)(rtol=tolerance, atol=tolerance, max_steps=10**6)

    def final(a):
        H = H0 + dq.modulated(lambda t: a * jnp.sin(t), H1)
        result = dq.sesolve(H, psi0, jnp.array([0.0, T]), method=method, progress_meter=False)
        return result.states[-1].to_jax()[:, 0]

    return _pair(final)


def _pair(final):
    """The jitted forward function and the jitted gradient of the population of
    `|0...0>` (each compiled apart, as a user would write them)."""
    population = lambda a: jnp.abs(final(a)[0]) ** 2  # noqa: E731
    return jax.jit(final), jax.jit(jax.grad(population))


def error(psi):
    return float(np.linalg.norm(np.asarray(psi) - REF))


def main():
    global REF
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spins", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--commutator-free", action="store_true", help="add odeexpm's CFMagnus6 and CFMagnus8"
    )
    options = parser.parse_args()
    spins = options.spins
    REF = np.asarray(block(plain_diffrax(spins, diffrax.Dopri8(), 1e-14)[0](AMPLITUDE)))
    final, gradient = odeexpm_functions(spins)
    start = time.perf_counter()
    psi = np.asarray(block(final(AMPLITUDE)))
    first = time.perf_counter() - start
    block(gradient(AMPLITUDE))
    ours = error(psi)
    print(
        f"driven Ising chain, N = {spins} (n = {2**spins}), T = {T:g}: odeexpm error "
        f"{ours:.2e}, norm drift {abs(np.linalg.norm(psi) - 1):.1e}, first call {first:.1f} s"
    )
    memory = [f.lower(AMPLITUDE).compile().memory_analysis() for f in (final, gradient)]
    if None not in memory:
        forward_mib, gradient_mib = (m.temp_size_in_bytes / 2**20 for m in memory)
        print(
            f"odeexpm temporary memory: forward {forward_mib:.1f} MiB, "
            f"gradient {gradient_mib:.1f} MiB"
        )
    forward, backward = {"odeexpm": final}, {"odeexpm": gradient}
    rows = {"odeexpm": ("defaults", ours)}
    candidates = [
        (f"diffrax {name}", lambda tol, s=solver: plain_diffrax(spins, s, tol))
        for name, solver in (("Tsit5", diffrax.Tsit5()), ("Dopri8", diffrax.Dopri8()))
    ]
    if options.commutator_free:
        candidates += [
            (f"odeexpm {name}", lambda tol, s=solver: odeexpm_functions(spins, s, tol))
            for name, solver in (
                ("CFMagnus6", odeexpm.CFMagnus6()),
                ("CFMagnus8", odeexpm.CFMagnus8()),
            )
        ]
    try:
        import dynamiqs  # noqa: F401

        candidates += [
            (f"dynamiqs {m}", lambda tol, m=m: dynamiqs_functions(spins, m, tol))
            for m in ("Tsit5", "Dopri5", "Dopri8")
        ]
    except ImportError:
        print("dynamiqs not installed: skipped")
    for label, make in candidates:
        setting, err, functions = matched(
            make, lambda fs: error(block(fs[0](AMPLITUDE))), ours, TOLERANCES, label
        )
        rows[label] = (setting, err)
        if functions is not None:
            block(functions[1](AMPLITUDE))
            forward[label], backward[label] = functions
    forward_times = median_times(forward, AMPLITUDE, options.repeats)
    backward_times = median_times(backward, AMPLITUDE, options.repeats)
    print_ratios(rows, forward_times, backward_times)


if __name__ == "__main__":
    main()
