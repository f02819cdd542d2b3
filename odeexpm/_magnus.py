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

import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact

from ._generators import AbstractGenerator, Modulated
from ._term import LinearTerm, merge_complex, split_complex, unwrap_term

_SQRT3 = math.sqrt(3.0)
_SQRT15 = math.sqrt(15.0)
# Gauss-Legendre nodes on [0, 1]: two for order 4, three for order 6.
_GAUSS2 = (0.5 - _SQRT3 / 6, 0.5 + _SQRT3 / 6)
_GAUSS3 = (0.5 - _SQRT15 / 10, 0.5, 0.5 + _SQRT15 / 10)

# The step exponential: the Taylor polynomial of `degree` (evaluated by Paterson-Stockmeyer
# in blocks of `block` powers) at `X / 2^s`, with `||X / 2^s||_1 <= theta`, then `s`
# squarings. The truncation error, at most theta^(degree+1) / (degree+1)! e^(2 theta), is
# 7e-18 in double (degree 16, theta 0.65) and 7e-10 in single precision (degree 9, theta
# 1/2), well below the unit roundoff: the exponential of a skew-Hermitian matrix is
# unitary to rounding although it is made of matrix products only (6 products in double
# precision and 4 in single, plus the squarings). Degree 16 is the cheapest in products
# for the norms ||h A|| of 0.3 to 10 that accurate steps have.
TAYLOR = {"double": (16, 4, 0.65), "single": (9, 3, 0.5)}
# Squarings are applied under `lax.cond` inside a `lax.scan` of this length, which every
# adjoint can differentiate. Reverse mode pays for every iteration, taken or not, so the
# scan is short: a step with `||Omega||_1 > theta 2^MAX_SQUARINGS` (10.4 in double
# precision, 8 in single) is refused instead. Its error estimate is infinite, and an
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


def _taylor(x: Array, degree: int, block: int) -> Array:
    """`sum_{k <= degree} x^k / k!` by Paterson-Stockmeyer: `block - 1` products for the
    powers, then one product per further block (Horner in `x^block`)."""
    powers = [jnp.eye(x.shape[0], dtype=x.dtype), x]
    for k in range(2, block + 1):
        powers.append(matmul(powers[k // 2], powers[k - k // 2]))
    coefficient = [1.0 / math.factorial(k) for k in range(degree + 1)]

    def block_sum(j):
        return sum(
            coefficient[j * block + i] * powers[i]
            for i in range(block)
            if j * block + i <= degree
        )

    top = degree // block
    if degree % block == 0:  # the top block is a multiple of the identity: no product
        total = block_sum(top - 1) + coefficient[degree] * powers[block]
        top -= 1
    else:
        total = block_sum(top)
    for j in range(top - 1, -1, -1):
        total = block_sum(j) + matmul(powers[block], total)
    return total


def expm_step(x: Inexact[Array, "n n"]) -> tuple[Inexact[Array, "n n"], Array]:
    """`(exp(x), ok)`: the exponential by a Taylor polynomial with scaling and squaring.

    Accurate to rounding for `||x||_1 <= theta 2^MAX_SQUARINGS` (10.4 in double
    precision, 8 in single); `ok` is False beyond, where the result is not to be used.
    Differentiable in forward and reverse mode.
    """
    degree, block, theta = TAYLOR["double" if jnp.finfo(x.dtype).bits == 64 else "single"]
    norm = jax.lax.stop_gradient(jnp.max(jnp.sum(jnp.abs(x), axis=0)))
    ok = norm <= theta * 2.0**MAX_SQUARINGS
    # frexp: norm / theta = m 2^e with m in [0.5, 1), so 2^-e scales the norm below theta.
    _, exponent = jnp.frexp(norm / theta)
    squarings = jnp.clip(exponent, 0, MAX_SQUARINGS)
    e = _taylor(x * jnp.ldexp(jnp.ones((), norm.dtype), -squarings), degree, block)

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

    A step whose `Omega` has a 1-norm above 10.4 (8 in single precision) is refused, as
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
        commutators = Commutators.of(generator, self.commutator_depth)
        return generator if commutators is None else WithCommutators(generator, commutators)

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
    fourth-order error estimate. The default solver of `odeexpm.propagator`/`evolve`.

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

    For a `Modulated` generator `A = A0 + sum_k f_k(t) A_k` (with `(K + 1)^4 <= 2n`)
    the nested commutators of `A0, ..., A_K` are computed once per solve
    (`prepare`), and `Omega6` and `Omega4` become linear combinations of them: the same
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
        return y1, matmul(omega6 - omega4, y1), ok

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
        return y1, matmul(difference, y1), ok


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
    generator: `levels[d][a_0, ..., a_d] = [B_a0, [B_a1, [..., B_ad]]]` (so `levels[0]`
    is `B`). A Lie polynomial in linear combinations of the `B` is then a contraction of
    these with the outer products of the combinations' coefficients (`combine`).
    """

    levels: tuple[Array, ...]

    @staticmethod
    def of(generator, depth: int) -> "Commutators | None":
        """The commutators of `generator` up to `depth`, or `None` where they do not pay
        (not a `Modulated` generator, or too many controls for the size of the matrices)."""
        if depth == 0 or not isinstance(generator, Modulated):
            return None
        dtype = jnp.result_type(generator.drift, generator.operators)
        basis = jnp.concatenate([generator.drift[None].astype(dtype), generator.operators.astype(dtype)])
        m, n = basis.shape[0], basis.shape[-1]
        if m**depth > 2 * n or sum(m**d for d in range(1, depth + 1)) * n * n > _MAX_COMMUTATOR_NUMBERS:
            return None
        levels = [basis]
        for _ in range(depth - 1):
            inner = levels[-1].reshape(-1, n, n)
            bracket = _products(basis, inner) - jnp.swapaxes(_products(inner, basis), 0, 1)
            levels.append(bracket.reshape((m,) + levels[-1].shape))
        return Commutators(tuple(levels))

    def combine(self, *weights: Array) -> Array:
        """`sum_d <weights[d], levels[d]>`, with `weights[d]` of shape `(m,) * (d + 1)`."""
        total = 0
        for d, (w, level) in enumerate(zip(weights, self.levels)):
            if jnp.iscomplexobj(w) or not jnp.iscomplexobj(level):
                total = total + jnp.tensordot(w, level, axes=d + 1)
            else:  # real weights: two real contractions (see `matmul`)
                total = total + (
                    jnp.tensordot(w, level.real, axes=d + 1)
                    + 1j * jnp.tensordot(w, level.imag, axes=d + 1)
                )
        return total


def _products(left: Array, right: Array) -> Array:
    """All products `left[a] @ right[b]`, shape `(p, q, n, n)`, as one matrix product."""
    p, n, _ = left.shape
    q = right.shape[0]
    wide = jnp.transpose(right, (1, 0, 2)).reshape(n, q * n)
    out = matmul(left.reshape(p * n, n), wide).reshape(p, n, q, n)
    return jnp.transpose(out, (0, 2, 1, 3))


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
