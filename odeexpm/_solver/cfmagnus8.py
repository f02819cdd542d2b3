"""`CFMagnus8`: a commutator-free eighth-order Magnus method."""

import math
from typing import ClassVar

from .commutator_free import AbstractCommutatorFree

# The four Gauss-Legendre nodes on [0, 1].
_OUTER, _INNER = (
    math.sqrt(3 / 7 + 2 / 7 * math.sqrt(6 / 5)),
    math.sqrt(3 / 7 - 2 / 7 * math.sqrt(6 / 5)),
)
GAUSS4 = (0.5 - _OUTER / 2, 0.5 - _INNER / 2, 0.5 + _INNER / 2, 0.5 + _OUTER / 2)


class CFMagnus8(AbstractCommutatorFree):
    """A commutator-free eighth-order Magnus method: eleven exponentials of combinations
    of `A` at the four Gauss-Legendre nodes, no commutator (Alvermann and Fehske's
    optimized CF8:11, J. Comput. Phys. 230 (2011), in the nodes' basis; its order is
    measured in the tests). Error control by step doubling.

    For sparse and matrix-free generators each exponential is a Taylor action on the
    state (see `AbstractCommutatorFree`). Four of the exponentials step backwards in time
    (by `0.45 h` and `0.29 h`, twice each): for Schrödinger generators (`-iH`) at tight
    tolerances, not for strongly dissipative ones.

    Examples:
        A callable returning a sparse matrix, its states `psi(ts)` kept unit to rounding:

        ```python
        from jax.experimental import sparse

        hopping = sparse.BCOO.fromdense(jnp.eye(100, k=1) + jnp.eye(100, k=-1))
        A = lambda t, a: -1j * (1.0 + a * jnp.cos(t)) * hopping
        psis = odeexpm.evolve(
            A, jnp.eye(100)[50], 0.0, 20.0, args=0.3, ts=jnp.linspace(0.0, 20.0, 5),
            solver=odeexpm.CFMagnus8(), rtol=1e-12,
        )
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-12, 1e-5)
    nodes: ClassVar[tuple[float, ...]] = GAUSS4
    coefficients: ClassVar[tuple[tuple[float, ...], ...]] = (
        (0.1871220403581154, -0.02176493381208336, 0.005528920030211245, -0.001170495532310095),
        (0.0012027438011938888, 0.4121257529738911, -0.04127336478289491, 0.007365675523815371),
        (0.13534555149898514, -0.5228565056885168, 0.8046245119292845, 0.05234574890429774),
        (-0.12894640325504778, 0.4982636159412725, -0.7665392741129302, -0.0510038659643654),
        (-0.011385770720561662, -0.15611619676961333, -0.13861778780314685, 0.01219528218700423),
        (-0.029143084232399898, 0.2526978395257992, 0.2526978395257992, -0.029143084232399898),
        (0.01219528218700423, -0.13861778780314685, -0.15611619676961333, -0.011385770720561662),
        (-0.0510038659643654, -0.7665392741129302, 0.4982636159412725, -0.12894640325504778),
        (0.05234574890429774, 0.8046245119292845, -0.5228565056885168, 0.13534555149898514),
        (0.007365675523815371, -0.04127336478289491, 0.4121257529738911, 0.0012027438011938888),
        (-0.001170495532310095, 0.005528920030211245, -0.02176493381208336, 0.1871220403581154),
    )

    def order(self, terms):
        return 8
