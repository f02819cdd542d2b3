"""`PiecewiseConstant`: a generator (or a control) constant between switching times."""

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, Inexact, Real

from .._checks import as_dense_array
from .base import AbstractGenerator, check_increasing, interior_breakpoints


class PiecewiseConstant(AbstractGenerator):
    """A generator constant between switching times: `A(t) = values[i]` on
    `[times[i], times[i+1])`.

    Before `times[0]` it is `values[0]`, from `times[-1]` on `values[-1]`. The interior
    `times` are handed to the step-size controller as jump times, so adaptive solvers
    step exactly to each switch and integrate every piece as a constant generator (the
    Magnus solvers then take each piece in one exponential, up to the accuracy of the
    step exponential).

    `values` may have any trailing shape: with scalar values (shape `(m,)`) or vectors
    (`(m, K)`) it is a piecewise-constant control for the `coefficients` of `Modulated`.
    `values` is differentiable; gradients with respect to the switching `times` are not
    computed (they are zero).

    **Arguments:**

    - `times`: increasing switching times, shape `(m + 1,)`.
    - `values`: the `m` pieces, shape `(m, n, n)` for a generator.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> A = odeexpm.PiecewiseConstant(jnp.array([0.0, 1.0, 3.0]), -1j * jnp.stack([X, -X]))
        >>> U = odeexpm.propagator(A, 0.0, 3.0)   # exp(2iX) exp(-iX)
        >>> bool(jnp.allclose(U, jnp.cos(1.0) * jnp.eye(2) + 1j * jnp.sin(1.0) * X))
        True
    """

    times: Real[Array, " m+1"]
    values: Inexact[Array, " m *shape"]

    def __init__(self, times: Any, values: Any):  # (validated here, with clear messages)
        caller = "odeexpm.PiecewiseConstant"
        advice = "For sparse or matrix-free pieces pass a callable A(t, args) returning them."
        self.times = jnp.asarray(as_dense_array(times, "times", caller, ""))
        self.values = jnp.asarray(as_dense_array(values, "values", caller, advice))
        if (
            self.times.ndim != 1
            or self.values.ndim < 1
            or self.times.shape[0] != self.values.shape[0] + 1
        ):
            raise ValueError(
                "odeexpm.PiecewiseConstant: `times` must have shape (m + 1,) for `values` "
                f"of shape (m, ...); got {tuple(self.times.shape)} and "
                f"{tuple(self.values.shape)}."
            )
        check_increasing(self.times, "times", "odeexpm.PiecewiseConstant")

    def __call__(self, t, args=None):
        index = jnp.searchsorted(self.times, t, side="right") - 1
        return self.values[jnp.clip(index, 0, self.values.shape[0] - 1)]

    @property
    def jump_ts(self):
        return interior_breakpoints(self.times)
