"""Base classes of the Magnus solvers: diffrax solvers for `dy/dt = A(t) y` whose steps
are exponentials.

A Magnus step replaces `A(t)` on `[t, t + h]` by one matrix `Omega` built from samples
of `A` at quadrature nodes, and sets `y(t + h) = exp(Omega) y(t)`. For a skew-Hermitian
generator (`A = -iH`) every `Omega` is skew-Hermitian, so each step is unitary and the
solution stays unitary to rounding over any number of steps; Runge-Kutta steps are
polynomials in `hA` and drift away from the unitary group.
"""

import abc
import math
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractClassVar
from jaxtyping import Array, ArrayLike, Bool, Inexact, PyTree, Real

from .._complex import merge_complex, split_complex
from .._generator import Modulated
from .._linalg import matmul
from .._operator import apply, is_operator
from .._term import LinearTerm
from .base import AbstractLinearSolver
from .commutators import Commutators
from .modulated_series import ModulatedParts

SQRT3 = math.sqrt(3.0)
SQRT15 = math.sqrt(15.0)
# Gauss-Legendre nodes on [0, 1]: two for order 4, three for order 6.
GAUSS2 = (0.5 - SQRT3 / 6, 0.5 + SQRT3 / 6)
GAUSS3 = (0.5 - SQRT15 / 10, 0.5, 0.5 + SQRT15 / 10)


class Samples:
    """What a Magnus step reads of the generator in one step.

    - `matrix(t)`: the generator `A(t, args)` (a dense matrix, or an operator).
    - `matrices(t, h, nodes)`: `A(t + c_j h)` for each node `c_j` (a dense generator).
    - `commutators`: the `Commutators` of a `Modulated` generator
      (`A = sum_k e_k(t) B_k` with `B = (A0, A1, ..., AK)`, `e = (1, f_1, ..., f_K)`)
      where the solver computed them, else `None`;
    - `parts`: the `ModulatedParts` (the `B` in their fast forms) of an operator-valued
      `Modulated` generator, where the solver computed them, else `None`;
    - `coordinates(t, h, nodes)`: then `e(t + c_j h)` for each node, stacked;
    - `combinations(t, h, nodes, rows)`: `sum_j w_j A(t + c_j h)` for each row `w`.

    Samples at several nodes come from one evaluation vmapped over the nodes: a
    generator that looks up a table (`PiecewiseConstant` controls, `Interpolated`) then
    compiles one lookup per step, not one per node, and reverse mode one more.
    """

    def __init__(self, term: LinearTerm, args: PyTree, precomputed: PyTree):
        self._term, self._args = term, args
        self.commutators = precomputed if isinstance(precomputed, Commutators) else None
        self.parts = precomputed if isinstance(precomputed, ModulatedParts) else None

    def matrix(self, t: Real[ArrayLike, ""]) -> Any:  # a dense matrix, or an operator
        return self._term.matrix(t, self._args)

    def matrices(
        self, t: Real[ArrayLike, ""], h: Real[ArrayLike, ""], nodes: tuple[float, ...]
    ) -> Inexact[Array, "nodes n n"]:
        """`A(t + c_j h)` for each node `c_j` of a dense generator, stacked."""
        return jax.vmap(self.matrix)(_node_times(t, h, nodes))

    def coordinates(
        self, t: Real[ArrayLike, ""], h: Real[ArrayLike, ""], nodes: tuple[float, ...]
    ) -> Inexact[Array, "nodes m"]:
        def at(time):
            generator = merge_complex(self._term.generator)
            controls = generator.controls(time, merge_complex(self._args))
            return jnp.concatenate([jnp.ones((1,), controls.dtype), controls])

        return jax.vmap(at)(_node_times(t, h, nodes))

    def combinations(
        self,
        t: Real[ArrayLike, ""],
        h: Real[ArrayLike, ""],
        nodes: tuple[float, ...],
        rows: tuple[tuple[float, ...], ...],
    ) -> list[Any]:  # dense matrices, or `Combination`s
        """`sum_j w_j A(t + c_j h)` for each row `w` of `rows`, sampling `A` once per
        node: dense matrices, or for operators `Combination`s applied term by term (of
        the `Modulated` parts, with the controls combined)."""
        if self.parts is not None:
            parts = (self.parts.drift, *self.parts.operators)
            coordinates = self.coordinates(t, h, nodes)
            return [Combination(parts, jnp.asarray(w) @ coordinates) for w in rows]
        if is_operator(eqx.filter_eval_shape(self.matrix, t)):
            samples = tuple(self.matrix(time) for time in _node_times(t, h, nodes))
            return [Combination(samples, jnp.asarray(w)) for w in rows]
        samples = self.matrices(t, h, nodes)
        return [sum(w_j * a for w_j, a in zip(w, samples) if w_j != 0) for w in rows]


class Combination(eqx.Module):
    """`sum_j w_j P_j` for operators `P_j` (what a generator returns, or the fast forms of
    a `Modulated` generator's parts), applied term by term."""

    parts: tuple
    weights: Inexact[Array, " m"]

    def mv(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        out = None
        for w, part in zip(self.weights, self.parts):
            term = w * apply(part, y)
            out = term if out is None else out + term
        return out


class AbstractMagnus(AbstractLinearSolver):
    """Base class of the Magnus solvers: steps `y(t + h) = exp(Omega) y(t)`.

    Subclasses define `advance(samples, t, h, y) -> (y1, y_error, ok)` in complex or real
    arithmetic, with `samples` the `Samples` of the generator and `ok` False where a step
    exponential was out of range, and the class variables `tolerances` (the default
    `rtol = atol` in double and in single precision), `commutator_depth` (the depth of
    the nested commutators in `Omega`, 0 for none) and `needs_commutators`.

    Where the generator is a `Modulated` one and its nested commutators pay (see
    `Commutators.pay`; always, for a solver that `needs_commutators`), `precompute`
    computes them once per solve, and every `Omega` is a linear combination of them,
    without matrix products.

    A step whose `Omega` has a 1-norm above 28.3 (70 in single precision) is refused, as
    beyond the range of the step exponential: adaptive controllers retry it smaller;
    with `diffrax.ConstantStepSize` the result is NaN.

    Dense output (`diffrax.SaveAt(ts=...)` or `dense=True` in `diffrax.diffeqsolve`) is
    the cubic Hermite interpolant of `y` and `A y` at the ends of each step: third order
    (local error `O(h^4)`), exact at the step ends, not unitary in between.
    `odeexpm.propagator` and `odeexpm.evolve` step exactly to their `ts`, so their
    outputs never use it.
    """

    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation
    tolerances: AbstractClassVar[tuple[float, float]]
    commutator_depth: AbstractClassVar[int]
    needs_commutators: AbstractClassVar[bool]

    @abc.abstractmethod
    def advance(
        self, samples: Samples, t: Real[Array, ""], h: Real[Array, ""], y: Inexact[Array, " n *k"]
    ) -> tuple[Inexact[Array, " n *k"], Inexact[Array, " n *k"], Bool[Array, ""]]:
        """`(y1, y_error, ok)`: one step from `(t, y)` of size `h`, in the user's time."""

    def precompute(self, generator, t0, y0, args) -> Commutators | ModulatedParts | None:
        """The commutators of a `Modulated` generator, where the steps use them; for an
        operator-valued `Modulated` generator (commutator-free methods only) its parts."""
        name = f"odeexpm.{type(self).__name__}"
        if is_operator(eqx.filter_eval_shape(generator, t0, args)):
            if self.commutator_depth > 0:
                raise ValueError(
                    f"{name}: this Magnus solver forms commutators of A(t) as dense "
                    "matrices; this generator is a sparse or matrix-free operator. Use a "
                    "commutator-free one (odeexpm.CFMagnus4, CFMagnus6, CFMagnus8 or "
                    "Magnus2), the default solver, or odeexpm.expm_multiply for a "
                    "constant operator."
                )
            if isinstance(generator, Modulated):
                return ModulatedParts.of(generator)
            return None
        if self.commutator_depth == 0:
            return None
        if Commutators.pay(generator, self.commutator_depth) or (
            self.needs_commutators and Commutators.possible(generator, self.commutator_depth)
        ):
            return Commutators.of(generator, self.commutator_depth)
        if self.needs_commutators:
            raise TypeError(
                f"{name} needs a dense `odeexpm.Modulated` generator whose nested "
                "commutators it can precompute and store (at most 2^22 numbers: one "
                "control up to n = 427, two up to n = 146, three up to n = 65); use "
                "odeexpm.Magnus6 for other generators."
            )
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        term, direction = self.linear_term(terms)
        # diffeqsolve runs in time `direction * t`; the step below is in the user's time.
        start, h = direction * t0, direction * (t1 - t0)
        samples = Samples(term, args, self.precomputed(terms, solver_state))
        y = merge_complex(y0)
        y1, y_error, ok = self.advance(samples, start, h, y)
        # A refused step: its infinite error makes diffrax's adaptive controllers reject
        # it and shrink the step (a NaN error would poison the next step size); with a
        # constant step size the NaN state shows in the result.
        y_error = jnp.where(ok, y_error, jnp.inf)
        y1 = jnp.where(ok, y1, jnp.nan)
        # Hermite data for dense output; dead code (removed by XLA) unless it is used.
        k0 = h * _times(samples.matrix(start), y)
        k1 = h * _times(samples.matrix(start + h), y1)
        dense_info = dict(y0=y0, y1=split_complex(y1), k0=split_complex(k0), k1=split_complex(k1))
        return (
            split_complex(y1),
            split_complex(y_error),
            dense_info,
            solver_state,
            diffrax.RESULTS.successful,
        )


class AbstractStepDoublingMagnus(AbstractMagnus):
    """A Magnus method with the step-doubling error estimate; subclasses define
    `propagate(samples, t, h, y) -> (y1, ok)`, one step of the plain method.

    Each step of size `h` is taken once whole and once as two halves. The two halves are
    propagated (they are the more accurate, and unitary); for a method of order `p`
    their difference to the whole step, divided by `2^p - 1`, estimates their local
    error (Richardson), which is `O(h^(p+1))`. It sees every error source (quadrature of
    `A(t)` and the truncated commutator series alike) for about 1.5 times the work of
    the plain method at the same accuracy.
    """

    @abc.abstractmethod
    def propagate(
        self, samples: Samples, t: Real[Array, ""], h: Real[Array, ""], y: Inexact[Array, " n *k"]
    ) -> tuple[Inexact[Array, " n *k"], Inexact[Array, " n *k"], Bool[Array, ""]]:
        """`(y1, exponential_error, ok)`: one step of the plain method, with the error
        of its exponentials where they are series that stop at a tolerance (operators;
        zero for dense exponentials, accurate to rounding)."""

    def error_order(self, terms):
        return self.order(terms) + 1

    def advance(self, samples, t, h, y):
        half = 0.5 * h
        y_half, error1, ok1 = self.propagate(samples, t, half, y)
        y1, error2, ok2 = self.propagate(samples, t + half, half, y_half)
        y_whole, _, ok3 = self.propagate(samples, t, h, y)
        doubling = (y1 - y_whole) / (2 ** self.order(None) - 1)
        return y1, doubling + error1 + error2, ok1 & ok2 & ok3


def _node_times(
    t: Real[ArrayLike, ""], h: Real[ArrayLike, ""], nodes: tuple[float, ...]
) -> Real[Array, " k"]:
    """`t + c_j h` for each node `c_j`."""
    return t + jnp.asarray(nodes, jnp.result_type(t, h)) * h


def _times(a, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
    """`a @ y`: `matmul` for a dense matrix, `apply` for an operator."""
    return matmul(a, y) if isinstance(a, jnp.ndarray) else apply(a, y)


def error_estimate(
    difference: Inexact[Array, "n n"], y1: Inexact[Array, " n *k"]
) -> Inexact[Array, " n *k"]:
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


def outer(*vectors: Inexact[Array, " m"]) -> Inexact[Array, " ..."]:
    """The outer product of coordinate vectors, shape `(m,) * len(vectors)`."""
    out = vectors[0]
    for v in vectors[1:]:
        out = out[..., None] * v
    return out
