"""Sparse matrices as operators.

- `SparseOperator`: the values of a BCOO/BCSR matrix whose indices are concrete, with
  their `SparseLayout` (planned on the host); its fast form is an `EllOperator`.
- `EllOperator`: the sliced ELLPACK form, products by a few fused gathers.
- `CooOperator`: a BCOO matrix whose indices are traced (built inside `jax.jit`), where
  no layout can be planned: products by gather and `segment_sum`.

The values are differentiable (gathered from `data`); the indices are not. Each has a
Gershgorin disk.
"""

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int, UInt

from .._materialize import computed_once
from .base import AbstractOperator, Renumbering, apply_in_row_order, gershgorin_disk
from .layout import UNROLLED_WIDTH, SparseLayout, cached_layout


def ell_product(
    values: Inexact[Array, "w m"], columns: Int[Array, "w m"], y: Inexact[Array, " n *k"]
) -> Inexact[Array, " m *k"]:
    """`sum_j values[j] * y[columns[j]]`: the product of `m` rows padded to width `w`."""
    width = values.shape[0]
    expand = (lambda v: v) if y.ndim == 1 else (lambda v: v[:, None])
    if width <= UNROLLED_WIDTH:
        # One fused loop of `width` gathers; no intermediate `(w, m)` array.
        return sum(expand(values[j]) * y[columns[j]] for j in range(width))
    gathered = y[columns.T]  # (m, w) or (m, w, k)
    return jnp.sum((values.T if y.ndim == 1 else values.T[..., None]) * gathered, axis=1)


class EllGroup(eqx.Module):
    """Rows `rows` of a sparse matrix padded to a common width `w`: entry `j` of row
    `rows[i]` is `values[j, i]` in column `columns[j, i]` (padding: value 0, column of
    the row itself)."""

    values: Inexact[Array, "w m"]
    columns: Int[Array, "w m"]
    rows: Int[Array, " m"]

    def mv(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " m *k"]:
        return ell_product(self.values, self.columns, y)

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


class EllOperator(AbstractOperator):
    """A sparse matrix as sliced ELLPACK groups, in group order: the rows of group `g`
    are numbered after those of groups `< g` (see `SparseLayout`). The fast form of a
    `SparseOperator`; products are one fused loop per group.

    `off_diagonal_by_column[j, c]` is the `j`-th off-diagonal entry of column `c`
    (padded with zeros), for the column sums of the Gershgorin disk without a scatter;
    `None` when the columns are too irregular to pad (then a `segment_sum` is used).
    Products are differentiated through the stored entries `data`, at `entry_rows` and
    `entry_columns` (group order), not the groups (`product_by_entries`).
    """

    groups: tuple[EllGroup, ...]
    off_diagonal_by_column: Inexact[Array, "wc n"] | None
    data: Inexact[Array, " nnz"]
    entry_rows: Int[Array, " nnz"]
    entry_columns: UInt[Array, " nnz"]
    n: int = eqx.field(static=True)

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dtype(self):
        return self.groups[0].values.dtype

    def mv(self, y):
        return product_by_entries(
            self.grouped_mv, self.data, self.entry_rows, self.entry_columns, y
        )

    def grouped_mv(self, y):
        """`A @ y` from the groups (differentiated by `mv` through the entries)."""
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

    def diagonal(self):
        parts = [group.gershgorin_parts()[0] for group in self.groups]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def fast_form(self):
        return self, None


class SparseOperator(AbstractOperator):
    """A sparse matrix: its stored values `data` and their `SparseLayout`.

    Its fast form gathers the values into sliced ELLPACK form (an `EllOperator`, rows in
    group order), inside the compiled function: the values are gathered from `data`, so
    gradients reach it. Build one with `SparseOperator.from_bcoo(A)` (the indices must
    be concrete: outside `jax.jit`, or closed over).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.experimental import sparse
        >>> from odeexpm._operator import SparseOperator
        >>> A = sparse.BCOO.fromdense(jnp.array([[-1.0, 2.0], [0.0, -3.0]]))
        >>> SparseOperator.from_bcoo(A).mv(jnp.array([1.0, 1.0])).tolist()
        [1.0, -3.0]
    """

    data: Inexact[Array, " nnz"]
    layout: SparseLayout

    @classmethod
    def from_bcoo(cls, A) -> "SparseOperator":
        return cls(A.data, cached_layout(A.indices, A.shape[0]))

    @property
    def shape(self):
        return (self.layout.n, self.layout.n)

    @property
    def dtype(self):
        return self.data.dtype

    def fast_form(self):
        # Padding slots point one past the data, at an appended zero.
        padded = jnp.concatenate([self.data, jnp.zeros((1,), self.data.dtype)])
        layout = self.layout
        groups = tuple(
            EllGroup(padded[slots], columns, rows)
            for slots, columns, rows in zip(layout.slots, layout.columns, layout.rows)
        )
        by_column = None if layout.column_slots is None else padded[layout.column_slots]
        renumbering = (
            None if layout.permutation is None else Renumbering(layout.permutation, layout.inverse)
        )
        operator = EllOperator(
            groups, by_column, self.data, layout.entry_rows, layout.entry_columns, layout.n
        )
        return operator, renumbering

    def mv(self, y):
        return apply_in_row_order(*self.fast_form(), y)

    def disk(self):
        return self.fast_form()[0].disk()

    def diagonal(self):
        operator, renumbering = self.fast_form()
        diagonal = operator.diagonal()
        return diagonal if renumbering is None else renumbering.backward(diagonal)


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
        terms = entry_terms(self.data, self.columns, y)
        return jax.ops.segment_sum(terms, self.rows, num_segments=self.n)

    def disk(self):
        on_diagonal = self.rows == self.columns
        diagonal = jax.ops.segment_sum(jnp.where(on_diagonal, self.data, 0), self.rows, self.n)
        off_diagonal = jnp.where(on_diagonal, 0, jnp.abs(self.data))
        return gershgorin_disk(
            diagonal,
            jax.ops.segment_sum(off_diagonal, self.rows, self.n),
            jax.ops.segment_sum(off_diagonal, self.columns, self.n),
        )

    def diagonal(self):
        on_diagonal = self.rows == self.columns
        return jax.ops.segment_sum(jnp.where(on_diagonal, self.data, 0), self.rows, self.n)

    def fast_form(self):
        return BucketedEllOperator.from_coo(self), None


# The widths a `BucketedEllOperator` can take, each a branch compiled in advance.
BUCKET_WIDTHS = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, UNROLLED_WIDTH)
# Its table holds rows up to this many times the mean row length (in the bucket above):
# laying out a table wide enough for any row costs more than a solve's products.
TABLE_SLACK = 2


def table_widths(nnz: int, n: int) -> tuple[int, ...]:
    """The `BUCKET_WIDTHS` a `BucketedEllOperator` of `n` rows and `nnz` entries compiles:
    up to the first at or above `TABLE_SLACK` times the mean row length."""
    mean = -(-nnz // max(n, 1))
    last = next((w for w in BUCKET_WIDTHS if w >= TABLE_SLACK * mean), BUCKET_WIDTHS[-1])
    return tuple(w for w in BUCKET_WIDTHS if w <= last)


class BucketedEllOperator(AbstractOperator):
    """The fast form of a `CooOperator` (whose indices are traced): ELLPACK laid out on
    the device, once per solve, for entries sorted by row (as `BCOO.fromdense` and
    `BCOO.from_scipy_sparse` make them). The rows are padded to the smallest of
    `table_widths` that holds the longest; the width is known only when the solve runs,
    so a product is a `lax.switch` over one compiled branch per width, a few fused gathers
    with no scatter. Entries out of row order (sorting them on the device costs more than
    a solve) and rows longer than the table (`TABLE_SLACK` times the mean row length)
    keep `segment_sum` products (the last branch). Products are differentiated through
    the coordinate lists `coo`, not the table (`product_by_entries`).
    """

    values: Inexact[Array, "w n"]
    columns: UInt[Array, "w n"]
    bucket: Int[Array, ""]
    coo: CooOperator

    @classmethod
    def from_coo(cls, coo: CooOperator) -> "BucketedEllOperator":
        n, rows, nnz = coo.n, coo.rows, coo.rows.shape[0]
        widths = table_widths(nnz, n)
        counts = jnp.bincount(rows, length=n).astype(rows.dtype)
        first = jnp.cumsum(counts) - counts  # (for entries sorted by row)
        sorted_rows = jnp.all(rows[1:] >= rows[:-1])
        longest = jnp.max(counts, initial=0)
        bucket = jnp.searchsorted(jnp.asarray(widths), longest, side="left")
        bucket = jnp.where(sorted_rows, bucket, len(widths))  # (past the table: segment_sum)

        def table(width, operands):
            # Slot j of row r holds entry first[r] + j; padding: index nnz, an appended
            # value 0 in the row's own column. Gathers only, no scatter. Only the `width`
            # slots that products read are gathered; the rest of the table is padding.
            data, first, counts, columns = operands
            slot = jnp.arange(width, dtype=rows.dtype)[:, None]
            held = slot < counts[None, :]
            index = jnp.where(held, first[None, :] + slot, nnz)
            data = jnp.concatenate([data, jnp.zeros((1,), data.dtype)])
            columns = jnp.concatenate([columns, jnp.zeros((1,), rows.dtype)])
            own = jnp.broadcast_to(jnp.arange(n, dtype=rows.dtype), (widths[-1], n))
            values = jnp.zeros((widths[-1], n), data.dtype).at[:width].set(data[index])
            columns = own.at[:width].set(jnp.where(held, columns[index], own[:width]))
            # Unsigned: indexing by signed integers wraps negative ones, a select per
            # slot in every product.
            return values, columns.astype(jnp.uint32)

        def tables(operands):
            branches = [functools.partial(table, width) for width in widths]
            return jax.lax.switch(jnp.minimum(bucket, len(widths) - 1), branches, operands)

        # Materialized: fused into each product instead, the gathers would run each time.
        # (Not differentiated: `mv` differentiates through `coo.data`.)
        data = jax.lax.stop_gradient(coo.data)
        values, columns = computed_once(tables, (data, first, counts, coo.columns))
        return cls(values, columns, bucket, coo)

    @property
    def shape(self):
        return self.coo.shape

    @property
    def dtype(self):
        return self.coo.dtype

    def mv(self, y):
        coo = self.coo
        return product_by_entries(self.tabled_mv, coo.data, coo.rows, coo.columns, y)

    def tabled_mv(self, y):
        """`A @ y` from the table (differentiated by `mv` through the entries)."""

        def ell(width, y):
            expand = (lambda v: v) if y.ndim == 1 else (lambda v: v[:, None])
            return sum(expand(self.values[j]) * y[self.columns[j]] for j in range(width))

        widths = table_widths(self.coo.data.shape[0], self.coo.n)
        branches = [functools.partial(ell, width) for width in widths]
        branches.append(lambda y: self.coo.mv(y))  # (a bound method would be hashed)
        return jax.lax.switch(self.bucket, branches, y)

    def disk(self):
        return self.coo.disk()

    def diagonal(self):
        return self.coo.diagonal()

    def fast_form(self):
        return self, None


@eqx.filter_custom_jvp
def product_by_entries(
    product: Callable[[Inexact[Array, " n *k"]], Inexact[Array, " n *k"]],
    data: Inexact[Array, " nnz"],
    rows: Int[Array, " nnz"],
    columns: Int[Array, " nnz"] | UInt[Array, " nnz"],
    y: Inexact[Array, " n *k"],
) -> Inexact[Array, " n *k"]:
    """`product(y)`: the product of `y` with the sparse matrix whose stored entries `data`
    lie at `(rows, columns)`, differentiated through those entries, not through the
    layout that `product` reads (which must hold `data` and no other differentiable
    value).

    The tangent `sum_e (data_e dy[c_e] + d data_e y[c_e])` into row `r_e` transposes into
    gathers and one scatter (into the cotangent of `y`). Through a layout, reverse mode
    would give every product a cotangent of the layout's size, mostly padding, to scatter
    back into the data (one scatter per group and slot); through a `lax.switch` over
    layouts, a copy of every branch's residuals too. (In forward mode the tangent is a
    `segment_sum`, slower than a layout's gathers.)"""
    return product(y)


@product_by_entries.def_jvp
def _product_by_entries_jvp(primals, tangents):
    (product, data, rows, columns, y), (_, d_data, _, _, d_y) = primals, tangents
    terms = []
    if d_y is not None:
        terms.append(entry_terms(data, columns, d_y))
    if d_data is not None:
        terms.append(entry_terms(d_data, columns, y))
    out = product_by_entries(product, data, rows, columns, y)
    if not terms:
        return out, None
    total = sum(terms[1:], terms[0])
    return out, jax.ops.segment_sum(total, rows, num_segments=y.shape[0])


def entry_terms(
    values: Inexact[Array, " nnz"],
    columns: Int[Array, " nnz"] | UInt[Array, " nnz"],
    y: Inexact[Array, " n *k"],
) -> Inexact[Array, " nnz *k"]:
    """`values[e] * y[columns[e]]` for each stored entry `e`: summed into the entries'
    rows, the product of `y` with the matrix."""
    return (values if y.ndim == 1 else values[:, None]) * y[columns]
