"""Dense linear algebra shared by the solvers: products, commutators, norms."""

import jax
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
    least `s >= 0` with `norm / 2^s < bound` (0 for NaN). Elementwise, from the exponent
    of `norm / bound`: a few integer operations per entry, under `jax.vmap` too."""
    ratio = norm / bound
    # (`ratio >= 1`: normal or infinite, where `exponent` is exact.)
    s = jnp.where(ratio >= 1, jnp.minimum(exponent(ratio) + 1, most), 0)
    return jnp.where(ratio == jnp.inf, most, s).astype(jnp.int32)


def exponent(x: Real[Array, "*batch"]) -> Int[Array, "*batch"]:
    """`floor(log2 |x|)`, exactly, for normal `x`; `maxexp` (1024 in double precision)
    for infinities, and `minexp - 1` (-1023) for NaN and below the normal range (0
    included). Read from the exponent field of `x`'s bits: `jnp.frexp` handles
    subnormals too, in about 150 instructions, and `jnp.log2` rounds."""
    info = jnp.finfo(x.dtype)
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"int{info.bits}"))
    field = (bits >> info.nmant) & (2 * info.maxexp - 1)
    return jnp.where(x == x, field, 0) - (info.maxexp - 1)


def power_of_two(s: Int[Array, "*batch"], dtype) -> Real[Array, "*batch"]:
    """`2^s` for integer `s`, exactly (`jnp.exp2` rounds), in the real dtype of `dtype`:
    0 or infinity where `2^s` underflows or overflows.

    Built from the bits of two normal numbers `2^h` and `2^(s - h)`, `h = floor(s / 2)`,
    whose product rounds only out of range. `jnp.ldexp` raises 2 to a float power with
    `pow`: 16 ns per entry on a CPU, where the bits cost about 1 ns.
    """
    info = jnp.finfo(dtype)
    bits = jnp.dtype(f"int{info.bits}")
    bias = info.maxexp - 1  # the largest normal exponent, and the exponent field's bias
    s = jnp.clip(jnp.asarray(s), 2 * info.minexp, 2 * bias).astype(bits)
    half = s // 2

    def normal(e):  # `2^e` for `minexp <= e <= bias`, from its exponent field
        return jax.lax.bitcast_convert_type((e + bias) << info.nmant, info.dtype)

    return normal(half) * normal(s - half)


def norm1(x: Inexact[Array, "*batch n n"]) -> Real[Array, "*batch"]:
    """The matrix 1-norm, the largest absolute column sum."""
    return jnp.max(jnp.sum(jnp.abs(x), axis=-2), axis=-1)
