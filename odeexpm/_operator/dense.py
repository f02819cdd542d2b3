"""`DenseOperator`: a dense matrix as an operator."""

import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .base import AbstractOperator, gershgorin_disk


class DenseOperator(AbstractOperator):
    """A dense `(n, n)` matrix; its disk is Gershgorin's (the smaller of the disks
    enclosing the row and the column Gershgorin disks)."""

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

    def diagonal(self):
        return jnp.diagonal(self.matrix)

    def fast_form(self):
        return self, None
