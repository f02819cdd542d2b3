"""`Liouvillian`: the generator of a Lindblad master equation, applied in matrix form.

The master equation `d rho/dt = -i [H, rho] + sum_k (L_k rho L_k^H - 1/2 {K, rho})`,
`K = sum_k L_k^H L_k`, is linear in `rho`: on column-stacked density matrices
`vec(rho)` (entry `i + j n` holds `rho[i, j]`) it is `d vec(rho)/dt = S vec(rho)` with
an `n^2 x n^2` superoperator `S`. `S` is never formed: with `M = -i H - K / 2`,

    S(rho) = M rho + (M rho^H)^H + sum_k L_k (L_k rho^H)^H,

which takes only products from the left by `M` and the `L_k` (one pass over `rho` per
sparse factor, `O(n^3)` per dense one), valid for any `rho`, Hermitian or not.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact, Real

from .._linalg import matmul
from .._materialize import computed_once
from .banded import BandedOperator, combined, shift
from .base import AbstractOperator, estimated_disk
from .combination import OperatorCombination
from .convert import diagonal

# What `H(t)`, `K` and the `L_k` may be: a dense matrix or an operator (products only).
Factor = Inexact[Array, "n n"] | AbstractOperator | OperatorCombination


def _left(factor: Factor, blocks: Inexact[Array, "n m n"]) -> Inexact[Array, "n m n"]:
    """`factor @ blocks[:, c, :]` for each of the `m` matrices side by side in `blocks`:
    one product with an `(n, m n)` block."""
    n, m, _ = blocks.shape
    flat = blocks.reshape(n, m * n)
    product = matmul(factor, flat) if isinstance(factor, jnp.ndarray) else factor.mv(flat)
    return product.reshape(n, m, n)


def _adjoints(blocks: Inexact[Array, "n m n"]) -> Inexact[Array, "n m n"]:
    """The conjugate transpose of each matrix `blocks[:, c, :]`."""
    return jnp.conj(jnp.transpose(blocks, (2, 1, 0)))


class Liouvillian(AbstractOperator):
    """The superoperator `S` of the Lindblad master equation at one time, on column-stacked
    density matrices `vec(rho)` of length `n^2`, applied in matrix form (never formed).
    What `odeexpm.Lindblad` returns at a time `t`.

    **Fields:** `hamiltonian` (`H`), `jumps` (the `L_k`) and `decay`
    (`K = sum_k L_k^H L_k`, or `None` for no jump operators), each a dense `(n, n)` array
    or an operator.
    """

    hamiltonian: Factor
    jumps: tuple[Factor, ...]
    decay: Factor | None

    @property
    def size(self) -> int:
        """`n`: the side of the density matrices."""
        return self.hamiltonian.shape[0]

    @property
    def shape(self):
        return (self.size**2, self.size**2)

    @property
    def dtype(self):
        parts = [self.hamiltonian, *self.jumps] + ([] if self.decay is None else [self.decay])
        return jnp.result_type(*(part.dtype for part in parts), jnp.complex64)

    def _nonhermitian(self, blocks: Inexact[Array, "n m n"]) -> Inexact[Array, "n m n"]:
        """`M @ blocks`, `M = -i H - K / 2`: one product where `H` and `K` are dense."""
        H, K = self.hamiltonian, self.decay
        if isinstance(H, jnp.ndarray) and (K is None or isinstance(K, jnp.ndarray)):
            return _left(-1j * H if K is None else -1j * H - 0.5 * K, blocks)
        out = -1j * _left(H, blocks)
        return out if K is None else out - 0.5 * _left(K, blocks)

    def banded(self) -> tuple[BandedOperator, BandedOperator | None, tuple] | None:
        """`(H, K, jumps)` as banded operators where they all are, else `None`."""
        H = self.hamiltonian
        if isinstance(H, OperatorCombination) and all(
            isinstance(part, BandedOperator) for part in (H.drift, *H.operators)
        ):
            H = combined(H)
        parts = [H, *self.jumps] + ([] if self.decay is None else [self.decay])
        if not all(isinstance(part, BandedOperator) for part in parts):
            return None
        return H, self.decay, self.jumps

    def in_rotating_frame(
        self,
        energies: Real[Array, " n"],
        phases: dict[int, tuple[Real[Array, " n"], Real[Array, " n"]]],
    ) -> "Liouvillian":
        """The banded generator seen from a frame rotating with `diag(energies)`:
        `U^H S(U rho U^H) U - (-i [diag(energies), rho])`, `U = diag(exp(-i s energies))`.
        That is the Lindbladian of the factors `U^H F U`, with `diag(energies)` taken
        from `H`: diagonal `o` of each factor is multiplied by
        `exp(i s (energies[i] - energies[i + o]))`, given as `phases[o] = (cos, sin)`
        (none at `s = 0`)."""
        H, K, jumps = self.banded()

        def rotate(F, energies=None):
            diagonals = []
            for o, d in zip(F.offsets, F.diagonals):
                if o == 0:
                    d = d if energies is None else d - energies
                elif o in phases:
                    d = d * jax.lax.complex(*phases[o])
                diagonals.append(d)
            return BandedOperator(jnp.stack(diagonals), F.offsets)

        return Liouvillian(
            rotate(H, energies),
            tuple(rotate(L) for L in jumps),
            None if K is None else rotate(K),
        )

    def mv(self, y):
        banded = self.banded()
        if banded is not None:
            return _banded_lindbladian(*banded, y.astype(self.dtype))
        n = self.size
        vector = y.ndim == 1
        columns = y[:, None] if vector else y
        k = columns.shape[1]
        rho = columns.reshape(n, n, k).transpose(1, 2, 0)  # rho[i, c, j] = rho_c[i, j]
        rho_h = _adjoints(rho)
        # M rho and M rho^H in one product; S(rho) starts as M rho + (M rho^H)^H.
        both = self._nonhermitian(jnp.concatenate([rho, rho_h], axis=1))
        out = both[:, :k] + _adjoints(both[:, k:])
        for jump in self.jumps:
            out = out + _left(jump, _adjoints(_left(jump, rho_h)))
        out = out.transpose(2, 0, 1).reshape(n * n, k)
        return out[:, 0] if vector else out

    def diagonal(self):
        # S[(i, j), (i, j)] = m_i + conj(m_j) + sum_k l_k,i conj(l_k,j), m = diag(M).
        parts = [self.hamiltonian, *self.jumps] + ([] if self.decay is None else [self.decay])
        diagonals = [diagonal(part) for part in parts]
        if any(d is None for d in diagonals):
            return None
        h, jumps = diagonals[0], diagonals[1 : 1 + len(self.jumps)]
        m = -1j * h - (0 if self.decay is None else 0.5 * diagonals[-1])
        out = m[:, None] + jnp.conj(m)[None, :]
        for jump in jumps:
            out = out + jump[:, None] * jnp.conj(jump)[None, :]
        return out.T.reshape(-1).astype(self.dtype)

    def separable_frequencies(self) -> tuple[Real[Array, " n"], Real[Array, " n"]] | None:
        """`(rows, columns)` with `Im S[(i, j), (i, j)] = rows[i] + columns[j]`
        (`-h_i + h_j`, `h = diag(H)`) where the jump operators are real (their diagonal
        adds only to the real part), else `None`; `None` also where `diag(H)` is unknown."""
        h = diagonal(self.hamiltonian)
        if h is None or any(jnp.iscomplexobj(jump) for jump in self.jumps):
            return None
        h = jnp.real(h)
        return -h, h

    def disk(self):
        return estimated_disk(self)

    def fast_form(self):
        return self, None


class SumOfSquares(AbstractOperator):
    """`K = sum_k L_k^H L_k` applied as `sum_k L_k^H (L_k y)`, for sparse jump operators
    with many diagonals (whose sparse product would not be differentiable)."""

    factors: tuple[AbstractOperator, ...]
    adjoints: tuple[AbstractOperator, ...]

    @property
    def shape(self):
        return self.factors[0].shape

    @property
    def dtype(self):
        return jnp.result_type(*(f.dtype for f in self.factors))

    def mv(self, y):
        return sum(adjoint.mv(f.mv(y)) for f, adjoint in zip(self.factors, self.adjoints))

    def diagonal(self):
        return None

    def disk(self):
        return estimated_disk(self)

    def fast_form(self):
        return self, None


def decay_of(jumps: tuple[Inexact[Array, "n n"], ...]) -> Inexact[Array, "n n"] | None:
    """`K = sum_k L_k^H L_k` of dense jump operators (`None` for none)."""
    if not jumps:
        return None
    return sum(matmul(jnp.conj(L).T, L) for L in jumps)


class _StencilWeights(eqx.Module):
    """The diagonals of `M = -i H - K / 2` and of the jump operators, as real arrays: the
    weights of `_banded_lindbladian`'s shifted copies of `rho`."""

    # (One set of diagonals per factor, each of its own count: unchecked names.)
    nonhermitian: tuple[Real[Array, "_d n"], Real[Array, "_d n"]]
    jumps: tuple[tuple[Real[Array, "_d n"], Real[Array, "_d n"] | None], ...]
    nonhermitian_offsets: tuple[int, ...] = eqx.field(static=True)
    jump_offsets: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    @classmethod
    def of(cls, hamiltonian, decay, jumps) -> "_StencilWeights":
        # M = -i H - K/2 by diagonals, a sum per offset (no scatter):
        # -i (h_real + i h_imag) = h_imag - i h_real.
        m_real, m_imag = {}, {}
        for o, d in zip(hamiltonian.offsets, hamiltonian.diagonals):
            m_real[o] = m_real.get(o, 0) + jnp.imag(d)
            m_imag[o] = m_imag.get(o, 0) - jnp.real(d)
        if decay is not None:
            for o, d in zip(decay.offsets, decay.diagonals):
                m_real[o] = m_real.get(o, 0) - 0.5 * jnp.real(d)
                m_imag[o] = m_imag.get(o, 0) - 0.5 * jnp.imag(d)
        offsets = sorted(m_real)
        zero = jnp.zeros_like(jnp.real(hamiltonian.diagonals[0]))
        m_real = jnp.stack([zero + m_real[o] for o in offsets])
        m_imag = jnp.stack([zero + m_imag[o] for o in offsets])
        jump_weights = tuple(
            (
                jnp.real(L.diagonals),
                jnp.imag(L.diagonals) if jnp.iscomplexobj(L.diagonals) else None,
            )
            for L in jumps
        )
        return cls((m_real, m_imag), jump_weights, tuple(offsets), tuple(L.offsets for L in jumps))


def _banded_lindbladian(
    hamiltonian: BandedOperator,
    decay: BandedOperator | None,
    jumps: tuple[BandedOperator, ...],
    y: Inexact[Array, " N *k"],
) -> Inexact[Array, " N *k"]:
    """`S(rho)` on `vec(rho)` where `H`, `K` and the `L_k` are banded (`stencil`).

    The weights are `computed_once`, not for each of the `n^2` entries.
    """
    weights = computed_once(lambda parts: _StencilWeights.of(*parts), (hamiltonian, decay, jumps))
    n = hamiltonian.shape[0]
    block = y.reshape(n, n, -1)
    out = stencil(weights, jnp.stack([jnp.real(block), jnp.imag(block)]))
    return jax.lax.complex(out[0], out[1]).reshape(y.shape)


def frame_stage_weights(
    stages: Liouvillian,
    energies: Real[Array, " n"],
    fractions: np.ndarray,
    h: Real[Array, ""],
) -> _StencilWeights:
    """The stencil weights of a Lawson step's stages, all at once: `stages` holds the
    banded generator at each stage (a leading axis), seen from the frame rotating with
    `diag(energies)` from the step's start, at the `fractions` of the step `h`
    (`Liouvillian.in_rotating_frame`), `computed_once`."""

    def compute(inputs):
        h, stages, energies = inputs
        # (The diagonals' offsets are static: those of the first stage.)
        H, K, jumps = jax.tree.map(lambda x: x[0], stages).banded()
        parts = [H, *jumps] + ([] if K is None else [K])
        distances = sorted({abs(o) for part in parts for o in part.offsets} - {0})
        # The sines and cosines of all stages and diagonals in one table, materialized
        # (`computed_once`): fused into each of the weights' passes, they were recomputed
        # by every one of them.
        angles = jnp.stack(
            [
                jnp.asarray(fractions, energies.dtype)[:, None]
                * h
                * (energies - shift(energies, o))[None, :]
                for o in distances
            ]
        )
        cos, sin = computed_once(lambda x: (jnp.cos(x), jnp.sin(x)), angles)

        def one(liouvillian, cos, sin):
            phases = {}
            # The phases of diagonals -o and o are one another's, shifted and conjugated:
            # `energies[i] - energies[i - o]` is minus the other's entry `i - o`.
            for o, c, s in zip(distances, cos, sin):
                phases[o] = (c, s)
                phases[-o] = (shift(c, -o), -shift(s, -o))
            rotated = liouvillian.in_rotating_frame(energies, phases)
            return _StencilWeights.of(*rotated.banded())

        return jax.vmap(one, in_axes=(0, 1, 1))(stages, cos, sin)

    return computed_once(compute, (h, stages, energies))


def stencil(weights: _StencilWeights, pair: Real[Array, "2 n n k"]) -> Real[Array, "2 n n k"]:
    """`S` applied to `Y = rho^T` (`vec(rho)` read row by row), given as its real and
    imaginary parts: one fused pass of shifted copies of `Y` weighted by diagonals.

    `Y` evolves as `Y' = conj(M) Y + Y conj(M)^H + sum_k conj(L_k) Y conj(L_k)^H`; with
    `m_o[i] = M[i, i + o]` and `l_o` the diagonals of `L`, entry `(i, j)` of that is
    `sum_o conj(m_o[i]) Y[i + o, j] + sum_o m_o[j] Y[i, j + o]
    + sum_{a, b} conj(l_a[i]) l_b[j] Y[i + a, j + b]`.
    """
    n = pair.shape[1]
    pad = max(abs(o) for o in weights.nonhermitian_offsets + sum(weights.jump_offsets, ()))
    # The padded input and the result are materialized (`computed_once`): the shifted
    # reads would each recompute an input fused into them, and in reverse mode the
    # weights' reductions each the result's cotangent.
    padded = computed_once(
        lambda pair: jnp.pad(pair, [(0, 0), (pad, pad), (pad, pad), (0, 0)]), pair
    )
    return computed_once(lambda inputs: _stencil_padded(*inputs, n, pad), (padded, weights))


def _stencil_padded(
    padded: Real[Array, "2 m m k"], weights: _StencilWeights, n: int, pad: int
) -> Real[Array, "2 n n k"]:
    """`stencil`'s pass, on the input padded with `pad` zeros on each side of `n`."""
    real, imag = padded[0], padded[1]

    def shifted(p, q):  # Y[i + p, j + q], as (real, imaginary)
        window = (slice(pad + p, pad + p + n), slice(pad + q, pad + q + n))
        return real[window], imag[window]

    def rows(v):  # a weight on the row index i
        return v[:, None, None]

    def columns(v):  # a weight on the column index j
        return v[None, :, None]

    out_real, out_imag = 0.0, 0.0
    m_reals, m_imags = weights.nonhermitian
    for o, m_real, m_imag in zip(weights.nonhermitian_offsets, m_reals, m_imags):
        # conj(m_o[i]) Y[i + o, j]
        y_real, y_imag = shifted(o, 0)
        out_real = out_real + rows(m_real) * y_real + rows(m_imag) * y_imag
        out_imag = out_imag + rows(m_real) * y_imag - rows(m_imag) * y_real
        # m_o[j] Y[i, j + o]
        y_real, y_imag = shifted(0, o)
        out_real = out_real + columns(m_real) * y_real - columns(m_imag) * y_imag
        out_imag = out_imag + columns(m_real) * y_imag + columns(m_imag) * y_real
    for offsets, (l_real, l_imag) in zip(weights.jump_offsets, weights.jumps):
        for a, la_real, la_imag in zip(offsets, l_real, l_imag if l_imag is not None else l_real):
            for b, lb_real, lb_imag in zip(
                offsets, l_real, l_imag if l_imag is not None else l_real
            ):
                y_real, y_imag = shifted(a, b)
                if l_imag is None:  # a real weight l_a[i] l_b[j]
                    weight = rows(la_real) * columns(lb_real)
                    out_real, out_imag = out_real + weight * y_real, out_imag + weight * y_imag
                    continue
                # conj(l_a[i]) l_b[j] = w_real + i w_imag
                w_real = rows(la_real) * columns(lb_real) + rows(la_imag) * columns(lb_imag)
                w_imag = rows(la_real) * columns(lb_imag) - rows(la_imag) * columns(lb_real)
                out_real = out_real + w_real * y_real - w_imag * y_imag
                out_imag = out_imag + w_real * y_imag + w_imag * y_real
    return jnp.stack([out_real, out_imag])
