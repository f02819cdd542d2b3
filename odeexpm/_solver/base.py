"""`AbstractLinearSolver`: diffrax solvers for `dy/dt = A(t) y` that read `A(t)` itself."""

from typing import ClassVar

import diffrax

from .._term import LinearTerm, linear_term


class AbstractLinearSolver(diffrax.AbstractAdaptiveSolver):
    """Base class of the solvers that exploit the linearity of `dy/dt = A(t, args) y`:
    their steps are polynomials or exponentials of the generator `A(t)`, which they read
    from the `odeexpm.LinearTerm` they are handed (`odeexpm`'s functions build it; with
    `diffrax.diffeqsolve` pass `odeexpm.LinearTerm(generator)`). Any other term is
    refused with a clear error, at trace time.

    Subclasses define diffrax's `order`, `init`, `step` and `interpolation_cls`.
    """

    # Any term: `term` checks for a LinearTerm itself, with a clearer message.
    term_structure: ClassVar = diffrax.AbstractTerm

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def linear_term(self, terms) -> tuple[LinearTerm, int]:
        """The `LinearTerm` inside the `terms` diffrax passes to a solver, and the
        direction of time diffrax integrates in (`-1`: backwards)."""
        return linear_term(terms, f"odeexpm.{type(self).__name__}")
