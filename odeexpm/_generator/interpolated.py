"""`Interpolated`: a generator (or a control) interpolated from samples with diffrax."""

from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp

from .._checks import as_dense_array
from .base import AbstractGenerator, check_increasing, interior_breakpoints


class Interpolated(AbstractGenerator):
    """A generator interpolated from samples `values[i] = A(ts[i])` with diffrax.

    `kind="linear"` (default) is `diffrax.LinearInterpolation`; its kinks at the interior
    `ts` are handed to the step-size controller as jump times, so no step straddles one.
    `kind="cubic"` is a `diffrax.CubicInterpolation` with
    `diffrax.backward_hermite_coefficients` (continuously differentiable, no jump times).
    Outside `[ts[0], ts[-1]]` the end values are held. `values` may have any trailing
    shape (scalar samples make a control for `Modulated`); it is differentiable, `ts` is
    not.

    **Arguments:**

    - `ts`: increasing sample times, shape `(m,)`, `m >= 2`.
    - `values`: the samples, shape `(m, n, n)` for a generator.
    - `kind`: `"linear"` or `"cubic"`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> ts = jnp.linspace(0.0, 1.0, 11)
        >>> values = ts[:, None, None] * jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> A = odeexpm.Interpolated(ts, values, kind="cubic")
        >>> bool(jnp.allclose(A(0.55), 0.55 * jnp.array([[0.0, 1.0], [-1.0, 0.0]])))
        True
    """

    interpolation: diffrax.AbstractGlobalInterpolation
    kind: str = eqx.field(static=True)

    def __init__(self, ts: Any, values: Any, *, kind: str = "linear"):  # (validated here)
        caller = "odeexpm.Interpolated"
        advice = "For sparse or matrix-free samples pass a callable A(t, args) instead."
        ts = jnp.asarray(as_dense_array(ts, "ts", caller, ""))
        values = jnp.asarray(as_dense_array(values, "values", caller, advice))
        if ts.ndim != 1 or ts.shape[0] < 2 or values.ndim < 1 or values.shape[0] != ts.shape[0]:
            raise ValueError(
                "odeexpm.Interpolated: `ts` must have shape (m,), m >= 2, and `values` "
                f"shape (m, ...); got {tuple(ts.shape)} and {tuple(values.shape)}."
            )
        check_increasing(ts, "ts", "odeexpm.Interpolated")
        if not jnp.issubdtype(ts.dtype, jnp.floating):
            ts = ts.astype(jnp.result_type(float))
        if kind == "linear":
            self.interpolation = diffrax.LinearInterpolation(ts, values)
        elif kind == "cubic":
            coeffs = diffrax.backward_hermite_coefficients(ts, values)
            self.interpolation = diffrax.CubicInterpolation(ts, coeffs)
        else:
            raise ValueError(
                f"odeexpm.Interpolated: `kind` must be 'linear' or 'cubic'; got {kind!r}."
            )
        self.kind = kind

    def __call__(self, t, args=None):
        ts = self.interpolation.ts
        return self.interpolation.evaluate(jnp.clip(t, ts[0], ts[-1]))

    @property
    def jump_ts(self):
        return interior_breakpoints(self.interpolation.ts) if self.kind == "linear" else None
