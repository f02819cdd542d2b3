"""`Magnus2`: the exponential midpoint rule."""

from typing import ClassVar

from .exponential import apply_step_exponential
from .magnus import AbstractStepDoublingMagnus


class Magnus2(AbstractStepDoublingMagnus):
    """The exponential midpoint rule, order 2: `y(t + h) = exp(h A(t + h/2)) y(t)`.

    One exponential per step; error control by step doubling (two half steps are
    propagated). Unitary for skew-Hermitian generators. Cheap per step but low order:
    use it for loose tolerances or rough generators. Takes sparse and matrix-free
    generators too (a Taylor action per step, as `AbstractCommutatorFree`).

    Examples:
        ```python
        A = lambda t, args: jnp.array([[0.0, t], [-t, 0.0]])
        U = odeexpm.propagator(A, 0.0, 1.0, solver=odeexpm.Magnus2(), rtol=1e-6)
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-8, 1e-5)
    commutator_depth: ClassVar[int] = 0
    needs_commutators: ClassVar[bool] = False

    def order(self, terms):
        return 2

    def propagate(self, samples, t, h, y):
        (midpoint,) = samples.combinations(t, h, (0.5,), ((1.0,),))
        return apply_step_exponential(midpoint, h, y)
