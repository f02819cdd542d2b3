"""The diffrax term of a linear ODE: `dy/dt = A(t, args) @ y`, carrying `A` itself."""

import diffrax
import jax.tree_util as jtu
from jaxtyping import ArrayLike, Int, PyTree

from ._complex import merge_complex, split_complex
from ._generator import AbstractGenerator
from ._operator import apply


class LinearTerm(diffrax.AbstractTerm):
    """`dy/dt = generator(t, args) @ y`, for a matrix or block state `y`.

    A plain `diffrax.ODETerm` hides the generator inside a closure; this term keeps it,
    so that solvers which need `A(t)` itself (Magnus steps, polynomial steps for a
    constant `A`) can read it with `term.matrix(t, args)`. Every diffrax solver that
    accepts an ODE term accepts this one.

    Complex arrays (in the state, the generator and `args`) travel through diffrax as
    pairs of real arrays, since diffrax's own complex support is experimental; products
    are taken in complex arithmetic.

    `precomputed` holds what an odeexpm solver computes from the generator once per solve
    (`AbstractLinearSolver.precompute`: the commutator basis of a Magnus solver), when
    `odeexpm`'s functions computed it before the solve. Otherwise the solver computes it
    in `init`, and diffrax carries it as the solver state: from one step to the next, and
    in every checkpoint of reverse mode, which for a large basis is slow. In the term it
    is computed once and never copied.

    Examples:
        >>> import diffrax, jax.numpy as jnp
        >>> import odeexpm
        >>> term = odeexpm.LinearTerm(odeexpm.Constant(jnp.array([[0.0, 1.0], [-1.0, 0.0]])))
        >>> solution = diffrax.diffeqsolve(
        ...     term, odeexpm.Magnus4(), 0.0, 1.0, 0.1, jnp.array([1.0, 0.0]),
        ...     stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
        >>> bool(jnp.allclose(solution.ys[0], jnp.array([jnp.cos(1.0), -jnp.sin(1.0)])))
        True
    """

    generator: AbstractGenerator
    precomputed: PyTree = None

    def matrix(self, t, args):
        """The generator `A(t, args)`, complex again if it is complex."""
        return merge_complex(self.generator)(t, merge_complex(args))

    def vf(self, t, y, args):
        return split_complex(apply(self.matrix(t, args), merge_complex(y)))

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jtu.tree_map(lambda v: control * v, vf)


def linear_term(terms: PyTree, solver_name: str) -> tuple[LinearTerm, Int[ArrayLike, ""]]:
    """`(term, direction)`: the `LinearTerm` a solver was handed, and the direction of
    time diffrax integrates in (`-1` backwards); a clear error for any other term.

    diffrax hands solvers their terms inside a private wrapper (fields `term` and
    `direction`) that flips time for backward integration; it is recognised by those
    fields, as diffrax does not export it.
    """
    direction = 1
    while (
        not isinstance(terms, LinearTerm) and hasattr(terms, "term") and hasattr(terms, "direction")
    ):
        direction = direction * terms.direction
        terms = terms.term
    if not isinstance(terms, LinearTerm):
        raise TypeError(
            f"{solver_name} solves linear ODEs only: it needs the generator A(t), which "
            f"an odeexpm.LinearTerm carries; got {type(terms).__name__}. Use it through "
            "odeexpm's functions (or pass odeexpm.LinearTerm(generator) to "
            "diffrax.diffeqsolve), and not with diffrax.BacksolveAdjoint, whose adjoint "
            "equation is not of this form."
        )
    return terms, direction
