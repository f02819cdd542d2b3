"""`Magnus8`: the eighth-order Magnus method with four Gauss-Legendre nodes."""

from typing import ClassVar

import jax.numpy as jnp

from .exponential import apply_exponential
from .magnus import AbstractMagnus, error_estimate
from .magnus_series import magnus_series


class Magnus8(AbstractMagnus):
    """The eighth-order Magnus method with four Gauss-Legendre nodes, with an embedded
    sixth-order error estimate. The default solver of `odeexpm.propagator`/`evolve` for
    a `Modulated` generator where its precomputed commutators are cheap to use and fit
    in memory (2^22 numbers): one control and `12 <= n <= 427`, two and
    `98 <= n <= 146`. Given explicitly it takes one control up to `n = 427`, two up to
    146, three up to 65.

    On a step `[t, t + h]` the generator is replaced by its interpolant of degree 3
    through the four Gauss nodes, `A(t + tau h) ~ sum_j C_j (tau - 1/2)^j`, and `Omega`
    is the logarithm of that interpolant's time-ordered exponential, truncated after
    its terms of order `h^7` (those of order `h^8` vanish by time symmetry): a Lie
    polynomial in the `x_j = h C_j` whose coefficients are exact rationals, derived in
    the free algebra when the class is first used (`magnus_series`). With Gauss nodes
    the quadrature error is of order `h^9` too, so the method has order 8 (Iserles and
    Norsett, 1999). It needs a `Modulated` generator, whose nested commutators up to
    depth 6 are computed once per solve (`precompute`): `Omega` is then a linear
    combination of them, and a step costs one exponential (5 matrix products for
    `||Omega||_1 <= 1.09`) and one product. For other generators use `Magnus6`.

    Error estimate: the terms of order `h^7` of `Omega`, applied to `y(t + h)`: the
    difference to the sixth-order method with the same nodes, `O(h^7)`. The
    eighth-order result is propagated, so the estimate bounds its error from above.

    Examples:
        ```python
        A = odeexpm.Modulated(-1j * Z, -1j * X[None], lambda t, a: a * jnp.sin(t))
        U = odeexpm.propagator(A, 0.0, 10.0, args=0.7, solver=odeexpm.Magnus8())
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (3e-10, 3e-6)
    commutator_depth: ClassVar[int] = 6
    # The steps need the commutators: taken even where a step costs less without.
    needs_commutators: ClassVar[bool] = True

    def order(self, terms):
        return 8

    def error_order(self, terms):
        return 7

    def advance(self, samples, t, h, y):
        nodes, to_powers, series = magnus_series(4, 7)
        e = samples.coordinates(t, h, nodes)
        x = h * jnp.asarray(to_powers, e.dtype) @ e  # x[j]: coordinates of h C_j
        weights = []
        for words, coefficients in series:  # the words of one length k
            # Each word x_w1 ... x_wk, in the coordinates of the B: an outer product.
            letters = x[words]  # (words, k, m)
            product = letters[:, 0]
            for i in range(1, words.shape[1]):
                product = (product[:, :, None] * letters[:, i, None, :]).reshape(len(words), -1)
            w = jnp.asarray(coefficients, x.dtype) @ product  # Omega and its h^7 part
            weights.append(w.reshape((2,) + (x.shape[1],) * words.shape[1]))
        omega, top = samples.commutators.combine(*weights)
        y1, ok = apply_exponential(omega, y)
        return y1, error_estimate(top, y1), ok
