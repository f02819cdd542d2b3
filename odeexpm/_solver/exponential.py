"""The exponential of a Magnus step: the Taylor polynomial of `expm`'s step
(`taylor_polynomial`, degree 21 in 5 products) at `X / 2^s`, with `||X / 2^s||_1` at
most `largest_alpha` (1.77 in double and 4.39 in single precision), then `s` squarings.

Its truncation error is at most the unit roundoff (`||X||_1` bounds Al-Mohy and Higham's
`alpha`): the exponential of a skew-Hermitian matrix is unitary to rounding although it
is made of matrix products only.
"""

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Inexact, Real

from .._linalg import halvings, matmul, norm1, power_of_two
from .action import taylor_action
from .polynomial import cheapest_degree, largest_alpha, taylor_polynomial

# Squarings are applied under `lax.cond` inside a `lax.scan` of this length, which every
# adjoint can differentiate. Reverse mode pays for every iteration, taken or not, so the
# scan is short: a step with `||Omega||_1 > largest_alpha 2^MAX_STEP_SQUARINGS` (28.3 in
# double precision, 70 in single) is refused instead. Its error estimate is infinite,
# and an adaptive controller retries with a smaller step. Accuracy limits steps well
# below this on time-dependent generators; constant pieces of large norm take several
# steps.
MAX_STEP_SQUARINGS = 4
# Most products of an operator exponential's Taylor action in a commutator-free step. At
# the unit roundoff a series of 60 terms covers `||h x||` up to about 17; larger steps
# show in the error estimate, and the controller shortens them.
ACTION_DEGREE = 60


def step_range(dtype) -> float:
    """The largest `||x||_1` that `step_exponential` takes: 28.3 in double precision, 70
    in single."""
    return largest_alpha(_degree(dtype), dtype) * 2.0**MAX_STEP_SQUARINGS


def _degree(dtype) -> int:
    return cheapest_degree(float(jnp.finfo(dtype).eps) / 2)


def step_exponential(x: Inexact[Array, "n n"]) -> tuple[Inexact[Array, "n n"], Bool[Array, ""]]:
    """`(exp(x), ok)`: the exponential by a Taylor polynomial with scaling and squaring.

    Accurate to rounding where `||x||_1` is within `step_range` (28.3 in double
    precision, 70 in single); `ok` is False beyond, where the result is not to be used.
    Differentiable in forward and reverse mode.
    """
    degree = _degree(x.dtype)
    theta = largest_alpha(degree, x.dtype)
    # (`||x||_1`, not `power_norm_bound`: steps are short, their `x` normal or nearly,
    # and the powers' norms cost more than the squarings they would save.)
    norm = jax.lax.stop_gradient(norm1(x))
    ok = norm <= step_range(x.dtype)
    squarings = halvings(norm, theta, MAX_STEP_SQUARINGS)
    e = taylor_polynomial(x * power_of_two(-squarings, norm.dtype), degree)

    def square(e, i):
        # Under `vmap` a squaring runs only where some matrix of the batch needs it (with
        # a batched predicate the `cond` would be a select, which runs it always).
        needed = i < squarings
        return jax.lax.cond(
            eqxi.unvmap_any(needed), lambda e: jnp.where(needed, matmul(e, e), e), lambda e: e, e
        ), None

    e, _ = jax.lax.scan(square, e, jnp.arange(MAX_STEP_SQUARINGS))
    return e, ok


def apply_step_exponential(
    x, h: Real[ArrayLike, ""], y: Inexact[Array, " n *k"]
) -> tuple[Inexact[Array, " n *k"], Inexact[Array, " n *k"], Bool[Array, ""]]:
    """`(exp(h x) @ y, error, ok)` for a dense matrix `x` (`step_exponential`: accurate to
    rounding, `error` zero) or an operator (the Taylor action of up to `ACTION_DEGREE`
    products, stopped at the unit roundoff: its truncation and rounding estimate is
    `error`, and a step too large for that degree shows there)."""
    if isinstance(x, jnp.ndarray):
        y1, ok = apply_exponential(h * x, y)
        return y1, jnp.zeros_like(y1), ok
    zero = jnp.zeros((), y.dtype)
    y1, error = taylor_action(x, zero, h, y, ACTION_DEGREE, None)
    return y1, error, jnp.asarray(True)


def apply_exponential(
    omega: Inexact[Array, "n n"], y: Inexact[Array, " n *k"]
) -> tuple[Inexact[Array, " n *k"], Bool[Array, ""]]:
    """`(exp(omega) @ y, ok)`, `ok` False if `omega` is too large to take."""
    e, ok = step_exponential(omega)
    return matmul(e, y), ok
