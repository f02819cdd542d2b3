"""`Lawson`: explicit Runge-Kutta steps in a frame rotating with the generator's diagonal."""

import functools as ft
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact, Int, Real

from .._complex import merge_complex, split_complex
from .._materialize import computed_once
from .._operator import Liouvillian, apply, diagonal
from .._operator.liouvillian import frame_stage_weights, stencil
from .base import AbstractLinearSolver


class Lawson(AbstractLinearSolver):
    """An explicit Runge-Kutta method applied in a rotating frame (Lawson's
    integrating-factor method): the oscillations of the generator's diagonal are
    integrated exactly, the rest by the Runge-Kutta method.

    On each step `[t, t + h]` the imaginary part `omega` of the diagonal of `A(t)` is
    split off, `A = i diag(omega) + N`, and the method is applied to
    `v(s) = exp(-i (s - t) omega) y(s)`, whose generator `N` oscillates no faster than
    the couplings between the states. For a quantum system whose Hamiltonian has large
    diagonal entries (detunings, a Kerr term, the energies of a many-level system) the
    steps are then limited by the accuracy asked for, not by the stability of the
    explicit method at the largest energy. The method keeps the order and the embedded
    error estimate of `runge_kutta`; where the diagonal is real (a Markov chain) or
    unknown (a lineax operator) it is that method itself.

    Because `exp(-i s omega)` has modulus one and leaves the diagonal of a density
    matrix unchanged, the split preserves what the Runge-Kutta method preserves: the
    trace of a density matrix under `odeexpm.Lindblad`, and probability for a
    Markov generator.

    **Arguments:**

    - `runge_kutta`: an explicit `diffrax` Runge-Kutta method with an embedded error
      estimate (`diffrax.Dopri8()` by default; `diffrax.Tsit5()`, `diffrax.Dopri5()`).

    Outputs at times that are not step ends are linear interpolants; `odeexpm.evolve`
    and `odeexpm.propagator` step exactly to their `ts`.

    Examples:
        ```python
        lindblad = odeexpm.Lindblad(H, [jnp.sqrt(kappa) * a])
        rho = odeexpm.evolve(lindblad, rho0, 0.0, 10.0, solver=odeexpm.Lawson(diffrax.Tsit5()))
        ```
    """

    runge_kutta: diffrax.AbstractERK = diffrax.Dopri8()
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation
    # Default rtol = atol in double and in single precision.
    tolerances: ClassVar[tuple[float, float]] = (1e-10, 1e-6)

    def __check_init__(self):
        tableau = getattr(self.runge_kutta, "tableau", None)
        if tableau is None or tableau.implicit or tableau.b_error is None:
            raise ValueError(
                "odeexpm.Lawson: `runge_kutta` must be an explicit diffrax Runge-Kutta "
                f"method with an error estimate (Dopri8, Tsit5, ...); got {self.runge_kutta}."
            )

    def order(self, terms):
        return self.runge_kutta.order(terms)

    def precompute(self, generator, t0, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        term, direction = self.linear_term(terms)
        tableau = self.runge_kutta.tableau
        # diffeqsolve runs in time `direction * t`; the step below is in the user's time.
        start, h = direction * t0, direction * (t1 - t0)
        y = merge_complex(y0)
        matrix_at_start = term.matrix(start, args)
        # The stage arithmetic runs on (real, imaginary) pairs: XLA's CPU backend does
        # complex elementwise arithmetic several times slower than the real arithmetic
        # it amounts to (a Dopri8 step combines 13 stages).
        as_pair, as_complex = (_pair, _complex) if jnp.iscomplexobj(y) else (_same, _same)
        frame = _Frame.of(matrix_at_start, y) if jnp.iscomplexobj(y) else None
        nodes = np.concatenate([[0.0], tableau.c])
        # The stages the solution or the error estimate use (Dopri8's last one serves
        # dense output only).
        used = np.flatnonzero((tableau.b_sol != 0) | (tableau.b_error != 0))
        stages = int(used[-1]) + 1

        # A banded Lindblad generator is rotated itself (its few diagonals), not the
        # state at every stage, and the weights of all stages are computed at once.
        banded_lindblad = (
            frame is not None and frame.size is not None and matrix_at_start.banded() is not None
        )
        if banded_lindblad:
            energies = -frame.angles[: frame.size]
            stage_times = start + jnp.asarray(nodes[:stages], energies.dtype) * h
            generators = jax.vmap(lambda t: term.matrix(t, args))(stage_times)
            weights = frame_stage_weights(generators, energies, nodes[:stages], h)

            # Recomputed in reverse mode rather than saved: saving each stage's slices of
            # the weights (some fifty small arrays) made gradients 15% slower.
            @ft.partial(jax.checkpoint, prevent_cse=False)
            def banded_slope(i, v):
                stage = jax.tree_util.tree_map(lambda x: _at(x, i), weights)
                return stencil(stage, v.reshape(2, frame.size, frame.size, -1)).reshape(v.shape)

        if frame is not None:
            omega = frame.frequencies(y.ndim)
            # The frame's motion over each stage's fraction of the step, and over all of
            # it (last); the banded Lindblad path needs only the latter.
            fractions = np.append([] if banded_lindblad else nodes[:stages], 1.0)
            cos, sin = (jnp.stack(x) for x in zip(*frame.rotations(fractions, h, y.ndim)))

        def rotate(p, k, sign=1):  # exp(i sign c_k h omega) p
            if frame is None:
                return p
            c, s = cos[k], sign * sin[k]
            return jnp.stack([c * p[0] - s * p[1], s * p[0] + c * p[1]])

        def slope(i, v):  # N(t + c h) y(t + c h) in the frame of the step's start
            if banded_lindblad:
                return banded_slope(i, v)
            A = term.matrix(start + jnp.asarray(nodes, h.dtype)[i] * h, args)
            y_c = rotate(v, i)
            f = as_pair(apply(A, as_complex(y_c)))
            if frame is not None:  # N = A - i diag(omega)
                f = f + jnp.stack([omega * y_c[1], -omega * y_c[0]])
            return rotate(f, i, -1)

        # The stages run in a loop (one compiled body, not one per stage). The slopes
        # are kept in one array and combined by products with the tableau's rows
        # (`tensordot`), which XLA computes once; combined elementwise, each stage input
        # would be recomputed by every shifted read the generator makes of it.
        v0 = as_pair(y)
        rows = np.zeros((stages, stages))
        for i in range(1, stages):
            rows[i, :i] = tableau.a_lower[i - 1]
        rows = jnp.asarray(rows, v0.dtype)

        # (Indexed as known in range: `x[i]` and `.at[i]` wrap negative indices, which
        # cost the loop scalar kernels per stage, and a gradient a fifth of its time.)
        def stage(i, slopes):
            v = v0 + h * jnp.tensordot(_at(rows, i), slopes, axes=1)
            return jax.lax.dynamic_update_index_in_dim(
                slopes, slope(i, v), i, 0, allow_negative_indices=False
            )

        slopes = jax.lax.fori_loop(0, stages, stage, jnp.zeros((stages,) + v0.shape, v0.dtype))

        def combine(weights):
            weights = jnp.asarray(np.asarray(weights[:stages], dtype=float), v0.dtype)
            return h * jnp.tensordot(weights, slopes, axes=1)

        y1 = as_complex(rotate(v0 + combine(tableau.b_sol), -1))
        y_error = as_complex(rotate(combine(tableau.b_error), -1))
        dense_info = dict(y0=y0, y1=split_complex(y1))
        return (
            split_complex(y1),
            split_complex(y_error),
            dense_info,
            solver_state,
            diffrax.RESULTS.successful,
        )


def _at(x: Array, i: Int[Array, ""]) -> Array:
    """`x[i]` for a loop index `i >= 0`."""
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False, allow_negative_indices=False)


class _Frame(eqx.Module):
    """The rotating frame of a Lawson step: `omega`, the imaginary part of the diagonal
    of `A`, either as a vector or, for a Lindblad generator (`omega = -h_i + h_j` on the
    entry `(i, j)` of `rho`), as `rows[i] + columns[j]`, whose phases take `2n` sines and
    cosines instead of `2n^2`."""

    angles: Real[Array, " m"]  # omega, or rows and columns concatenated
    size: int | None = eqx.field(static=True)  # n where separable

    @classmethod
    def of(cls, A, y: Inexact[Array, " n *k"]) -> "_Frame | None":
        real = jnp.finfo(y.dtype).dtype
        separable = A.separable_frequencies() if isinstance(A, Liouvillian) else None
        if separable is not None:
            return cls(jnp.concatenate(separable).astype(real), separable[0].shape[0])
        d = diagonal(A)
        return None if d is None else cls(jnp.imag(d).astype(real), None)

    @staticmethod
    def _table(columns: Real[Array, " n"], rows: Real[Array, " n"], combine) -> Real[Array, " N"]:
        """`combine(columns[j], rows[i])` at entry `i + j n` of `vec(rho)` (`rho[i, j]`)."""
        return combine(columns[:, None], rows[None, :]).reshape(-1)

    def frequencies(self, ndim: int) -> Real[Array, " N *k"]:
        """`omega`, shaped to multiply a state of `ndim` axes."""
        omega = self.angles
        if self.size is not None:
            rows, columns = omega[: self.size], omega[self.size :]
            omega = self._table(columns, rows, jnp.add)
        return omega[:, None] if ndim == 2 else omega

    def rotations(self, fractions: np.ndarray, h: Real[Array, ""], ndim: int) -> list:
        """`(cos(f h omega), sin(f h omega))` for each of `fractions`, shaped as the state."""
        angles = jnp.asarray(fractions, self.angles.dtype)[:, None] * h * self.angles[None, :]
        cos, sin = computed_once(lambda x: (jnp.cos(x), jnp.sin(x)), angles)
        expand = (lambda x: x[:, None]) if ndim == 2 else (lambda x: x)
        out = []
        for k in range(len(fractions)):
            if self.size is None:
                out.append((expand(cos[k]), expand(sin[k])))
                continue
            n = self.size
            row_cos, row_sin, column_cos, column_sin = (
                cos[k, :n],
                sin[k, :n],
                cos[k, n:],
                sin[k, n:],
            )
            # exp(i (a + b)) from exp(i a) and exp(i b).
            new_cos = self._table(column_cos, row_cos, jnp.multiply) - self._table(
                column_sin, row_sin, jnp.multiply
            )
            new_sin = self._table(column_sin, row_cos, jnp.multiply) + self._table(
                column_cos, row_sin, jnp.multiply
            )
            out.append((expand(new_cos), expand(new_sin)))
        return out


def _pair(x: Inexact[Array, " ..."]) -> Real[Array, " 2 ..."]:
    return jnp.stack([x.real, x.imag])


def _complex(p: Real[Array, " 2 ..."]) -> Inexact[Array, " ..."]:
    return jax.lax.complex(p[0], p[1])


def _same(x):
    return x
