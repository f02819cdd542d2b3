"""Complex arrays as pairs of real arrays, the form in which they travel through diffrax.

diffrax's own complex support is experimental (its step-size controllers and adjoints
assume real states), so every complex leaf of a state, a generator or `args` is split
into a `ComplexPair` before `diffrax.diffeqsolve` and merged again wherever arithmetic
is done.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree, Real


class ComplexPair(eqx.Module):
    """A complex array stored as its real and imaginary parts."""

    real: Real[Array, "..."]
    imag: Real[Array, "..."]


def _is_pair(x) -> bool:
    return isinstance(x, ComplexPair)


def split_complex(tree: PyTree) -> PyTree:
    """Every complex array leaf of `tree` as a `ComplexPair`; real leaves unchanged."""
    return jtu.tree_map(
        lambda x: ComplexPair(x.real, x.imag) if eqx.is_array(x) and jnp.iscomplexobj(x) else x,
        tree,
    )


def merge_complex(tree: PyTree) -> PyTree:
    """The inverse of `split_complex`."""
    return jtu.tree_map(
        lambda x: x.real + 1j * x.imag if _is_pair(x) else x, tree, is_leaf=_is_pair
    )
