"""`Modulated`: a drift plus controlled terms, `A0 + sum_k f_k(t, args) A_k`."""

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .._operator import AbstractOperator, OperatorCombination, as_operator, is_operator
from .base import AbstractGenerator

_CALLER = "odeexpm.Modulated"


class Modulated(AbstractGenerator):
    """A drift plus controlled terms: `A(t, args) = A0 + sum_k f_k(t, args) A_k`.

    The usual form of a driven quantum system (`A = -i (H0 + sum_k u_k(t) H_k)`) or of
    a bilinear control system. The coefficients are any callables `f(t, args)`: plain
    functions, `equinox.Module`s with parameters (a small network, a pulse shape), or
    sampled controls (`odeexpm.PiecewiseConstant` or `odeexpm.Interpolated` with scalar
    values). Every array in `drift`, `operators` and the coefficient modules is
    differentiable. Jump times of the coefficients that are odeexpm generators reach the
    step-size controller.

    **Arguments:**

    - `drift`: `A0`, shape `(n, n)`.
    - `operators`: the `A_k`, shape `(K, n, n)` (or a sequence of `K` matrices).
      For large sparse or matrix-free problems, `drift` and the `A_k` may be
      `jax.experimental.sparse.BCOO`/`BCSR` matrices or `lineax` operators (the kinds
      `odeexpm.expm_multiply` takes; then pass `operators` as a sequence): `A(t)` is then
      applied term by term, `A0 y + sum_k f_k(t) (A_k y)`, and no dense `n x n` array is
      formed. `odeexpm.evolve` solves such generators with Taylor steps in time
      (`odeexpm.Taylor`) where `jax.experimental.jet` can expand the coefficients, else
      with Dopri8 (Magnus steps need dense matrices).
    - `coefficients`: a sequence of `K` callables `f_k(t, args) -> scalar`, or one
      callable `f(t, args) -> (K,)`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> Z = jnp.diag(jnp.array([1.0, -1.0]))
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> samples = jnp.array([0.0, 1.0, 2.0, 1.0, 0.0])
        >>> pulse = odeexpm.Interpolated(jnp.linspace(0.0, 1.0, 5), samples)
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

    drift: Inexact[Array, "n n"] | AbstractOperator
    operators: Inexact[Array, "K n n"] | tuple[AbstractOperator, ...]
    coefficients: tuple[Callable, ...] | Callable

    def __init__(self, drift, operators, coefficients):
        parts = list(operators) if isinstance(operators, (list, tuple)) else None
        if is_operator(drift) or is_operator(operators) or any(map(is_operator, parts or ())):
            # Sparse or matrix-free parts: kept as operators, applied term by term.
            if parts is None:
                if is_operator(operators):
                    raise ValueError(
                        f"{_CALLER}: pass sparse or matrix-free `operators` as a list of "
                        "(n, n) operators, not one stacked operator."
                    )
                parts = list(jnp.asarray(operators))
            self.drift = as_operator(drift, "drift", _CALLER)
            self.operators = tuple(as_operator(op, "operators", _CALLER) for op in parts)
            if any(op.shape != self.drift.shape for op in self.operators):
                raise ValueError(
                    f"{_CALLER}: every operator must have the drift's shape "
                    f"{self.drift.shape}; got {[op.shape for op in self.operators]}."
                )
            self.coefficients = _checked_coefficients(coefficients, len(self.operators))
            return
        self.drift = jnp.asarray(drift)
        self.operators = jnp.asarray(jnp.stack(parts) if parts is not None else operators)
        n = self.drift.shape[-1]
        if (
            self.drift.shape != (n, n)
            or self.operators.ndim != 3
            or self.operators.shape[1:] != (n, n)
        ):
            raise ValueError(
                f"{_CALLER}: `drift` must have shape (n, n) and `operators` (K, n, n); "
                f"got {tuple(self.drift.shape)} and {tuple(self.operators.shape)}."
            )
        self.coefficients = _checked_coefficients(coefficients, self.operators.shape[0])

    @property
    def is_operator(self) -> bool:
        """Whether the parts are sparse or matrix-free operators (`A(t)` is then an
        operator, applied term by term, never a dense matrix)."""
        return isinstance(self.operators, tuple)

    @property
    def num_controls(self) -> int:
        """`K`, the number of controlled terms."""
        return len(self.operators) if self.is_operator else self.operators.shape[0]

    def controls(self, t, args=None) -> Inexact[Array, " K"]:
        """The coefficients `f_k(t, args)` stacked, shape `(K,)`, in the precision of the
        matrices (not that of `t`)."""
        if isinstance(self.coefficients, tuple):
            values = [jnp.asarray(f(t, args)) for f in self.coefficients]
            for k, value in enumerate(values):
                if value.size != 1:
                    raise ValueError(
                        f"{_CALLER}: coefficient {k} returned shape {value.shape}; each of a "
                        "sequence of `coefficients` f_k(t, args) must return a scalar (or "
                        "pass one callable f(t, args) returning all K of them)."
                    )
            controls = jnp.stack([value.reshape(()) for value in values])
        else:
            controls = jnp.asarray(self.coefficients(t, args))
            if controls.size != self.num_controls:
                raise ValueError(
                    f"{_CALLER}: the coefficient function returned shape {controls.shape}; "
                    f"it must return the {self.num_controls} controls, shape "
                    f"({self.num_controls},)."
                )
            controls = controls.reshape((self.num_controls,))
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
            return OperatorCombination(self.drift, self.operators, self.controls(t, args))
        return self.drift + jnp.tensordot(self.controls(t, args), self.operators, axes=1)

    @property
    def jump_ts(self):
        parts = self.coefficients if isinstance(self.coefficients, tuple) else (self.coefficients,)
        jumps = [f.jump_ts for f in parts if isinstance(f, AbstractGenerator)]
        jumps = [jnp.asarray(j) for j in jumps if j is not None]
        return jnp.sort(jnp.concatenate(jumps)) if jumps else None


def _checked_coefficients(coefficients, count: int) -> tuple[Callable, ...] | Callable:
    if isinstance(coefficients, (list, tuple)):
        if len(coefficients) != count:
            raise ValueError(f"{_CALLER}: {len(coefficients)} coefficients for {count} operators.")
        return tuple(coefficients)
    if not callable(coefficients):
        raise TypeError(f"{_CALLER}: `coefficients` must be callables.")
    return coefficients
