"""Validation of user input, raised at call (trace) time with messages naming the problem.

One dtype rule for every argument of every function: `checked_dtype`.
"""

import os
import sys
import warnings
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jax.sharding import AxisType
from jaxtyping import Array, ArrayLike, Inexact, Real

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def warn(message: str) -> None:
    """`warnings.warn`, attributed to the first caller outside odeexpm."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, stacklevel=level)


SUPPORTED_DTYPES = tuple(
    jnp.dtype(d) for d in (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)
)


def checked_dtype(dtype, name: str, caller: str) -> jnp.dtype:
    """The dtype an argument of dtype `dtype` is computed in: its own if supported (a
    warning where a 64-bit dtype falls back to 32 bits because `jax_enable_x64` is off),
    JAX's default float (float64 with `jax_enable_x64`, else float32) for integers and
    booleans; a `TypeError` naming the argument otherwise."""
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.inexact):
        if not (jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
            raise TypeError(f"{caller}: `{name}` has unsupported dtype {dtype}.")
        return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{caller}: `{name}` has dtype {dtype}; supported are float32, float64, "
            "complex64 and complex128 (lower precisions cannot meet the tolerances)."
        )
    canonical = jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))
    if canonical != dtype:
        warn(
            f"{caller}: `{name}` is {dtype}, but 64-bit arithmetic is off in JAX: computing "
            f"in {canonical}. Enable it with jax.config.update('jax_enable_x64', True)."
        )
    return canonical


def warn_if_below_precision(rtol, atol, stepsize_controller, dtype, caller: str) -> None:
    """A warning where a tolerance the user gave asks for more than `dtype` can give."""
    if isinstance(stepsize_controller, diffrax.PIDController):
        rtol, atol = stepsize_controller.rtol, stepsize_controller.atol
    eps = float(jnp.finfo(dtype).eps)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, (int, float)) and 0 < value < eps:
            warn(
                f"{caller}: {name}={value:g} is below the precision of {jnp.dtype(dtype)} "
                f"(eps = {eps:.1e}): no solver can meet it, and steps may shrink until the "
                "step budget runs out. Use a wider dtype or a looser tolerance."
            )


# Why meshes with explicit axis types are refused, and what to do instead.
EXPLICIT_AXES_ADVICE = (
    "(jax.make_mesh's default), which odeexpm, like diffrax and jax.scipy.linalg.expm "
    "under jax.vmap, does not support yet. Make the mesh with "
    "axis_types=(jax.sharding.AxisType.Auto,) * len(axis_names)."
)


def as_array(x: Any, name: str, caller: str) -> Array | np.ndarray:
    """`x` itself if it is an array (a JAX array or tracer, or a NumPy array), else `x`
    as a NumPy array (Python numbers, nested lists). Refuses arrays sharded over a mesh
    with `Explicit` axes."""
    if not isinstance(x, (jax.Array, np.ndarray)):
        return np.asarray(x)
    if isinstance(x, jax.Array):
        sharding = jax.typeof(x).sharding
        explicit = AxisType.Explicit in getattr(sharding.mesh, "axis_types", ())
        if explicit and any(axes is not None for axes in sharding.spec):
            raise ValueError(
                f"{caller}: `{name}` is sharded over a mesh with explicit axis types "
                f"{EXPLICIT_AXES_ADVICE}"
            )
    return x


def as_dense_array(x: Any, name: str, caller: str, advice: str) -> Array | np.ndarray:
    """`as_array(x)`, refusing sparse matrices and lineax operators at once (NumPy would
    walk a BCOO element by element) with `advice` on what to do instead."""
    if isinstance(x, (jsparse.JAXSparse, lx.AbstractLinearOperator)):
        raise TypeError(
            f"{caller}: `{name}` must be a dense array; got a {type(x).__name__}. {advice}"
        )
    return as_array(x, name, caller)


def as_square_matrices(A: Any, name: str, caller: str) -> Inexact[Array, "*batch n n"]:
    """`A` as an array of shape `(..., n, n)` in a supported inexact dtype."""
    A = as_dense_array(
        A,
        name,
        caller,
        "Its exponential is a dense matrix: for its action on vectors use "
        "odeexpm.expm_multiply, or pass A.todense().",
    )
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(
            f"{caller}: `{name}` must have shape (..., n, n), square in its last two "
            f"axes; got shape {tuple(A.shape)}."
        )
    return jnp.asarray(A, checked_dtype(A.dtype, name, caller))


def as_real_times(t: ArrayLike, dtype, name: str, caller: str) -> Real[Array, "*times"]:
    """`t` as a real scalar, or a 1-D array of times ordered away from 0 (`0 <= t_0 <
    t_1 < ...` or `0 >= t_0 > t_1 > ...`, checked where `t` is concrete), in the real
    dtype matching `dtype`."""
    t = jnp.asarray(t)
    if t.ndim == 0:
        return as_real_scalar(t, dtype, name, caller)
    if t.ndim != 1 or t.shape[0] == 0:
        raise ValueError(
            f"{caller}: `{name}` must be a scalar or a non-empty 1-D array of times; got "
            f"shape {tuple(t.shape)}."
        )
    if jnp.issubdtype(t.dtype, jnp.complexfloating):
        raise TypeError(f"{caller}: `{name}` must be real; got dtype {t.dtype}.")
    if not isinstance(t, jax.core.Tracer):
        times = np.asarray(t)
        increasing = times[0] >= 0 and np.all(np.diff(times) > 0)
        decreasing = times[0] <= 0 and np.all(np.diff(times) < 0)
        if not (increasing or decreasing or times.shape[0] == 1):
            raise ValueError(
                f"{caller}: the times `{name}` must be ordered away from 0: "
                f"0 <= t_0 < t_1 < ... (or all <= 0 and decreasing); got {times}."
            )
    return t.astype(jnp.finfo(dtype).dtype)


def as_real_scalar(t: ArrayLike, dtype, name: str, caller: str) -> Real[Array, ""]:
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
