"""`CFMagnus4`: the commutator-free fourth-order Magnus method."""

from typing import ClassVar

from .exponential import apply_exponential
from .magnus import GAUSS2, SQRT3, AbstractStepDoublingMagnus


class CFMagnus4(AbstractStepDoublingMagnus):
    """The commutator-free fourth-order Magnus method (two exponentials, no commutator).

    `y(t + h) = exp(h (b2 A1 + b1 A2)) exp(h (b1 A1 + b2 A2)) y(t)` with the Gauss nodes
    of `Magnus4` and `b1 = 1/4 + sqrt(3)/6`, `b2 = 1/4 - sqrt(3)/6`. Error control by
    step doubling. Each exponential involves only a linear combination of samples of
    `A`, so it keeps whatever structure those share (e.g. sparsity patterns, symmetry).

    Examples:
        ```python
        A = lambda t, args: jnp.array([[0.0, 1.0], [-1.0 - t, 0.0]])  # Airy-like
        y = odeexpm.evolve(A, jnp.array([1.0, 0.0]), 0.0, 2.0, solver=odeexpm.CFMagnus4())
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-12, 1e-6)
    commutator_depth: ClassVar[int] = 0
    needs_commutators: ClassVar[bool] = False

    def order(self, terms):
        return 4

    def propagate(self, samples, t, h, y):
        b1, b2 = 0.25 + SQRT3 / 6, 0.25 - SQRT3 / 6
        a1, a2 = (samples.matrix(t + c * h) for c in GAUSS2)
        y_mid, ok1 = apply_exponential(h * (b1 * a1 + b2 * a2), y)
        y1, ok2 = apply_exponential(h * (b2 * a1 + b1 * a2), y_mid)
        return y1, ok1 & ok2
