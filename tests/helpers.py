import logging

import jax
import numpy as np


def rel_err(x, ref) -> float:
    """Relative Frobenius error `||x - ref|| / ||ref||` in float64/complex128."""
    x = np.asarray(x).astype(np.result_type(np.asarray(x).dtype, np.float64))
    ref = np.asarray(ref).astype(np.result_type(np.asarray(ref).dtype, np.float64))
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def random_matrix(n, seed, *, complex_=False, scale=1.0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    if complex_:
        A = A + 1j * rng.standard_normal((n, n))
    return scale * A / np.sqrt(n)


def count_compiles(caplog, fn, *args, **kwargs) -> int:
    """How many XLA compilations one call of `fn` makes (JAX logs each)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        jax.block_until_ready(fn(*args, **kwargs))
    return sum("Compiling" in record.getMessage() for record in caplog.records)
