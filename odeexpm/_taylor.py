"""`Taylor`: a diffrax solver for linear ODEs with a constant generator.

For `dy/dt = A y` with constant `A`, one step of any explicit method is a fixed
polynomial in `hA` applied to `y`. The best polynomial of a given cost is the truncated
Taylor series itself, `T_m(hA) = sum_{k <= m} (hA)^k / k!`: evaluated by the
Paterson-Stockmeyer scheme it costs about `2 sqrt(m)` matrix products, where an
`m`-stage Runge-Kutta method spends `m` products on an order below `m`.
"""

import math
from typing import ClassVar

import diffrax
import jax.numpy as jnp

from ._generators import Constant
from ._term import LinearTerm, generator_matrix, merge_complex, split_complex, unwrap_term


class Taylor(diffrax.AbstractAdaptiveSolver):
    """Truncated Taylor steps `y1 = T_m(hA) y0` for `dy/dt = A y` with constant `A`.

    Order `degree`. The local error estimate is the bound
    `||(hA)^q||^(floor((m+1)/q)) ||hA||^((m+1) mod q) / (m+1)!` on the first omitted
    term (1-norms, `q` the Paterson-Stockmeyer block size), scaled by `|y1|` so the
    step-size controller sees a relative error. Using powers of `hA` rather than
    `||hA||^(m+1)` keeps the estimate sharp for non-normal matrices.

    Only for constant generators (`odeexpm.Constant`, as in `expm`) and with adjoints
    that differentiate the discrete solve (`RecursiveCheckpointAdjoint`,
    `DirectAdjoint`, `ForwardMode`): the adjoint equation that `BacksolveAdjoint`
    integrates is not linear in this form. Its dense output interpolates linearly
    between steps.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> X = odeexpm.expm(A, solver=odeexpm.Taylor(degree=12))
        >>> bool(jnp.allclose(X[0, 1], jnp.sin(1.0)))
        True
    """

    degree: int = 16

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def __check_init__(self):
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"Taylor: `degree` must be an int >= 1; got {self.degree!r}.")

    def order(self, terms):
        return self.degree

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        inner, _ = unwrap_term(terms)
        if not (isinstance(inner, LinearTerm) and isinstance(inner.generator, Constant)):
            raise TypeError(
                "odeexpm.Taylor needs a constant generator (odeexpm.Constant, as in "
                "odeexpm.expm); for time-dependent generators use a Runge-Kutta or Magnus "
                "solver."
            )
        hA = terms.contr(t0, t1) * generator_matrix(terms, t0, args, "odeexpm.Taylor")
        polynomial, error_bound = taylor_polynomial(hA, self.degree)
        y1 = polynomial @ merge_complex(y0)
        y_error = error_bound * y1
        y1, y_error = split_complex(y1), split_complex(y_error)
        dense_info = dict(y0=y0, y1=y1)
        return y1, y_error, dense_info, None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def _norm1(M):
    return jnp.max(jnp.sum(jnp.abs(M), axis=-2))


def taylor_polynomial(X, degree: int):
    """`(T_m(X), bound)`: the degree-`m` Taylor polynomial of `exp` at the square matrix
    `X` by Paterson-Stockmeyer, and a bound on the first omitted term's 1-norm.

    With block size `q = ceil(sqrt(m))`, `T_m(X) = sum_j B_j (X^q)^j` where each `B_j`
    is a combination of `I, X, ..., X^(q-1)`; Horner's rule in `X^q` then needs
    `floor(m / q)` products (one fewer when the top block is a multiple of `I`), after
    the `q - 1` products for the powers.
    """
    q = max(1, math.ceil(math.sqrt(degree)))
    coefficients = [1 / math.factorial(k) for k in range(degree + 1)]
    powers = [jnp.eye(X.shape[-1], dtype=X.dtype), X]
    for _ in range(q - 1):
        powers.append(powers[-1] @ X)
    X_q = powers[q]

    def block(j):
        return sum(
            coefficients[j * q + i] * powers[i]
            for i in range(q)
            if j * q + i <= degree
        )

    top = degree // q
    if degree % q == 0 and top > 0:
        # The top block is coefficients[degree] * I: its product with X^q is a scaling.
        polynomial = block(top - 1) + coefficients[degree] * X_q
        top -= 1
    else:
        polynomial = block(top)
    for j in range(top - 1, -1, -1):
        polynomial = block(j) + X_q @ polynomial

    omitted = degree + 1
    bound = (_norm1(X_q) ** (omitted // q)) * (_norm1(X) ** (omitted % q))
    return polynomial, bound * (1 / math.factorial(omitted))
