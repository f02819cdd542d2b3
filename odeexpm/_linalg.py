"""Dense linear algebra shared by the solvers: products, commutators, norms."""

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Inexact, Int, Real

# From this size on, complex products are done as real ones (below, the native
# complex product is as fast and compiles faster).
REAL_PRODUCTS_FROM = 32
# Matrices with these many rows have sums (and `any`) over their rows written as
# elementwise operations on the rows. XLA's CPU backend reduces such a short axis, not
# the last one, of a batch of small matrices several times more slowly: the 1-norms of
# 3 x 128 stacked 8x8 matrices took 46 us against 14, their triangularity 18 against 4
# (n = 4 to 10 alike; slower from n = 12 on, and for sums over 2 or 3 rows).
UNROLLED_SUMS = range(4, 11)
UNROLLED_ANY = range(1, 11)
# From this many rows on, a branch that spares a pass over the matrix (a check that
# usually passes) pays for itself. On smaller matrices the pass costs less than the
# branch and its predicate, which can also cost XLA's CPU runtime its in-order execution
# of a small program (a 32x32 gradient took 1.15 times as long; a batch of 3x3, 1.04).
SKIP_PASSES_FROM = 64


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


def trace(x: Inexact[Array, "*batch n n"]) -> Inexact[Array, "*batch"]:
    """The sum of the diagonal (`jnp.trace` masks the whole matrix: a pass over it)."""
    return jnp.sum(jnp.diagonal(x, axis1=-2, axis2=-1), axis=-1)


def norm1(x: Inexact[Array, "*batch n n"]) -> Real[Array, "*batch"]:
    """The matrix 1-norm, the largest absolute column sum."""
    return jnp.max(column_sums(jnp.abs(x)), axis=-1)


def column_sums(x: Inexact[Array, "*batch m n"]) -> Inexact[Array, "*batch n"]:
    """`x.sum(axis=-2)`, the sum of each column."""
    if x.shape[-2] in UNROLLED_SUMS:
        return functools.reduce(jnp.add, _rows(x))
    return jnp.sum(x, axis=-2)


def all_zero(x: Inexact[Array, "*batch m n"]) -> Bool[Array, "*batch"]:
    """Whether every entry of the matrix `x` is zero (a NaN is not)."""
    if x.shape[-2] in UNROLLED_ANY:
        return ~jnp.any(functools.reduce(jnp.logical_or, _rows(x != 0)), axis=-1)
    return jnp.all(x == 0, axis=(-2, -1))


def norms1(matrices: list[Inexact[Array, "*batch n n"]]) -> Real[Array, " k *batch"]:
    """The 1-norms of several matrices of one shape, stacked: in one reduction over their
    stack, or where their rows are summed as rows, each on its own. (A stack of three
    8x8 matrices is a buffer of 1,536 bytes. XLA's CPU runtime runs a program in order
    only where every buffer is at most 512 bytes, its thunks form a chain, or there are
    at most 8 of them; otherwise through its thread pool: 25 us more for the gradient of
    an 8x8 exponential.)"""
    if matrices[0].shape[-2] not in UNROLLED_SUMS:
        return norm1(jnp.stack(matrices))
    return jnp.stack([norm1(x) for x in matrices])


def _rows(x: Array) -> list[Array]:
    return [x[..., i, :] for i in range(x.shape[-2])]
