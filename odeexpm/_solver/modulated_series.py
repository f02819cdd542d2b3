"""Taylor steps in time for a `Modulated` generator `A(t) = A0 + sum_c f_c(t) A_c`.

The solution of `dy/dt = A(t) y` is analytic wherever the controls `f_c` are, and its
Taylor coefficients follow from those of the controls by a recurrence with one product
with each `A_c` per term: with `T_k = h^k y^(k)(t) / k!` and `F_(j,c) = h^j f_c^(j)(t)/j!`,

    T_(k+1) = h/(k+1) (A0 T_k + sum_c sum_(j<=k) F_(j,c) A_c T_(k-j)).

The control coefficients come from `jax.experimental.jet` (Taylor mode), so any control
written in JAX primitives that `jet` knows works, and stays differentiable with respect
to its parameters and `args`. One step of degree `m` costs `m (K + 1)` products and no
matrix function: for a large sparse generator at tight tolerances it covers many times
the time span of a Runge-Kutta step of the same cost.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.experimental import jet
from jaxtyping import Array, Inexact, PyTree, Real

from .._generator import Modulated
from .._operator import AbstractOperator, DenseOperator, Renumbering, apply_in_row_order
from .action import extrapolation, positive

# The degree at which the controls' Taylor series is cut. `jet`'s programs (and their
# compilation) grow quadratically with it: 30 took 21 s to compile a gradient, 16 takes
# 7 s. The mismatch of the cut series at the step's end is part of the error estimate,
# so a control that varies faster than that degree resolves (about `|h f'/f| > 1` at
# rtol 1e-13) gets shorter steps, never a silent error.
CONTROL_DEGREE = 16


class _Part(eqx.Module):
    """One term's operator in its fast form, with the row renumbering it runs in."""

    operator: AbstractOperator
    renumbering: Renumbering | None

    @classmethod
    def of(cls, operator: AbstractOperator) -> "_Part":
        return cls(*operator.fast_form())

    def mv(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return apply_in_row_order(self.operator, self.renumbering, y)

    def __matmul__(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return self.mv(y)


class ModulatedParts(eqx.Module):
    """The drift and the controlled operators of a `Modulated` generator in their fast
    forms: what the steps apply (computed once per solve)."""

    drift: _Part
    operators: tuple[_Part, ...]

    @classmethod
    def of(cls, generator: Modulated) -> "ModulatedParts":
        if generator.is_operator:
            drift, operators = generator.drift, generator.operators
        else:
            drift = DenseOperator(generator.drift)
            operators = tuple(DenseOperator(a) for a in generator.operators)
        return cls(_Part.of(drift), tuple(_Part.of(op) for op in operators))


def control_series(
    generator: Modulated, t: Real[Array, ""], h: Real[Array, ""], args: PyTree, degree: int
) -> Inexact[Array, "m K"]:
    """`F[j, c] = h^j f_c^(j)(t) / j!` for `j = 0, ..., degree` (`m = degree + 1` rows;
    Taylor mode: `jet`)."""
    controls = lambda s: generator.controls(s, args)  # noqa: E731
    zeros = (jnp.zeros_like(h),) * (degree - 1)
    value, derivatives = jet.jet(controls, (t,), ((h,) + zeros,))
    # jet returns derivatives along the path t + h s: h^j f^(j)(t) for j = 1, ..., degree.
    factorials = [float(math.factorial(j)) for j in range(1, degree + 1)]
    terms = [value] + [d / factorial for d, factorial in zip(derivatives, factorials)]
    return jnp.stack(terms)


def has_control_series(generator: Modulated, t0, args, degree: int = CONTROL_DEGREE) -> bool:
    """Whether `jet` can expand the controls in time (every primitive they use has a
    Taylor rule); traced for shapes only."""
    try:
        jax.eval_shape(
            lambda t, args: control_series(generator, t, jnp.ones_like(t), args, degree),
            jnp.asarray(t0, float),
            args,
        )
    except KeyError:  # jet's error for a primitive without a Taylor rule
        return False
    return True


def modulated_taylor_step(
    parts: ModulatedParts,
    series: Inexact[Array, "q K"],
    controls_at_end: Inexact[Array, " K"],
    h: Real[Array, ""],
    y: Inexact[Array, " n *k"],
    degree: int,
) -> tuple[Inexact[Array, " n *k"], Inexact[Array, " n *k"]]:
    """`(y1, y_error)`: the Taylor polynomial of degree `degree` of `y(t + h)` (for the
    controls cut to the degree of `series`, `F[j, c]` for `j < q`), and an
    error estimate with three parts: the first omitted term extrapolated from the last
    two and the rounding of terms that cancel, as in the constant case
    (`taylor_action`); and the controls' own mismatch, `h |f_c(t + h) - sum_j F_(j,c)|
    |A_c y|`, which is rounding for analytic controls, and large where a control has a
    kink or jump inside the step that its Taylor series cannot see (one not declared in
    `jump_ts`): the step is then rejected and shortened, as a Runge-Kutta step would be.
    """
    real = jnp.finfo(y.dtype).dtype
    unit_roundoff = float(jnp.finfo(real).eps) / 2
    # (K, m): what the terms T_1 ... T_m use (zero beyond the series' own degree)
    coefficients = jnp.pad(series[:degree], ((0, max(0, degree - series.shape[0])), (0, 0))).T
    total, (term, products, norms, magnitude) = taylor_terms(
        parts, coefficients, h, y, degree=degree
    )
    # Slot 0 of each buffer holds A_c T_0 = A_c y.
    mismatch = jnp.abs(controls_at_end - jnp.sum(series, axis=0))
    kinks = sum(abs(h) * m * jnp.abs(buffer[0]) for m, buffer in zip(mismatch, products))
    factor = extrapolation(jnp.asarray(degree), norms[-1], norms[-2], degree, unit_roundoff)
    truncation = jnp.abs(term) * factor
    cancellation = jnp.maximum(magnitude / positive(_norm(total)) - 1, 0)
    rounding = unit_roundoff * cancellation * jnp.abs(total)
    y_error = jax.lax.stop_gradient(truncation + rounding + kinks).astype(y.dtype)
    return total, y_error


def _norm(x):
    return jnp.max(jnp.abs(x))


def _weights(coefficients: Inexact[Array, " m"], k) -> Inexact[Array, " m"]:
    """The weights of buffer slot `i`, which holds `A_c T_i`, in term `k + 1`:
    `F[k - i, c]` for `i <= k`, else 0."""
    lag = k - jnp.arange(coefficients.shape[0])
    return jnp.where(lag >= 0, coefficients[jnp.maximum(lag, 0)], 0)


def _series_scan(parts, coefficients, h, y, degree: int, keep_terms: bool):
    """The recurrence as a `scan` of `degree` terms; with `keep_terms`, also
    `T_k` and `A0 T_k + sum_c sum_j F_(j,c) A_c T_(k-j)` for each `k < degree`."""
    real = jnp.finfo(y.dtype).dtype

    def add_term(carry, k):
        term, total, products, magnitude = carry
        derivative = parts.drift.mv(term)
        new_products = []
        for part, control, buffer in zip(parts.operators, coefficients, products):
            buffer = jax.lax.dynamic_update_index_in_dim(buffer, part.mv(term), k, 0)
            derivative = derivative + jnp.tensordot(_weights(control, k), buffer, axes=1)
            new_products.append(buffer)
        new_term = (h / (k + 1).astype(real)) * derivative
        new_norm = _norm(new_term)
        kept = (term, derivative) if keep_terms else None
        return (new_term, total + new_term, new_products, magnitude + new_norm), (new_norm, kept)

    products = [jnp.zeros((degree,) + y.shape, y.dtype) for _ in parts.operators]
    init = (y, y, products, _norm(y))
    carry, (norms, kept) = jax.lax.scan(add_term, init, jnp.arange(degree))
    term, total, products, magnitude = carry
    products = tuple(products)
    norms = jnp.concatenate([_norm(y)[None], norms])
    return (total, (term, products, norms, magnitude)), kept


@eqx.filter_custom_jvp
def taylor_terms(parts, coefficients, h, y, *, degree):
    """`(sum_(k<=m) T_k, (T_m, buffers, (||T_k||)_k, sum_k ||T_k||))` for the recurrence
    of the module's docstring, `T_0 = y`, `m = degree`. Each buffer has `degree` slots,
    slot `i` holding `A_c T_i`; the convolution with the control coefficients is one dot
    product with it per term (shifting the buffer, or accumulating each product's
    contributions to the later terms, costs several times as much on the CPU).

    Derivatives (of the sum only): by the JVP rule, whose tangent scan reads the final
    buffers as constants. Differentiated as a plain scan, reverse mode would keep every
    iteration's buffers, `degree^2` states per operator.
    """
    out, _ = _series_scan(parts, coefficients, h, y, degree, keep_terms=False)
    return out


@taylor_terms.def_jvp
def _taylor_terms_jvp(primals, tangents, *, degree):
    parts, coefficients, h, y = primals
    d_parts, d_coefficients, d_h, d_y = tangents
    out, (terms, derivatives) = _series_scan(parts, coefficients, h, y, degree, keep_terms=True)
    _, (_, products, _, _) = out
    real = jnp.finfo(y.dtype).dtype
    d_y = jnp.zeros_like(y) if d_y is None else d_y
    d_h = jnp.zeros_like(h) if d_h is None else d_h
    d_coefficients = jnp.zeros_like(coefficients) if d_coefficients is None else d_coefficients

    def product(part, d_part, term, d_term):
        return eqx.filter_jvp(lambda p, x: p.mv(x), (part, term), (d_part, d_term))[1]

    def add_tangent(carry, inputs):
        d_term, d_total, d_products = carry
        k, term, derivative = inputs
        d_drift = None if d_parts is None else d_parts.drift
        d_derivative = product(parts.drift, d_drift, term, d_term)
        new_d_products = []
        for c, (part, control, buffer, d_buffer) in enumerate(
            zip(parts.operators, coefficients, products, d_products)
        ):
            d_part = None if d_parts is None else d_parts.operators[c]
            d_product = product(part, d_part, term, d_term)
            d_buffer = jax.lax.dynamic_update_index_in_dim(d_buffer, d_product, k, 0)
            d_derivative = (
                d_derivative
                + jnp.tensordot(_weights(control, k), d_buffer, axes=1)
                + jnp.tensordot(_weights(d_coefficients[c], k), buffer, axes=1)
            )
            new_d_products.append(d_buffer)
        scale = 1 / (k + 1).astype(real)
        d_new_term = scale * (d_h * derivative + h * d_derivative)
        return (d_new_term, d_total + d_new_term, new_d_products), None

    d_products = [jnp.zeros_like(buffer) for buffer in products]
    (_, d_total, _), _ = jax.lax.scan(
        add_tangent, (d_y, d_y, d_products), (jnp.arange(degree), terms, derivatives)
    )
    no_tangent = jax.tree.map(lambda _: None, out[1])
    return out, (d_total, no_tangent)
