"""`odeexpm.expm_multiply`: operator kinds, accuracy, Markov chains, gradients, dtypes
and errors, against SciPy's `expm`, `expm_frechet` and `expm_multiply`.

Shapes and options are shared between tests where possible: each new compilation costs
seconds. Complex gradients and `BacksolveAdjoint` are marked slow (`pytest -m slow`).
"""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import odeexpm
import pytest
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from jax.experimental import sparse
from odeexpm._materialize import computed_once
from odeexpm._operator import SparseOperator, as_operator, plan_layout
from odeexpm._operator.layout import UNROLLED_WIDTH
from odeexpm._operator.sparse import (
    BUCKET_WIDTHS,
    BucketedEllOperator,
    CooOperator,
    overflow_size,
    split_width,
    table_widths,
)

from .helpers import rel_err

N, K, T = 8, 3, 1.5


def sparse_pattern_matrix(n, seed, density=0.4, complex_=False):
    """A random matrix with about `density` of its entries and its diagonal nonzero
    (the pattern depends on `n` and `density` only, so that BCOO shapes are shared)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    if complex_:
        A = A + 1j * rng.standard_normal((n, n))
    mask = (np.random.default_rng(0).random((n, n)) < density) | np.eye(n, dtype=bool)
    return A * mask


A0 = sparse_pattern_matrix(N, 0)
B0 = np.random.default_rng(1).standard_normal((N, K))
W0 = np.random.default_rng(2).standard_normal((N, K))


def closed_form(A, B, t):
    """`exp(tA) B` by SciPy's Padé `expm` (in NumPy: no compilation)."""
    A, B = np.asarray(A), np.asarray(B)
    return scipy.linalg.expm(np.asarray(t, A.dtype) * A) @ B


def as_kind(A, kind):
    A = jnp.asarray(A)
    if kind == "dense":
        return A
    if kind == "bcoo":
        return sparse.BCOO.fromdense(A)
    if kind == "bcsr":
        return sparse.BCSR.fromdense(A)
    if kind == "lineax_function":
        structure = jax.ShapeDtypeStruct((A.shape[0],), A.dtype)
        return lx.FunctionLinearOperator(lambda x: A @ x, structure)
    if kind == "lineax_matrix":
        return lx.MatrixLinearOperator(A)
    raise ValueError(kind)


def random_markov_generator(n, out_degree, seed):
    """A sparse CTMC generator: `out_degree` random transitions per state with Exp(1)
    rates; columns sum to zero (`dp/dt = Q p`)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, n, size=n * out_degree)
    sources = np.repeat(np.arange(n), out_degree)
    Q = sp.csr_matrix((rng.exponential(1.0, n * out_degree), (targets, sources)), shape=(n, n))
    Q.setdiag(0)
    Q.eliminate_zeros()
    return (Q - sp.diags(np.asarray(Q.sum(axis=0)).ravel())).tocsr()


def grid_laplacian(side):
    """The 5-point Laplacian on a `side x side` grid (Dirichlet), spectrum in (-8, 0)."""
    T1 = sp.diags([np.ones(side - 1), -2 * np.ones(side), np.ones(side - 1)], [-1, 0, 1])
    I = sp.identity(side)
    return (sp.kron(T1, I) + sp.kron(I, T1)).tocsr()


# --- accuracy of every operator kind ---------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "bcoo", "bcsr", "lineax_function", "lineax_matrix"])
def test_operator_kinds_match_closed_form_and_scipy(kind):
    Y, stats = odeexpm.expm_multiply(as_kind(A0, kind), B0, T, return_stats=True)
    assert Y.shape == (N, K) and Y.dtype == jnp.float64
    assert rel_err(Y, closed_form(A0, B0, T)) < 1e-12
    assert rel_err(Y, spla.expm_multiply(T * sp.csr_matrix(A0), B0)) < 1e-12
    assert bool(stats.successful)


def test_vmap_over_columns():
    # Each batch member is a vector state (n,).
    A = sparse.BCOO.fromdense(jnp.asarray(A0))
    Ys = jax.vmap(lambda b: odeexpm.expm_multiply(A, b, T))(jnp.asarray(B0.T))
    assert rel_err(Ys.T, closed_form(A0, B0, T)) < 1e-12


@pytest.mark.parametrize("t", [0.0, -0.7, 4.0])
def test_times_zero_negative_and_large(t):
    Y = odeexpm.expm_multiply(A0, B0, t)
    assert rel_err(Y, closed_form(A0, B0, t)) < 1e-11


@pytest.mark.parametrize(
    "dtype,tol",
    [(jnp.float32, 1e-5), (jnp.float64, 1e-11), (jnp.complex64, 1e-5), (jnp.complex128, 1e-11)],
)
def test_dtypes(dtype, tol):
    complex_ = jnp.issubdtype(dtype, jnp.complexfloating)
    A = jnp.asarray(sparse_pattern_matrix(N, 3, complex_=complex_), dtype)
    # A real state with a complex generator is promoted.
    Y = odeexpm.expm_multiply(sparse.BCOO.fromdense(A), jnp.asarray(B0, jnp.finfo(dtype).dtype), T)
    assert Y.dtype == dtype
    reference = closed_form(np.asarray(A, np.complex128), B0, T)
    assert rel_err(Y, reference) < tol


def test_irregular_sparsity_unsorted_duplicates():
    """Rows with 1, 2, 5, 10 or UNROLLED_WIDTH + 6 entries (several ELLPACK groups, one
    of them summed by a reduction rather than unrolled), indices unsorted and with
    duplicates (which add up)."""
    rng = np.random.default_rng(4)
    n = 90
    counts = 1 + rng.integers(0, 4, n) ** 2
    counts[:3] = UNROLLED_WIDTH + 6
    rows = np.repeat(np.arange(n), counts)
    columns = np.concatenate([rng.choice(n, c, replace=False) for c in counts])
    rows, columns = np.append(rows, [5, 5]), np.append(columns, [7, 7])  # duplicates
    data = rng.standard_normal(rows.shape[0]) / 4
    shuffle = rng.permutation(rows.shape[0])
    indices = np.stack([rows, columns], axis=1)[shuffle]
    A = sparse.BCOO((jnp.asarray(data[shuffle]), jnp.asarray(indices)), shape=(n, n))
    dense = np.asarray(A.todense())

    layout = plan_layout(indices, n)
    widths = [slots.shape[0] for slots in layout.slots]
    assert len(widths) > 1 and max(widths) > UNROLLED_WIDTH and layout.permutation is not None
    x = rng.standard_normal((n, 2))
    product = jax.jit(lambda data, x: SparseOperator(data, layout).mv(x))
    assert rel_err(product(A.data, x), dense @ x) < 1e-14

    Y = odeexpm.expm_multiply(A, x, 0.8)
    assert rel_err(Y, closed_form(dense, x, 0.8)) < 1e-12
    # Several times at once, in the renumbered row order the solve runs in.
    ts = np.array([0.0, 0.3, 0.8])
    Ys = odeexpm.expm_multiply(A, x, ts)
    assert Ys.shape == (3, n, 2)
    for t, Y in zip(ts, Ys):
        assert rel_err(Y, closed_form(dense, x, t)) < 1e-12
    # Gradients through the entries (`product_by_entries`; duplicates each get the
    # matrix entry's), in the values and in the state, closed over and traced.
    W = rng.standard_normal((n, 2))

    def loss(data, indices, x):
        product = odeexpm.expm_multiply(sparse.BCOO((data, indices), shape=A.shape), x, 0.8)
        return jnp.sum(W * product)

    grad_A, reference_x, _ = frechet_gradients(dense, x, W, 0.8)
    reference_data = grad_A[tuple(np.asarray(A.indices).T)]
    closed = jax.grad(lambda data, x: loss(data, A.indices, x), argnums=(0, 1))
    traced = jax.jit(jax.grad(loss, argnums=(0, 2)))
    for grad_data, grad_x in (closed(A.data, x), traced(A.data, A.indices, x)):
        assert rel_err(grad_data, reference_data) < 1e-10
        assert rel_err(grad_x, reference_x) < 1e-10


def test_times_vector_one_solve():
    # exp(t_i A) B stacked, from one solve whose steps land on the times; negative times
    # decreasing; gradients as from separate solves; bad orders refused.
    ts = jnp.linspace(0.0, T, 5)
    Ys, stats = odeexpm.expm_multiply(A0, B0, ts, return_stats=True)
    assert Ys.shape == (5, N, K) and int(stats.num_steps) >= 4
    for t, Y in zip(ts, Ys):
        assert rel_err(Y, closed_form(A0, B0, float(t))) < 1e-12
    backwards = odeexpm.expm_multiply(A0, B0[:, 0], -ts[1:])
    assert rel_err(backwards[-1], closed_form(A0, B0[:, 0], -T)) < 1e-12
    at_times = jax.jit(lambda s: jnp.sum(W0 * odeexpm.expm_multiply(s * A0, B0, ts)[-1]))
    difference = (at_times(1.0 + 1e-6) - at_times(1.0 - 1e-6)) / 2e-6
    assert abs(jax.grad(at_times)(1.0) - difference) < 1e-7 * abs(difference)
    for bad in ([0.5, 0.2], [-0.1, 0.3], [[0.1]]):
        with pytest.raises(ValueError, match="`t`"):
            odeexpm.expm_multiply(A0, B0, jnp.asarray(bad))


def test_bcoo_with_traced_indices_under_jit():
    # A BCOO passed to a jitted function has traced indices: laid out as ELLPACK on the
    # device when its entries are sorted by row (one compiled branch per row width), by
    # segment_sum otherwise, or when a row is longer than the widest bucket.
    solve = jax.jit(lambda A, B: odeexpm.expm_multiply(A, B, T))
    A = sparse.BCOO.fromdense(jnp.asarray(A0))
    assert rel_err(solve(A, jnp.asarray(B0)), closed_form(A0, B0, T)) < 1e-12
    shuffle = np.random.default_rng(6).permutation(A.nse)
    unsorted = sparse.BCOO((A.data[shuffle], A.indices[shuffle]), shape=A.shape)
    assert rel_err(solve(unsorted, jnp.asarray(B0)), closed_form(A0, B0, T)) < 1e-12
    n = 40
    layout = jax.jit(
        lambda coo: (lambda op: (op.bucket, op.mv(jnp.ones(n))))(BucketedEllOperator.from_coo(coo))
    )
    # Rows past the table (twice the mean row length, in buckets): the segment_sum branch;
    # a row of 40 entries, and one of 10 among rows of 1 and 2 (mean 2: a table of 4).
    for long_rows, length in ((2, n), (1, 10)):
        wide = np.diag(-np.ones(n)) + 0.01 * (np.arange(n) < long_rows)[:, None] * (
            np.arange(n) < length
        )
        wide[5:25, 30] = 0.5
        entries = sparse.BCOO.fromdense(jnp.asarray(wide))
        coo = CooOperator(entries.data, entries.indices[:, 0], entries.indices[:, 1], n)
        bucket, product = layout(coo)
        widths = table_widths(entries.nse, n)
        assert widths[-1] < length and int(bucket) == len(widths)
        assert rel_err(product, wide @ np.ones(n)) < 1e-14
    # Within the table: the ELLPACK branch of the longest row's width.
    entries = sparse.BCOO.fromdense(jnp.asarray(np.diag(-np.ones(n)) + np.eye(n, k=1)))
    coo = CooOperator(entries.data, entries.indices[:, 0], entries.indices[:, 1], n)
    bucket, product = layout(coo)
    assert BUCKET_WIDTHS[int(bucket)] == 2
    assert rel_err(product, (np.diag(-np.ones(n)) + np.eye(n, k=1)) @ np.ones(n)) < 1e-14
    # Gradients reach the values through the layout.
    loss = jax.jit(
        lambda data: jnp.sum(
            W0 * odeexpm.expm_multiply(sparse.BCOO((data, A.indices), shape=A.shape), B0, T)
        )
    )
    direction = np.random.default_rng(7).standard_normal(A.nse)
    h = 1e-6
    difference = (loss(A.data + h * direction) - loss(A.data - h * direction)) / (2 * h)
    assert abs(jnp.sum(jax.grad(loss)(A.data) * direction) - difference) < 1e-7 * abs(difference)


def test_bcoo_with_traced_indices_spills_long_rows():
    # Rows of uneven length: 58 of 3 entries and 6 of 8 (a table up to width 8). Split at
    # width 4, with the 6 rows' last 4 entries in the overflow table of 8 rows, the layout
    # has 64 x 4 + 8 x 4 slots, against 64 x 8 for one table: the split's branch.
    n = 64
    rng = np.random.default_rng(10)
    counts = np.full(n, 3)
    counts[rng.choice(n, 6, replace=False)] = 8
    rows = np.repeat(np.arange(n), counts)
    columns = np.concatenate(
        [np.sort(np.append(rng.choice(np.delete(np.arange(n), r), c - 1, replace=False), r))
         for r, c in enumerate(counts)]
    )  # fmt: skip
    dense = np.zeros((n, n))
    dense[rows, columns] = rng.standard_normal(rows.size) / 3
    A = sparse.BCOO.fromdense(jnp.asarray(dense))
    widths = table_widths(A.nse, n)
    assert A.nse == rows.size and overflow_size(n) == 8 and split_width(widths) == 4

    @jax.jit
    def layout(data, indices, y):
        coo = CooOperator(data, indices[:, 0], indices[:, 1], n)
        operator = BucketedEllOperator.from_coo(coo)
        return operator.bucket, operator.mv(y), operator.mv(y[:, 0])

    y = rng.standard_normal((n, 2))
    bucket, product, column = layout(A.data, A.indices, y)
    assert int(bucket) == len(widths) + 1
    assert rel_err(product, dense @ y) < 1e-14 and rel_err(column, dense @ y[:, 0]) < 1e-14
    # Through a solve, and its gradient in the values as with the closed-over layout.
    W = rng.standard_normal((n, 2))

    def loss(data, indices):
        action = odeexpm.expm_multiply(sparse.BCOO((data, indices), shape=A.shape), y, T)
        return jnp.sum(W * action)

    action = jax.jit(lambda d, i: odeexpm.expm_multiply(sparse.BCOO((d, i), shape=A.shape), y, T))
    assert rel_err(action(A.data, A.indices), closed_form(dense, y, T)) < 1e-12
    traced = jax.jit(jax.grad(loss))(A.data, A.indices)
    closed = jax.jit(jax.grad(lambda data: loss(data, A.indices)))(A.data)
    assert rel_err(traced, closed) < 1e-12


def test_bcoo_with_traced_indices_gradients():
    # With traced indices the products are differentiated through the coordinate lists
    # (`_bucketed_product`), not the table: the same gradients as the closed-over layout,
    # in the values and in the state, entries sorted by row (the table) or not
    # (`segment_sum`); and forward mode, against the Fréchet derivative.
    A = sparse.BCOO.fromdense(jnp.asarray(A0))
    shuffle = np.random.default_rng(8).permutation(A.nse)

    def loss(data, indices, B):
        product = odeexpm.expm_multiply(sparse.BCOO((data, indices), shape=A.shape), B, T)
        return jnp.sum(W0 * product)

    traced = jax.jit(jax.grad(loss, argnums=(0, 2)))
    closed = jax.jit(jax.grad(lambda data, B: loss(data, A.indices, B), argnums=(0, 1)))
    expected_data, expected_B = closed(A.data, jnp.asarray(B0))
    # The state's gradient is exp(T A)^T W.
    assert rel_err(expected_B, scipy.linalg.expm(T * A0).T @ W0) < 1e-12
    for order in (np.arange(A.nse), shuffle):
        d_data, d_B = traced(A.data[order], A.indices[order], jnp.asarray(B0))
        assert rel_err(d_data, expected_data[order]) < 1e-12
        assert rel_err(d_B, expected_B) < 1e-12
    E = np.random.default_rng(9).standard_normal(A.nse)
    dense = np.zeros_like(A0)
    np.add.at(dense, tuple(np.asarray(A.indices).T), E)

    def forward(data, indices, d_data):
        solve = lambda data: odeexpm.expm_multiply(  # noqa: E731
            sparse.BCOO((data, indices), shape=A.shape), B0, T, adjoint=diffrax.ForwardMode()
        )
        return jax.jvp(solve, (data,), (d_data,))[1]

    frechet = scipy.linalg.expm_frechet(T * A0, T * dense, compute_expm=False) @ B0
    assert rel_err(jax.jit(forward)(A.data, A.indices, jnp.asarray(E)), frechet) < 1e-11


def test_tables_are_computed_once():
    # `computed_once` keeps a table out of the products that read it by computing it in a
    # conditional, which the CPU backend materializes. Its predicate `x == x` must be on
    # an inexact operand: on integers (a BCOO's row counts) XLA folds it, and the table
    # would be fused into every product again.
    def table(operands):
        counts, values = operands
        return values[jnp.cumsum(counts) % values.shape[0]]

    operands = (jnp.arange(8), jnp.linspace(0.0, 1.0, 8))
    compiled = jax.jit(lambda *o: computed_once(table, o)).lower(*operands).compile()
    assert " conditional(" in compiled.as_text()
    with pytest.raises(ValueError, match="inexact"):
        computed_once(table, (jnp.arange(8),))


def test_single_grid_layout_group():
    # Boundary rows of a grid Laplacian have fewer entries: still one group, no renumbering.
    L = grid_laplacian(12).tocoo()
    layout = plan_layout(np.stack([L.row, L.col], axis=1), L.shape[0])
    assert len(layout.slots) == 1 and layout.permutation is None


# --- large-norm problems: the shift, uniformization and rounding control ---------------


def test_markov_chain_conserves_probability():
    Q = random_markov_generator(400, 6, seed=5)
    p0 = np.zeros(400)
    p0[0] = 1.0
    A = sparse.BCOO.from_scipy_sparse(Q)
    for t in [2.0, 30.0]:  # one step; many steps
        p, stats = odeexpm.expm_multiply(A, p0, t, return_stats=True)
        assert abs(float(jnp.sum(p)) - 1.0) < 1e-12
        assert float(jnp.min(p)) > -1e-15
        assert rel_err(p, spla.expm_multiply(t * Q, p0)) < 1e-10
    assert int(stats.num_steps) > 1


def test_grid_laplacian_in_one_step():
    """`exp(5L)` for a grid Laplacian (spectrum in (-40, 0)): after the shift by the
    Gershgorin center the series covers the whole interval in one step."""
    L = grid_laplacian(30)
    v = np.random.default_rng(6).standard_normal(L.shape[0])
    y, stats = odeexpm.expm_multiply(sparse.BCOO.from_scipy_sparse(L), v, 5.0, return_stats=True)
    assert rel_err(y, spla.expm_multiply(5.0 * L, v)) < 1e-11
    assert int(stats.num_steps) == 1


def test_oscillatory_steps_are_limited_by_rounding():
    """A skew-symmetric generator of norm ~300: one long Taylor step would cancel
    catastrophically; the rounding estimate makes the controller split it."""
    rng = np.random.default_rng(7)
    S = rng.standard_normal((N, N))
    A = 60.0 * (S - S.T)
    Y, stats = odeexpm.expm_multiply(A, B0, 1.0, return_stats=True)
    assert rel_err(Y, closed_form(A, B0, 1.0)) < 1e-10
    assert int(stats.num_steps) > 5


def test_other_solvers():
    Y = odeexpm.expm_multiply(A0, B0, T, solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-10)
    assert rel_err(Y, closed_form(A0, B0, T)) < 1e-8


def test_taylor_action_step_for_narrow_dense_states():
    # odeexpm.Taylor applies its series to a vector state term by term.
    y = odeexpm.evolve(odeexpm.Constant(A0), B0[:, 0], 0.0, T, solver=odeexpm.Taylor(degree=30))
    assert rel_err(y, closed_form(A0, B0[:, 0], T)) < 1e-11


# --- gradients -------------------------------------------------------------------------


def frechet_gradients(A, B, W, t):
    """Closed-form gradients of `L = sum(W * exp(tA) B)`: `dL/dA = t L_exp(t A^T, W B^T)`,
    `dL/dB = exp(t A^T) W`, `dL/dt = <W, A exp(tA) B>` (real inputs)."""
    grad_A = t * scipy.linalg.expm_frechet(t * A.T, W @ B.T, compute_expm=False)
    grad_B = scipy.linalg.expm(t * A.T) @ W
    grad_t = np.sum(W * (A @ closed_form(A, B, t)))
    return grad_A, grad_B, grad_t


def test_reverse_gradients_dense():
    loss = lambda A, B, t: jnp.sum(W0 * odeexpm.expm_multiply(A, B, t))
    grads = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(A0), jnp.asarray(B0), jnp.asarray(T))
    for grad, reference in zip(grads, frechet_gradients(A0, B0, W0, T)):
        assert rel_err(grad, reference) < 1e-10
    # and the time derivative against a central difference
    h = 1e-5
    difference = (loss(A0, B0, T + h) - loss(A0, B0, T - h)) / (2 * h)
    assert abs(float(grads[2] - difference)) < 1e-6 * abs(float(difference))


def test_reverse_gradient_memory_does_not_grow_with_the_degree():
    # The reverse pass through an action step's terms keeps each term, never a copy of the
    # operator per term: at n = 200 a dense matrix stacked for 100 terms would be 30 MiB.
    n = 200
    A = np.random.default_rng(8).standard_normal((n, n)) / np.sqrt(n)
    grad = jax.jit(jax.grad(lambda A, b: jnp.sum(odeexpm.expm_multiply(A, b, 2.0)), (0, 1)))
    memory = grad.lower(jnp.asarray(A), jnp.ones(n)).compile().memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < 8 * A.nbytes


def test_reverse_gradients_bcoo_values():
    A = sparse.BCOO.fromdense(jnp.asarray(A0))
    rows, columns = A.indices[:, 0], A.indices[:, 1]

    def loss(data, B, t):
        Y = odeexpm.expm_multiply(sparse.BCOO((data, A.indices), shape=A.shape), B, t)
        return jnp.sum(W0 * Y)

    grads = jax.grad(loss, argnums=(0, 1, 2))(A.data, jnp.asarray(B0), jnp.asarray(T))
    grad_data, grad_B, grad_t = grads
    grad_A, reference_B, reference_t = frechet_gradients(A0, B0, W0, T)
    assert rel_err(grad_data, grad_A[rows, columns]) < 1e-10
    assert rel_err(grad_B, reference_B) < 1e-10
    assert abs(float(grad_t - reference_t)) < 1e-10 * abs(float(reference_t))
    # one value against a central difference
    h = 1e-6
    bump = jnp.zeros_like(A.data).at[3].set(h)
    difference = (loss(A.data + bump, B0, T) - loss(A.data - bump, B0, T)) / (2 * h)
    assert abs(float(grad_data[3] - difference)) < 1e-6 * abs(float(difference))


def test_reverse_gradients_lineax_parameters():
    """Matrix-free: the gradient reaches the array a `FunctionLinearOperator` closes over."""

    def loss(M):
        operator = lx.FunctionLinearOperator(lambda x: M @ x, jax.ShapeDtypeStruct((N,), M.dtype))
        return jnp.sum(W0 * odeexpm.expm_multiply(operator, B0, T))

    grad = jax.grad(loss)(jnp.asarray(A0))
    assert rel_err(grad, frechet_gradients(A0, B0, W0, T)[0]) < 1e-10


def test_forward_mode():
    rng = np.random.default_rng(8)
    dA, dB = rng.standard_normal((N, N)), rng.standard_normal((N, K))
    f = lambda A, B, t: odeexpm.expm_multiply(A, B, t, adjoint=diffrax.ForwardMode())
    primals = (jnp.asarray(A0), jnp.asarray(B0), jnp.asarray(T))
    tangents = (jnp.asarray(dA), jnp.asarray(dB), jnp.asarray(0.3))
    Y, dY = jax.jvp(f, primals, tangents)
    # d(exp(tA) B) = L_exp(tA, t dA + dt A) B + exp(tA) dB
    frechet = scipy.linalg.expm_frechet(T * A0, T * dA + 0.3 * A0, compute_expm=False)
    d_reference = frechet @ B0 + closed_form(A0, dB, T)
    assert rel_err(Y, closed_form(A0, B0, T)) < 1e-12
    assert rel_err(dY, d_reference) < 1e-10


@pytest.mark.slow
def test_reverse_gradient_complex():
    A = sparse_pattern_matrix(N, 9, complex_=True)
    B = B0 + 1j * W0
    loss = lambda f: lambda A: jnp.real(jnp.sum(W0 * f(A, B, T)))
    grad = jax.grad(loss(odeexpm.expm_multiply))(jnp.asarray(A))
    padé = lambda A, B, t: jax.scipy.linalg.expm(t * A) @ B  # JAX's convention for complex
    assert rel_err(grad, jax.grad(loss(padé))(jnp.asarray(A))) < 1e-10


@pytest.mark.slow
def test_backsolve_adjoint():
    adjoint = diffrax.BacksolveAdjoint()
    loss = lambda A: jnp.sum(W0 * odeexpm.expm_multiply(A, B0, T, adjoint=adjoint))
    assert rel_err(jax.grad(loss)(jnp.asarray(A0)), frechet_gradients(A0, B0, W0, T)[0]) < 1e-8


# --- errors ----------------------------------------------------------------------------


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="`B` must have shape"):
        odeexpm.expm_multiply(A0, np.ones(N + 1))
    with pytest.raises(ValueError, match="`B` must have shape"):
        odeexpm.expm_multiply(A0, np.ones((N, 2, 2)))
    with pytest.raises(ValueError, match="square"):
        odeexpm.expm_multiply(np.ones((N, N + 1)), np.ones(N))
    with pytest.raises(TypeError, match="float16"):
        odeexpm.expm_multiply(A0.astype(np.float16), B0)
    with pytest.raises(TypeError, match="dtype"):
        odeexpm.expm_multiply(A0, B0.astype(np.float16))
    with pytest.raises(ValueError, match="batch"):
        odeexpm.expm_multiply(sparse.BCOO.fromdense(jnp.ones((2, N, N)), n_batch=1), B0)
    pairs = jax.ShapeDtypeStruct((N, 2), jnp.float64)
    vector_of_pairs = lx.FunctionLinearOperator(lambda x: x, pairs)
    with pytest.raises(ValueError, match="vectors of shape"):
        odeexpm.expm_multiply(vector_of_pairs, B0)
    with pytest.raises(ValueError, match="scalar or a non-empty 1-D array"):
        odeexpm.expm_multiply(A0, B0, jnp.ones((2, 2)))  # (a 1-D array of times is fine)


def test_failures_raise_or_are_reported():
    A = A0.copy()
    A[1, 1] = np.nan
    with pytest.raises(Exception, match="non-finite"):
        odeexpm.expm_multiply(A, B0, T)
    # With throw=False: NaN results and the reason in the statistics.
    options = dict(throw=False, return_stats=True, max_steps=2)
    Y, stats = odeexpm.expm_multiply(A, B0, T, **options)
    assert bool(jnp.all(jnp.isnan(Y))) and stats.result == odeexpm.RESULTS.nonfinite_values
    Y, stats = odeexpm.expm_multiply(100 * A0, B0, T, **options)  # needs more than 2 steps
    assert bool(jnp.all(jnp.isnan(Y))) and stats.result == odeexpm.RESULTS.max_steps_reached
    Y, stats = odeexpm.expm_multiply(A0, B0, T, **options)
    assert bool(stats.successful) and rel_err(Y, closed_form(A0, B0, T)) < 1e-12


# --- operators inside time-dependent generators ------------------------------------------


def _drive(t, args):
    return jnp.sin(2.0 * t)


@pytest.mark.parametrize("kind", ["bcoo", "bcsr", "lineax"])
def test_modulated_with_sparse_and_matrix_free_parts(kind):
    # evolve applies A0 y and f(t) (A1 y) term by term (by default in Taylor steps in
    # time, the control expanded by jet); the answer is that of the dense generator,
    # solved tightly by Dopri8.
    A1 = sparse_pattern_matrix(N, 5)
    convert = {
        "bcoo": sparse.BCOO.fromdense,
        "bcsr": sparse.BCSR.fromdense,
        "lineax": lambda M: lx.FunctionLinearOperator(
            lambda v: jnp.asarray(M) @ v, jax.ShapeDtypeStruct((N,), jnp.float64)
        ),
    }[kind]
    generator = odeexpm.Modulated(convert(jnp.asarray(A0)), [convert(jnp.asarray(A1))], [_drive])
    assert generator.is_operator
    dense = odeexpm.Modulated(A0, [A1], [_drive])
    y, stats = odeexpm.evolve(generator, B0, 0.0, T, rtol=1e-12, return_stats=True)
    assert stats.solver == "Taylor(degree=30)"
    expected = odeexpm.evolve(dense, B0, 0.0, T, solver=diffrax.Dopri8(), rtol=1e-14)
    assert rel_err(y, expected) < 1e-11
    with pytest.raises(ValueError, match="forms commutators"):
        odeexpm.evolve(generator, B0, 0.0, T, solver=odeexpm.Magnus6())


def test_modulated_sparse_gradients_and_complex():
    A1 = sparse_pattern_matrix(N, 5)
    pattern = sparse.BCOO.fromdense(jnp.asarray(A0))

    def loss(values, amplitude):
        drift = sparse.BCOO((values, pattern.indices), shape=(N, N))
        generator = odeexpm.Modulated(
            drift, [sparse.BCOO.fromdense(jnp.asarray(A1))], [lambda t, a: a * jnp.sin(t)]
        )
        return jnp.sum(W0 * odeexpm.evolve(generator, B0, 0.0, T, args=amplitude, rtol=1e-12))

    def dense_loss(A, amplitude):
        generator = odeexpm.Modulated(A, [A1], [lambda t, a: a * jnp.sin(t)])
        return jnp.sum(
            W0
            * odeexpm.evolve(
                generator, B0, 0.0, T, args=amplitude, solver=diffrax.Dopri8(), rtol=1e-12
            )
        )

    grad_values, grad_amplitude = jax.grad(loss, argnums=(0, 1))(pattern.data, 0.7)
    dense_A, dense_amplitude = jax.grad(dense_loss, argnums=(0, 1))(jnp.asarray(A0), 0.7)
    rows, columns = pattern.indices[:, 0], pattern.indices[:, 1]
    assert rel_err(grad_values, dense_A[rows, columns]) < 1e-11
    assert rel_err(grad_amplitude, dense_amplitude) < 1e-11
    # A complex (Schrödinger) generator with a sparse Hamiltonian keeps the norm.
    H = sparse_pattern_matrix(N, 6)
    H = H + H.T
    hamiltonian = odeexpm.Modulated(
        sparse.BCOO.fromdense(jnp.asarray(-1j * H)),
        [sparse.BCOO.fromdense(jnp.asarray(-1j * A1 - 1j * A1.T))],
        [_drive],
    )
    psi = odeexpm.evolve(hamiltonian, B0[:, 0] / np.linalg.norm(B0[:, 0]), 0.0, T, rtol=1e-12)
    assert psi.dtype == jnp.complex128 and abs(float(jnp.linalg.norm(psi)) - 1) < 1e-10


def test_layout_cache_holds_no_tracers():
    # A concrete BCOO made into a generator inside a trace is planned then, and its
    # layout cached: the cache must hold concrete arrays, which later traces reuse.
    from odeexpm._operator import layout

    drift = sparse.BCOO.fromdense(jnp.asarray(sparse_pattern_matrix(N, 7)))
    layout._LAYOUTS_BY_IDENTITY.clear()
    layout._LAYOUTS_BY_CONTENT.clear()

    def loss(amplitude):
        A = odeexpm.Modulated(drift, [drift], [lambda t, a: amplitude * jnp.sin(t)])
        return jnp.sum(odeexpm.evolve(A, B0, 0.0, 0.5, solver=diffrax.Tsit5(), rtol=1e-8))

    jax.jit(loss)(0.3)
    cached = jax.tree_util.tree_leaves(list(layout._LAYOUTS_BY_CONTENT.values()))
    assert cached and not any(isinstance(x, jax.core.Tracer) for x in cached)
    # A new trace runs `loss` again and reuses the cached layout (holding tracers of the
    # first trace, it would fail with JAX's UnexpectedTracerError).
    assert np.isfinite(jax.jit(lambda a: 2 * loss(a))(0.4))


def test_numpy_indices_inside_jit_are_planned():
    # `BCOO((data, numpy_indices))` inside jax.jit holds its indices as a tracer of a
    # constant: still planned on the host (sliced ELLPACK), not laid out per solve.
    dense = np.diag(np.full(4, 1.0), 1) - 2 * np.eye(5)
    indices = np.stack(np.nonzero(dense), 1)
    kinds = []

    @jax.jit
    def product(data):
        operator = as_operator(sparse.BCOO((data, indices), shape=(5, 5)), "A", "test")
        kinds.append(type(operator).__name__)
        return operator.mv(jnp.arange(5.0))

    np.testing.assert_allclose(product(dense[tuple(indices.T)]), dense @ np.arange(5.0))
    assert kinds == ["SparseOperator"]
