"""`computed_once`: small tables that XLA must compute once, not once per entry of the
elementwise pass that reads them."""

from collections.abc import Callable

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import PyTree


def computed_once(fn: Callable[[PyTree], PyTree], operands: PyTree) -> PyTree:
    """`fn(operands)`, computed in a conditional whose branches are both `fn`: XLA's CPU
    backend materializes a conditional's results. Fused into the pass that reads them
    instead (shifted copies of a state weighted by a few diagonals, a rotation by
    sines and cosines), small tables would be recomputed for each entry of the pass.
    (`jax.lax.optimization_barrier` does not prevent that fusion on the CPU.)

    The predicate `x == x` is on an inexact leaf: XLA folds it for integers (always
    true), and would then inline the branch and fuse it again. It is taken out of any
    `jax.vmap` (`unvmap_any`): batched, it would turn the conditional into a `select`
    of both branches, each computed.

    Transposed in reverse mode, the conditional materializes the cotangents of its
    results too, so that the reductions reading a cotangent (one per weight of a
    stencil) do not each recompute it."""
    inexact = [
        leaf
        for leaf in jax.tree_util.tree_leaves(operands)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) and jnp.size(leaf) > 0
    ]
    if not inexact:
        raise ValueError("computed_once needs an inexact operand to keep XLA from folding it.")
    first = jnp.reshape(inexact[0], -1)[0]
    return jax.lax.cond(eqxi.unvmap_any(first == first), fn, fn, operands)
