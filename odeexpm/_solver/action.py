"""The Taylor action step: `exp(hA) y` applied term by term, one product with `A` each.

For a narrow state (a vector, or a few columns) or a generator that is no dense matrix
(`odeexpm.expm_multiply` with a sparse or matrix-free operator) a step applies the
series to the state, `T_k = (h/k) (A - c I) T_(k-1)`, stopping as soon as the terms are
negligible, instead of forming a matrix polynomial.
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Real

from .._operator import AbstractOperator


def largest_radius(degree: int, tolerance: float) -> float:
    """The largest `r` for which the Taylor series of `exp` at `r`, cut after `degree`
    terms, misses at most `tolerance` of `e^r` (the tail of a Poisson(`r`) law).

    For a shifted Markov generator or Laplacian, whose solution grows like `e^r` in the
    shifted frame, this is the largest step `||h (A - center I)||` one Taylor step of
    that degree covers; elsewhere it is a first guess the step-size controller corrects.
    """

    def log_tail(r):  # log P(Poisson(r) > degree), its leading term and a geometric bound
        m = degree + 1
        log_term = -r + m * math.log(r) - math.lgamma(m + 1)
        ratio = r / (m + 1)
        return log_term - math.log1p(-ratio) if ratio < 1 else math.inf

    low, high = 1e-3, float(degree)
    target = math.log(tolerance)
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if log_tail(mid) <= target else (low, mid)
    return low


def is_narrow(y: Inexact[Array, " n *k"], degree: int) -> bool:
    """Whether `k` columns are few enough that `degree` products with them cost less
    than the about `2 sqrt(degree)` matrix products of Paterson-Stockmeyer."""
    n = y.shape[0]
    columns = 1 if y.ndim == 1 else y.shape[-1]
    return columns * math.sqrt(degree) < 2 * n


def taylor_action(
    operator: AbstractOperator | Any,  # (or anything with `mv`: a `Combination`)
    center: Inexact[Array, ""],
    h: Real[Array, ""],
    y: Inexact[Array, " n *k"],
    degree: int,
    tolerance: float | None,
) -> tuple[Inexact[Array, " n *k"], Inexact[Array, " n *k"]]:
    """`(y1, y_error)` of one action step `y1 ~ exp(hA) y` (see `odeexpm.Taylor`).

    `center` is the shift `c` (not differentiated: `exp(hA) = e^(hc) exp(h(A - cI))`
    holds for every `c`).
    """
    real = jnp.finfo(y.dtype).dtype
    unit_roundoff = float(jnp.finfo(real).eps) / 2
    tolerance = unit_roundoff if tolerance is None else tolerance
    center = jax.lax.stop_gradient(center)
    total, (last, num_terms, last_norm, previous_norm, magnitude) = taylor_series(
        operator, h, y, center, degree=degree, tolerance=tolerance
    )
    scale = jnp.exp(h * center)
    y1 = (scale * total).astype(y.dtype)

    # Truncation: the first term a degree-`degree` polynomial omits, extrapolated from
    # the last one computed.
    factor = extrapolation(num_terms, last_norm, previous_norm, degree, tolerance)
    truncation = jnp.abs(last) * factor
    # Rounding: terms that cancel lose digits in proportion to their size relative to
    # the sum, sum_k ||T_k|| / ||sum_k T_k|| (normwise, as the accuracy is judged).
    total_norm = jnp.max(jnp.abs(total))
    cancellation = jnp.maximum(magnitude / positive(total_norm) - 1, 0)
    rounding = unit_roundoff * cancellation * jnp.abs(total)
    y_error = (jnp.abs(scale) * (truncation + rounding)).astype(real)
    y_error = jax.lax.stop_gradient(y_error).astype(y.dtype)
    return y1, y_error


def positive(x):
    """`x` where positive, else 1 (a safe divisor or logarithm argument)."""
    return jnp.where(x > 0, x, 1)


def extrapolation(num_terms, last_norm, previous_norm, degree: int, tolerance: float):
    """`f` with `T_(m+1) + T_(m+2) + ... ~ f T_K` for `m = degree`.

    From the ratio of the last two terms, `r = K ||T_K|| / ||T_(K-1)||` (about
    `||h (A - cI)||`): `T_(m+1) ~ T_K prod_(j=K+1)^(m+1) r / j`, and the rest of the
    tail is a geometric series of ratio `r / (m + 2)`. If the terms still grow at the
    full degree (`r >= m + 2`) the step is hopeless: `f = 1 / tolerance`.
    """
    real = last_norm.dtype
    K = num_terms.astype(real)
    r = jnp.where(previous_norm > 0, K * last_norm / positive(previous_norm), 0)
    r = jax.lax.stop_gradient(r)
    log_factor = (degree + 1 - K) * jnp.log(positive(r)) - (
        jax.lax.lgamma(jnp.asarray(degree + 2.0, real)) - jax.lax.lgamma(K + 1)
    )
    geometric = 1 - r / (degree + 2)
    converging = jnp.exp(jnp.minimum(log_factor, 100.0)) / positive(geometric)
    return jnp.where(r == 0, 0.0, jnp.where(geometric > 0, converging, 1 / tolerance))


def _next_term(operator, h, center, term, k):
    """`T_k = (h/k) (A - cI) T_(k-1)`."""
    return (h / k) * (operator.mv(term) - center * term)


def _series_loop(operator, h, y, center, degree, tolerance):
    norm = lambda x: jnp.max(jnp.abs(x))

    # The carry holds the newest term apart from the sum of the earlier ones: the
    # product's output then has a single consumer, and the compiler fuses the gathers
    # of a sparse product into one loop.
    def keep_going(carry):
        k, _, _, last_norm, previous_norm, total_norm, _ = carry
        return (k < degree) & ~(last_norm + previous_norm <= tolerance * total_norm)

    def add_term(carry):
        k, term, total, last_norm, _, _, magnitude = carry
        new_term = _next_term(operator, h, center, term, k + 1)
        new_total = total + term
        return (
            k + 1,
            new_term,
            new_total,
            norm(new_term),
            last_norm,
            norm(new_total),
            magnitude + last_norm,
        )

    real = jnp.finfo(y.dtype).dtype
    init = (
        jnp.zeros((), jnp.int32),
        y,
        jnp.zeros_like(y),
        norm(y),
        jnp.asarray(jnp.inf, real),
        jnp.zeros((), real),
        jnp.zeros((), real),
    )
    k, term, total, last_norm, previous_norm, _, magnitude = jax.lax.while_loop(
        keep_going, add_term, init
    )
    return total + term, (term, k, last_norm, previous_norm, magnitude + last_norm)


@eqx.filter_custom_jvp
def taylor_series(operator, h, y, center, *, degree, tolerance):
    """`(sum_(k<=K) T_k, (T_K, K, ||T_K||, ||T_(K-1)||, sum_k ||T_k||))` for
    `T_k = (h/k) (A - cI) T_(k-1)`, `T_0 = y`, stopping at the first `K` with
    `||T_K|| + ||T_(K-1)|| <= tolerance ||sum||` or at `K = degree`.

    The loop has a data-dependent length, which reverse-mode autodiff cannot
    transpose; the JVP rule instead differentiates the polynomial of degree `K` that
    was used, by a fixed-length scan that JAX can transpose.
    """
    return _series_loop(operator, h, y, center, degree, tolerance)


@taylor_series.def_jvp
def _taylor_series_jvp(primals, tangents, *, degree, tolerance):
    operator, h, y, center = primals
    d_operator, d_h, d_y, _ = tangents  # the shift is not differentiated
    out = taylor_series(operator, h, y, center, degree=degree, tolerance=tolerance)
    num_terms = out[1][1]
    d_y = jnp.zeros_like(y) if d_y is None else d_y

    def add_tangent(carry, k):
        def active(carry):
            term, d_term, d_total = carry
            new_term, d_new_term = eqx.filter_jvp(
                lambda operator, h, term: _next_term(operator, h, center, term, k),
                (operator, h, term),
                (d_operator, d_h, d_term),
            )
            return new_term, d_new_term, d_total + d_new_term

        # Rematerialized in reverse mode: a `cond`'s residuals are stacked across the
        # scan's iterations, and here they would include the operator itself (its
        # values and indices, or a dense matrix) once per term, loop-invariant as it is.
        step = jax.checkpoint(
            lambda carry: jax.lax.cond(k <= num_terms, active, lambda carry: carry, carry)
        )
        return step(carry), None

    (_, _, d_total), _ = jax.lax.scan(
        add_tangent, (y, d_y, d_y), jnp.arange(1, degree + 1, dtype=jnp.int32)
    )
    return out, (d_total, (None, None, None, None, None))
