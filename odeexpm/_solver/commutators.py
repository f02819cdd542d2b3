"""The nested commutators of a `Modulated` generator's matrices, computed once per solve
so that Magnus steps build `Omega` without matrix products."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._generator import AbstractGenerator, Modulated
from .._linalg import commutator

# A Modulated generator gets precomputed commutators if contracting them is cheaper than
# the matrix products they replace (m^depth <= 2n for m = K + 1 matrices of size n) and
# they take little memory (at most 2^22 numbers).
_MAX_COMMUTATOR_NUMBERS = 2**22


class Commutators(eqx.Module):
    """The nested commutators of the matrices `B = (A0, A1, ..., AK)` of a `Modulated`
    generator, for Lie polynomials in linear combinations of the `B` (`combine`).

    Of the `m^d` right-nested commutators `[B_a1, [B_a2, [..., B_ad]]]` of depth `d`
    only a basis is kept (as many as the free Lie algebra on `m` letters has dimensions
    in degree `d`: 2, 1, 2, 3, 6, 9 for `m = 2`, against `2^d`), together with the
    universal relations that express the others in it (`_lie_basis`). A step's
    contraction then reads 23 matrices instead of 126 at depth 6.
    """

    # The basis commutators, depth by depth, flattened, complex ones as (real, imaginary)
    # pairs: each contraction is one real matrix product that reads them in place.
    basis: Array  # (number of basis commutators, n * n or 2 * n * n), real
    letters: int = eqx.field(static=True)  # m
    n: int = eqx.field(static=True)

    @staticmethod
    def pay(generator: AbstractGenerator, depth: int) -> bool:
        """Whether a step's contraction of the commutators of `generator` up to `depth`
        is cheaper than the few matrix products it replaces: a dense `Modulated`
        generator with at most `2n` basis commutators for matrices of size `n`."""
        if depth == 0 or not Commutators.possible(generator, depth):
            return False
        m, n = generator.operators.shape[0] + 1, generator.drift.shape[-1]
        return sum(_lie_dimension(m, d) for d in range(1, depth + 1)) <= 2 * n

    @staticmethod
    def possible(generator: AbstractGenerator, depth: int) -> bool:
        """Whether `of` can compute them: a dense `Modulated` generator, with a small
        free Lie algebra (`m^depth <= 4096` words) and at most 2^22 numbers to store."""
        if not isinstance(generator, Modulated) or generator.is_operator:
            return False
        m, n = generator.operators.shape[0] + 1, generator.drift.shape[-1]
        size = sum(_lie_dimension(m, d) for d in range(1, depth + 1)) * n * n
        return m**depth <= 4096 and size <= _MAX_COMMUTATOR_NUMBERS

    @staticmethod
    def of(generator: AbstractGenerator, depth: int) -> "Commutators | None":
        """The commutators of `generator` up to `depth`, or `None` where they cannot be
        had (see `possible`)."""
        if not Commutators.possible(generator, depth):
            return None
        dtype = jnp.result_type(generator.drift, generator.operators)
        letters = jnp.concatenate(
            [generator.drift[None].astype(dtype), generator.operators.astype(dtype)]
        )
        m, n = letters.shape[0], letters.shape[-1]
        levels = [letters]
        for d in range(2, depth + 1):
            words, _ = _lie_basis(m, d)
            _, relations = _lie_basis(m, d - 1)
            # [B_a, r(tail)], with r(tail) written in the basis of depth d - 1.
            tails = jnp.tensordot(
                jnp.asarray(relations[[_index(w[1:], m) for w in words]], dtype), levels[-1], axes=1
            )
            levels.append(jax.vmap(commutator)(letters[np.array([w[0] for w in words])], tails))
        basis = jnp.concatenate(levels)
        if jnp.iscomplexobj(basis):
            basis = jnp.stack([basis.real, basis.imag], axis=1)
        return Commutators(basis.reshape(basis.shape[0], -1), m, n)

    def combine(self, *weights: Array) -> Array:
        """`sum_d sum_w weights[d][..., w] [B_w1, [B_w2, [..., B_w(d+1)]]]`, with
        `weights[d]` of shape `(*batch, m, ..., m)` (`d + 1` axes of size `m`); the
        result has shape `(*batch, n, n)`."""
        coordinates = []
        for d, w in enumerate(weights, start=1):
            _, relations = _lie_basis(self.letters, d)
            w = w.reshape(w.shape[: w.ndim - d] + (self.letters**d,))
            coordinates.append(w @ jnp.asarray(relations, w.dtype))
        coordinates = jnp.concatenate(coordinates, axis=-1)
        basis = self.basis[: coordinates.shape[-1]]
        batch, n = coordinates.shape[:-1], self.n

        def contract(c):
            # One matrix-vector product per row: on CPU, XLA's product with a few rows
            # is slower than as many matrix-vector products (which read `basis` in place).
            rows = [row @ basis for row in c.reshape(-1, c.shape[-1])]
            return jnp.stack(rows).reshape(batch + (basis.shape[-1],))

        if jnp.iscomplexobj(coordinates):
            total = contract(coordinates.real) + 1j * contract(coordinates.imag)
        else:
            total = contract(coordinates)
        if basis.shape[-1] == n * n:
            return total.reshape(batch + (n, n))
        total = total.reshape(batch + (2, n, n))
        return total[..., 0, :, :] + 1j * total[..., 1, :, :]


def _lie_dimension(m: int, d: int) -> int:
    """The dimension of the degree-`d` part of the free Lie algebra on `m` letters
    (Witt's formula, `1/d sum_{k | d} mu(k) m^(d/k)`)."""

    def mobius(k):
        sign, p = 1, 2
        while p * p <= k:
            if k % p == 0:
                k //= p
                if k % p == 0:
                    return 0
                sign = -sign
            p += 1
        return -sign if k > 1 else sign

    return sum(mobius(k) * m ** (d // k) for k in range(1, d + 1) if d % k == 0) // d


def _index(word, m: int) -> int:
    """The position of `word` among the words of its length, in lexicographic order."""
    return sum(a * m ** (len(word) - 1 - i) for i, a in enumerate(word))


@functools.cache
def _lie_basis(m: int, d: int) -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """A basis of the right-nested commutators of depth `d` in `m` letters, and the
    relations expressing every one in it.

    Returns `(words, relations)`: the words `w` whose commutators `r(w) = [x_w1, [x_w2,
    [..., x_wd]]]` form the basis (the first independent ones in lexicographic order),
    and the `(m^d, len(words))` matrix with `r(u) = sum_j relations[u, j] r(words[j])`
    for every word `u` (indexed by `_index`). The relations hold in the free Lie algebra,
    hence for any matrices: they are found by expanding each `r(u)` into words.
    """
    # Row u: r(u) in the free associative algebra, by r(a u') = a r(u') - r(u') a.
    expansions = np.eye(m)
    for k in range(2, d + 1):
        inner = np.tile(expansions, (m, 1))  # row (a, u'): r(u') over words of length k - 1
        first = np.repeat(np.arange(m), m ** (k - 1))
        left = np.zeros((m**k, m**k))
        right = np.zeros((m**k, m**k))
        for row, (a, r) in enumerate(zip(first, inner)):
            left[row, a * m ** (k - 1) : (a + 1) * m ** (k - 1)] = r  # a u
            right[row, a::m] = r  # u a
        expansions = left - right
    chosen, orthonormal = [], np.zeros((0, m**d))
    for u, row in enumerate(expansions):  # greedy Gram-Schmidt (the rows are integers)
        residual = row - orthonormal.T @ (orthonormal @ row)
        if np.linalg.norm(residual) > 1e-8 * max(1.0, np.linalg.norm(row)):
            chosen.append(u)
            orthonormal = np.vstack([orthonormal, residual / np.linalg.norm(residual)])
    relations = np.linalg.lstsq(expansions[chosen].T, expansions.T, rcond=None)[0].T
    words = tuple(tuple(int(a) for a in np.unravel_index(u, (m,) * d)) for u in chosen)
    return words, np.round(relations, 12)
