"""Speed and accuracy of `odeexpm.expm_multiply` against `scipy.sparse.linalg.expm_multiply`.

Workloads (float64, one process, runs of the two libraries interleaved, medians after
compilation):

- `exp(5 L) v` for the 5-point Laplacian `L` of a 300 x 300 grid (Dirichlet, unit
  spacing; n = 90,000), `v` standard normal. Its eigenvalues
  `-4 sin^2(pi i / 602) - 4 sin^2(pi j / 602)` lie in (-8, 0): printed below. The exact
  answer is separable, `exp(5 L) = exp(5 T) (x) exp(5 T)` for the 1-D second difference
  `T` (300 x 300, dense `expm`), an independent reference. odeexpm gets `L` as a BCOO
  matrix, and also as a matrix-free stencil (`lineax.FunctionLinearOperator`).
- `exp(t Q) p0` for a random sparse continuous-time Markov chain, n = 20,000: each state
  has 8 transitions to uniformly random states with Exp(1) rates (rows hold 1 to ~25
  entries), columns sum to zero, `p0` a point mass; t = 1 and t = 5. Total probability
  must stay 1 to 1e-10.

SciPy gets CSR matrices (its fast format) and `t A` prepared outside the timing.
Operator products are counted in separate runs: odeexpm's through a counting operator
wrapper, SciPy's by counting calls of its CSR product (columns of a block count one each).

    python benchmarks/expm_multiply_vs_scipy.py [--repeats 15] [--baselines]

`--baselines` adds a plain diffrax solve (`diffrax.Tsit5()`, rtol = atol = 1e-10, the
BCOO matrix applied by `LinearTerm`) for comparison; it is slow.
"""

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from jax.experimental import sparse

jax.config.update("jax_enable_x64", True)

import lineax as lx  # noqa: E402
import odeexpm  # noqa: E402
from odeexpm._operator import AbstractOperator, as_operator  # noqa: E402

from _common import median_times  # noqa: E402

# --- workloads -------------------------------------------------------------------------


def second_difference(side):
    return sp.diags([np.ones(side - 1), -2 * np.ones(side), np.ones(side - 1)], [-1, 0, 1])


def grid_laplacian(side):
    T = second_difference(side)
    I = sp.identity(side)
    return (sp.kron(T, I) + sp.kron(I, T)).tocsr()


def laplacian_eigenvalue_range(side):
    k = np.arange(1, side + 1)
    one_dimensional = -4 * np.sin(np.pi * k / (2 * (side + 1))) ** 2
    return 2 * one_dimensional.min(), 2 * one_dimensional.max()


def exact_laplacian_action(side, t, v):
    """`exp(t L) v` by separation: `E V E^T` with `E = expm(t T)`, `V` the grid of `v`."""
    E = scipy.linalg.expm(t * second_difference(side).toarray())
    return (E @ v.reshape(side, side) @ E.T).ravel()


def stencil_operator(side, count=False):
    """The same Laplacian, matrix-free: a 5-point stencil on the grid (with `count`, each
    product is counted, including those of the spectral estimate)."""

    def laplacian(x):
        if count:
            jax.debug.callback(_count_product)
        grid = x.reshape(side, side)
        padded = jnp.pad(grid, 1)
        neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
        return (neighbours - 4 * grid).ravel()

    return lx.FunctionLinearOperator(laplacian, jax.ShapeDtypeStruct((side * side,), jnp.float64))


def random_markov_generator(n, out_degree, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, n, size=n * out_degree)
    sources = np.repeat(np.arange(n), out_degree)
    Q = sp.csr_matrix((rng.exponential(1.0, n * out_degree), (targets, sources)), shape=(n, n))
    Q.setdiag(0)
    Q.eliminate_zeros()
    return (Q - sp.diags(np.asarray(Q.sum(axis=0)).ravel())).tocsr()


# --- counting operator products --------------------------------------------------------


class CountingOperator(AbstractOperator):
    """Wraps an operator and counts its products (host callback per product)."""

    inner: AbstractOperator

    @property
    def shape(self):
        return self.inner.shape

    @property
    def dtype(self):
        return self.inner.dtype

    def mv(self, y):
        jax.debug.callback(_count_product)
        return self.inner.mv(y)

    def disk(self):
        return self.inner.disk()

    def diagonal(self):
        return self.inner.diagonal()

    def fast_form(self):
        fast, renumbering = self.inner.fast_form()
        return CountingOperator(fast), renumbering


_PRODUCTS = [0]


def _count_product():
    _PRODUCTS[0] += 1


def odeexpm_products(A, v, t, **options):
    """Operator products in one call: through a counting wrapper, or for the stencil
    through the stencil itself (so that its two spectral-estimate products count too)."""
    _PRODUCTS[0] = 0
    if isinstance(A, lx.AbstractLinearOperator):
        counting = A
    else:
        counting = CountingOperator(as_operator(A, "A", "benchmark"))
    jax.block_until_ready(odeexpm.expm_multiply(counting, v, t, **options))
    jax.effects_barrier()
    return _PRODUCTS[0]


def scipy_products(tA, v):
    """SciPy's CSR products (per column) in one call, counted by wrapping its product."""
    try:
        from scipy.sparse import _compressed

        cls = _compressed._cs_matrix
        vector, multivector = cls._matmul_vector, cls._matmul_multivector
    except (ImportError, AttributeError):
        return None
    count = [0]

    def counted_vector(self, other):
        count[0] += 1
        return vector(self, other)

    def counted_multivector(self, other):
        count[0] += other.shape[1]
        return multivector(self, other)

    cls._matmul_vector, cls._matmul_multivector = counted_vector, counted_multivector
    try:
        spla.expm_multiply(tA, v)
    finally:
        cls._matmul_vector, cls._matmul_multivector = vector, multivector
    return count[0]


# --- timing ----------------------------------------------------------------------------


def timed(functions, repeats):
    """First-call seconds and median seconds of each function, the runs interleaved in a
    new random order each round (`_common.median_times`)."""
    first = []
    for f in functions:
        start = time.perf_counter()
        jax.block_until_ready(f())
        first.append(time.perf_counter() - start)
    calls = {i: (lambda _, f=f: f()) for i, f in enumerate(functions)}
    medians = median_times(calls, None, repeats)
    return first, [medians[i] for i in range(len(functions))]


def rel_err(x, reference):
    x, reference = np.asarray(x), np.asarray(reference)
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


# The baseline: a plain Runge-Kutta solve, the operator applied by `odeexpm.LinearTerm`.
TSIT5 = dict(solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-10)

HEADER = (
    f"{'workload':<34} {'odeexpm ms':>10} {'scipy ms':>9} {'ratio':>6} | {'err vs scipy':>12} "
    f"{'err vs exact':>12} | {'products':>8} {'scipy':>6} | {'steps':>5} {'compile s':>9}"
)


def row(name, ms, scipy_ms, error, exact_error, products, scipy_count, steps, compile_s):
    exact = f"{exact_error:12.1e}" if exact_error is not None else f"{'-':>12}"
    scipy_count = f"{scipy_count:6d}" if scipy_count is not None else f"{'n/a':>6}"
    scipy_text = f"{scipy_ms:9.1f}" if scipy_ms is not None else f"{'':>9}"
    ratio = f"{ms / scipy_ms:6.2f}" if scipy_ms is not None else f"{'':>6}"
    print(
        f"{name:<34} {ms:10.1f} {scipy_text} {ratio} | {error:12.1e} {exact} | "
        f"{products:8d} {scipy_count} | {steps:5d} {compile_s:9.1f}"
    )


def laplacian_workload(repeats, baselines):
    side, t = 300, 5.0
    L = grid_laplacian(side)
    low, high = laplacian_eigenvalue_range(side)
    print(
        f"Grid Laplacian {side}x{side}: n = {L.shape[0]}, nnz = {L.nnz}, eigenvalues in "
        f"[{low:.6f}, {high:.3e}] (of tL: [{t * low:.3f}, {t * high:.2e}])"
    )
    v = np.random.default_rng(0).standard_normal(L.shape[0])
    tL = (t * L).tocsr()
    A, vj = sparse.BCOO.from_scipy_sparse(L), jnp.asarray(v)
    stencil = stencil_operator(side)
    exact = exact_laplacian_action(side, t, v)

    # The BCOO passed to a jitted function, as JAX users do: its indices are then traced.
    through_jit = jax.jit(lambda A, v: odeexpm.expm_multiply(A, v, t))
    candidates = {
        "exp(5L) v, BCOO": lambda: odeexpm.expm_multiply(A, vj, t),
        "exp(5L) v, BCOO passed through jit": lambda: through_jit(A, vj),
        "exp(5L) v, matrix-free stencil": lambda: odeexpm.expm_multiply(stencil, vj, t),
    }
    if baselines:
        candidates["exp(5L) v, BCOO, diffrax Tsit5"] = lambda: odeexpm.expm_multiply(
            A, vj, t, **TSIT5
        )
    scipy_call = lambda: spla.expm_multiply(tL, v)
    first, medians = timed(list(candidates.values()) + [scipy_call], repeats)
    reference = scipy_call()
    scipy_count = scipy_products(tL, v)
    print(f"  SciPy: {medians[-1] * 1e3:.1f} ms, error vs exact {rel_err(reference, exact):.1e}")
    for (name, f), compile_s, median in zip(candidates.items(), first, medians):
        operator = A if "BCOO" in name else stencil
        options = TSIT5 if "Tsit5" in name else {}
        _, stats = odeexpm.expm_multiply(operator, vj, t, return_stats=True, **options)
        counted = stencil_operator(side, count=True) if operator is stencil else operator
        products = odeexpm_products(counted, vj, t, **options)
        row(
            name,
            median * 1e3,
            medians[-1] * 1e3,
            rel_err(f(), reference),
            rel_err(f(), exact),
            products,
            scipy_count,
            int(stats.num_steps),
            compile_s,
        )


def markov_workload(repeats, baselines):
    n = 20_000
    Q = random_markov_generator(n, 8, seed=0)
    entries = np.diff(Q.indptr)
    exit_rates = -Q.diagonal()
    print(
        f"Markov chain: n = {n}, nnz = {Q.nnz}, entries per row "
        f"{entries.min()}..{entries.max()}, exit rates {exit_rates.min():.2f}.."
        f"{exit_rates.max():.2f} (mean {exit_rates.mean():.2f})"
    )
    p0 = np.zeros(n)
    p0[0] = 1.0
    A, pj = sparse.BCOO.from_scipy_sparse(Q), jnp.asarray(p0)
    for t in [1.0, 5.0]:
        tQ = (t * Q).tocsr()
        candidates = {f"exp({t:g}Q) p0, BCOO": lambda: odeexpm.expm_multiply(A, pj, t)}
        if t == 1.0:  # (traced indices: rows of 1 to 23 entries, a table of 24)
            through_jit = jax.jit(lambda A, p: odeexpm.expm_multiply(A, p, 1.0))
            candidates["exp(1Q) p0, BCOO passed through jit"] = lambda: through_jit(A, pj)
        if baselines:
            candidates[f"exp({t:g}Q) p0, BCOO, diffrax Tsit5"] = lambda: odeexpm.expm_multiply(
                A, pj, t, **TSIT5
            )
        scipy_call = lambda: spla.expm_multiply(tQ, p0)
        first, medians = timed(list(candidates.values()) + [scipy_call], repeats)
        reference = scipy_call()
        scipy_count = scipy_products(tQ, p0)
        for (name, f), compile_s, median in zip(candidates.items(), first, medians):
            options = TSIT5 if "Tsit5" in name else {}
            p, stats = odeexpm.expm_multiply(A, pj, t, return_stats=True, **options)
            products = odeexpm_products(A, pj, t, **options)
            row(
                name,
                median * 1e3,
                medians[-1] * 1e3,
                rel_err(p, reference),
                None,
                products,
                scipy_count,
                int(stats.num_steps),
                compile_s,
            )
            print(
                f"  {'':<32} total probability - 1 = {float(jnp.sum(p)) - 1:.1e} "
                f"(SciPy {reference.sum() - 1:.1e}), min p = {float(jnp.min(p)):.1e}"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--baselines", action="store_true", help="add a diffrax Tsit5 solve")
    options = parser.parse_args()
    print(
        f"JAX {jax.__version__} on {jax.devices()[0].platform}, float64; times are medians "
        f"of {options.repeats} interleaved runs; ratio = odeexpm / SciPy\n"
    )
    print(HEADER)
    laplacian_workload(options.repeats, options.baselines)
    print()
    markov_workload(options.repeats, options.baselines)


if __name__ == "__main__":
    main()
