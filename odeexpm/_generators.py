"""Generators: the matrix-valued functions `A(t, args)` of a linear ODE `dX/dt = A(t) X`."""

import abc
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact, Real


class AbstractGenerator(eqx.Module):
    """Base class for the generator `A(t, args)` of a linear ODE `dX/dt = A(t, args) X`.

    Subclass it to define your own generator (a Hamiltonian with drives, a small neural
    network, ...): implement `__call__(t, args)` returning an `(n, n)` array. Every array
    field of the subclass is a differentiable parameter.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> class Rotation(odeexpm.AbstractGenerator):
        ...     omega: jnp.ndarray
        ...     def __call__(self, t, args=None):
        ...         return self.omega * jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> Rotation(jnp.array(2.0))(0.0).shape
        (2, 2)
    """

    @abc.abstractmethod
    def __call__(self, t, args=None) -> Inexact[Array, "n n"]:
        """The generator at time `t`."""

    @property
    def jump_ts(self) -> Real[Array, " jumps"] | None:
        """Times where the generator (or its derivative) jumps, or `None` if it is smooth.

        Adaptive step-size controllers step exactly to them (diffrax's `jump_ts`), so no
        step straddles a discontinuity. Override it in a subclass that has jumps.
        """
        return None


class Constant(AbstractGenerator):
    """A time-independent generator `A(t) = matrix`.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = odeexpm.Constant(jnp.eye(3))
        >>> A(0.5).shape
        (3, 3)
    """

    matrix: Inexact[Array, "n n"]

    def __init__(self, matrix: ArrayLike):
        self.matrix = jnp.asarray(matrix)

    def __call__(self, t=None, args=None) -> Inexact[Array, "n n"]:
        return self.matrix


def _jump_times(times: Array) -> Array | None:
    """The interior breakpoints of a piecewise definition (the ends are no jumps: the
    first and last pieces extend beyond them)."""
    return times[1:-1] if times.shape[0] > 2 else None


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

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> A = odeexpm.PiecewiseConstant(jnp.array([0.0, 1.0, 3.0]), -1j * jnp.stack([X, -X]))
        >>> U = odeexpm.propagator(A, 0.0, 3.0)   # exp(2iX) exp(-iX)
        >>> bool(jnp.allclose(U, jnp.cos(1.0) * jnp.eye(2) + 1j * jnp.sin(1.0) * X))
        True
    """

    times: Real[Array, " m+1"]
    values: Inexact[Array, "m *shape"]

    def __init__(self, times: ArrayLike, values: ArrayLike):
        self.times = jnp.asarray(times)
        self.values = jnp.asarray(values)
        if self.times.ndim != 1 or self.values.ndim < 1 or self.times.shape[0] != self.values.shape[0] + 1:
            raise ValueError(
                "odeexpm.PiecewiseConstant: `times` must have shape (m + 1,) for `values` "
                f"of shape (m, ...); got {tuple(self.times.shape)} and "
                f"{tuple(self.values.shape)}."
            )

    def __call__(self, t, args=None):
        index = jnp.searchsorted(self.times, t, side="right") - 1
        return self.values[jnp.clip(index, 0, self.values.shape[0] - 1)]

    @property
    def jump_ts(self):
        return _jump_times(self.times)


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

    Example:
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

    def __init__(self, ts: ArrayLike, values: ArrayLike, *, kind: str = "linear"):
        ts, values = jnp.asarray(ts), jnp.asarray(values)
        if ts.ndim != 1 or ts.shape[0] < 2 or values.ndim < 1 or values.shape[0] != ts.shape[0]:
            raise ValueError(
                "odeexpm.Interpolated: `ts` must have shape (m,), m >= 2, and `values` "
                f"shape (m, ...); got {tuple(ts.shape)} and {tuple(values.shape)}."
            )
        if not jnp.issubdtype(ts.dtype, jnp.floating):
            ts = ts.astype(jnp.result_type(float))
        if kind == "linear":
            self.interpolation = diffrax.LinearInterpolation(ts, values)
        elif kind == "cubic":
            coeffs = diffrax.backward_hermite_coefficients(ts, values)
            self.interpolation = diffrax.CubicInterpolation(ts, coeffs)
        else:
            raise ValueError(f"odeexpm.Interpolated: `kind` must be 'linear' or 'cubic'; got {kind!r}.")
        self.kind = kind

    def __call__(self, t, args=None):
        ts = self.interpolation.ts
        return self.interpolation.evaluate(jnp.clip(t, ts[0], ts[-1]))

    @property
    def jump_ts(self):
        return _jump_times(self.interpolation.ts) if self.kind == "linear" else None


class Modulated(AbstractGenerator):
    """A drift plus controlled terms: `A(t, args) = A0 + sum_k f_k(t, args) A_k`.

    The usual form of a driven quantum system (`A = -i (H0 + sum_k u_k(t) H_k)`) or of
    a bilinear control system. The coefficients are any callables `f(t, args)`: plain
    functions, `equinox.Module`s with parameters (a small network, a pulse shape), or
    sampled controls (`odeexpm.PiecewiseConstant` or `odeexpm.Interpolated` with scalar
    values). Every array in `drift`, `operators` and the coefficient modules is
    differentiable. Jump times of the coefficients reach the step-size controller.

    **Arguments:**

    - `drift`: `A0`, shape `(n, n)`.
    - `operators`: the `A_k`, shape `(K, n, n)` (or a sequence of `K` matrices).
      For large sparse or matrix-free problems, `drift` and the `A_k` may be
      `jax.experimental.sparse.BCOO`/`BCSR` matrices or `lineax` operators (the kinds
      `odeexpm.expm_multiply` takes; then pass `operators` as a sequence): `A(t)` is then
      applied term by term, `A0 y + sum_k f_k(t) (A_k y)`, and no dense `n x n` array is
      formed. `odeexpm.evolve` solves such generators with a Runge-Kutta solver (Magnus
      steps need dense matrices).
    - `coefficients`: a sequence of `K` callables `f_k(t, args) -> scalar`, or one
      callable `f(t, args) -> (K,)`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> Z = jnp.diag(jnp.array([1.0, -1.0]))
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> pulse = odeexpm.Interpolated(jnp.linspace(0.0, 1.0, 5), jnp.array([0.0, 1.0, 2.0, 1.0, 0.0]))
        >>> A = odeexpm.Modulated(-1j * Z, -1j * X[None], [pulse])
        >>> A(0.5).shape
        (2, 2)

        The gradient of a gate fidelity with respect to the pulse samples:

        ```python
        fidelity = lambda A: jnp.abs(jnp.trace(X @ odeexpm.propagator(A, 0.0, 1.0))) ** 2 / 4
        grads = jax.grad(fidelity)(A)     # a Modulated holding the gradients
        grads.coefficients[0].interpolation.ys   # d fidelity / d samples, shape (5,)
        ```
    """

    drift: Inexact[Array, "n n"] | Any  # or an odeexpm operator (sparse, matrix-free)
    operators: Inexact[Array, "K n n"] | tuple
    coefficients: tuple | Callable

    def __init__(self, drift, operators, coefficients):
        from ._operators import as_operator, is_operator  # (operators build on generators)

        parts = list(operators) if isinstance(operators, (list, tuple)) else None
        if is_operator(drift) or is_operator(operators) or any(map(is_operator, parts or ())):
            # Sparse or matrix-free parts: kept as operators, applied term by term.
            caller = "odeexpm.Modulated"
            if parts is None:
                if is_operator(operators):
                    raise ValueError(
                        f"{caller}: pass sparse or matrix-free `operators` as a list of "
                        "(n, n) operators, not one stacked operator."
                    )
                parts = list(jnp.asarray(operators))
            self.drift = as_operator(drift, caller)
            self.operators = tuple(as_operator(op, caller) for op in parts)
            if any(op.shape != self.drift.shape for op in self.operators):
                raise ValueError(
                    f"{caller}: every operator must have the drift's shape "
                    f"{self.drift.shape}; got {[op.shape for op in self.operators]}."
                )
            self.coefficients = self._checked(coefficients, len(self.operators))
            return
        self.drift = jnp.asarray(drift)
        self.operators = jnp.asarray(jnp.stack(parts) if parts is not None else operators)
        n = self.drift.shape[-1]
        if self.drift.shape != (n, n) or self.operators.ndim != 3 or self.operators.shape[1:] != (n, n):
            raise ValueError(
                "odeexpm.Modulated: `drift` must have shape (n, n) and `operators` "
                f"(K, n, n); got {tuple(self.drift.shape)} and {tuple(self.operators.shape)}."
            )
        self.coefficients = self._checked(coefficients, self.operators.shape[0])

    @staticmethod
    def _checked(coefficients, count: int):
        if isinstance(coefficients, (list, tuple)):
            if len(coefficients) != count:
                raise ValueError(
                    f"odeexpm.Modulated: {len(coefficients)} coefficients for {count} operators."
                )
            return tuple(coefficients)
        if not callable(coefficients):
            raise TypeError("odeexpm.Modulated: `coefficients` must be callables.")
        return coefficients

    @property
    def is_operator(self) -> bool:
        """Whether the parts are sparse or matrix-free operators (`A(t)` is then an
        operator, applied term by term, never a dense matrix)."""
        return isinstance(self.operators, tuple)

    def controls(self, t, args=None) -> Inexact[Array, " K"]:
        """The coefficients `f_k(t, args)` stacked, shape `(K,)`, in the precision of the
        matrices (not that of `t`)."""
        count = len(self.operators) if self.is_operator else self.operators.shape[0]
        if isinstance(self.coefficients, tuple):
            controls = jnp.stack([jnp.asarray(f(t, args)).reshape(()) for f in self.coefficients])
        else:
            controls = jnp.asarray(self.coefficients(t, args)).reshape((count,))
        if self.is_operator:
            matrix_dtype = jnp.result_type(self.drift.dtype, *(op.dtype for op in self.operators))
        else:
            matrix_dtype = jnp.result_type(self.drift, self.operators)
        real = jnp.finfo(matrix_dtype).dtype
        if jnp.iscomplexobj(controls):
            return controls.astype(jnp.result_type(real, jnp.complex64))
        return controls.astype(real)

    def __call__(self, t, args=None):
        if self.is_operator:
            from ._operators import ModulatedOperator

            return ModulatedOperator(self.drift, self.operators, self.controls(t, args))
        return self.drift + jnp.tensordot(self.controls(t, args), self.operators, axes=1)

    @property
    def jump_ts(self):
        parts = self.coefficients if isinstance(self.coefficients, tuple) else (self.coefficients,)
        jumps = [getattr(f, "jump_ts", None) for f in parts]
        jumps = [jnp.asarray(j) for j in jumps if j is not None]
        return jnp.sort(jnp.concatenate(jumps)) if jumps else None


class FromFunction(AbstractGenerator):
    """A plain callable `fn(t, args) -> (n, n)` as a generator (what `odeexpm.propagator`
    wraps functions in). Arrays it closes over are constants, not parameters: to
    differentiate with respect to them pass them in `args`, or write an
    `AbstractGenerator` subclass.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = odeexpm.FromFunction(lambda t, args: t * jnp.eye(2))
        >>> A(2.0).tolist()
        [[2.0, 0.0], [0.0, 2.0]]
    """

    fn: Callable

    def __call__(self, t, args=None):
        return self.fn(t, args)
