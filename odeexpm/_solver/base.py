"""`AbstractLinearSolver`: diffrax solvers for `dy/dt = A(t) y` that read `A(t)` itself."""

import abc
from typing import ClassVar

import diffrax
from jaxtyping import Array, ArrayLike, Inexact, Int, PyTree, Real

from .._complex import merge_complex, split_complex
from .._generator import AbstractGenerator
from .._term import LinearTerm, linear_term


class AbstractLinearSolver(diffrax.AbstractAdaptiveSolver):
    """Base class of the solvers that exploit the linearity of `dy/dt = A(t, args) y`:
    their steps are polynomials or exponentials of the generator `A(t)`, which they read
    from the `odeexpm.LinearTerm` they are handed (`odeexpm`'s functions build it; with
    `diffrax.diffeqsolve` pass `odeexpm.LinearTerm(generator)`). Any other term is
    refused with a clear error, at trace time.

    What a solver computes from the generator once per solve (`precompute`) reaches its
    steps through the term (`LinearTerm.precomputed`, where odeexpm's functions put it)
    or else through diffrax's solver state (`init` computes it).

    Subclasses define `precompute`, and diffrax's `order`, `step` and
    `interpolation_cls`.
    """

    # Any term: `linear_term` checks for a LinearTerm itself, with a clearer message.
    term_structure: ClassVar = diffrax.AbstractTerm

    @abc.abstractmethod
    def precompute(
        self,
        generator: AbstractGenerator,
        t0: Real[ArrayLike, ""],
        y0: Inexact[Array, " n *k"],
        args: PyTree,
    ) -> PyTree:
        """What the steps need of `generator` (constant over a solve), computed once per
        solve; `None` for nothing. May raise an error (at trace time) for a generator the
        solver cannot handle."""

    def init(self, terms, t0, t1, y0, args):
        term, _ = self.linear_term(terms)
        if term.precomputed is not None:
            return None
        generator, y0, args = merge_complex((term.generator, y0, args))
        return split_complex(self.precompute(generator, t0, y0, args))

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def precomputed(self, terms, solver_state) -> PyTree:
        """What `precompute` gave, from the term or from the solver state."""
        term, _ = self.linear_term(terms)
        return merge_complex(solver_state if term.precomputed is None else term.precomputed)

    def linear_term(self, terms) -> tuple[LinearTerm, Int[ArrayLike, ""]]:
        """The `LinearTerm` inside the `terms` diffrax passes to a solver, and the
        direction of time diffrax integrates in (`-1`: backwards)."""
        return linear_term(terms, f"odeexpm.{type(self).__name__}")
