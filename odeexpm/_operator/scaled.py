"""`ScaledOperator`: a scalar multiple `c A` of an operator."""

import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .base import AbstractOperator


class ScaledOperator(AbstractOperator):
    """`c A` for a scalar `c` and an operator `A` (`odeexpm.schrodinger` makes `-i H` of
    a sparse or matrix-free Hamiltonian with it); `A`'s own storage, disk and fast form
    are kept."""

    factor: Inexact[Array, ""]
    operator: AbstractOperator

    @property
    def shape(self):
        return self.operator.shape

    @property
    def dtype(self):
        return jnp.result_type(self.factor.dtype, self.operator.dtype)

    def mv(self, y):
        return self.factor * self.operator.mv(y)

    def disk(self):
        center, radius = self.operator.disk()
        return self.factor * center, abs(self.factor) * radius

    def diagonal(self):
        diagonal = self.operator.diagonal()
        return None if diagonal is None else self.factor * diagonal

    def fast_form(self):
        operator, renumbering = self.operator.fast_form()
        return ScaledOperator(self.factor, operator), renumbering
