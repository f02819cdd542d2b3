"""Independent references for `exp(A)` and its Fréchet derivative.

- `pade_expm`, `pade_frechet`: the closed form (scaling and squaring with Padé
  approximants) from `jax.scipy.linalg`.
- `mp_expm`, `mp_frechet`: mpmath at a chosen number of decimal digits, for forward and
  derivative references on hard matrices (mpmath is imported when they are first
  called; it comes with the `harness` and `test` extras).
- `taylor_expm`: the naive truncated Taylor series, kept only to show why it fails.
"""

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike, Inexact

__all__ = ["mp_expm", "mp_frechet", "pade_expm", "pade_frechet", "taylor_expm"]


def pade_expm(A: Inexact[ArrayLike, "... n n"]) -> Inexact[Array, "... n n"]:
    """`exp(A)` by JAX's Padé scaling and squaring (`jax.scipy.linalg.expm`).

    JAX caps the squarings at 16 and returns NaN beyond (norms above about 3.5e5).

    Examples:
        >>> import jax.numpy as jnp
        >>> from odeexpm.reference import pade_expm
        >>> pade_expm(jnp.zeros((2, 2))).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    return jsl.expm(jnp.asarray(A))


def pade_frechet(
    A: Inexact[ArrayLike, "n n"], E: Inexact[ArrayLike, "n n"]
) -> Inexact[Array, "n n"]:
    """The Fréchet derivative `L_exp(A, E) = d/de exp(A + e E)` at `e = 0`, closed form.

    For a loss with cotangent `G` on `exp(A)`, the gradient is `pade_frechet(A^H, G)`.
    Beware: where `pade_expm` returns NaN (more than 16 squarings needed), this returns
    finite values that are wholly wrong, and so does autodiff through `pade_expm`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from odeexpm.reference import pade_frechet
        >>> pade_frechet(jnp.zeros((2, 2)), jnp.eye(2)).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    return jsl.expm_frechet(jnp.asarray(A), jnp.asarray(E), compute_expm=False)


def _mpmath():
    # Imported on first use: `import odeexpm` loads none of the harness's dependencies.
    try:
        import mpmath
    except ImportError as error:
        raise ImportError(
            "odeexpm.reference.mp_expm and mp_frechet need mpmath: pip install "
            "'odeexpm[harness]' (or mpmath)."
        ) from error
    return mpmath


def _to_mp(A):
    mpmath = _mpmath()
    A = np.asarray(A)
    return mpmath.matrix(
        [
            [mpmath.mpmathify(complex(x) if np.iscomplexobj(A) else float(x)) for x in row]
            for row in A
        ]
    )


def _from_mp(M, n_rows: int, n_cols: int, complex_: bool) -> np.ndarray:
    mpmath = _mpmath()
    dtype = np.complex128 if complex_ else np.float64
    out = np.empty((n_rows, n_cols), dtype)
    for i in range(n_rows):
        for j in range(n_cols):
            out[i, j] = complex(M[i, j]) if complex_ else float(mpmath.re(M[i, j]))
    return out


def mp_expm(A: ArrayLike, dps: int = 50) -> np.ndarray:
    """`exp(A)` computed by mpmath with `dps` decimal digits, rounded to float64 or
    complex128 (a NumPy array; one matrix, no batch axes).

    Slow (seconds for n = 32); meant for references.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.reference import mp_expm
        >>> float(mp_expm(np.array([[1.0]]))[0, 0])
        2.718281828459045
    """
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"mp_expm: A must have shape (n, n); got {A.shape}.")
    mpmath = _mpmath()
    with mpmath.workdps(dps):
        X = mpmath.expm(_to_mp(A))
        return _from_mp(X, *A.shape, np.iscomplexobj(A))


def mp_frechet(A: ArrayLike, E: ArrayLike, dps: int = 50) -> np.ndarray:
    """The Fréchet derivative `L_exp(A, E)` by mpmath, through the block identity
    `exp([[A, E], [0, A]]) = [[exp(A), L_exp(A, E)], [0, exp(A)]]`.

    Examples:
        >>> import numpy as np
        >>> from odeexpm.reference import mp_frechet
        >>> float(mp_frechet(np.array([[0.0]]), np.array([[1.0]]))[0, 0])
        1.0
    """
    A, E = np.asarray(A), np.asarray(E)
    n = A.shape[0]
    block = np.block([[A, E], [np.zeros_like(A), A]])
    mpmath = _mpmath()
    with mpmath.workdps(dps):
        X = mpmath.expm(_to_mp(block))
        upper_right = X[0:n, n : 2 * n]
        return _from_mp(upper_right, n, n, np.iscomplexobj(block))


@functools.partial(jax.jit, static_argnames="terms")
def taylor_expm(A: Inexact[ArrayLike, "... n n"], terms: int = 60) -> Inexact[Array, "... n n"]:
    """The naive series `sum_{k < terms} A^k / k!`, without scaling.

    Do not use it: for `[[-49, 24], [-64, 31]]` (eigenvalues -1 and -17) the terms grow
    to about 1e7 (the 17th) before they decay to an answer of size 2, and their
    cancellation loses about 1e7 * eps: half the digits in float64, all of them in
    float32 (Moler and Van Loan, "Nineteen dubious ways"). It is here to demonstrate
    that failure.

    Examples:
        >>> import jax.numpy as jnp
        >>> from odeexpm.reference import taylor_expm
        >>> float(taylor_expm(jnp.array([[1.0]]), terms=20)[0, 0])  # doctest: +ELLIPSIS
        2.71828...
    """
    A = jnp.asarray(A)
    term = jnp.broadcast_to(jnp.eye(A.shape[-1], dtype=A.dtype), A.shape)
    total = term
    for k in range(1, terms):
        term = term @ A / k
        total = total + term
    return total
