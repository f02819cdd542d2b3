"""`ExpmLinear`: a linear layer whose weight is a matrix exponential."""

import operator

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Inexact, PRNGKeyArray

from ._checks import checked_dtype
from ._expm import expm

_STRUCTURES = ("skew", "general")


class ExpmLinear(eqx.Module):
    """A square linear layer `y = exp(A) x + b` whose weight is the exponential of a
    trainable matrix, computed (and differentiated) by `odeexpm.expm`.

    With `structure="skew"` the exponent is `A = P - P^T` (`P - P^H` for complex
    dtypes), so the weight is orthogonal (unitary) for every value of the parameter `P`:
    no projection or penalty is needed to keep it so during training, and its gradients
    neither explode nor vanish through it. With `structure="general"` the exponent is `P`
    itself, and the weight is any invertible matrix with a real logarithm.

    Derivatives of every mode (`jax.grad`, `jax.jvp`, `jax.hessian`, ...) go through
    `odeexpm.expm`'s default `FrechetAdjoint`.

    Like `equinox.nn.Linear`, `__call__` takes one vector `(size,)`; use `jax.vmap` for
    a batch (the weight is then computed once, not per sample).

    **Arguments:**

    - `size`: the number of features `n` (input and output), a positive int.
    - `key`: a `jax.random` key for the initialisation.
    - `structure`: `"skew"` (default, orthogonal/unitary weight) or `"general"`.
    - `use_bias`: whether to add a trainable bias `b` (default `True`).
    - `dtype`: float32, float64, complex64 or complex128; default JAX's default float
      dtype (float64 with `jax_enable_x64`, float32 otherwise).

    The parameter `P` (field `generator`) and the bias are initialised uniformly in
    `[-1/sqrt(n), 1/sqrt(n)]` (real and imaginary parts alike), as in
    `equinox.nn.Linear`, so that the exponent has a norm of order one.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> layer = odeexpm.ExpmLinear(4, key=jax.random.key(0))
        >>> W = layer.weight                        # exp(P - P^T): orthogonal
        >>> bool(jnp.allclose(W.T @ W, jnp.eye(4), atol=1e-5))
        True
        >>> layer(jnp.ones(4)).shape                # one vector ...
        (4,)
        >>> jax.vmap(layer)(jnp.ones((10, 4))).shape   # ... or a batch with vmap
        (10, 4)
        >>> loss = lambda layer, x: jnp.sum(layer(x) ** 2)
        >>> grads = jax.grad(loss)(layer, jnp.ones(4))   # an ExpmLinear of gradients
        >>> grads.generator.shape
        (4, 4)
    """

    generator: Inexact[Array, "n n"]
    bias: Inexact[Array, " n"] | None
    size: int = eqx.field(static=True)
    structure: str = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(
        self,
        size: int,
        *,
        key: PRNGKeyArray,
        structure: str = "skew",
        use_bias: bool = True,
        dtype=None,
    ):
        caller = "odeexpm.ExpmLinear"
        try:
            valid = not isinstance(size, bool) and operator.index(size) >= 1
        except TypeError:
            valid = False
        if not valid:
            raise ValueError(f"{caller}: `size` must be a positive int; got {size!r}.")
        size = operator.index(size)
        if structure not in _STRUCTURES:
            raise ValueError(
                f"{caller}: `structure` must be one of {_STRUCTURES}; got {structure!r}."
            )
        # No dtype: JAX's default float, which follows `jax_enable_x64` (as equinox does).
        if dtype is None:
            dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
        elif not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{caller}: `dtype` must be float32, float64, complex64 or complex128; got "
                f"{jnp.dtype(dtype)}."
            )
        dtype = checked_dtype(dtype, "dtype", caller)
        generator_key, bias_key = jr.split(key)
        limit = 1 / size**0.5
        self.generator = _uniform(generator_key, (size, size), dtype, limit)
        self.bias = _uniform(bias_key, (size,), dtype, limit) if use_bias else None
        self.size = size
        self.structure = structure
        self.use_bias = use_bias

    @property
    def exponent(self) -> Inexact[Array, "n n"]:
        """The matrix `A` with `weight = exp(A)`: `P - P^H` for `"skew"`, `P` for
        `"general"`."""
        if self.structure == "skew":
            return self.generator - self.generator.conj().T
        return self.generator

    @property
    def weight(self) -> Inexact[Array, "n n"]:
        """The weight `exp(A)`, by `odeexpm.expm` at its defaults (gradients by the
        `FrechetAdjoint`)."""
        return expm(self.exponent)

    def __call__(
        self, x: Inexact[Array, " n"], *, key: PRNGKeyArray | None = None
    ) -> Inexact[Array, " n"]:
        """`weight @ x + bias` for one vector `x` of shape `(size,)`. `key` is ignored
        (it is accepted for compatibility with `equinox.nn.Sequential`)."""
        del key
        if not hasattr(x, "shape"):
            x = jnp.asarray(x)
        if x.shape != (self.size,):
            raise ValueError(
                f"odeexpm.ExpmLinear: expected an input of shape ({self.size},); got "
                f"{tuple(x.shape)}. For a batch, use jax.vmap(layer)(x)."
            )
        y = self.weight @ x
        return y if self.bias is None else y + self.bias


def _uniform(key, shape, dtype, limit) -> Array:
    """Uniform in `[-limit, limit]`, independently in the real and imaginary parts."""
    real = jnp.finfo(dtype).dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
        real_key, imag_key = jr.split(key)
        return (
            jr.uniform(real_key, shape, real, -limit, limit)
            + 1j * jr.uniform(imag_key, shape, real, -limit, limit)
        ).astype(dtype)
    return jr.uniform(key, shape, real, -limit, limit)
