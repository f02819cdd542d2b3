"""`Magnus6`: the sixth-order Magnus method with three Gauss-Legendre nodes."""

from typing import ClassVar

from .._linalg import commutator
from .exponential import apply_exponential
from .magnus import GAUSS3, SQRT15, AbstractMagnus, error_estimate, outer


class Magnus6(AbstractMagnus):
    """The sixth-order Magnus method with three Gauss-Legendre nodes, with an embedded
    fourth-order error estimate. The default solver of `odeexpm.propagator`/`evolve`
    for generators other than those `Magnus8` takes.

    With `A_i = A(t + c_i h)`, `c = 1/2 - sqrt(15)/10, 1/2, 1/2 + sqrt(15)/10` (Blanes,
    Casas and Ros, BIT 40 (2000)):

        a1 = h A_2,  a2 = sqrt(15) h / 3 (A_3 - A_1),  a3 = 10 h / 3 (A_3 - 2 A_2 + A_1)
        C1 = [a1, a2],  C2 = -1/60 [a1, 2 a3 + C1]
        Omega6 = a1 + a3 / 12 + 1/240 [-20 a1 - a3 + C1, a2 + C2]

    and `y(t + h) = exp(Omega6) y(t)`: three commutators and one exponential per step.

    Error estimate (embedded, as in Runge-Kutta pairs). A fourth-order Magnus step with
    Simpson's rule for the integral of `A`, `Omega4 = h/6 (A(t) + 4 A_2 + A(t + h)) -
    C1 / 12`, differs from `Omega6` by `O(h^5)`: its missing commutator terms and its
    quadrature error both show in `Omega6 - Omega4`. The error estimate is
    `(Omega6 - Omega4) y(t + h)`, which costs two evaluations of `A` at the step ends and
    one product. The sixth-order solution is propagated, so (for small steps) the
    estimate bounds its error from above and the tolerance is met with room to spare.

    For a `Modulated` generator `A = A0 + sum_k f_k(t) A_k` (with `n >= 4` for one
    control, `n >= 16` for two: see `Commutators.pay`) the nested commutators of
    `A0, ..., A_K` are computed once per solve (`precompute`), and `Omega6` and `Omega4`
    become linear combinations of them: the same series, truncated after its `O(h^6)`
    terms (the terms `[a3, C2]` and `[C1, C2]` of the formula above are `O(h^7)`). A
    step then costs one exponential and two matrix products.

    Examples:
        ```python
        A = lambda t, args: -1j * jnp.array([[1.0, jnp.cos(t)], [jnp.cos(t), -1.0]])
        U = odeexpm.propagator(A, 0.0, 10.0, solver=odeexpm.Magnus6(), rtol=1e-10)
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-9, 1e-5)
    commutator_depth: ClassVar[int] = 4
    needs_commutators: ClassVar[bool] = False

    def order(self, terms):
        return 6

    def error_order(self, terms):
        return 5

    def advance(self, samples, t, h, y):
        if samples.commutators is not None:
            return self._advance_modulated(samples, t, h, y)
        # The Gauss nodes, and the step's ends for the error estimate.
        a_1, a_2, a_3, a_start, a_end = samples.matrices(t, h, (*GAUSS3, 0.0, 1.0))
        a1 = h * a_2
        a2 = (SQRT15 / 3) * h * (a_3 - a_1)
        a3 = (10.0 / 3) * h * (a_3 - 2 * a_2 + a_1)
        c1 = commutator(a1, a2)
        c2 = (-1.0 / 60) * commutator(a1, 2 * a3 + c1)
        omega6 = a1 + a3 / 12 + (1.0 / 240) * commutator(-20 * a1 - a3 + c1, a2 + c2)
        y1, ok = apply_exponential(omega6, y)
        omega4 = (h / 6) * (a_start + 4 * a_2 + a_end) - c1 / 12
        return y1, error_estimate(omega6 - omega4, y1), ok

    def _advance_modulated(self, samples, t, h, y):
        # The same Magnus series, written in the coordinates e(t) = (1, f_1(t), ...) of
        # A(t) = sum_k e_k(t) B_k, with the commutators of the B precomputed. Omega6 keeps
        # the terms of the formula above up to O(h^6) ([a3, C2] and [C1, C2] are O(h^7)):
        #   Omega6 = a1 + a3/12 - C1/12 + 1/240 (-[a3, a2] - [a2, [a1, a2]]
        #            + 2/3 [a1, [a1, a3]] + 1/3 [a1, [a1, [a1, a2]]])
        e_1, e_2, e_3, e_start, e_end = samples.coordinates(t, h, (*GAUSS3, 0.0, 1.0))
        w1 = h * e_2
        w2 = (SQRT15 / 3) * h * (e_3 - e_1)
        w3 = (10.0 / 3) * h * (e_3 - 2 * e_2 + e_1)
        third = (1.0 / 240) * (-outer(w2, w1, w2) + (2.0 / 3) * outer(w1, w1, w3))
        fourth = (1.0 / 720) * outer(w1, w1, w1, w2)
        simpson = (h / 6) * (e_start + 4 * e_2 + e_end)
        omega6 = samples.commutators.combine(
            w1 + w3 / 12, -outer(w1, w2) / 12 - outer(w3, w2) / 240, third, fourth
        )
        y1, ok = apply_exponential(omega6, y)
        difference = samples.commutators.combine(
            w1 + w3 / 12 - simpson, -outer(w3, w2) / 240, third, fourth
        )
        return y1, error_estimate(difference, y1), ok
