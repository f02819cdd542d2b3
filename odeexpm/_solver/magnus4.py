"""`Magnus4`: the fourth-order Magnus method with two Gauss-Legendre nodes."""

from typing import ClassVar

from .._linalg import commutator
from .exponential import apply_step_exponential
from .magnus import GAUSS2, SQRT3, AbstractStepDoublingMagnus, outer


class Magnus4(AbstractStepDoublingMagnus):
    """The fourth-order Magnus method with two Gauss-Legendre nodes.

    With `A1 = A(t + c1 h)`, `A2 = A(t + c2 h)`, `c = 1/2 -+ sqrt(3)/6`:
    `Omega = h/2 (A1 + A2) + sqrt(3)/12 h^2 [A2, A1]`, `y(t + h) = exp(Omega) y(t)`.
    One commutator and one exponential per step; error control by step doubling.

    Examples:
        ```python
        A = lambda t, args: -1j * jnp.array([[1.0, jnp.sin(t)], [jnp.sin(t), -1.0]])
        U = odeexpm.propagator(A, 0.0, 5.0, solver=odeexpm.Magnus4())
        # U is unitary to rounding: ||U^H U - I|| ~ 1e-15
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-12, 1e-6)
    commutator_depth: ClassVar[int] = 2
    needs_commutators: ClassVar[bool] = False

    def order(self, terms):
        return 4

    def propagate(self, samples, t, h, y):
        if samples.commutators is None:
            a1, a2 = samples.matrices(t, h, GAUSS2)
            omega = 0.5 * h * (a1 + a2) + (SQRT3 / 12) * h**2 * commutator(a2, a1)
        else:
            e1, e2 = samples.coordinates(t, h, GAUSS2)
            omega = samples.commutators.combine(
                0.5 * h * (e1 + e2), (SQRT3 / 12) * h**2 * outer(e2, e1)
            )
        return apply_step_exponential(omega, 1.0, y)
