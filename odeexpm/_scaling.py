"""`expm`'s scaling and squaring: balancing, the number of squarings, and the squarings.

`exp(tA) = D exp(t B / 2^k)^(2^k) D^-1` for the balanced `B = D^-1 A D`: the ODE is
solved on the scaled interval only, where `||t B||_1 / 2^k <= SCALED_NORM`, and the
result is squared `k` times, so the cost grows like `log ||A||` rather than `||A||`.
"""

import diffrax
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int, Real

from ._adjoint import FrechetAdjoint
from ._linalg import halvings, norm1

# The automatic scaling solves on [0, t / 2^k] with ||t A||_1 / 2^k <= SCALED_NORM, where
# a high-order explicit step covers the interval in a few steps, then squares k times.
SCALED_NORM = 1.0
# More squarings than this are never applied: 2^64 already exceeds any norm whose
# exponential is representable, and the bound sizes the reverse-mode checkpoints.
MAX_SQUARINGS = 64
# Sweeps of the (simultaneous) balancing iteration; each costs O(n^2).
BALANCE_SWEEPS = 8


def num_squarings(A: Inexact[Array, "n n"], t: Real[Array, ""]) -> Int[Array, ""]:
    """The `k` with `||t A||_1 / 2^k <= SCALED_NORM`, clipped to `[0, MAX_SQUARINGS]`."""
    return halvings(jax.lax.stop_gradient(norm1(t * A)), SCALED_NORM, MAX_SQUARINGS)


def balance(A: Inexact[Array, "n n"]) -> tuple[Inexact[Array, "n n"], Real[Array, " n"]]:
    """A diagonal similarity `B = D^-1 A D`, `D = diag(d)`, that evens out row and column
    norms (as LAPACK's `gebal`, without permutations); returns `(B, d)`.

    Badly scaled matrices (Moler's 3x3 has an entry 2e10 but eigenvalues below 64) have a
    norm far above their spectral radius, which would ask for needless squarings, each
    amplifying rounding errors. The scales are powers of two, so the similarity is exact.
    `B` is used only where it lowers the 1-norm.
    """
    real = jnp.finfo(A.dtype).dtype
    magnitude = jnp.abs(jax.lax.stop_gradient(A)) * (1 - jnp.eye(A.shape[-1], dtype=real))

    def sweep(_, log2_d):
        d = jnp.exp2(log2_d)
        scaled = magnitude * d[None, :] / d[:, None]
        column, row = jnp.sum(scaled, axis=0), jnp.sum(scaled, axis=1)
        usable = (column > 0) & (row > 0)
        # Multiplying column i by f and row i by 1/f balances them at f = sqrt(row / column).
        step = jnp.round(0.5 * jnp.log2(jnp.where(usable, row / jnp.where(usable, column, 1), 1)))
        return log2_d + step

    log2_d = jax.lax.fori_loop(0, BALANCE_SWEEPS, sweep, jnp.zeros(A.shape[-1], real))
    # Exact powers of two (`jnp.exp2` rounds), so that the similarity is exact.
    d = jnp.ldexp(jnp.ones_like(log2_d), log2_d.astype(jnp.int32))
    B = A * (d[None, :] / d[:, None])
    better = norm1(jax.lax.stop_gradient(B)) < norm1(jax.lax.stop_gradient(A))
    return jnp.where(better, B, A), jnp.where(better, d, jnp.ones_like(d))


def square(
    X: Inexact[Array, "n n"], k: int | Int[Array, ""], adjoint: diffrax.AbstractAdjoint
) -> Inexact[Array, "n n"]:
    """`X^(2^k)` by `k` squarings; `k` a Python int or a traced integer. The loop is
    differentiable in the modes the solve's `adjoint` is."""
    if isinstance(k, int):
        for _ in range(k):
            X = X @ X
        return X
    if isinstance(adjoint, (FrechetAdjoint, diffrax.ForwardMode)):
        kind = "lax"
    elif isinstance(adjoint, diffrax.DirectAdjoint):
        kind = "bounded"
    else:
        kind = "checkpointed"
    _, X = eqxi.while_loop(
        lambda carry: carry[0] < k,
        lambda carry: (carry[0] + 1, carry[1] @ carry[1]),
        (jnp.zeros((), jnp.int32), X),
        max_steps=MAX_SQUARINGS,
        kind=kind,
        checkpoints=8 if kind == "checkpointed" else None,
    )
    return X
