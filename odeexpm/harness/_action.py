"""The action suite and its methods: `exp(tA) B` for dense and sparse generators.

Dense cases are judged against `precise_expm(tA) @ B` (mpmath or extended precision),
sparse ones against `longdouble_action`, an extended-precision Taylor action: both
independent of every method under test, SciPy included (which is measured as a method).
"""

import diffrax
import jax.scipy.linalg as jsl
import numpy as np
from jax.experimental import sparse as jsparse

from .. import expm_multiply
from ._cases import ACTION, Case, action_case, suite
from ._methods import Method, register_method
from ._suites import path_laplacian

# Padé's route forms the dense n x n exponential: fine for the dense cases, and for
# sparse ones only while it fits comfortably.
DENSE_MAX_N = 1024


def grid_laplacian(side: int) -> tuple[np.ndarray, np.ndarray]:
    """The 5-point Laplacian of a `side x side` grid (Dirichlet boundary) in COO form,
    `(values, indices)`; eigenvalues in `(-8, 0)`."""
    n = side * side
    index = np.arange(n).reshape(side, side)
    rows, columns = [index.ravel()], [index.ravel()]
    values = [np.full(n, -4.0)]
    for a, b in [
        (index[:, :-1], index[:, 1:]),
        (index[:, 1:], index[:, :-1]),
        (index[:-1, :], index[1:, :]),
        (index[1:, :], index[:-1, :]),
    ]:
        rows.append(a.ravel())
        columns.append(b.ravel())
        values.append(np.ones(a.size))
    indices = np.stack([np.concatenate(rows), np.concatenate(columns)], axis=1)
    return np.concatenate(values), indices


def markov_generator(n: int, per_column: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random continuous-time Markov chain generator `Q` in COO form: `per_column`
    random targets per state with rates in `[0.1, 2]`, columns summing to zero (so
    `exp(tQ) p` is a probability vector for a probability vector `p`)."""
    rng = np.random.default_rng(seed)
    sources = np.repeat(np.arange(n), per_column)
    targets = (sources + rng.integers(1, n, sources.size)) % n
    rates = rng.uniform(0.1, 2.0, sources.size)
    exits = np.bincount(sources, rates, minlength=n)
    values = np.concatenate([rates, -exits])
    indices = np.stack(
        [np.concatenate([targets, np.arange(n)]), np.concatenate([sources, np.arange(n)])],
        axis=1,
    )
    return values, indices


def _coo(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.nonzero(A)
    return A[rows, columns], np.stack([rows, columns], axis=1)


@suite("action")
def action(quick: bool) -> list[Case]:
    """The action exp(tA) B: dense against high precision, sparse (Laplacian, Markov) too."""
    rotation = action_case(
        "rotation-2x2",
        np.array([[0.0, 1.0], [-1.0, 0.0]]),
        np.array([1.0, 0.5]),
        t=3.0,
        source="A rotation by 3 rad of a vector.",
    )
    if quick:
        path = -25.0 * path_laplacian(32)
        return [
            rotation,
            action_case(
                "sparse-path-32",
                _coo(path),
                np.linspace(0.0, 1.0, 32),
                t=1.0,
                source="-25 L for the path graph on 32 vertices, stored sparse.",
            ),
        ]
    rng = np.random.default_rng(6000)
    n = 32
    gaussian = rng.standard_normal((n, n)) / np.sqrt(n)
    G = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2 * n)
    S = rng.standard_normal((128, 128)) / np.sqrt(128)
    side, chain = 100, 5000
    grid_B = np.sin(np.pi * np.arange(side * side) / (side * side)) + 0.1
    start = np.zeros(chain)
    start[:10] = 0.1
    return [
        rotation,
        action_case(
            "gaussian-32-block",
            gaussian,
            rng.standard_normal((n, 4)),
            source="N(0, 1/n) entries, B of 4 columns; seed 6000.",
        ),
        action_case(
            "hermitian-32",
            -1j * (G + G.conj().T),
            rng.standard_normal((n, 2)) + 0j,
            t=5.0,
            source="-iH, H = G + G^H complex Gaussian, t = 5; seed 6000.",
        ),
        action_case(
            "skew-128",
            S - S.T,
            rng.standard_normal(128),
            t=10.0,
            source="S - S^T, t = 10 (oscillatory, norm ~ 200); seed 6000.",
        ),
        action_case(
            "laplacian-128",
            -100.0 * path_laplacian(128),
            np.linspace(0.0, 1.0, 128),
            source="-100 L for the path graph on 128 vertices (stiff, dense storage).",
        ),
        action_case(
            f"grid-laplacian-{side * side}",
            grid_laplacian(side),
            grid_B,
            t=5.0,
            source=f"5-point Laplacian of a {side} x {side} grid, exp(5L) v, sparse.",
        ),
        action_case(
            f"markov-{chain}",
            markov_generator(chain, 4, seed=6001),
            start,
            t=2.0,
            source=f"Random CTMC generator, {chain} states, 4 exits each; p(2) from p(0).",
        ),
    ]


def _dense(A):
    return A.todense() if isinstance(A, jsparse.BCOO) else A


def action_ode(solver=None):
    def build(quantity: str, rtol: float | None):
        def fn(A, B, t):
            return expm_multiply(
                A,
                B,
                t,
                solver=None if solver is None else solver(),
                rtol=rtol,
                throw=False,
                return_stats=True,
            )

        return fn

    return build


def action_pade(quantity: str, setting=None):
    return lambda A, B, t: (jsl.expm(t * _dense(A)) @ B, None)


def action_scipy(quantity: str, setting=None):
    def fn(A, B, t):
        import scipy.sparse.linalg

        return scipy.sparse.linalg.expm_multiply(t * A, B), None

    return fn


DENSE_REASON = f"forms the dense n x n exponential (n > {DENSE_MAX_N})"
for _method in [
    Method(
        "action-ode",
        "odeexpm.expm_multiply with its defaults (shifted Taylor action steps), "
        "called outside jax.jit (sparse: sliced ELLPACK products)",
        action_ode(),
        quantities=(ACTION,),
        uses_tolerance=True,
        applies_to=frozenset({ACTION}),
        call="eager",
    ),
    Method(
        "action-ode-tsit5",
        "odeexpm.expm_multiply(solver=diffrax.Tsit5()): the plain Runge-Kutta solve",
        action_ode(diffrax.Tsit5),
        quantities=(ACTION,),
        uses_tolerance=True,
        applies_to=frozenset({ACTION}),
        call="eager",
    ),
    Method(
        "action-pade",
        "jax.scipy.linalg.expm(t A) @ B: Padé on the dense matrix",
        action_pade,
        quantities=(ACTION,),
        applies_to=frozenset({ACTION}),
        max_n=DENSE_MAX_N,
        limit_reason=DENSE_REASON,
    ),
    Method(
        "action-scipy",
        "scipy.sparse.linalg.expm_multiply (Al-Mohy & Higham), CSR or dense NumPy input",
        action_scipy,
        quantities=(ACTION,),
        applies_to=frozenset({ACTION}),
        call="host",
    ),
]:
    register_method(_method)

ACTION_METHODS = ("action-ode", "action-ode-tsit5", "action-pade", "action-scipy")
QUICK_ACTION_METHODS = ("action-ode", "action-scipy")
