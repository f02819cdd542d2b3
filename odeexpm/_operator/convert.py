"""Turning what a user passes (arrays, BCOO/BCSR matrices, lineax operators) into
operators, and applying whatever a generator returns to a state."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array, Inexact

from .._checks import as_array, checked_dtype
from .base import AbstractOperator
from .combination import OperatorCombination
from .dense import DenseOperator
from .lineax import LineaxOperator
from .sparse import CooOperator, SparseOperator, cached_layout

# What `is_operator` recognises: values of a generator that offer products only.
_OPERATOR_TYPES = (
    AbstractOperator,
    OperatorCombination,
    lx.AbstractLinearOperator,
    jsparse.JAXSparse,
)


def apply(A, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
    """`A @ y` for whatever a generator returns: an array, a `BCOO`/`BCSR` matrix, an
    odeexpm operator or a `lineax.AbstractLinearOperator` (on vectors; a block `y` is
    applied column by column)."""
    if isinstance(A, lx.AbstractLinearOperator):
        return LineaxOperator(A).mv(y)
    return A @ y


def diagonal(A) -> Inexact[Array, " n"] | None:
    """The diagonal of whatever a generator returns, where it is known without products
    (dense arrays, sparse matrices, odeexpm operators and their combinations), else
    `None` (lineax operators)."""
    if isinstance(A, lx.AbstractLinearOperator):
        return None
    if isinstance(A, jsparse.JAXSparse):
        A = as_operator(A, "A(t, args)", "odeexpm")
    if isinstance(A, (AbstractOperator, OperatorCombination)):
        return A.diagonal()
    return jnp.diagonal(A)


def is_operator(A) -> bool:
    """Whether `A` is something other than a dense array (products only)."""
    return isinstance(A, _OPERATOR_TYPES)


def concrete_value(x) -> Array | np.ndarray | None:
    """`x` if it is concrete; the value of a tracer that only stands for a constant (NumPy
    indices that `jnp.asarray` or a `BCOO` built inside `jax.jit` turned into a tracer);
    else `None`."""
    if not isinstance(x, jax.core.Tracer):
        return x
    get_const = getattr(x, "get_const", None)  # (a constant of a jaxpr being traced)
    return None if get_const is None else get_const()


def _square_size(shape, name: str, caller: str, kind: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"{caller}: `{name}` ({kind}) must be a square (n, n) operator; got shape "
            f"{tuple(shape)}. (For a batch of matrices use jax.vmap.)"
        )
    return shape[0]


def as_operator(A, name: str, caller: str) -> AbstractOperator:
    """`A` (a dense array or array-like, a `BCOO`/`BCSR` matrix, a
    `lineax.AbstractLinearOperator` or an `AbstractOperator`) as an `AbstractOperator`,
    with its shape and dtype checked. Sparse matrices with concrete indices become a
    `SparseOperator` (layout planned on the host, cached per index array); with traced
    indices a `CooOperator`."""
    if isinstance(A, AbstractOperator):
        _square_size(A.shape, name, caller, type(A).__name__)
        checked_dtype(A.dtype, name, caller)
        return A
    if isinstance(A, jsparse.BCSR):
        A = A.to_bcoo()
    if isinstance(A, jsparse.BCOO):
        if A.n_batch or A.n_dense:
            raise ValueError(
                f"{caller}: a BCOO `{name}` must have no batch or dense dimensions; got "
                f"n_batch={A.n_batch}, n_dense={A.n_dense}."
            )
        n = _square_size(A.shape, name, caller, "BCOO")
        data = A.data.astype(checked_dtype(A.data.dtype, name, caller))
        indices = concrete_value(A.indices)
        if indices is not None:
            return SparseOperator(data, cached_layout(indices, n))
        return CooOperator(data, A.indices[:, 0], A.indices[:, 1], n)
    if isinstance(A, lx.MatrixLinearOperator):
        A = A.matrix
    if isinstance(A, lx.AbstractLinearOperator):
        structure = A.in_structure()
        if not isinstance(structure, jax.ShapeDtypeStruct) or len(structure.shape) != 1:
            raise ValueError(
                f"{caller}: a lineax `{name}` must act on vectors of shape (n,); its input "
                f"structure is {structure}."
            )
        _square_size((A.out_size(), A.in_size()), name, caller, "lineax operator")
        checked_dtype(A.out_structure().dtype, name, caller)
        return LineaxOperator(A)
    A = as_array(A, name, caller)
    _square_size(A.shape, name, caller, "dense array")
    return DenseOperator(jnp.asarray(A, checked_dtype(A.dtype, name, caller)))
