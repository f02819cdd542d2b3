"""`ShardedSparse`: a sparse matrix whose rows are partitioned across the devices of a
mesh, applied to a state sharded the same way without gathering it.

Device `d` of the mesh axis holds rows `[d b, (d + 1) b)` (`b = n / D`) of the matrix
and of the state. A product needs, besides the device's own part of the state, the
entries of other devices' parts that its rows refer to. These are planned on the host
once: for each distance `k` between devices (`d = s + k mod D`), device `s` sends device
`d` the entries `d` needs, padded to the longest such list, in one
`jax.lax.ppermute`. A banded matrix thus exchanges only a halo with its neighbours;
distances that no entry spans cost nothing. The rows on each device are then one
ELLPACK block over the device's own entries followed by those received.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Inexact, Int

from .._checks import EXPLICIT_AXES_ADVICE, checked_dtype
from .base import AbstractOperator
from .convert import concrete_value
from .sparse import CooOperator, ell_product

_CALLER = "odeexpm.ShardedSparse"


class RowPartition(eqx.Module):
    """The host-planned communication and layout of a `ShardedSparse` matrix (see the
    module's docstring). For device `d` (leading axis): `slots[d, j, r]` is the data
    index of the `j`-th entry of its local row `r` (`nnz` for padding), `columns[d, j,
    r]` that entry's position in the device's extended state (its own `b` entries, then
    those received, distance by distance); `sends[i][d]` the local positions device `d`
    sends at distance `distances[i]`. `rows` and `columns_global` are the entries'
    global coordinates (for the Gershgorin disk)."""

    slots: Int[Array, "D w b"]
    columns: Int[Array, "D w b"]
    sends: tuple[Int[Array, "D _m"], ...]
    rows: Int[Array, " nnz"]
    columns_global: Int[Array, " nnz"]
    distances: tuple[int, ...] = eqx.field(static=True)
    n: int = eqx.field(static=True)
    mesh: Mesh = eqx.field(static=True)
    axis: str = eqx.field(static=True)


def plan_partition(rows: np.ndarray, columns: np.ndarray, n: int, mesh: Mesh, axis: str):
    """The `RowPartition` of a matrix with entries at `(rows, columns)` (NumPy)."""
    rows, columns = rows.astype(np.int64), columns.astype(np.int64)  # (keys below: n^2 D^2)
    num_devices = mesh.shape[axis]
    block = n // num_devices
    nnz = rows.shape[0]
    row_owner, column_owner = rows // block, columns // block
    distance = (row_owner - column_owner) % num_devices
    # The remote columns each device needs, grouped by distance then device, each list
    # sorted and without repeats: its rank in its list is its place in the message.
    remote = distance != 0
    needed = np.unique(
        np.stack([distance[remote], row_owner[remote], columns[remote]]), axis=1
    )  # sorted by distance, then device, then column
    group = needed[0] * num_devices + needed[1]
    group_start = np.searchsorted(group, group)
    rank = np.arange(group.shape[0]) - group_start
    lengths = np.bincount(group, minlength=num_devices * num_devices).reshape(-1, num_devices)
    longest = lengths.max(axis=1)  # message length at each distance
    distances = [k for k in range(1, num_devices) if longest[k] > 0]
    offsets = np.zeros(num_devices, np.int64)
    if distances:
        offsets[distances] = block + np.cumsum([0] + [longest[k] for k in distances[:-1]])
    sends = []
    for k in distances:
        send = np.zeros((num_devices, longest[k]), np.int64)
        here = needed[0] == k
        sender = (needed[1][here] - k) % num_devices
        send[sender, rank[here]] = needed[2][here] - sender * block
        sends.append(send)
    # Each entry's position in its device's extended state.
    extended = columns - row_owner * block
    if remote.any():
        keys = (distance * num_devices + row_owner) * n + columns
        needed_keys = (needed[0] * num_devices + needed[1]) * n + needed[2]
        where = np.searchsorted(needed_keys, keys[remote])
        extended[remote] = offsets[distance[remote]] + rank[where]
    # ELLPACK: entry `j` of local row `r` (entries in their stored order within a row).
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n)
    first = np.cumsum(counts) - counts
    place = np.empty(nnz, np.int64)
    place[order] = np.arange(nnz) - first[rows[order]]
    width = max(int(counts.max(initial=0)), 1)
    local_row = rows - row_owner * block
    slots = np.full((num_devices, width, block), nnz, np.int64)
    slots[row_owner, place, local_row] = np.arange(nnz)
    own = np.broadcast_to(np.arange(block), (num_devices, width, block))
    extended_columns = own.copy()
    extended_columns[row_owner, place, local_row] = extended
    index = np.int32 if n + nnz < np.iinfo(np.int32).max else np.int64
    by_device = NamedSharding(mesh, PartitionSpec(axis))

    def as_index(x, sharding=None):
        # The per-device tables live on their devices; the entries' coordinates are whole.
        return jax.device_put(jnp.asarray(x, index), sharding)

    return RowPartition(
        as_index(slots, by_device),
        as_index(extended_columns, by_device),
        tuple(as_index(send, by_device) for send in sends),
        as_index(rows),
        as_index(columns),
        tuple(distances),
        n,
        mesh,
        axis,
    )


class ShardedSparse(AbstractOperator):
    """A sparse matrix with its rows partitioned across the devices of a mesh: for
    states too large for one device, sharded by rows.

    Device `d` of the mesh axis `axis` holds the `d`-th block of `n / D` rows, of the
    matrix and of the state. A product with a state sharded that way exchanges between
    devices only the entries of the state that the rows of the other devices refer to
    (a halo, for a banded matrix), planned on the host once, with one
    `jax.lax.ppermute` per distance between devices that some entry spans, inside
    `jax.shard_map`: the state is never gathered. Use it wherever odeexpm takes a
    generator: `odeexpm.expm_multiply`, `odeexpm.Constant`, the parts of
    `odeexpm.Modulated`; pass the state sharded with
    `jax.sharding.NamedSharding(mesh, PartitionSpec(axis))` (another layout is
    resharded on entry).

    The values (`BCOO.data`) are differentiable. They are held whole on every device,
    with the entries' coordinates (`2 nnz` integers, for the Gershgorin disk); the
    per-device tables of the plan, the values laid out for products (once per solve) and
    the state are partitioned.

    **Arguments:**

    - `matrix`: a `jax.experimental.sparse.BCOO` or `BCSR` matrix, `(n, n)`, with
      concrete indices (built outside `jax.jit`, or closed over); its values may be
      traced. `n` must be a multiple of the number of devices along `axis`.
    - `mesh`: a `jax.sharding.Mesh`.
    - `axis`: the name of the mesh axis to partition the rows over; may be omitted for
      a mesh with one axis.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jax.experimental import sparse
        >>> import odeexpm
        >>> from jax.sharding import AxisType, NamedSharding, PartitionSpec
        >>> mesh = jax.make_mesh((1,), ("rows",), axis_types=(AxisType.Auto,))  # or (4,)...
        >>> n = 64   # a 1-D Laplacian: neighbouring devices exchange one entry each way
        >>> L = sparse.BCOO.fromdense(jnp.diag(jnp.full(n - 1, 1.0), 1)
        ...     + jnp.diag(jnp.full(n - 1, 1.0), -1) - 2 * jnp.eye(n))
        >>> A = odeexpm.ShardedSparse(L, mesh)
        >>> y0 = jax.device_put(jnp.zeros(n).at[n // 2].set(1.0),
        ...                     NamedSharding(mesh, PartitionSpec("rows")))
        >>> y = odeexpm.expm_multiply(A, y0, 2.0)   # sharded like y0
        >>> bool(abs(y.sum() - 1.0) < 1e-5)
        True
    """

    data: Inexact[Array, " nnz"]
    partition: RowPartition

    def __init__(self, matrix, mesh, axis=None):
        if isinstance(matrix, jsparse.BCSR):
            matrix = matrix.to_bcoo()
        if not isinstance(matrix, jsparse.BCOO):
            raise TypeError(
                f"{_CALLER}: `matrix` must be a jax.experimental.sparse BCOO or BCSR "
                f"matrix; got {type(matrix).__name__}."
            )
        if matrix.n_batch or matrix.n_dense or matrix.ndim != 2:
            raise ValueError(
                f"{_CALLER}: `matrix` must be one (n, n) sparse matrix with no batch or "
                f"dense dimensions; got shape {matrix.shape}, n_batch={matrix.n_batch}, "
                f"n_dense={matrix.n_dense}."
            )
        n = matrix.shape[0]
        if matrix.shape[1] != n:
            raise ValueError(f"{_CALLER}: `matrix` must be square; got shape {matrix.shape}.")
        indices = concrete_value(matrix.indices)
        if indices is None:
            raise ValueError(
                f"{_CALLER}: the indices of `matrix` are traced (the matrix was passed to "
                "a jitted function), and the partition is planned on the host from them. "
                "Build the ShardedSparse outside jax.jit (its values may still be "
                "traced), or close over the matrix."
            )
        if not isinstance(mesh, Mesh):
            raise TypeError(f"{_CALLER}: `mesh` must be a jax.sharding.Mesh; got {mesh!r}.")
        if axis is None:
            if len(mesh.axis_names) != 1:
                raise ValueError(
                    f"{_CALLER}: the mesh has axes {mesh.axis_names}; name the one to "
                    "partition the rows over with `axis`."
                )
            (axis,) = mesh.axis_names
        if axis not in mesh.axis_names:
            raise ValueError(
                f"{_CALLER}: `axis` {axis!r} is not an axis of the mesh {mesh.axis_names}."
            )
        if mesh.axis_types[mesh.axis_names.index(axis)] == AxisType.Explicit:
            raise ValueError(
                f"{_CALLER}: the mesh axis {axis!r} has the explicit axis type "
                f"{EXPLICIT_AXES_ADVICE}"
            )
        if n % mesh.shape[axis]:
            raise ValueError(
                f"{_CALLER}: the size n = {n} of `matrix` must be a multiple of the "
                f"{mesh.shape[axis]} devices along the mesh axis {axis!r}."
            )
        indices = np.asarray(indices)
        self.data = matrix.data.astype(checked_dtype(matrix.data.dtype, "matrix", _CALLER))
        self.partition = plan_partition(indices[:, 0], indices[:, 1], n, mesh, axis)

    @property
    def shape(self):
        return (self.partition.n, self.partition.n)

    @property
    def dtype(self):
        return self.data.dtype

    def mv(self, y):
        return self.fast_form()[0].mv(y)

    def disk(self):
        return _disk(self.data, self.partition)

    def diagonal(self):
        return None  # (a row-sharded vector would need the partition; no solver asks)

    def fast_form(self):
        padded = jnp.concatenate([self.data, jnp.zeros((1,), self.data.dtype)])
        values = padded[self.partition.slots]
        spec = NamedSharding(self.partition.mesh, PartitionSpec(self.partition.axis))
        values = jax.lax.with_sharding_constraint(values, spec)
        return _ShardedEll(values, self.data, self.partition), None


class _ShardedEll(AbstractOperator):
    """The fast form of a `ShardedSparse`: its values gathered into per-device ELLPACK
    blocks (leading axis sharded over the mesh axis)."""

    values: Inexact[Array, "D w b"]
    data: Inexact[Array, " nnz"]
    partition: RowPartition

    @property
    def shape(self):
        return (self.partition.n, self.partition.n)

    @property
    def dtype(self):
        return self.values.dtype

    def mv(self, y):
        partition = self.partition
        axis, num_devices = partition.axis, partition.mesh.shape[partition.axis]
        spec = PartitionSpec(axis)

        def local_product(values, columns, sends, y):
            parts = [y]
            for distance, send in zip(partition.distances, sends):
                pairs = [(s, (s + distance) % num_devices) for s in range(num_devices)]
                parts.append(jax.lax.ppermute(y[send[0]], axis, pairs))
            extended = jnp.concatenate(parts) if len(parts) > 1 else y
            return ell_product(values[0], columns[0], extended)

        return jax.shard_map(
            local_product,
            mesh=partition.mesh,
            in_specs=(spec, spec, spec, spec),
            out_specs=spec,
        )(self.values, partition.columns, partition.sends, y)

    def disk(self):
        return _disk(self.data, self.partition)

    def diagonal(self):
        return None  # (a row-sharded vector would need the partition; no solver asks)

    def fast_form(self):
        return self, None


def _disk(data, partition: RowPartition):
    return CooOperator(data, partition.rows, partition.columns_global, partition.n).disk()
