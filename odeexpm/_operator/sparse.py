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
    values: Inexact[Array, "w m"],
    columns: Int[Array, "w m"] | UInt[Array, "w m"],
    y: Inexact[Array, " n *k"],
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
# Where at most `ceil(n / OVERFLOW_SHARE)` rows are longer than half the widest bucket
# (and that saves slots), their second halves go to an overflow table of that many
# rows: rows of uneven lengths (a Markov chain's, 1 to 23 entries about a mean of 9)
# are then padded to about the typical length, not the longest.
OVERFLOW_SHARE = 8


def table_widths(nnz: int, n: int) -> tuple[int, ...]:
    """The `BUCKET_WIDTHS` a `BucketedEllOperator` of `n` rows and `nnz` entries compiles:
    up to the first at or above `TABLE_SLACK` times the mean row length."""
    mean = -(-nnz // max(n, 1))
    last = next((w for w in BUCKET_WIDTHS if w >= TABLE_SLACK * mean), BUCKET_WIDTHS[-1])
    return tuple(w for w in BUCKET_WIDTHS if w <= last)


def split_width(widths: tuple[int, ...]) -> int:
    """The main table's width where a `BucketedEllOperator` with `table_widths` `widths`
    spills rows into its overflow table (0 for never): the widest up to half the widest.
    The overflow holds the other `widths[-1] - split_width(widths)` slots of a row."""
    return max((w for w in widths if 2 * w <= widths[-1]), default=0)


def overflow_size(n: int) -> int:
    """The number of rows of a `BucketedEllOperator`'s overflow table."""
    return -(-n // OVERFLOW_SHARE)


class BucketedEllOperator(AbstractOperator):
    """The fast form of a `CooOperator` (whose indices are traced): ELLPACK laid out on
    the device, once per solve, for entries sorted by row (as `BCOO.fromdense` and
    `BCOO.from_scipy_sparse` make them), with no sorting of the rows.

    The rows are padded to the smallest of `table_widths` that holds the longest, or,
    where that takes more slots, to `split_width` with the rest of the at most
    `overflow_size(n)` longer rows in an overflow table, whose products are added into
    those rows. The layout is known only when the solve runs, so a product is a
    `lax.switch` over one compiled branch per width and one for the split, each a few
    fused gathers with no scatter. Entries out of row order (sorting them on the device
    costs more than a solve) and rows longer than `table_widths`' widest (`TABLE_SLACK`
    times the mean row length) keep `segment_sum` products (the branch after the widths).
    Products are differentiated through the coordinate lists `coo`, not the tables
    (`product_by_entries`).
    """

    values: Inexact[Array, "w n"]
    columns: UInt[Array, "w n"]
    # The product's branch: a width of `table_widths`, then `segment_sum`, then the split.
    bucket: Int[Array, ""]
    overflow_values: Inexact[Array, "v r"]
    overflow_columns: UInt[Array, "v r"]
    # Each row's row in the overflow table, or `r` (an appended zero) for none.
    overflow_slots: Int[Array, " n"]
    coo: CooOperator

    @classmethod
    def from_coo(cls, coo: CooOperator) -> "BucketedEllOperator":
        n, rows, nnz = coo.n, coo.rows, coo.rows.shape[0]
        widths = table_widths(nnz, n)
        split, size = split_width(widths), overflow_size(n)
        spare = widths[-1] - split
        counts = jnp.bincount(rows, length=n).astype(rows.dtype)
        first = jnp.cumsum(counts) - counts  # (for entries sorted by row)
        sorted_rows = jnp.all(rows[1:] >= rows[:-1])
        longest = jnp.max(counts, initial=0)
        bucket = jnp.searchsorted(jnp.asarray(widths), longest, side="left")
        tabled = sorted_rows & (bucket < len(widths))
        padded_width = jnp.asarray(widths)[jnp.minimum(bucket, len(widths) - 1)]
        longer = counts > split
        # The split where its overflow fits and it has fewer slots than the padding to
        # the longest row (Python ints on the left: `n` times a width can pass the range
        # of the indices' dtype).
        spills = (
            tabled
            & (split > 0)
            & (longest > split)
            & (jnp.sum(longer) <= size)
            & (split * n + spare * size < padded_width * float(n))
        )
        width = jnp.where(spills, split, padded_width)
        bucket = jnp.where(spills, len(widths) + 1, jnp.where(tabled, bucket, len(widths)))

        def gathered(data, columns, row_ids, first, held, slot_count, table_width):
            # Slot j of row `row_ids[i]` holds entry first[i] + j for j < held[i];
            # padding: index nnz, an appended value 0 in the row's own column (row `n`:
            # column 0). Gathers only, no scatter. Only `slot_count` slots are gathered;
            # the rest of the table is padding, never read.
            slot = jnp.arange(slot_count, dtype=rows.dtype)[:, None]
            index = jnp.where(slot < held[None, :], first[None, :] + slot, nnz)
            data = jnp.concatenate([data, jnp.zeros((1,), data.dtype)])
            columns = jnp.concatenate([columns, jnp.zeros((1,), rows.dtype)])
            own = jnp.broadcast_to(jnp.where(row_ids < n, row_ids, 0), (table_width, row_ids.size))
            values = jnp.zeros((table_width, row_ids.size), data.dtype)
            values = values.at[:slot_count].set(data[index])
            padded = jnp.where(slot < held[None, :], columns[index], own[:slot_count])
            # Unsigned: indexing by signed integers wraps negative ones, a select per
            # slot in every product.
            return values, own.at[:slot_count].set(padded).astype(jnp.uint32)

        def main_table(slot_count, operands):
            data, columns, first, counts, longer = operands
            held = jnp.minimum(counts, slot_count)
            row_ids = jnp.arange(n, dtype=rows.dtype)
            return gathered(data, columns, row_ids, first, held, slot_count, widths[-1])

        def overflow_table(operands):
            data, columns, first, counts, longer = operands
            # The rows longer than `split`, in order (`n` past the last): found by
            # bisection, not `jnp.nonzero`, whose scatter compiles slowly (+0.8 s).
            spilled = jnp.cumsum(longer, dtype=rows.dtype)
            wanted = jnp.arange(1, size + 1, dtype=rows.dtype)
            row_ids = jnp.searchsorted(spilled, wanted, method="scan").astype(rows.dtype)
            inside = row_ids < n
            safe = jnp.where(inside, row_ids, 0)
            held = jnp.where(inside, counts[safe] - split, 0)
            tables = gathered(data, columns, row_ids, first[safe] + split, held, spare, spare)
            return tables + (jnp.where(longer, spilled - 1, size),)

        def no_overflow(operands):
            zeros = jnp.zeros((spare, size), operands[0].dtype)
            return zeros, jnp.zeros((spare, size), jnp.uint32), jnp.full((n,), size, rows.dtype)

        def tables(operands):
            main = [functools.partial(main_table, w) for w in widths]
            index = jnp.searchsorted(jnp.asarray(widths), width, side="left")
            return (
                jax.lax.switch(index, main, operands),
                jax.lax.cond(spills, overflow_table, no_overflow, operands),
            )

        # Materialized: fused into each product instead, the gathers would run each time.
        # (Not differentiated: `mv` differentiates through `coo.data`.)
        data = jax.lax.stop_gradient(coo.data)
        (values, columns), overflow = computed_once(
            tables, (data, coo.columns, first, counts, longer)
        )
        return cls(values, columns, bucket, *overflow, coo)

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
        """`A @ y` from the tables (differentiated by `mv` through the entries)."""

        def ell(values, columns, width, y):  # (the first `width` slots of a table)
            return ell_product(values[:width], columns[:width], y)

        def split(y):
            # The main table's product materialized by a conditional that always takes
            # its first branch (fused with the gather of the overflow's into the rows,
            # it ran 1.3 times slower on a Markov chain). Gathered, not scattered: XLA's
            # CPU backend compiles a scatter slowly, and again wherever a solve applies
            # the matrix.
            main = jax.lax.cond(
                self.bucket == len(widths) + 1,  # (always, in this branch)
                lambda y: ell(self.values, self.columns, split_at, y),
                jnp.zeros_like,
                y,
            )
            extra = ell(self.overflow_values, self.overflow_columns, spare, y)
            extra = jnp.concatenate([extra, jnp.zeros((1, *extra.shape[1:]), extra.dtype)])
            return main + extra[self.overflow_slots]

        widths = table_widths(self.coo.data.shape[0], self.coo.n)
        split_at = split_width(widths)
        spare = widths[-1] - split_at
        branches = [functools.partial(ell, self.values, self.columns, w) for w in widths]
        branches.append(lambda y: self.coo.mv(y))  # (a bound method would be hashed)
        if split_at > 0:
            branches.append(split)
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
