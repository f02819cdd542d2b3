"""Dense linear algebra shared by the solvers: products, commutators, norms."""

import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int, Real

# From this size on, complex products are done as real ones (below, the native
# complex product is as fast and compiles faster).
REAL_PRODUCTS_FROM = 32


def matmul(x: Inexact[Array, "n n"], y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
    """`x @ y`, with complex products of larger matrices done as real ones.

    XLA's CPU backend multiplies complex matrices more slowly than the real products
    they amount to: for 64x64 complex128, 79 us against 47 us for the three real
    products of Gauss's method, `(a + ib)(c + id) = ac - bd + i((a + b)(c + d) - ac - bd)`
    (normwise as stable as the complex product).
    """
    if not (jnp.iscomplexobj(x) or jnp.iscomplexobj(y)) or x.shape[-1] < REAL_PRODUCTS_FROM:
        return x @ y
    if not jnp.iscomplexobj(x):  # two real products, as one
        vector = y.ndim == 1
        y = y[:, None] if vector else y
        k = y.shape[-1]
        p = x @ jnp.concatenate([y.real, y.imag], axis=-1)
        out = p[:, :k] + 1j * p[:, k:]
        return out[:, 0] if vector else out
    y = y.astype(x.dtype)
    ac, bd = x.real @ y.real, x.imag @ y.imag
    cross = (x.real + x.imag) @ (y.real + y.imag)
    return (ac - bd) + 1j * (cross - ac - bd)


def commutator(x: Inexact[Array, "n n"], y: Inexact[Array, "n n"]) -> Inexact[Array, "n n"]:
    """`[x, y] = x y - y x`."""
    return matmul(x, y) - matmul(y, x)


def halvings(norm: Real[Array, "*batch"], bound: float, most: int) -> Int[Array, "*batch"]:
    """The number `s` of halvings, at most `most`, that bring `norm` below `bound`: the
    least `s >= 0` with `norm / 2^s < bound`. Elementwise: a few operations per entry,
    under `jax.vmap` too. Up to `most = 8`, by comparisons with the thresholds
    `bound 2^i`, where `frexp` would compile to about 150 instructions (in every step of
    an adaptive solve); beyond, from the exponent `frexp` gives (the `most` thresholds
    compared with each entry cost 30 times more on a batch of 100,000 norms)."""
    if most <= 8:
        thresholds = jnp.asarray([bound * 2.0**i for i in range(most)], norm.dtype)
        return jnp.sum(norm[..., None] >= thresholds, axis=-1, dtype=jnp.int32)
    ratio = norm / bound
    _, exponent = jnp.frexp(ratio)  # ratio = f 2^exponent with 1/2 <= f < 1 (0 for 0, NaN)
    return jnp.where(jnp.isinf(ratio), most, jnp.clip(exponent, 0, most)).astype(jnp.int32)


def power_of_two(s: Int[Array, "*batch"], dtype) -> Real[Array, "*batch"]:
    """`2^s` for integer `s`, exactly (`jnp.exp2` rounds), in the real dtype of `dtype`."""
    return jnp.ldexp(jnp.ones((), jnp.finfo(dtype).dtype), s)


def norm1(x: Inexact[Array, "*batch n n"]) -> Real[Array, "*batch"]:
    """The matrix 1-norm, the largest absolute column sum."""
    return jnp.max(jnp.sum(jnp.abs(x), axis=-2), axis=-1)
