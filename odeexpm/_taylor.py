"""`Taylor`: a diffrax solver for linear ODEs with a constant generator.

For `dy/dt = A y` with constant `A`, one step of any explicit method is a fixed
polynomial in `hA` applied to `y`. The best polynomial of a given cost is the truncated
Taylor series itself, `T_m(hA) = sum_{k <= m} (hA)^k / k!`: evaluated by the
Paterson-Stockmeyer scheme it costs about `2 sqrt(m)` matrix products, where an
`m`-stage Runge-Kutta method spends `m` products on an order below `m`.

For a narrow state (a vector, or a few columns) or a generator that is no dense matrix
(`odeexpm.expm_multiply` with a sparse or matrix-free operator) the step instead applies
the series to the state term by term, `T_k = (h/k) (A - c I) T_{k-1}`: one operator
product per term and no matrix power, stopping as soon as the terms are negligible.
"""

import math
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._generators import Constant
from ._operators import DenseOperator, OperatorGenerator
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

    **Action steps.** When the generator is an operator rather than a dense matrix
    (`odeexpm.expm_multiply`), or the state is narrow (`k sqrt(m) < 2n` columns), the
    step evaluates `y1 = e^(hc) sum_k T_k` with `T_0 = y0`,
    `T_k = (h/k) (A - cI) T_(k-1)`, one product with `A` per term, where `c` is the
    center of a disk holding the spectrum (see `odeexpm._operators`): the shift
    shrinks the norm the series must cover, and makes the terms of a Markov generator
    non-negative. The series stops after `K <= degree` terms, once the last two are
    below `tolerance` times the sum (inf-norms); `degree` is then the most products a
    step may use. Its error estimate has two parts: the truncation error the step would
    have at the full degree, extrapolated from the last terms (the model
    `error ~ h^(degree+1)` that the step-size controller assumes, so steps grow until
    `degree` terms are needed), and rounding, `eps (sum ||T_k|| / ||sum T_k|| - 1)`
    relative to `y1`, which is large when the terms cancel (oscillatory `A`, large
    steps) and makes the controller shorten such steps. Gradients: a custom JVP rule
    differentiates the polynomial the step used (forward mode; reverse mode by
    transposition).

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> X = odeexpm.expm(A, solver=odeexpm.Taylor(degree=12))
        >>> bool(jnp.allclose(X[0, 1], jnp.sin(1.0)))
        True
    """

    degree: int = 16
    # Action steps only: stop adding terms below this relative size (None: the unit
    # roundoff of the dtype).
    tolerance: float | None = None

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def __check_init__(self):
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"Taylor: `degree` must be an int >= 1; got {self.degree!r}.")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError(f"Taylor: `tolerance` must be in (0, 1); got {self.tolerance!r}.")

    def order(self, terms):
        return self.degree

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        inner, _ = unwrap_term(terms)
        if not (
            isinstance(inner, LinearTerm)
            and isinstance(inner.generator, (Constant, OperatorGenerator))
        ):
            raise TypeError(
                "odeexpm.Taylor needs a constant generator (odeexpm.Constant, as in "
                "odeexpm.expm, or an operator, as in odeexpm.expm_multiply); for "
                "time-dependent generators use a Runge-Kutta or Magnus solver."
            )
        h = terms.contr(t0, t1)
        A = generator_matrix(terms, t0, args, "odeexpm.Taylor")
        y = merge_complex(y0)
        if isinstance(inner.generator, OperatorGenerator):
            center = merge_complex(inner.generator.center)
            y1, y_error = taylor_action(A, center, h, y, self.degree, self.tolerance)
        elif _is_narrow(y, self.degree):
            operator = DenseOperator(A)
            y1, y_error = taylor_action(
                operator, operator.disk()[0], h, y, self.degree, self.tolerance
            )
        else:
            polynomial, error_bound = taylor_polynomial(h * A, self.degree)
            y1 = polynomial @ y
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


def _is_narrow(y, degree: int) -> bool:
    """Whether `k` columns are few enough that `degree` products with them cost less
    than the about `2 sqrt(degree)` matrix products of Paterson-Stockmeyer."""
    n = y.shape[0]
    columns = 1 if y.ndim == 1 else y.shape[-1]
    return columns * math.sqrt(degree) < 2 * n


def taylor_action(operator, center, h, y, degree: int, tolerance: float | None):
    """`(y1, y_error)` of one action step `y1 ~ exp(hA) y` (see `Taylor`).

    `operator` is an `odeexpm._operators.AbstractOperator`, `center` the shift `c`
    (not differentiated: `exp(hA) = e^(hc) exp(h(A - cI))` holds for every `c`).
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
    factor = _extrapolation(num_terms, last_norm, previous_norm, degree, tolerance)
    truncation = jnp.abs(last) * factor
    # Rounding: terms that cancel lose digits in proportion to their size relative to
    # the sum, sum_k ||T_k|| / ||sum_k T_k|| (normwise, as the accuracy is judged).
    total_norm = jnp.max(jnp.abs(total))
    cancellation = jnp.maximum(magnitude / _positive(total_norm) - 1, 0)
    rounding = unit_roundoff * cancellation * jnp.abs(total)
    y_error = (jnp.abs(scale) * (truncation + rounding)).astype(real)
    y_error = jax.lax.stop_gradient(y_error).astype(y.dtype)
    return y1, y_error


def _positive(x):
    """`x` where positive, else 1 (a safe divisor or logarithm argument)."""
    return jnp.where(x > 0, x, 1)


def _extrapolation(num_terms, last_norm, previous_norm, degree: int, tolerance: float):
    """`f` with `T_(m+1) + T_(m+2) + ... ~ f T_K` for `m = degree`.

    From the ratio of the last two terms, `r = K ||T_K|| / ||T_(K-1)||` (about
    `||h (A - cI)||`): `T_(m+1) ~ T_K prod_(j=K+1)^(m+1) r / j`, and the rest of the
    tail is a geometric series of ratio `r / (m + 2)`. If the terms still grow at the
    full degree (`r >= m + 2`) the step is hopeless: `f = 1 / tolerance`.
    """
    real = last_norm.dtype
    K = num_terms.astype(real)
    r = jnp.where(previous_norm > 0, K * last_norm / _positive(previous_norm), 0)
    r = jax.lax.stop_gradient(r)
    log_factor = (degree + 1 - K) * jnp.log(_positive(r)) - (
        jax.lax.lgamma(jnp.asarray(degree + 2.0, real)) - jax.lax.lgamma(K + 1)
    )
    geometric = 1 - r / (degree + 2)
    converging = jnp.exp(jnp.minimum(log_factor, 100.0)) / _positive(geometric)
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
            k + 1, new_term, new_total, norm(new_term), last_norm, norm(new_total),
            magnitude + last_norm,
        )

    real = jnp.finfo(y.dtype).dtype
    init = (
        jnp.zeros((), jnp.int32), y, jnp.zeros_like(y), norm(y),
        jnp.asarray(jnp.inf, real), jnp.zeros((), real), jnp.zeros((), real),
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

        return jax.lax.cond(k <= num_terms, active, lambda carry: carry, carry), None

    (_, _, d_total), _ = jax.lax.scan(
        add_tangent, (y, d_y, d_y), jnp.arange(1, degree + 1, dtype=jnp.int32)
    )
    return out, (d_total, (None, None, None, None, None))
