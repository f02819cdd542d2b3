"""The diffrax term of a linear ODE: `dy/dt = A(t, args) @ y`, carrying `A` itself."""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Real


class LinearTerm(diffrax.AbstractTerm):
    """`dy/dt = generator(t, args) @ y`, for a matrix or block state `y`.

    A plain `diffrax.ODETerm` hides the generator inside a closure; this term keeps it,
    so that solvers which need `A(t)` itself (Magnus steps, polynomial steps for a
    constant `A`) can read it with `term.matrix(t, args)`. Every diffrax solver that
    accepts an ODE term accepts this one.

    Complex arrays (in the state, the generator and `args`) travel through diffrax as
    `ComplexPair`s of real arrays, since diffrax's own complex support is experimental;
    products are taken in complex arithmetic.
    """

    generator: object

    def matrix(self, t, args):
        """The generator `A(t, args)`, complex again if it is complex."""
        return merge_complex(self.generator)(t, merge_complex(args))

    def vf(self, t, y, args):
        from ._operators import apply  # (operators are built on generators and terms)

        return split_complex(apply(self.matrix(t, args), merge_complex(y)))

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jtu.tree_map(lambda v: control * v, vf)


def unwrap_term(terms):
    """`(term, direction)`: diffrax hands solvers its terms in a private `WrapTerm` that
    flips time for backward integration (`direction = -1`)."""
    direction = 1
    while hasattr(terms, "term") and hasattr(terms, "direction"):
        direction = direction * terms.direction
        terms = terms.term
    return terms, direction


def generator_matrix(terms, t, args, solver_name: str):
    """`A(t, args)` of the linear term a solver was handed.

    Solvers that need the generator itself
    (not only products with it) call this, and refuse other terms with a clear error.
    """
    terms, direction = unwrap_term(terms)
    if not isinstance(terms, LinearTerm):
        raise TypeError(
            f"{solver_name} solves linear ODEs only: it needs the generator A(t), which "
            f"an odeexpm.LinearTerm carries; got {type(terms).__name__}. Use it through "
            "odeexpm's functions (and not with diffrax.BacksolveAdjoint, whose adjoint "
            "equation is not of this form)."
        )
    return terms.matrix(t * direction, args)


class ComplexPair(eqx.Module):
    """A complex array stored as its real and imaginary parts."""

    real: Real[Array, "..."]
    imag: Real[Array, "..."]


def _is_pair(x) -> bool:
    return isinstance(x, ComplexPair)


def split_complex(tree):
    """Every complex array leaf of `tree` as a `ComplexPair`; real leaves unchanged."""
    return jtu.tree_map(
        lambda x: ComplexPair(x.real, x.imag) if eqx.is_array(x) and jnp.iscomplexobj(x) else x,
        tree,
    )


def merge_complex(tree):
    """The inverse of `split_complex`."""
    return jtu.tree_map(
        lambda x: x.real + 1j * x.imag if _is_pair(x) else x, tree, is_leaf=_is_pair
    )
