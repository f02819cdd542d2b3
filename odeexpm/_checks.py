"""Validation of user input, raised at call (trace) time with messages naming the problem."""

import jax
import jax.numpy as jnp
import numpy as np

SUPPORTED_DTYPES = (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)


def as_square_matrices(A, name: str, caller: str):
    """`A` as an array of shape `(..., n, n)` in a supported inexact dtype.

    Integers and booleans are promoted to JAX's default float dtype (float64 with
    `jax_enable_x64`, else float32).
    """
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        A = np.asarray(A)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(
            f"{caller}: `{name}` must have shape (..., n, n), square in its last two "
            f"axes; got shape {tuple(A.shape)}."
        )
    dtype = checked_dtype(A, name, caller)
    return jnp.asarray(A, dtype)


def checked_dtype(x, name: str, caller: str) -> jnp.dtype:
    """The dtype `x` is computed in: its own if supported, JAX's default float for
    integers and booleans; a `TypeError` naming the problem otherwise."""
    dtype = jnp.dtype(x.dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
        if not (jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
            raise TypeError(f"{caller}: `{name}` has unsupported dtype {dtype}.")
        return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if dtype not in [jnp.dtype(d) for d in SUPPORTED_DTYPES]:
        raise TypeError(
            f"{caller}: `{name}` has dtype {dtype}; supported are float32, float64, "
            "complex64 and complex128 (lower precisions cannot meet the tolerances)."
        )
    return dtype


def as_real_scalar(t, dtype, name: str, caller: str):
    """`t` as a real scalar array of the real dtype matching `dtype`."""
    t = jnp.asarray(t)
    if t.ndim != 0:
        raise ValueError(
            f"{caller}: `{name}` must be a scalar; got shape {tuple(t.shape)}. "
            "Use `jax.vmap` to evaluate several times."
        )
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise TypeError(f"{caller}: `{name}` must be real; got dtype {t.dtype}.")
    return t.astype(jnp.finfo(dtype).dtype)
