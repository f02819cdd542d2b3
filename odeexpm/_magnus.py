"""Magnus solvers: diffrax solvers for `dy/dt = A(t) y` whose steps are exponentials.

A Magnus step replaces `A(t)` on `[t, t + h]` by one matrix `Omega` built from samples
of `A` at quadrature nodes, and sets `y(t + h) = exp(Omega) y(t)`. For a skew-Hermitian
generator (`A = -iH`) every `Omega` is skew-Hermitian, so each step is unitary and the
solution stays unitary to rounding over any number of steps; Runge-Kutta steps are
polynomials in `hA` and drift away from the unitary group.

The solvers read `A(t)` itself through `odeexpm.LinearTerm.matrix`, so they accept only
that term (`odeexpm.propagator` and `odeexpm.evolve` build it; with `diffrax.diffeqsolve`
pass `odeexpm.LinearTerm(generator)`).
"""

import functools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from ._generators import AbstractGenerator, Modulated
from ._term import LinearTerm, merge_complex, split_complex, unwrap_term

_SQRT3 = math.sqrt(3.0)
_SQRT15 = math.sqrt(15.0)
# Gauss-Legendre nodes on [0, 1]: two for order 4, three for order 6.
_GAUSS2 = (0.5 - _SQRT3 / 6, 0.5 + _SQRT3 / 6)
_GAUSS3 = (0.5 - _SQRT15 / 10, 0.5, 0.5 + _SQRT15 / 10)

# The step exponential: the Taylor polynomial of degree 18 at `X / 2^s`, with
# `||X / 2^s||_1 <= THETA`, then `s` squarings. The polynomial is evaluated with 5 matrix
# products by the scheme of Bader, Blanes and Casas (Mathematics 7 (2019) 1174), where
# Paterson-Stockmeyer needs 7. Its truncation error, at most THETA^19 / 19! e^THETA, is
# 1.3e-16 in double and 2e-7 in single precision, about the unit roundoff: the
# exponential of a skew-Hermitian matrix is unitary to rounding although it is made of
# matrix products only. THETA is Al-Mohy and Higham's backward
# error bound of degree 18 in double precision (1.09) and in single precision (3.01).
THETA = {"double": 1.09, "single": 3.01}
# Coefficients of the degree-18 scheme (B1 in powers 0-3 of X, B2..B5 in powers 0, 1,
# 2, 3 and 6): `A9 = B1 B5 + B4`, `T18 = B2 + (B3 + A9) A9`.
_T18_B1 = (0.0, -0.10036558103014462001, -0.00802924648241156960, -0.00089213849804572995)
_T18_B = (
    (0.0, 0.39784974949964507614, 1.36783778460411719922, 0.49828962252538267755, -0.00063789819459472330),
    (-10.9676396052962062593, 1.68015813878906197182, 0.05717798464788655127, -0.00698210122488052084, 0.00003349750170860705),
    (-0.09043168323908105619, -0.06764045190713819075, 0.06759613017704596460, 0.02955525704293155274, -0.00001391802575160607),
    (0.0, 0.0, -0.09233646193671185927, -0.01693649390020817171, -0.00001400867981820361),
)
# Squarings are applied under `lax.cond` inside a `lax.scan` of this length, which every
# adjoint can differentiate. Reverse mode pays for every iteration, taken or not, so the
# scan is short: a step with `||Omega||_1 > THETA 2^MAX_SQUARINGS` (17.4 in double
# precision, 48 in single) is refused instead. Its error estimate is infinite, and an
# adaptive controller retries with a smaller step. Accuracy limits steps well below this
# on time-dependent generators; constant pieces of large norm take several steps.
MAX_SQUARINGS = 4


# From this size on, complex products are done as real ones (below, the native
# complex product is as fast and compiles faster).
_REAL_PRODUCTS_FROM = 32


def matmul(x: Array, y: Array) -> Array:
    """`x @ y`, with complex products of larger matrices done as real ones.

    XLA's CPU backend multiplies complex matrices more slowly than the real products
    they amount to: for 64x64 complex128, 79 us against 47 us for the three real
    products of Gauss's method, `(a + ib)(c + id) = ac - bd + i((a + b)(c + d) - ac - bd)`
    (normwise as stable as the complex product).
    """
    if not (jnp.iscomplexobj(x) or jnp.iscomplexobj(y)) or x.shape[-1] < _REAL_PRODUCTS_FROM:
        return x @ y
    if not jnp.iscomplexobj(x):  # two real products, as one
        vector = y.ndim == 1
        y = y[:, None] if vector else y
        k = y.shape[-1]
        p = x @ jnp.concatenate([y.real, y.imag], axis=-1)
        out = p[:, :k] + 1j * p[:, k:]
        return out[:, 0] if vector else out
    y = y.astype(x.dtype)
    ac, bd = x.real @ y.real, x.imag @ y.imag
    cross = (x.real + x.imag) @ (y.real + y.imag)
    return (ac - bd) + 1j * (cross - ac - bd)


def commutator(x: Array, y: Array) -> Array:
    """`[x, y] = x y - y x`."""
    return matmul(x, y) - matmul(y, x)


def _taylor18(x: Array) -> Array:
    """`sum_{k <= 18} x^k / k!` with 5 matrix products (Bader, Blanes and Casas).

    The scheme's constant term, 1, is the product of its factors' constant terms
    (-11.06 and -0.090): it is taken out (`(d + M)(c + N) = dc + dN + cM + MN`), so that
    rounding errors scale with `||x||`, not with 1, and a step near the identity stays
    unitary to rounding over thousands of steps.
    """
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    x2 = matmul(x, x)
    x3 = matmul(x2, x)
    x6 = matmul(x3, x3)
    powers = (eye, x, x2, x3, x6)
    combination = lambda c: sum(ci * p for ci, p in zip(c[1:], powers[1:]) if ci != 0.0)
    b2, b3, b4, b5 = (combination(c) for c in _T18_B)  # without their constant terms
    n9 = matmul(combination(_T18_B1), b5) + b4  # A9 = c + N9
    m9 = b3 + n9  # B3 + A9 = d + M9
    c, d = _T18_B[2][0], _T18_B[1][0] + _T18_B[2][0]
    return eye + b2 + d * n9 + c * m9 + matmul(m9, n9)  # (dc = 1: the Taylor coefficient)


def expm_step(x: Inexact[Array, "n n"]) -> tuple[Inexact[Array, "n n"], Array]:
    """`(exp(x), ok)`: the exponential by a Taylor polynomial with scaling and squaring.

    Accurate to rounding for `||x||_1 <= THETA 2^MAX_SQUARINGS` (17.4 in double
    precision, 48 in single); `ok` is False beyond, where the result is not to be used.
    Differentiable in forward and reverse mode.
    """
    theta = THETA["double" if jnp.finfo(x.dtype).bits == 64 else "single"]
    norm = jax.lax.stop_gradient(jnp.max(jnp.sum(jnp.abs(x), axis=0)))
    ok = norm <= theta * 2.0**MAX_SQUARINGS
    # frexp: norm / theta = m 2^e with m in [0.5, 1), so 2^-e scales the norm below theta.
    _, exponent = jnp.frexp(norm / theta)
    squarings = jnp.clip(exponent, 0, MAX_SQUARINGS)
    e = _taylor18(x * jnp.ldexp(jnp.ones((), norm.dtype), -squarings))

    def square(e, i):
        return jax.lax.cond(i < squarings, lambda e: matmul(e, e), lambda e: e, e), None

    e, _ = jax.lax.scan(square, e, jnp.arange(MAX_SQUARINGS))
    return e, ok


def _linear_term(terms) -> tuple[LinearTerm, Array | int]:
    """The `LinearTerm` inside `terms`, and the time direction diffrax solves in."""
    terms, direction = unwrap_term(terms)
    if not isinstance(terms, LinearTerm):
        raise TypeError(
            "odeexpm: Magnus solvers need the generator A(t) itself, which only an "
            f"`odeexpm.LinearTerm` provides; got a term of type {type(terms).__name__}. "
            "Use them through `odeexpm.propagator`/`odeexpm.evolve` (or pass "
            "`odeexpm.LinearTerm(generator)` to `diffrax.diffeqsolve`). "
            "`diffrax.BacksolveAdjoint` solves its adjoint system, which is not of this "
            "form, with the same solver: use `diffrax.RecursiveCheckpointAdjoint` (the "
            "default) or a Runge-Kutta solver with it."
        )
    return terms, direction


class AbstractMagnus(diffrax.AbstractAdaptiveSolver):
    """Base class of the Magnus solvers: steps `y(t + h) = exp(Omega) y(t)`.

    Subclasses define `_step(samples, t, h, y) -> (y1, y_error, ok)` in complex or real
    arithmetic, with `samples` a `Samples` of the generator and `ok` False where a step
    exponential was out of range. Those that use commutators set `commutator_depth`:
    `prepare` then attaches to a `Modulated` generator the nested commutators of its
    matrices (computed once per solve; `odeexpm.propagator`/`evolve` call it), and every
    `Omega` is a linear combination of them, without matrix products.

    A step whose `Omega` has a 1-norm above 17.4 (48 in single precision) is refused, as
    beyond the range of the step exponential: adaptive controllers retry it smaller;
    with `diffrax.ConstantStepSize` the result is NaN.

    Dense output (`diffrax.SaveAt(ts=...)` or `dense=True` in `diffrax.diffeqsolve`) is
    the cubic Hermite interpolant of `y` and `A y` at the ends of each step: third order
    (local error `O(h^4)`), exact at the step ends, not unitary in between.
    `odeexpm.propagator` and `odeexpm.evolve` step exactly to their `ts`, so their
    outputs never use it.
    """

    term_structure: ClassVar = diffrax.AbstractTerm  # checked in `init`, with a clear message
    interpolation_cls: ClassVar[Callable[..., diffrax.AbstractLocalInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation
    )
    # `rtol = atol` used by `odeexpm.propagator`/`evolve` when no tolerance is given:
    # (double precision, single precision).
    tolerances: ClassVar[tuple[float, float]] = (1e-12, 1e-6)
    # Depth of the nested commutators in `Omega` (0: none).
    commutator_depth: ClassVar[int] = 0

    def default_tolerance(self, dtype) -> float:
        """The `rtol = atol` used when none is given, for states of `dtype`."""
        return self.tolerances[0 if jnp.finfo(dtype).bits == 64 else 1]

    def prepare(self, generator: AbstractGenerator) -> AbstractGenerator:
        """`generator`, with its commutators attached (`WithCommutators`) if it is a
        `Modulated` generator for which this solver's steps can use them."""
        if not Commutators.pay(generator, self.commutator_depth):
            return generator
        return WithCommutators(generator, Commutators.of(generator, self.commutator_depth))

    def init(self, terms, t0, t1, y0, args):
        _linear_term(terms)
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        term, direction = _linear_term(terms)
        # diffeqsolve runs in time `direction * t`; the step below is in the user's time.
        start, h = direction * t0, direction * (t1 - t0)
        samples = Samples(term, args)
        matrix = samples.matrix
        y = merge_complex(y0)
        y1, y_error, ok = self._step(samples, start, h, y)
        # A refused step: its infinite error makes diffrax's adaptive controllers reject
        # it and shrink the step (a NaN error would poison the next step size); with a
        # constant step size the NaN state shows in the result.
        y_error = jnp.where(ok, y_error, jnp.inf)
        y1 = jnp.where(ok, y1, jnp.nan)
        # Hermite data for dense output; dead code (removed by XLA) unless it is used.
        k0 = h * matmul(matrix(start), y)
        k1 = h * matmul(matrix(start + h), y1)
        dense_info = dict(
            y0=y0, y1=split_complex(y1), k0=split_complex(k0), k1=split_complex(k1)
        )
        return (
            split_complex(y1), split_complex(y_error), dense_info, None,
            diffrax.RESULTS.successful,
        )

    def _step(self, samples, t, h, y):
        raise NotImplementedError


class _StepDoubling(AbstractMagnus):
    """A Magnus method with the step-doubling error estimate.

    Each step of size `h` is taken once whole and once as two halves. The two halves are
    propagated (they are the more accurate, and unitary); for a method of order `p`
    their difference to the whole step, divided by `2^p - 1`, estimates their local
    error (Richardson), which is `O(h^(p+1))`. It sees every error source (quadrature of
    `A(t)` and the truncated commutator series alike) for about 1.5 times the work of
    the plain method at the same accuracy.
    """

    def error_order(self, terms):
        return self.order(terms) + 1

    def _step(self, samples, t, h, y):
        half = 0.5 * h
        y_half, ok1 = self._propagate(samples, t, half, y)
        y1, ok2 = self._propagate(samples, t + half, half, y_half)
        y_whole, ok3 = self._propagate(samples, t, h, y)
        return y1, (y1 - y_whole) / (2 ** self.order(None) - 1), ok1 & ok2 & ok3

    def _propagate(self, samples, t, h, y):
        raise NotImplementedError


def _error_estimate(difference, y1):
    """`difference @ y1` in single precision: the error estimate of the embedded
    methods, which needs a digit or two, at half the cost of a double-precision product."""
    low = jnp.complex64 if jnp.iscomplexobj(difference) or jnp.iscomplexobj(y1) else jnp.float32
    # Scaled by a power of two first: a double-precision state beyond float32's range
    # (a growing real system) must not turn into inf here and stall the solve.
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(y1)))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), 2.0 ** jnp.round(jnp.log2(scale)), 1.0)
    scale = scale.astype(jnp.finfo(y1.dtype).dtype)
    product = matmul(difference.astype(low), (y1 / scale).astype(low))
    return product.astype(y1.dtype) * scale


def _apply_exp(omega, y):
    """`(exp(omega) @ y, ok)`, `ok` False if `omega` is too large to take."""
    e, ok = expm_step(omega)
    return matmul(e, y), ok


class Magnus2(_StepDoubling):
    """The exponential midpoint rule, order 2: `y(t + h) = exp(h A(t + h/2)) y(t)`.

    One exponential per step; error control by step doubling (two half steps are
    propagated). Unitary for skew-Hermitian generators. Cheap per step but low order:
    use it for loose tolerances or rough generators.

    Example:
        ```python
        A = lambda t, args: jnp.array([[0.0, t], [-t, 0.0]])
        U = odeexpm.propagator(A, 0.0, 1.0, solver=odeexpm.Magnus2(), rtol=1e-6)
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-8, 1e-5)

    def order(self, terms):
        return 2

    def _propagate(self, samples, t, h, y):
        return _apply_exp(h * samples.matrix(t + 0.5 * h), y)


class Magnus4(_StepDoubling):
    """The fourth-order Magnus method with two Gauss-Legendre nodes.

    With `A1 = A(t + c1 h)`, `A2 = A(t + c2 h)`, `c = 1/2 -+ sqrt(3)/6`:
    `Omega = h/2 (A1 + A2) + sqrt(3)/12 h^2 [A2, A1]`, `y(t + h) = exp(Omega) y(t)`.
    One commutator and one exponential per step; error control by step doubling.

    Example:
        ```python
        A = lambda t, args: -1j * jnp.array([[1.0, jnp.sin(t)], [jnp.sin(t), -1.0]])
        U = odeexpm.propagator(A, 0.0, 5.0, solver=odeexpm.Magnus4())
        # U is unitary to rounding: ||U^H U - I|| ~ 1e-15
        ```
    """

    commutator_depth: ClassVar[int] = 2

    def order(self, terms):
        return 4

    def _propagate(self, samples, t, h, y):
        if samples.commutators is None:
            a1, a2 = (samples.matrix(t + c * h) for c in _GAUSS2)
            omega = 0.5 * h * (a1 + a2) + (_SQRT3 / 12) * h**2 * commutator(a2, a1)
        else:
            e1, e2 = (samples.coordinates(t + c * h) for c in _GAUSS2)
            omega = samples.commutators.combine(
                0.5 * h * (e1 + e2), (_SQRT3 / 12) * h**2 * _outer(e2, e1)
            )
        return _apply_exp(omega, y)


class CFMagnus4(_StepDoubling):
    """The commutator-free fourth-order Magnus method (two exponentials, no commutator).

    `y(t + h) = exp(h (b2 A1 + b1 A2)) exp(h (b1 A1 + b2 A2)) y(t)` with the Gauss nodes
    of `Magnus4` and `b1 = 1/4 + sqrt(3)/6`, `b2 = 1/4 - sqrt(3)/6`. Error control by
    step doubling. Each exponential involves only a linear combination of samples of
    `A`, so it keeps whatever structure those share (e.g. sparsity patterns, symmetry).

    Example:
        ```python
        A = lambda t, args: jnp.array([[0.0, 1.0], [-1.0 - t, 0.0]])  # Airy-like
        y = odeexpm.evolve(A, jnp.array([1.0, 0.0]), 0.0, 2.0, solver=odeexpm.CFMagnus4())
        ```
    """

    def order(self, terms):
        return 4

    def _propagate(self, samples, t, h, y):
        b1, b2 = 0.25 + _SQRT3 / 6, 0.25 - _SQRT3 / 6
        a1, a2 = (samples.matrix(t + c * h) for c in _GAUSS2)
        y_mid, ok1 = _apply_exp(h * (b1 * a1 + b2 * a2), y)
        y1, ok2 = _apply_exp(h * (b2 * a1 + b1 * a2), y_mid)
        return y1, ok1 & ok2


class Magnus6(AbstractMagnus):
    """The sixth-order Magnus method with three Gauss-Legendre nodes, with an embedded
    fourth-order error estimate. The default solver of `odeexpm.propagator`/`evolve`
    for generators other than those `Magnus8` takes.

    With `A_i = A(t + c_i h)`, `c = 1/2 - sqrt(15)/10, 1/2, 1/2 + sqrt(15)/10` (Blanes,
    Casas and Ros, BIT 40 (2000)):

        a1 = h A_2,  a2 = sqrt(15) h / 3 (A_3 - A_1),  a3 = 10 h / 3 (A_3 - 2 A_2 + A_1)
        C1 = [a1, a2],  C2 = -1/60 [a1, 2 a3 + C1]
        Omega6 = a1 + a3 / 12 + 1/240 [-20 a1 - a3 + C1, a2 + C2]

    and `y(t + h) = exp(Omega6) y(t)`: three commutators and one exponential per step.

    Error estimate (embedded, as in Runge-Kutta pairs). A fourth-order Magnus step with
    Simpson's rule for the integral of `A`, `Omega4 = h/6 (A(t) + 4 A_2 + A(t + h)) -
    C1 / 12`, differs from `Omega6` by `O(h^5)`: its missing commutator terms and its
    quadrature error both show in `Omega6 - Omega4`. The error estimate is
    `(Omega6 - Omega4) y(t + h)`, which costs two evaluations of `A` at the step ends and
    one product. The sixth-order solution is propagated, so (for small steps) the
    estimate bounds its error from above and the tolerance is met with room to spare.

    For a `Modulated` generator `A = A0 + sum_k f_k(t) A_k` (with `n >= 4` for one
    control, `n >= 16` for two: see `Commutators.pay`) the nested commutators of
    `A0, ..., A_K` are computed once per solve (`prepare`), and `Omega6` and `Omega4` become linear combinations of them: the same
    series, truncated after its `O(h^6)` terms (the terms `[a3, C2]` and `[C1, C2]` of
    the formula above are `O(h^7)`). A step then costs one exponential and two matrix
    products.

    Example:
        ```python
        A = lambda t, args: -1j * jnp.array([[1.0, jnp.cos(t)], [jnp.cos(t), -1.0]])
        U = odeexpm.propagator(A, 0.0, 10.0, solver=odeexpm.Magnus6(), rtol=1e-10)
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (1e-9, 1e-5)
    commutator_depth: ClassVar[int] = 4

    def order(self, terms):
        return 6

    def error_order(self, terms):
        return 5

    def _step(self, samples, t, h, y):
        if samples.commutators is not None:
            return self._step_modulated(samples, t, h, y)
        matrix = samples.matrix
        a_1, a_2, a_3 = (matrix(t + c * h) for c in _GAUSS3)
        a1 = h * a_2
        a2 = (_SQRT15 / 3) * h * (a_3 - a_1)
        a3 = (10.0 / 3) * h * (a_3 - 2 * a_2 + a_1)
        c1 = commutator(a1, a2)
        c2 = (-1.0 / 60) * commutator(a1, 2 * a3 + c1)
        omega6 = a1 + a3 / 12 + (1.0 / 240) * commutator(-20 * a1 - a3 + c1, a2 + c2)
        y1, ok = _apply_exp(omega6, y)
        omega4 = (h / 6) * (matrix(t) + 4 * a_2 + matrix(t + h)) - c1 / 12
        return y1, _error_estimate(omega6 - omega4, y1), ok

    def _step_modulated(self, samples, t, h, y):
        # The same Magnus series, written in the coordinates e(t) = (1, f_1(t), ...) of
        # A(t) = sum_k e_k(t) B_k, with the commutators of the B precomputed. Omega6 keeps
        # the terms of the formula above up to O(h^6) ([a3, C2] and [C1, C2] are O(h^7)):
        #   Omega6 = a1 + a3/12 - C1/12 + 1/240 (-[a3, a2] - [a2, [a1, a2]]
        #            + 2/3 [a1, [a1, a3]] + 1/3 [a1, [a1, [a1, a2]]])
        e_1, e_2, e_3 = (samples.coordinates(t + c * h) for c in _GAUSS3)
        w1 = h * e_2
        w2 = (_SQRT15 / 3) * h * (e_3 - e_1)
        w3 = (10.0 / 3) * h * (e_3 - 2 * e_2 + e_1)
        third = (1.0 / 240) * (-_outer(w2, w1, w2) + (2.0 / 3) * _outer(w1, w1, w3))
        fourth = (1.0 / 720) * _outer(w1, w1, w1, w2)
        simpson = (h / 6) * (samples.coordinates(t) + 4 * e_2 + samples.coordinates(t + h))
        omega6 = samples.commutators.combine(
            w1 + w3 / 12, -_outer(w1, w2) / 12 - _outer(w3, w2) / 240, third, fourth
        )
        y1, ok = _apply_exp(omega6, y)
        difference = samples.commutators.combine(
            w1 + w3 / 12 - simpson, -_outer(w3, w2) / 240, third, fourth
        )
        return y1, _error_estimate(difference, y1), ok


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
    the free algebra when the class is first used (`_magnus_series`). With Gauss nodes
    the quadrature error is of order `h^9` too, so the method has order 8 (Iserles and
    Norsett, 1999). It needs a `Modulated` generator, whose nested commutators up to
    depth 6 are computed once per solve (`prepare`): `Omega` is then a linear
    combination of them, and a step costs one exponential (5 matrix products for
    `||Omega||_1 <= 1.09`) and one product. For other generators use `Magnus6`.

    Error estimate: the terms of order `h^7` of `Omega`, applied to `y(t + h)`: the
    difference to the sixth-order method with the same nodes, `O(h^7)`. The
    eighth-order result is propagated, so the estimate bounds its error from above.

    Example:
        ```python
        A = odeexpm.Modulated(-1j * Z, -1j * X[None], lambda t, a: a * jnp.sin(t))
        U = odeexpm.propagator(A, 0.0, 10.0, args=0.7, solver=odeexpm.Magnus8())
        ```
    """

    tolerances: ClassVar[tuple[float, float]] = (3e-10, 3e-6)
    commutator_depth: ClassVar[int] = 6

    def order(self, terms):
        return 8

    def prepare(self, generator):
        # The steps need the commutators: take them even where a step costs less without.
        commutators = Commutators.of(generator, self.commutator_depth)
        return generator if commutators is None else WithCommutators(generator, commutators)

    def error_order(self, terms):
        return 7

    def _step(self, samples, t, h, y):
        if samples.commutators is None:
            raise TypeError(
                "odeexpm.Magnus8 needs a dense `odeexpm.Modulated` generator whose nested "
                "commutators it can precompute and store (at most 2^22 numbers: one "
                "control up to n = 427, two up to n = 146, three up to n = 65), through "
                "`odeexpm.propagator`/`evolve`, which call `Magnus8().prepare`; use "
                "odeexpm.Magnus6 for other generators."
            )
        nodes, to_powers, series = _magnus_series(4, 7)
        e = jnp.stack([samples.coordinates(t + c * h) for c in nodes])
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
        y1, ok = _apply_exp(omega, y)
        return y1, _error_estimate(top, y1), ok


@functools.cache
def _magnus_series(s: int, max_weight: int):
    """The Magnus series of a generator of degree `s - 1`, from its samples at `s` Gauss
    nodes, truncated after the terms of order `h^max_weight`.

    Returns `(nodes, to_powers, series)`: the nodes on `[0, 1]`; the matrix taking the
    samples `A(t + c_i h)` to the coefficients `C_j` of `sum_j C_j (tau - 1/2)^j`; and
    for each word length `k = 1, 2, ...` the words (shape `(words, k)`) and coefficients
    (shape `(2, words)`) of `Omega` as a Lie polynomial in the letters `x_j = h C_j`
    (weight `j + 1`, as `x_j = O(h^(j + 1))`) in right-nested commutators
    `[x_a, [x_b, ...]]`, for all of `Omega` (first row) and for its terms of the top
    weight alone (second row).

    The series is the logarithm of the time-ordered exponential in the free algebra,
    `U = sum_w F_w x_w` over words `w = (j_1, ..., j_k)` with the iterated integrals
    `F_w = int_{1 > tau_1 > ... > tau_k > 0} prod_l (tau_l - 1/2)^(j_l)`, computed with
    exact rationals; by the Dynkin-Specht-Wever lemma a Lie polynomial of length `k` is
    `1/k` times the right-nested commutators of its words.
    """
    weight = lambda w: sum(j + 1 for j in w)

    def integral(p):  # the antiderivative vanishing at 0 of a polynomial (coefficients)
        return [Fraction(0)] + [c / (k + 1) for k, c in enumerate(p)]

    def times_power(p, j):  # p(tau) (tau - 1/2)^j
        for _ in range(j):
            p = [(p[k - 1] if k else 0) - Fraction(1, 2) * (p[k] if k < len(p) else 0)
                 for k in range(len(p) + 1)]
        return p

    # Iterated integrals as polynomials in tau, the first letter the latest time.
    integrals, words, frontier = {(): [Fraction(1)]}, {}, [()]
    while frontier:
        grown = []
        for rest in frontier:
            for j in range(s):
                w = (j,) + rest
                if weight(w) <= max_weight:
                    integrals[w] = integral(times_power(integrals[rest], j))
                    words[w] = sum(integrals[w])  # its value at tau = 1
                    grown.append(w)
        frontier = grown
    # log(1 + X) = X - X^2 / 2 + X^3 / 3 - ..., truncated by weight.
    log, power, n = {}, dict(words), 1
    while power:
        for w, c in power.items():
            log[w] = log.get(w, 0) + Fraction((-1) ** (n + 1), n) * c
        product = {}
        for w1, c1 in power.items():
            for w2, c2 in words.items():
                if weight(w1 + w2) <= max_weight:
                    product[w1 + w2] = product.get(w1 + w2, 0) + c1 * c2
        power, n = product, n + 1
    log = {w: c for w, c in log.items() if c != 0}
    series = []
    for k in range(1, max(map(len, log)) + 1):
        words = sorted(w for w in log if len(w) == k)
        coefficients = np.array(
            [[float(log[w] / k) for w in words],
             [float(log[w] / k) if weight(w) == max_weight else 0.0 for w in words]]
        )
        series.append((np.array(words, dtype=np.int32).reshape(len(words), k), coefficients))
    nodes = (np.polynomial.legendre.leggauss(s)[0] + 1) / 2
    to_powers = np.linalg.inv(np.vander(nodes - 0.5, s, increasing=True))
    return tuple(nodes), to_powers, tuple(series)


def default_solver(generator: AbstractGenerator) -> AbstractMagnus:
    """The solver of `odeexpm.propagator`/`evolve` when none is given: `Magnus8` where it
    can precompute its commutators (a `Modulated` generator with one control, or a few
    for large matrices), otherwise `Magnus6`."""
    return Magnus8() if Commutators.pay(generator, Magnus8.commutator_depth) else Magnus6()


def _outer(*vectors):
    """The outer product of coordinate vectors, shape `(m,) * len(vectors)`."""
    out = vectors[0]
    for v in vectors[1:]:
        out = out[..., None] * v
    return out


class Samples:
    """What a Magnus step reads of the generator in one step.

    - `matrix(t)`: the generator `A(t, args)`.
    - `commutators`: for a `Modulated` generator (`A = sum_k e_k(t) B_k` with
      `B = (A0, A1, ..., AK)`, `e = (1, f_1, ..., f_K)`) prepared by the solver, its
      `Commutators`, else `None`;
    - `coordinates(t)`: then `e(t)`.
    """

    def __init__(self, term: LinearTerm, args):
        self._term, self._args = term, args
        generator = merge_complex(term.generator)
        prepared = isinstance(generator, WithCommutators)
        self.commutators = generator.commutators if prepared else None
        self._modulated = generator.generator if prepared else None

    def matrix(self, t):
        return self._term.matrix(t, self._args)

    def coordinates(self, t):
        controls = self._modulated.controls(t, merge_complex(self._args))
        return jnp.concatenate([jnp.ones((1,), controls.dtype), controls])


# A Modulated generator gets precomputed commutators if contracting them is cheaper than
# the matrix products they replace (m^depth <= 2n for m = K + 1 matrices of size n) and
# they take little memory (at most 2^22 numbers).
_MAX_COMMUTATOR_NUMBERS = 2**22


class Commutators(eqx.Module):
    """The nested commutators of the matrices `B = (A0, A1, ..., AK)` of a `Modulated`
    generator, for Lie polynomials in linear combinations of the `B` (`combine`).

    Of the `m^d` right-nested commutators `[B_a1, [B_a2, [..., B_ad]]]` of depth `d`
    only a basis is kept (as many as the free Lie algebra on `m` letters has dimensions
    in degree `d`: 2, 1, 2, 3, 6, 9 for `m = 2`, against `2^d`), together with the
    universal relations that express the others in it (`_lie_basis`). A step's
    contraction then reads 23 matrices instead of 126 at depth 6.
    """

    # The basis commutators, depth by depth, flattened, complex ones as (real, imaginary)
    # pairs: each contraction is one real matrix product that reads them in place.
    basis: Array  # (number of basis commutators, n * n or 2 * n * n), real
    letters: int = eqx.field(static=True)  # m
    n: int = eqx.field(static=True)

    @staticmethod
    def pay(generator, depth: int) -> bool:
        """Whether a step's contraction of the commutators of `generator` up to `depth`
        is cheaper than the few matrix products it replaces: a dense `Modulated`
        generator with at most `2n` basis commutators for matrices of size `n`."""
        if depth == 0 or not Commutators.possible(generator, depth):
            return False
        m, n = generator.operators.shape[0] + 1, generator.drift.shape[-1]
        return sum(_lie_dimension(m, d) for d in range(1, depth + 1)) <= 2 * n

    @staticmethod
    def possible(generator, depth: int) -> bool:
        """Whether `of` can compute them: a dense `Modulated` generator, with a small
        free Lie algebra (`m^depth <= 4096` words) and at most 2^22 numbers to store."""
        if not isinstance(generator, Modulated) or getattr(generator, "is_operator", False):
            return False
        m, n = generator.operators.shape[0] + 1, generator.drift.shape[-1]
        size = sum(_lie_dimension(m, d) for d in range(1, depth + 1)) * n * n
        return m**depth <= 4096 and size <= _MAX_COMMUTATOR_NUMBERS

    @staticmethod
    def of(generator, depth: int) -> "Commutators | None":
        """The commutators of `generator` up to `depth`, or `None` where they cannot be
        had (see `possible`)."""
        if not Commutators.possible(generator, depth):
            return None
        dtype = jnp.result_type(generator.drift, generator.operators)
        letters = jnp.concatenate([generator.drift[None].astype(dtype), generator.operators.astype(dtype)])
        m, n = letters.shape[0], letters.shape[-1]
        levels = [letters]
        for d in range(2, depth + 1):
            words, _ = _lie_basis(m, d)
            _, relations = _lie_basis(m, d - 1)
            # [B_a, r(tail)], with r(tail) written in the basis of depth d - 1.
            tails = jnp.tensordot(
                jnp.asarray(relations[[_index(w[1:], m) for w in words]], dtype), levels[-1], axes=1
            )
            levels.append(jax.vmap(commutator)(letters[np.array([w[0] for w in words])], tails))
        basis = jnp.concatenate(levels)
        if jnp.iscomplexobj(basis):
            basis = jnp.stack([basis.real, basis.imag], axis=1)
        return Commutators(basis.reshape(basis.shape[0], -1), m, n)

    def combine(self, *weights: Array) -> Array:
        """`sum_d sum_w weights[d][..., w] [B_w1, [B_w2, [..., B_w(d+1)]]]`, with
        `weights[d]` of shape `(*batch, m, ..., m)` (`d + 1` axes of size `m`); the
        result has shape `(*batch, n, n)`."""
        coordinates = []
        for d, w in enumerate(weights, start=1):
            _, relations = _lie_basis(self.letters, d)
            w = w.reshape(w.shape[: w.ndim - d] + (self.letters**d,))
            coordinates.append(w @ jnp.asarray(relations, w.dtype))
        coordinates = jnp.concatenate(coordinates, axis=-1)
        basis = self.basis[: coordinates.shape[-1]]
        batch, n = coordinates.shape[:-1], self.n

        def contract(c):
            # One matrix-vector product per row: on CPU, XLA's product with a few rows
            # is slower than as many matrix-vector products (which read `basis` in place).
            rows = [row @ basis for row in c.reshape(-1, c.shape[-1])]
            return jnp.stack(rows).reshape(batch + (basis.shape[-1],))

        if jnp.iscomplexobj(coordinates):
            total = contract(coordinates.real) + 1j * contract(coordinates.imag)
        else:
            total = contract(coordinates)
        if basis.shape[-1] == n * n:
            return total.reshape(batch + (n, n))
        total = total.reshape(batch + (2, n, n))
        return total[..., 0, :, :] + 1j * total[..., 1, :, :]


def _lie_dimension(m: int, d: int) -> int:
    """The dimension of the degree-`d` part of the free Lie algebra on `m` letters
    (Witt's formula, `1/d sum_{k | d} mu(k) m^(d/k)`)."""

    def mobius(k):
        sign, p = 1, 2
        while p * p <= k:
            if k % p == 0:
                k //= p
                if k % p == 0:
                    return 0
                sign = -sign
            p += 1
        return -sign if k > 1 else sign

    return sum(mobius(k) * m ** (d // k) for k in range(1, d + 1) if d % k == 0) // d


def _index(word, m: int) -> int:
    """The position of `word` among the words of its length, in lexicographic order."""
    return sum(a * m ** (len(word) - 1 - i) for i, a in enumerate(word))


@functools.cache
def _lie_basis(m: int, d: int) -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """A basis of the right-nested commutators of depth `d` in `m` letters, and the
    relations expressing every one in it.

    Returns `(words, relations)`: the words `w` whose commutators `r(w) = [x_w1, [x_w2,
    [..., x_wd]]]` form the basis (the first independent ones in lexicographic order),
    and the `(m^d, len(words))` matrix with `r(u) = sum_j relations[u, j] r(words[j])`
    for every word `u` (indexed by `_index`). The relations hold in the free Lie algebra,
    hence for any matrices: they are found by expanding each `r(u)` into words.
    """
    # Row u: r(u) in the free associative algebra, by r(a u') = a r(u') - r(u') a.
    expansions = np.eye(m)
    for k in range(2, d + 1):
        inner = np.tile(expansions, (m, 1))  # row (a, u'): r(u') over words of length k - 1
        first = np.repeat(np.arange(m), m ** (k - 1))
        left = np.zeros((m**k, m**k))
        right = np.zeros((m**k, m**k))
        for row, (a, r) in enumerate(zip(first, inner)):
            left[row, a * m ** (k - 1) : (a + 1) * m ** (k - 1)] = r  # a u
            right[row, a :: m] = r  # u a
        expansions = left - right
    chosen, orthonormal = [], np.zeros((0, m**d))
    for u, row in enumerate(expansions):  # greedy Gram-Schmidt (the rows are integers)
        residual = row - orthonormal.T @ (orthonormal @ row)
        if np.linalg.norm(residual) > 1e-8 * max(1.0, np.linalg.norm(row)):
            chosen.append(u)
            orthonormal = np.vstack([orthonormal, residual / np.linalg.norm(residual)])
    relations = np.linalg.lstsq(expansions[chosen].T, expansions.T, rcond=None)[0].T
    words = tuple(tuple(int(a) for a in np.unravel_index(u, (m,) * d)) for u in chosen)
    return words, np.round(relations, 12)


class WithCommutators(AbstractGenerator):
    """A `Modulated` generator with the `Commutators` of its matrices attached, as
    `AbstractMagnus.prepare` makes it: the same generator, whose Magnus steps need no
    matrix products to build `Omega`. Gradients flow through the commutators to the
    generator's arrays.
    """

    generator: Modulated
    commutators: Commutators

    def __call__(self, t, args=None):
        return self.generator(t, args)

    @property
    def jump_ts(self):
        return self.generator.jump_ts
