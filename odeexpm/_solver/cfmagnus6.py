"""`CFMagnus6`: a commutator-free sixth-order Magnus method."""

from typing import ClassVar

from .commutator_free import AbstractCommutatorFree
from .magnus import GAUSS3


class CFMagnus6(AbstractCommutatorFree):
    """A commutator-free sixth-order Magnus method: five exponentials of combinations of
    `A` at the three Gauss-Legendre nodes, no commutator (Alvermann and Fehske's
    optimized CF6:5, J. Comput. Phys. 230 (2011), in the nodes' basis; its order is
    measured in the tests). Error control by step doubling.

    For sparse and matrix-free generators each exponential is a Taylor action on the
    state (see `AbstractCommutatorFree`), so it takes `BCOO`/`BCSR` matrices, lineax
    operators and `Modulated` generators built from them. The middle exponential steps
    backwards in time (`-0.095 h`), harmless for Schrödinger generators (`-iH`), unstable
    for strongly dissipative ones.

    Examples:
        ```python
        H0 = jax.experimental.sparse.BCOO.fromdense(jnp.diag(jnp.arange(4.0)))
        H1 = jax.experimental.sparse.BCOO.fromdense(jnp.eye(4, k=1) + jnp.eye(4, k=-1))
        A = odeexpm.schrodinger(odeexpm.Modulated(H0, [H1], lambda t, a: a * jnp.sin(t)))
        psi = odeexpm.evolve(A, jnp.eye(4)[0], 0.0, 10.0, args=0.5, solver=odeexpm.CFMagnus6())
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-10, 1e-5)
    nodes: ClassVar[tuple[float, ...]] = GAUSS3
    coefficients: ClassVar[tuple[tuple[float, ...], ...]] = (
        (0.20395257871632297, -0.05958189809047795, 0.015629319374154987),
        (0.13390606954489773, 0.31451153322250575, -0.06089355074209163),
        (-0.01481663911550627, -0.0654148258196112, -0.01481663911550627),
        (-0.06089355074209163, 0.31451153322250575, 0.13390606954489773),
        (0.015629319374154987, -0.05958189809047795, 0.20395257871632297),
    )

    def order(self, terms):
        return 6
