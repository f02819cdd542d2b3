"""`LineaxOperator`: a matrix-free `lineax.AbstractLinearOperator` as an operator."""

import jax
import jax.numpy as jnp
import lineax as lx

from .base import AbstractOperator, estimated_disk


class LineaxOperator(AbstractOperator):
    """A matrix-free `lineax.AbstractLinearOperator` on vectors `(n,)`; states `(n, k)`
    are applied column by column (`jax.vmap`). The arrays inside the operator (for a
    `lineax.FunctionLinearOperator`, those its function closes over) are differentiable.

    Its disk is an estimate (`estimated_disk`).
    """

    operator: lx.AbstractLinearOperator

    @property
    def shape(self):
        return (self.operator.out_size(), self.operator.in_size())

    @property
    def dtype(self):
        return self.operator.out_structure().dtype

    def mv(self, y):
        if y.ndim == 2:
            return jax.vmap(self.mv, in_axes=1, out_axes=1)(y)
        real_input = not jnp.issubdtype(self.operator.in_structure().dtype, jnp.complexfloating)
        if real_input and jnp.iscomplexobj(y):
            # A real operator on a complex state (a Hamiltonian's stencil applied to a
            # wave function): lineax checks the input's dtype, so apply it to each part.
            return self.operator.mv(y.real) + 1j * self.operator.mv(y.imag)
        return self.operator.mv(y)

    def disk(self):
        return estimated_disk(self)

    def diagonal(self):
        return None

    def fast_form(self):
        return self, None
