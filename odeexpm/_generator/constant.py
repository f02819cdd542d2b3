"""`Constant`: a time-independent generator, dense, sparse or matrix-free."""

import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .._operator import AbstractOperator, as_operator, is_operator
from .base import AbstractGenerator


class Constant(AbstractGenerator):
    """A time-independent generator `A(t) = matrix`.

    `matrix` is a dense `(n, n)` array, or (for large problems, as in
    `odeexpm.expm_multiply`) a `jax.experimental.sparse.BCOO`/`BCSR` matrix or a
    `lineax.AbstractLinearOperator`, kept as an operator: no dense `n x n` array is
    formed, and products apply it directly.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.experimental import sparse
        >>> import odeexpm
        >>> odeexpm.Constant(jnp.eye(3))(0.5).shape
        (3, 3)
        >>> L = sparse.BCOO.fromdense(jnp.array([[-1.0, 1.0], [1.0, -1.0]]))
        >>> y = odeexpm.evolve(odeexpm.Constant(L), jnp.array([1.0, 0.0]), 0.0, 50.0)
        >>> bool(jnp.allclose(y, jnp.array([0.5, 0.5])))
        True
    """

    matrix: Inexact[Array, "n n"] | AbstractOperator
    jump_ts = None

    def __init__(self, matrix):
        if is_operator(matrix):
            self.matrix = as_operator(matrix, "matrix", "odeexpm.Constant")
        else:
            self.matrix = jnp.asarray(matrix)

    def __call__(self, t=None, args=None):
        return self.matrix
