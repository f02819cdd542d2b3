"""Linear operators for `expm_multiply`: what a generator must offer when no dense matrix
is formed.

A generator `A` of `dy/ds = A y` enters the Taylor action step (and any diffrax solver,
through `odeexpm.LinearTerm`) only through products `A @ y`, for a state `y` of shape
`(n,)` or `(n, k)`. An `AbstractOperator` provides that product and a *disk*
`|z - center| <= radius` holding the spectrum of `A`: the step shifts `A` by the center
(`exp(hA) = exp(h center) exp(h (A - center I))`, which shrinks the norm a Taylor series
must cover, and for a Markov generator makes every term non-negative) and the first step
size is chosen from the radius.

Kinds:

- `DenseOperator`: a dense `(n, n)` array; the disk is Gershgorin's (the smaller of the
  disks enclosing the row and the column Gershgorin disks).
- `SparseOperator`: a sparse matrix (from a `jax.experimental.sparse.BCOO` or `BCSR` whose
  indices are concrete), applied in sliced ELLPACK form (`EllOperator`): rows grouped by
  their number of entries, each group padded to a common width, so that a product is a
  few fused gathers with no scatter. This is JAX's fastest CPU sparse product by a wide
  margin (`BCOO @ x` costs several times as much). The layout is planned on the host
  from the indices (`plan_layout`, cached per index array), the values are gathered into
  it once per solve (`prepare`). Gershgorin disk.
- `CooOperator`: a BCOO matrix whose indices are traced (built inside `jax.jit`), where
  no layout can be planned: `segment_sum` products. Gershgorin disk.
- `LineaxOperator`: any `lineax.AbstractLinearOperator` (matrix-free). Its disk is an
  estimate from two products with a random sign vector: the center is the trace
  estimate `z^T A z / n`, the radius a power-iteration estimate of `||A - center I||`.

The values of every kind are differentiable (dense entries, the sparse `data`, the
arrays inside a lineax operator); index arrays are not.
"""

import abc
import hashlib
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array, Inexact, Int, Real

from ._checks import SUPPORTED_DTYPES
from ._generators import AbstractGenerator

# Slots of a sliced-ELLPACK group up to this width are summed by an unrolled sequence of
# fused gathers; a wider group (a few dense rows) is reduced along an axis instead, which
# keeps the compiled program small.
UNROLLED_WIDTH = 32
# A single group is used when padding all rows to the widest costs at most this fraction
# of extra slots (a grid Laplacian: boundary rows have fewer entries).
SINGLE_GROUP_PADDING = 0.15
# The planner charges each extra group this many slots (per nonzero), plus this constant:
# a group costs a separate pass and the regrouping a gather.
GROUP_COST_PER_NONZERO = 0.03
GROUP_COST = 1024
MAX_GROUPS = 8


class AbstractOperator(eqx.Module):
    """A linear operator `A` on vectors of length `n`, applied to states `(n,)` or
    `(n, k)` (columns). `A @ y` is `A.mv(y)`, so an operator can stand where a dense
    matrix would in `odeexpm.LinearTerm`.
    """

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int]:
        """`(n, n)`."""

    @property
    @abc.abstractmethod
    def dtype(self) -> jnp.dtype:
        """The dtype of the operator's values (of `A @ y` for a real `y`)."""

    @abc.abstractmethod
    def mv(self, y: Inexact[Array, "n *k"]) -> Inexact[Array, "n *k"]:
        """`A @ y` for `y` of shape `(n,)` or `(n, k)`."""

    @abc.abstractmethod
    def disk(self) -> tuple[Inexact[Array, ""], Real[Array, ""]]:
        """`(center, radius)`: the spectrum of `A` lies in `|z - center| <= radius`
        (a bound for explicit matrices, an estimate for matrix-free ones)."""

    def prepare(
        self,
    ) -> tuple["AbstractOperator", Int[Array, " n"] | None, Int[Array, " n"] | None]:
        """`(P A P^T, permutation, inverse)`: the operator in the form and row order in
        which it applies fastest, computed once per solve, with the renumbering
        (`x[permutation]` is `P x`, `y[inverse]` is `P^T y`; `None` for none). A solve
        runs in that order and renumbers only its input and output. Default: `self`."""
        return self, None, None

    def __matmul__(self, y):
        return self.mv(y)


def gershgorin_disk(
    diagonal: Array, row_radii: Array, column_radii: Array
) -> tuple[Array, Array]:
    """A disk holding the spectrum, from the Gershgorin disks `|z - a_ii| <= r_i` of the
    rows and those of the columns (each family holds the spectrum; the smaller
    enclosing disk is returned).

    The center is the midpoint of the union's extent along the real axis (and, for
    complex matrices, the imaginary axis). For a Markov generator with columns summing
    to zero (`a_jj = -q_j`, column radii `q_j`) it is `-max q_j`, so that `A - center I`
    has non-negative entries (uniformization); for a grid Laplacian it is the middle of
    its spectrum.
    """

    def enclosing(radii):
        def midpoint(part):
            return 0.5 * (jnp.min(part(diagonal) - radii) + jnp.max(part(diagonal) + radii))

        center = midpoint(jnp.real)
        if jnp.iscomplexobj(diagonal):
            center = center + 1j * midpoint(jnp.imag)
        return center, jnp.max(jnp.abs(diagonal - center) + radii)

    row_center, row_radius = enclosing(row_radii)
    column_center, column_radius = enclosing(column_radii)
    rows_smaller = row_radius <= column_radius
    center = jnp.where(rows_smaller, row_center, column_center)
    radius = jnp.where(rows_smaller, row_radius, column_radius)
    return center.astype(diagonal.dtype), radius


class DenseOperator(AbstractOperator):
    """A dense `(n, n)` matrix."""

    matrix: Inexact[Array, "n n"]

    @property
    def shape(self):
        return self.matrix.shape

    @property
    def dtype(self):
        return self.matrix.dtype

    def mv(self, y):
        return self.matrix @ y

    def disk(self):
        diagonal = jnp.diagonal(self.matrix)
        magnitude = jnp.abs(self.matrix)
        return gershgorin_disk(
            diagonal,
            jnp.sum(magnitude, axis=1) - jnp.abs(diagonal),
            jnp.sum(magnitude, axis=0) - jnp.abs(diagonal),
        )


class EllGroup(eqx.Module):
    """Rows `rows` of a sparse matrix padded to a common width `w`: entry `j` of row
    `rows[i]` is `values[j, i]` in column `columns[j, i]` (padding: value 0, column of
    the row itself)."""

    values: Inexact[Array, "w m"]
    columns: Int[Array, "w m"]
    rows: Int[Array, " m"]

    def mv(self, y):
        width = self.values.shape[0]
        expand = (lambda v: v) if y.ndim == 1 else (lambda v: v[:, None])
        if width <= UNROLLED_WIDTH:
            # One fused loop of `width` gathers; no intermediate `(w, m)` array.
            return sum(expand(self.values[j]) * y[self.columns[j]] for j in range(width))
        gathered = y[self.columns.T]  # (m, w) or (m, w, k)
        values = self.values.T if y.ndim == 1 else self.values.T[..., None]
        return jnp.sum(values * gathered, axis=1)

    def gershgorin_parts(self):
        """The group's diagonal entries, off-diagonal absolute row sums, and its
        off-diagonal absolute values with their columns (for column sums)."""
        on_diagonal = self.columns == self.rows[None, :]
        diagonal = jnp.where(on_diagonal, self.values, 0)
        off_diagonal = jnp.where(on_diagonal, 0, jnp.abs(self.values))
        if self.values.shape[0] <= UNROLLED_WIDTH:
            # Unrolled, as in `mv`: the compiler's reductions over a short leading axis
            # are many times slower than a fused elementwise sum.
            sums = sum(diagonal), sum(off_diagonal)
        else:
            sums = jnp.sum(diagonal, axis=0), jnp.sum(off_diagonal, axis=0)
        return sums + (off_diagonal.reshape(-1), self.columns.reshape(-1))


class SparseLayout(eqx.Module):
    """Where the `nnz` stored entries of a sparse matrix go in sliced ELLPACK form.

    The rows are renumbered in *group order* (the groups one after another):
    `permutation[i]` is the original row at position `i`, `inverse` the reverse map
    (both `None` when group order is row order). `slots[g]` gives, for each slot of
    group `g`, the index of its entry in the data (`nnz` for padding); `columns[g]` its
    column and `rows[g]` its row, both in group order. `column_slots[j, c]` is the
    data index of the `j`-th off-diagonal entry of column `c` (group order; `None` when
    the columns are too irregular). Computed once on the host from concrete indices by
    `plan_layout`.
    """

    slots: tuple[Int[Array, "w m"], ...]
    columns: tuple[Int[Array, "w m"], ...]
    rows: tuple[Int[Array, " m"], ...]
    column_slots: Int[Array, "wc n"] | None
    permutation: Int[Array, " n"] | None
    inverse: Int[Array, " n"] | None
    n: int = eqx.field(static=True)


class EllOperator(AbstractOperator):
    """A sparse matrix as sliced ELLPACK groups, in group order: the rows of group `g`
    are numbered after those of groups `< g` (see `SparseLayout`). What
    `SparseOperator.prepare` returns; products are one fused loop per group.

    `off_diagonal_by_column[j, c]` is the `j`-th off-diagonal entry of column `c`
    (padded with zeros), for the column sums of the Gershgorin disk without a scatter;
    `None` when the columns are too irregular to pad (then a `segment_sum` is used).
    """

    groups: tuple[EllGroup, ...]
    off_diagonal_by_column: Inexact[Array, "wc n"] | None
    n: int = eqx.field(static=True)

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return self.groups[0].values.dtype

    def mv(self, y):
        parts = [group.mv(y) for group in self.groups]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def disk(self):
        parts = [group.gershgorin_parts() for group in self.groups]
        diagonal, row_radii = (jnp.concatenate([p[i] for p in parts]) for i in range(2))
        if self.off_diagonal_by_column is not None:
            column_radii = sum(jnp.abs(row) for row in self.off_diagonal_by_column)
        else:
            off_values, off_columns = (jnp.concatenate([p[i] for p in parts]) for i in (2, 3))
            column_radii = jax.ops.segment_sum(off_values, off_columns, num_segments=self.n)
        return gershgorin_disk(diagonal, row_radii, column_radii)


class SparseOperator(AbstractOperator):
    """A sparse matrix: its stored values `data` and their `SparseLayout`.

    `prepare` gathers the values into sliced ELLPACK form (an `EllOperator`, rows in
    group order) once per solve, inside the compiled function; the values are gathered
    from `data`, so gradients reach it. Build one with `SparseOperator.from_bcoo(A)`
    (the indices must be concrete: outside `jax.jit`, or closed over) or let
    `odeexpm.expm_multiply` do so.

    Example:
        >>> import jax.numpy as jnp
        >>> from jax.experimental import sparse
        >>> from odeexpm._operators import SparseOperator
        >>> A = sparse.BCOO.fromdense(jnp.array([[-1.0, 2.0], [0.0, -3.0]]))
        >>> SparseOperator.from_bcoo(A).mv(jnp.array([1.0, 1.0])).tolist()
        [1.0, -3.0]
    """

    data: Inexact[Array, " nnz"]
    layout: SparseLayout

    @classmethod
    def from_bcoo(cls, A: jsparse.BCOO) -> "SparseOperator":
        return cls(A.data, plan_layout(A.indices, A.shape[0]))

    @property
    def shape(self):
        return (self.layout.n, self.layout.n)

    @property
    def dtype(self):
        return self.data.dtype

    def prepare(self):
        # Padding slots point one past the data, at an appended zero.
        padded = jnp.concatenate([self.data, jnp.zeros((1,), self.data.dtype)])
        layout = self.layout
        groups = tuple(
            EllGroup(padded[slots], columns, rows)
            for slots, columns, rows in zip(layout.slots, layout.columns, layout.rows)
        )
        by_column = None if layout.column_slots is None else padded[layout.column_slots]
        return EllOperator(groups, by_column, layout.n), layout.permutation, layout.inverse

    def mv(self, y):
        operator, permutation, inverse = self.prepare()
        if permutation is None:
            return operator.mv(y)
        return operator.mv(y[permutation])[inverse]

    def disk(self):
        return self.prepare()[0].disk()


class CooOperator(AbstractOperator):
    """A sparse matrix as coordinate lists, for BCOO matrices with traced indices (no
    layout can be planned inside `jax.jit`): products by gather and `segment_sum`."""

    data: Inexact[Array, " nnz"]
    rows: Int[Array, " nnz"]
    columns: Int[Array, " nnz"]
    n: int = eqx.field(static=True)

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return self.data.dtype

    def mv(self, y):
        data = self.data if y.ndim == 1 else self.data[:, None]
        return jax.ops.segment_sum(data * y[self.columns], self.rows, num_segments=self.n)

    def disk(self):
        on_diagonal = self.rows == self.columns
        diagonal = jax.ops.segment_sum(jnp.where(on_diagonal, self.data, 0), self.rows, self.n)
        off_diagonal = jnp.where(on_diagonal, 0, jnp.abs(self.data))
        return gershgorin_disk(
            diagonal,
            jax.ops.segment_sum(off_diagonal, self.rows, self.n),
            jax.ops.segment_sum(off_diagonal, self.columns, self.n),
        )


class LineaxOperator(AbstractOperator):
    """A matrix-free `lineax.AbstractLinearOperator` on vectors `(n,)`; states `(n, k)`
    are applied column by column (`jax.vmap`). The arrays inside the operator (for a
    `lineax.FunctionLinearOperator`, those its function closes over) are differentiable.
    """

    operator: lx.AbstractLinearOperator

    @property
    def shape(self):
        return (self.operator.out_size(), self.operator.in_size())

    @property
    def dtype(self):
        return self.operator.out_structure().dtype

    def mv(self, y):
        if y.ndim == 1:
            return self.operator.mv(y)
        return jax.vmap(self.operator.mv, in_axes=1, out_axes=1)(y)

    def disk(self):
        n = self.shape[0]
        # A fixed random sign vector: z^T A z / n is an unbiased trace estimate.
        z = jax.random.rademacher(jax.random.key(0), (n,), dtype=jnp.finfo(self.dtype).dtype)
        z = z.astype(self.dtype)
        Az = self.mv(z)
        center = jnp.vdot(z, Az) / n
        shifted = Az - center * z
        norm = lambda v: jnp.linalg.norm(v)
        # Two steps of the power iteration for ||A - center I||: a lower estimate.
        first = norm(shifted) / norm(z)
        second = norm(self.mv(shifted) - center * shifted) / jnp.where(first > 0, norm(shifted), 1)
        radius = jnp.maximum(first, second)
        return center.astype(self.dtype), radius


class ModulatedOperator(AbstractOperator):
    """`A0 + sum_k c_k A_k` for operators `A_k` and scalars `c_k`, applied term by term
    (what an operator-valued `odeexpm.Modulated` returns at a time `t`)."""

    drift: AbstractOperator
    operators: tuple[AbstractOperator, ...]
    controls: Inexact[Array, " K"]

    @property
    def shape(self):
        return self.drift.shape

    @property
    def dtype(self):
        return jnp.result_type(
            self.drift.dtype, self.controls.dtype, *(op.dtype for op in self.operators)
        )

    def mv(self, y):
        out = self.drift.mv(y)
        for control, operator in zip(self.controls, self.operators):
            out = out + control * operator.mv(y)
        return out

    def disk(self):
        # Only the Taylor action step of a constant generator asks for a disk.
        raise NotImplementedError("A time-dependent operator has no fixed spectral disk.")


def apply(A, y):
    """`A @ y` for whatever a generator returns: an array, a `BCOO`/`BCSR` matrix, an
    `AbstractOperator` or a `lineax.AbstractLinearOperator` (on vectors; a block `y` is
    applied column by column)."""
    if isinstance(A, AbstractOperator):
        return A.mv(y)
    if isinstance(A, lx.AbstractLinearOperator):
        return LineaxOperator(A).mv(y)
    return A @ y


def is_operator(A) -> bool:
    """Whether `A` is something other than a dense array (products only)."""
    return isinstance(A, (AbstractOperator, lx.AbstractLinearOperator, jsparse.JAXSparse))


class OperatorGenerator(AbstractGenerator):
    """The constant generator `A(t) = operator` of `dy/ds = A y`, for an
    `AbstractOperator` (no dense matrix is formed). Calling it returns the operator,
    which supports `operator @ y`.

    `center` is the shift the Taylor action step uses (see `AbstractOperator.disk`),
    computed once per solve rather than once per step.
    """

    operator: AbstractOperator
    center: Inexact[Array, ""]

    def __call__(self, t=None, args=None) -> AbstractOperator:
        return self.operator


# ---------------------------------------------------------------------------------------
# Turning user input into operators.


def _is_concrete(x) -> bool:
    try:
        np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    return True


# Layouts of recently planned sparsity patterns. A pattern is recognised by the identity
# of its (immutable) index array, held by a weak reference, or else by a digest of its
# contents: a BCOO built afresh in every call (`BCOO((data, indices), ...)` copies
# `indices`) still reuses its plan, at the cost of hashing the indices.
_LAYOUTS_BY_IDENTITY: dict[int, tuple[weakref.ref, int, SparseLayout]] = {}
_LAYOUTS_BY_CONTENT: dict[tuple, SparseLayout] = {}
_LAYOUT_CACHE_SIZE = 16


def _remember(cache: dict, key, value) -> None:
    if len(cache) >= _LAYOUT_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


def cached_layout(indices, n: int) -> SparseLayout:
    """`plan_layout(indices, n)`, planned once per sparsity pattern."""
    hit = _LAYOUTS_BY_IDENTITY.get(id(indices))
    if hit is not None and hit[0]() is indices and hit[1] == n:
        return hit[2]
    host = np.ascontiguousarray(np.asarray(indices))
    digest = hashlib.blake2b(memoryview(host).cast("B"), digest_size=16).digest()
    key = (n, host.shape, host.dtype.str, digest)
    layout = _LAYOUTS_BY_CONTENT.get(key)
    if layout is None:
        layout = plan_layout(host, n)
        _remember(_LAYOUTS_BY_CONTENT, key, layout)
    try:
        _remember(_LAYOUTS_BY_IDENTITY, id(indices), (weakref.ref(indices), n, layout))
    except TypeError:  # not weak-referenceable: recognised by content only
        pass
    return layout


def _plan_groups(counts_sorted: np.ndarray, nnz: int) -> list[tuple[int, int]]:
    """Splits rows sorted by entry count into groups `[(start, stop), ...]` that
    minimise the padded slots plus a cost per group (dynamic programming over the
    distinct counts)."""
    n = counts_sorted.shape[0]
    if n == 0 or counts_sorted[-1] * n <= (1 + SINGLE_GROUP_PADDING) * max(nnz, 1):
        return [(0, n)]
    # Candidate boundaries: the last row of each distinct count.
    ends = np.flatnonzero(np.diff(counts_sorted)) + 1
    ends = np.append(ends, n)
    group_cost = GROUP_COST + GROUP_COST_PER_NONZERO * nnz
    # best[g][e]: cost of covering rows [0, ends[e]) with g + 1 groups.
    num = ends.shape[0]
    best = np.full((MAX_GROUPS, num), np.inf)
    choice = np.zeros((MAX_GROUPS, num), dtype=np.int64)
    width = counts_sorted[ends - 1].astype(np.float64)
    for e in range(num):
        best[0, e] = width[e] * ends[e]
    for g in range(1, MAX_GROUPS):
        for e in range(num):
            # Last group covers rows [ends[s], ends[e]) for some s < e.
            s = np.arange(e)
            if s.size == 0:
                continue
            cost = best[g - 1, s] + width[e] * (ends[e] - ends[s])
            i = int(np.argmin(cost))
            best[g, e], choice[g, e] = cost[i], s[i]
    totals = best[:, -1] + group_cost * np.arange(MAX_GROUPS)
    g = int(np.argmin(totals))
    bounds, e = [], num - 1
    while g > 0:
        s = choice[g, e]
        bounds.append((int(ends[s]), int(ends[e])))
        e, g = s, g - 1
    bounds.append((0, int(ends[e])))
    return bounds[::-1]


def plan_layout(indices, n: int) -> SparseLayout:
    """The sliced ELLPACK layout of a BCOO matrix's `(nnz, 2)` indices (host-side
    NumPy, O(nnz log nnz); O(nnz) when sorted by row)."""
    indices = np.asarray(indices)
    rows, columns = indices[:, 0].astype(np.int64), indices[:, 1].astype(np.int64)
    nnz = rows.shape[0]
    if nnz and np.any(rows[1:] < rows[:-1]):
        by_row = np.argsort(rows, kind="stable")
        rows, columns = rows[by_row], columns[by_row]
    else:
        by_row = np.arange(nnz)
    counts = np.bincount(rows, minlength=n)
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Slot of each (row-sorted) entry within its row.
    slot = np.arange(nnz) - row_start[rows]
    order = np.argsort(counts, kind="stable")
    groups = _plan_groups(counts[order], nnz)
    if len(groups) == 1:
        order = np.arange(n)  # one group: rows stay in place
    position = np.empty(n, dtype=np.int64)  # original row -> position in group order
    position[order] = np.arange(n)
    entry_position = position[rows]
    entry_column = position[columns].astype(np.int32)
    slots, cols, group_rows = [], [], []
    for start, stop in groups:
        width = max(int(counts[order[start:stop]].max()) if stop > start else 0, 1)
        members = np.arange(start, stop, dtype=np.int32)
        group_slots = np.full((width, stop - start), nnz, dtype=np.int32)
        group_columns = np.broadcast_to(members, (width, stop - start)).copy()
        # Entries of the group's rows, which are contiguous in group order.
        mask = (entry_position >= start) & (entry_position < stop)
        where = (slot[mask], entry_position[mask] - start)
        group_slots[where] = by_row[mask]
        group_columns[where] = entry_column[mask]
        slots.append(group_slots)
        cols.append(group_columns)
        group_rows.append(members)
    identity = len(groups) == 1
    # `device_put`, not `jnp.asarray`: the latter compiles a conversion per new shape.
    put = jax.device_put
    column_slots = _column_slots(entry_position, entry_column, by_row, n)
    return SparseLayout(
        tuple(put(s) for s in slots),
        tuple(put(c) for c in cols),
        tuple(put(r) for r in group_rows),
        None if column_slots is None else put(column_slots),
        None if identity else put(order.astype(np.int32)),
        None if identity else put(position.astype(np.int32)),
        n,
    )


def _column_slots(entry_row, entry_column, data_index, n: int) -> np.ndarray | None:
    """`(w, n)` data indices of the off-diagonal entries of each column (padding:
    `nnz`), or `None` if padding the columns to a common width would be wasteful."""
    nnz = data_index.shape[0]
    off = entry_row != entry_column
    columns, indices = entry_column[off], data_index[off]
    counts = np.bincount(columns, minlength=n)
    width = int(counts.max()) if counts.size and columns.size else 0
    if width == 0 or width > UNROLLED_WIDTH or width * n > 2 * columns.size + n:
        return None
    by_column = np.argsort(columns, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(columns.size) - start[columns[by_column]]
    column_slots = np.full((width, n), nnz, dtype=np.int32)
    column_slots[slot, columns[by_column]] = indices[by_column]
    return column_slots


def _check_dtype(dtype, caller: str) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
        if jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
            return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
        raise TypeError(f"{caller}: `A` has unsupported dtype {dtype}.")
    if dtype not in [jnp.dtype(d) for d in SUPPORTED_DTYPES]:
        raise TypeError(
            f"{caller}: `A` has dtype {dtype}; supported are float32, float64, complex64 "
            "and complex128."
        )
    return dtype


def _check_square(shape, caller: str, kind: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"{caller}: `A` ({kind}) must be a square (n, n) operator; got shape "
            f"{tuple(shape)}. (For a batch of matrices use jax.vmap.)"
        )
    return shape[0]


def as_operator(A, caller: str) -> AbstractOperator:
    """`A` (a dense array or array-like, a `BCOO`/`BCSR` matrix, a
    `lineax.AbstractLinearOperator` or an `AbstractOperator`) as an `AbstractOperator`,
    with its shape and dtype checked. Sparse matrices with concrete indices become a
    `SparseOperator` (layout planned on the host, cached per index array); with traced
    indices a `CooOperator`."""
    if isinstance(A, AbstractOperator):
        _check_square(A.shape, caller, type(A).__name__)
        _check_dtype(A.dtype, caller)
        return A
    if isinstance(A, jsparse.BCSR):
        A = A.to_bcoo()
    if isinstance(A, jsparse.BCOO):
        if A.n_batch or A.n_dense:
            raise ValueError(
                f"{caller}: a BCOO `A` must have no batch or dense dimensions; got "
                f"n_batch={A.n_batch}, n_dense={A.n_dense}."
            )
        n = _check_square(A.shape, caller, "BCOO")
        data = A.data.astype(_check_dtype(A.data.dtype, caller))
        if _is_concrete(A.indices):
            return SparseOperator(data, cached_layout(A.indices, n))
        return CooOperator(data, A.indices[:, 0], A.indices[:, 1], n)
    if isinstance(A, lx.MatrixLinearOperator):
        A = A.matrix
    if isinstance(A, lx.AbstractLinearOperator):
        structure = A.in_structure()
        if not isinstance(structure, jax.ShapeDtypeStruct) or len(structure.shape) != 1:
            raise ValueError(
                f"{caller}: a lineax `A` must act on vectors of shape (n,); its input "
                f"structure is {structure}."
            )
        _check_square((A.out_size(), A.in_size()), caller, "lineax operator")
        _check_dtype(A.out_structure().dtype, caller)
        return LineaxOperator(A)
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        A = np.asarray(A)
    _check_square(A.shape, caller, "dense array")
    return DenseOperator(jnp.asarray(A, _check_dtype(A.dtype, caller)))
