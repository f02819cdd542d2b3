"""`OperatorCombination`: `A0 + sum_k c_k A_k` applied term by term."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .base import AbstractOperator


class OperatorCombination(eqx.Module):
    """`A0 + sum_k c_k A_k` for operators `A_k` and scalars `c_k`, applied term by term:
    what an operator-valued `odeexpm.Modulated` generator returns at a time `t`. It
    offers products only (no spectral disk: it changes from one time to the next)."""

    drift: AbstractOperator
    operators: tuple[AbstractOperator, ...]
    controls: Inexact[Array, " K"]

    @property
    def shape(self) -> tuple[int, int]:
        return self.drift.shape

    @property
    def dtype(self) -> jnp.dtype:
        return jnp.result_type(
            self.drift.dtype, self.controls.dtype, *(op.dtype for op in self.operators)
        )

    def mv(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        out = self.drift.mv(y)
        for control, operator in zip(self.controls, self.operators):
            out = out + control * operator.mv(y)
        return out

    def diagonal(self) -> Inexact[Array, " n"] | None:
        """The diagonal where every term's is known, else `None`."""
        parts = [self.drift.diagonal(), *(op.diagonal() for op in self.operators)]
        if any(part is None for part in parts):
            return None
        return parts[0] + sum(c * part for c, part in zip(self.controls, parts[1:]))

    def __matmul__(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return self.mv(y)
