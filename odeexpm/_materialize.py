"""`computed_once`: small tables that XLA must compute once, not once per entry of the
elementwise pass that reads them."""

from collections.abc import Callable

import jax
from jaxtyping import PyTree


def computed_once(fn: Callable[[PyTree], PyTree], operands: PyTree) -> PyTree:
    """`fn(operands)`, computed in a conditional whose branches are both `fn`: XLA's CPU
    backend materializes a conditional's results. Fused into the pass that reads them
    instead (shifted copies of a state weighted by a few diagonals, a rotation by
    sines and cosines), small tables would be recomputed for each entry of the pass.
    (`jax.lax.optimization_barrier` does not prevent that fusion on the CPU.)"""
    first = jax.tree_util.tree_leaves(operands)[0].reshape(-1)[0]
    return jax.lax.cond(first == first, fn, fn, operands)
