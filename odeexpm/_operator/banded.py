"""`BandedOperator`: a sparse matrix stored by its few nonzero diagonals.

The operators of a truncated oscillator or a spin (`a`, `a^H a`, `sigma_-`, and sums of
them) have a handful of nonzero diagonals. Stored as diagonals, a product is a sum of
shifted copies of the state weighted by the diagonals: elementwise work that XLA fuses
into one pass, with no gather. `odeexpm.Lindblad` uses this form to apply the whole
master equation in one such pass (`Liouvillian`).
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from .base import AbstractOperator, gershgorin_disk
from .combination import OperatorCombination
from .sparse import SparseOperator

# Matrices with more nonzero diagonals than this keep their sparse (ELLPACK) form.
MAX_DIAGONALS = 16


class BandedOperator(AbstractOperator):
    """A matrix `A` stored by diagonals: `diagonals[k, i] = A[i, i + offsets[k]]` (zero
    where `i + offsets[k]` falls outside `[0, n)`). The values are differentiable."""

    diagonals: Inexact[Array, "d n"]
    offsets: tuple[int, ...] = eqx.field(static=True)

    @property
    def shape(self):
        n = self.diagonals.shape[1]
        return (n, n)

    @property
    def dtype(self):
        return self.diagonals.dtype

    def mv(self, y):
        n = self.shape[0]
        pad = max(abs(o) for o in self.offsets)
        padded = jnp.pad(y, [(pad, pad)] + [(0, 0)] * (y.ndim - 1))
        expand = (lambda v: v) if y.ndim == 1 else (lambda v: v[:, None])
        return sum(
            expand(d) * padded[pad + o : pad + o + n] for d, o in zip(self.diagonals, self.offsets)
        )

    def diagonal(self):
        if 0 not in self.offsets:
            return jnp.zeros(self.shape[0], self.dtype)
        return self.diagonals[self.offsets.index(0)]

    def disk(self):
        n = self.shape[0]
        magnitude = jnp.abs(self.diagonals)
        off = [k for k, o in enumerate(self.offsets) if o != 0]
        row_radii = sum((magnitude[k] for k in off), jnp.zeros(n, magnitude.dtype))
        # Column c holds A[c - o, c] = diagonals[k, c - o].
        column_radii = sum(
            (shift(magnitude[k], -self.offsets[k]) for k in off), jnp.zeros(n, magnitude.dtype)
        )
        return gershgorin_disk(self.diagonal(), row_radii, column_radii)

    def fast_form(self):
        return self, None


def shift(v: Inexact[Array, " n"], offset: int) -> Inexact[Array, " n"]:
    """`w[i] = v[i + offset]`, zero outside the range."""
    n = v.shape[0]
    zeros = jnp.zeros(min(abs(offset), n), v.dtype)
    if offset >= 0:
        return jnp.concatenate([v[offset:], zeros])
    return jnp.concatenate([zeros, v[: n + offset]])


def banded_form(operator) -> "BandedOperator | OperatorCombination | None":
    """`operator` by diagonals where it is a sparse matrix (a `SparseOperator`, or a
    combination of them) with at most `MAX_DIAGONALS` nonzero diagonals; else `None`."""
    if isinstance(operator, BandedOperator):
        return operator
    if isinstance(operator, OperatorCombination):
        parts = [banded_form(part) for part in (operator.drift, *operator.operators)]
        if any(part is None for part in parts):
            return None
        return OperatorCombination(parts[0], tuple(parts[1:]), operator.controls)
    if not isinstance(operator, SparseOperator):
        return None
    rows, columns, positions = _coordinates(operator)
    offsets = np.unique(columns - rows)
    if len(offsets) > MAX_DIAGONALS or len(offsets) == 0:
        return None
    which = np.searchsorted(offsets, columns - rows)
    n = operator.shape[0]
    diagonals = jnp.zeros((len(offsets), n), operator.dtype)
    diagonals = diagonals.at[which, rows].add(operator.data[positions])
    return BandedOperator(diagonals, tuple(int(o) for o in offsets))


def _coordinates(operator: SparseOperator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(rows, columns, positions)` of the stored entries of a `SparseOperator`, in the
    original numbering, with their positions in `data` (from its host-planned layout)."""
    layout = operator.layout
    nnz = operator.data.shape[0]
    permutation = None if layout.permutation is None else np.asarray(layout.permutation)
    rows, columns, positions = [], [], []
    for slots, group_columns, group_rows in zip(layout.slots, layout.columns, layout.rows):
        slots, group_columns = np.asarray(slots), np.asarray(group_columns)
        group_rows = np.broadcast_to(np.asarray(group_rows)[None, :], slots.shape)
        stored = slots < nnz
        rows.append(group_rows[stored])
        columns.append(group_columns[stored])
        positions.append(slots[stored])
    rows, columns = np.concatenate(rows), np.concatenate(columns)
    if permutation is not None:
        rows, columns = permutation[rows], permutation[columns]
    return rows, columns, np.concatenate(positions)


def combined(operator: "BandedOperator | OperatorCombination") -> BandedOperator:
    """A combination of banded operators as one (the union of their diagonals)."""
    if isinstance(operator, BandedOperator):
        return operator
    parts = (operator.drift, *operator.operators)
    weights = (1.0, *operator.controls)
    sums = {}
    for weight, part in zip(weights, parts):  # (a sum per offset: no scatter)
        for o, d in zip(part.offsets, part.diagonals):
            sums[o] = sums.get(o, 0) + weight * d
    offsets = tuple(sorted(sums))
    return BandedOperator(jnp.stack([sums[o] for o in offsets]), offsets)


def gram(operators: tuple[BandedOperator, ...]) -> BandedOperator:
    """`sum_k L_k^H L_k` of banded operators, by diagonals: with `l_a[r] = L[r, r + a]`,
    `(L^H L)[i, i + o] = sum_{b - a = o} conj(l_a[i - a]) l_b[i - a]`."""
    sums: dict[int, Inexact[Array, " n"]] = {}
    for L in operators:
        for a, la in zip(L.offsets, L.diagonals):
            for b, lb in zip(L.offsets, L.diagonals):
                term = shift(jnp.conj(la) * lb, -a)
                sums[b - a] = sums.get(b - a, 0) + term
    offsets = tuple(sorted(sums))
    return BandedOperator(jnp.stack([sums[o] for o in offsets]), offsets)
