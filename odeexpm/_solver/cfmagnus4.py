"""`CFMagnus4`: the commutator-free fourth-order Magnus method."""

from typing import ClassVar

from .commutator_free import AbstractCommutatorFree
from .magnus import GAUSS2, SQRT3

_B1, _B2 = 0.25 + SQRT3 / 6, 0.25 - SQRT3 / 6


class CFMagnus4(AbstractCommutatorFree):
    """The commutator-free fourth-order Magnus method (two exponentials, no commutator).

    `y(t + h) = exp(h (b2 A1 + b1 A2)) exp(h (b1 A1 + b2 A2)) y(t)` with the Gauss nodes
    of `Magnus4` and `b1 = 1/4 + sqrt(3)/6`, `b2 = 1/4 - sqrt(3)/6` (Blanes and Moan,
    Appl. Numer. Math. 56 (2006)). Error control by step doubling. Each exponential
    involves only a linear combination of samples of `A`, so it keeps whatever structure
    those share: for sparse and matrix-free generators each is a Taylor action on the
    state (see `AbstractCommutatorFree`).

    Examples:
        ```python
        A = lambda t, args: jnp.array([[0.0, 1.0], [-1.0 - t, 0.0]])  # Airy-like
        y = odeexpm.evolve(A, jnp.array([1.0, 0.0]), 0.0, 2.0, solver=odeexpm.CFMagnus4())
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-12, 1e-6)
    nodes: ClassVar[tuple[float, ...]] = GAUSS2
    coefficients: ClassVar[tuple[tuple[float, ...], ...]] = ((_B1, _B2), (_B2, _B1))

    def order(self, terms):
        return 4
