"""The sliced ELLPACK layout of a sparse matrix, planned on the host from its indices.

Rows are grouped by their number of entries and each group padded to a common width,
so that a product is a few fused gathers with no scatter: JAX's fastest CPU sparse
product by a wide margin (`BCOO @ x` costs several times as much). `plan_layout` works
on concrete (NumPy) indices; `cached_layout` plans once per sparsity pattern.
"""

import hashlib
import weakref

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Int, UInt

# Slots of a group up to this width are summed by an unrolled sequence of fused
# gathers; a wider group (a few dense rows) is reduced along an axis instead, which
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


class SparseLayout(eqx.Module):
    """Where the `nnz` stored entries of a sparse matrix go in sliced ELLPACK form.

    The rows are renumbered in *group order* (the groups one after another):
    `permutation[i]` is the original row at position `i`, `inverse` the reverse map
    (both `None` when group order is row order). `slots[g]` gives, for each slot of
    group `g`, the index of its entry in the data (`nnz` for padding); `columns[g]` its
    column and `rows[g]` its row, both in group order. `column_slots[j, c]` is the
    data index of the `j`-th off-diagonal entry of column `c` (group order; `None` when
    the columns are too irregular). `entry_rows[e]` and `entry_columns[e]` are the row
    and column of data entry `e`, in group order (for derivatives, which are sums over
    the entries).
    """

    # One array per group, of its own width and number of rows (hence unchecked names).
    slots: tuple[Int[Array, "_w _m"], ...]
    columns: tuple[Int[Array, "_w _m"], ...]
    rows: tuple[Int[Array, " _m"], ...]
    column_slots: Int[Array, "wc n"] | None
    entry_rows: Int[Array, " nnz"]
    entry_columns: UInt[Array, " nnz"]
    permutation: Int[Array, " n"] | None
    inverse: Int[Array, " n"] | None
    n: int = eqx.field(static=True)


# Layouts of recently planned sparsity patterns. A pattern is recognised by the identity
# of its (immutable) index array, held by a weak reference, or else by a digest of its
# contents: a BCOO built afresh in every call (`BCOO((data, indices), ...)` copies
# `indices`) still reuses its plan, at the cost of hashing the indices. The layouts hold
# concrete device arrays only (made outside any trace), never tracers.
_LAYOUTS_BY_IDENTITY: dict[int, tuple[weakref.ref, int, SparseLayout]] = {}
_LAYOUTS_BY_CONTENT: dict[tuple, SparseLayout] = {}
_LAYOUT_CACHE_SIZE = 16


def _remember(cache: dict, key, value) -> None:
    if len(cache) >= _LAYOUT_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


def cached_layout(indices: Int[Array, "nnz 2"] | np.ndarray, n: int) -> SparseLayout:
    """`plan_layout(indices, n)`, planned once per sparsity pattern. `indices` must be
    concrete (not traced)."""
    hit = _LAYOUTS_BY_IDENTITY.get(id(indices))
    if hit is not None and hit[0]() is indices and hit[1] == n:
        return hit[2]
    host = np.ascontiguousarray(np.asarray(indices))
    raw = memoryview(host).cast("B") if host.size else b""
    digest = hashlib.blake2b(raw, digest_size=16).digest()
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


def plan_layout(indices: Int[Array, "nnz 2"] | np.ndarray, n: int) -> SparseLayout:
    """The sliced ELLPACK layout of a BCOO matrix's `(nnz, 2)` concrete indices
    (host-side NumPy, O(nnz log nnz); O(nnz) when sorted by row)."""
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
    column_slots = _column_slots(entry_position, entry_column, by_row, n)
    entry_rows = np.empty(nnz, np.int32)
    entry_rows[by_row] = entry_position
    # (Unsigned: indexing by signed integers wraps negative ones, a select per entry.)
    entry_columns = np.empty(nnz, np.uint32)
    entry_columns[by_row] = entry_column
    # Device arrays made outside any trace, even when called under one (a layout may be
    # cached and reused by later traces). `device_put`, not `jnp.asarray`: the latter
    # compiles a conversion per new shape.
    with jax.ensure_compile_time_eval():
        put = jax.device_put
        return SparseLayout(
            tuple(put(s) for s in slots),
            tuple(put(c) for c in cols),
            tuple(put(r) for r in group_rows),
            None if column_slots is None else put(column_slots),
            put(entry_rows),
            put(entry_columns),
            None if identity else put(order.astype(np.int32)),
            None if identity else put(position.astype(np.int32)),
            n,
        )


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
