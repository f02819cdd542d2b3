"""`LineaxOperator`: a matrix-free `lineax.AbstractLinearOperator` as an operator."""

import jax
import jax.numpy as jnp
import lineax as lx

from .base import AbstractOperator


class LineaxOperator(AbstractOperator):
    """A matrix-free `lineax.AbstractLinearOperator` on vectors `(n,)`; states `(n, k)`
    are applied column by column (`jax.vmap`). The arrays inside the operator (for a
    `lineax.FunctionLinearOperator`, those its function closes over) are differentiable.

    Its disk is an estimate from two products with a random sign vector: the center is
    the trace estimate `z^T A z / n`, the radius a power-iteration estimate of
    `||A - center I||`.
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
        n = self.shape[0]
        # A fixed random sign vector: z^T A z / n is an unbiased trace estimate.
        z = jax.random.rademacher(jax.random.key(0), (n,), dtype=jnp.finfo(self.dtype).dtype)
        z = z.astype(self.dtype)
        Az = self.mv(z)
        center = jnp.vdot(z, Az) / n
        shifted = Az - center * z
        norm = jnp.linalg.norm
        # Two steps of the power iteration for ||A - center I||: a lower estimate.
        first = norm(shifted) / norm(z)
        second = norm(self.mv(shifted) - center * shifted) / jnp.where(first > 0, norm(shifted), 1)
        radius = jnp.maximum(first, second)
        return center.astype(self.dtype), radius

    def fast_form(self):
        return self, None
