"""Base class of the commutator-free Magnus methods, for dense and operator generators."""

from typing import ClassVar

import jax.numpy as jnp
from equinox import AbstractClassVar

from .exponential import apply_step_exponential
from .magnus import AbstractStepDoublingMagnus


class AbstractCommutatorFree(AbstractStepDoublingMagnus):
    """Base class of the commutator-free (quasi-)Magnus methods: a step is a product of
    exponentials of linear combinations of samples of `A`,

        y(t + h) = exp(h X_m) ... exp(h X_1) y(t),  X_i = sum_j a_ij A(t + c_j h),

    with no commutator: each `X_i` shares whatever structure the samples share, so for
    a sparse or matrix-free generator (a `Modulated` one is combined part by part, with
    its controls) each exponential is a Taylor action on the state, one product with
    `X_i` per term, never an `n x n` array. Skew-Hermitian samples give unitary
    exponentials, so the norm is kept (to the action's tolerance, the unit roundoff).
    Error control by step doubling, plus the actions' own truncation estimates.

    Subclasses set `nodes` (the `c_j` in `[0, 1]`) and `coefficients` (the rows `a_i`,
    in the order the exponentials are applied), and `order`.
    """

    nodes: AbstractClassVar[tuple[float, ...]]
    coefficients: AbstractClassVar[tuple[tuple[float, ...], ...]]
    commutator_depth: ClassVar[int] = 0
    needs_commutators: ClassVar[bool] = False

    def propagate(self, samples, t, h, y):
        error, ok = jnp.zeros_like(y), jnp.asarray(True)
        for x in samples.combinations(t, h, self.nodes, self.coefficients):
            y, exponential_error, exponential_ok = apply_step_exponential(x, h, y)
            error, ok = error + exponential_error, ok & exponential_ok
        return y, error, ok
