"""`expm`'s scaling and squaring: balancing, the number of squarings, and the squarings.

`exp(tA) = D exp(t B / 2^k)^(2^k) D^-1` for the balanced `B = D^-1 A D`: the ODE is
solved on the scaled interval only, where `X = t B / 2^k` is small enough for a step of
the default solver, and the result is squared `k` times, so the cost grows like
`log ||A||` rather than `||A||`.

Each squaring amplifies the rounding errors of what it squares, so `k` is kept as small
as the step allows: for the Taylor solver, from Al-Mohy and Higham's bound on the powers
of `X` (`power_norm_bound`, at most `||X||_1` and far below it for non-normal matrices)
rather than from `||X||_1`. For triangular `B` the diagonal and first off-diagonal of
every squared power are recomputed from exact formulas (SciPy does the same): they are
where the squarings' rounding errors concentrate on such input.
"""

import math
from functools import partial

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Inexact, Int, PyTree, Real

from ._adjoint import FrechetAdjoint
from ._generator import Constant
from ._linalg import (
    SKIP_PASSES_FROM,
    all_zero,
    column_sums,
    halvings,
    matmul,
    norm1,
    power_of_two,
    trace,
)
from ._solver import Taylor
from ._solver.action import is_narrow
from ._solver.polynomial import (
    bound_from_norms,
    largest_alpha,
    most_doublings,
    power_norm_bound,
    power_norms,
)

# For solvers other than Taylor, the automatic scaling solves on [0, t / 2^k] with
# ||t A||_1 / 2^k <= SCALED_NORM, where a high-order explicit step covers the interval in
# a few steps, then squares k times.
SCALED_NORM = 1.0
# More squarings than this are never applied: 2^64 already exceeds any norm whose
# exponential is representable, and the bound sizes the reverse-mode checkpoints.
MAX_SQUARINGS = 64
# Sweeps of the (simultaneous) balancing iteration at most; each costs O(n^2).
BALANCE_SWEEPS = 8
# Balancing is tried only where ||t A||_1 exceeds this. Below, the scaled exponent needs
# at most 3 squarings, all that balancing could save; its sweeps would cost a batch of
# small matrices a third of its time (a while loop under vmap runs until every matrix
# of the batch is balanced).
BALANCE_FROM = 8.0
# The shift by the mean eigenvalue is looked for only where more squarings than this
# remain (below, the products that check it would cost more than it saves).
SHIFT_BEYOND = 2


def scaled_exponent(
    A: Inexact[Array, "n n"],
    t: Real[Array, ""],
    solver: diffrax.AbstractSolver,
    norm: Real[Array, ""],
) -> tuple[Inexact[Array, "n n"], Int[Array, ""], PyTree, Inexact[Array, ""]]:
    """`(X, k, precomputed, mu)` with `exp(tA) = exp(mu) exp(X)^(2^k)`: the scaled
    exponent `X = (t A - mu I) / 2^k`, the number `k` of squarings, for a `Taylor`
    solver the powers of `X` its steps combine (its `precompute`, formed here anyway to
    choose `k`; else `None`), and the shift `mu`.

    `k` is the least with `power_norm_bound(X) <= largest_alpha(...)` for a Taylor
    solver (where its truncation error is at most the unit roundoff), and with
    `||X||_1 <= SCALED_NORM` for others. `mu` is `0`, or for a Taylor solver the mean
    eigenvalue `trace(tA) / n` where taking it out leaves no squaring (`k = 0`) where
    more than 2 were needed: for `A` near a multiple of `I` (Awad's `I + N`, `N` nilpotent
    with entries `5e4`, has a 1-norm of `1e5` but `exp(A) = e (I + N)`), each squaring
    would amplify the rounding errors of what it squares. Where squarings remain the
    shift is not taken: `exp(mu)` rounded and raised to `2^k` would cost accuracy
    (Markov generators lose their row sums so). `norm`: `||tA||_1`, for decisions
    (`balance` gives it).
    """
    X, k, _ = halved(A, t, norm)
    no_shift = jnp.zeros((), A.dtype)
    if not fitted_by_powers(solver, A.shape[-1]):
        return X, k, None, no_shift
    identity = jnp.eye(A.shape[-1], dtype=A.dtype)
    theta = largest_alpha(solver.degree, A.dtype)
    powers, growth, alpha, squarings = _fitted_powers(X, k, solver)
    # (The identity, `powers[0]`, stays out of the branches, which would copy it.)
    unshifted = (powers[1:], growth, alpha, squarings, no_shift)

    # The shift is looked for where it would save more squarings than the two products
    # that check it cost, in two stages: a guess (`_shift_promising`), then the shifted
    # powers themselves. `unvmap_any`: a batch skips a stage none of its matrices needs.
    def check(promising, unshifted):
        mu = trace(t * A) / A.shape[-1]
        S = t * A - mu * identity
        shifted_powers, shifted_alpha = solver.precompute(Constant(S), 0.0, identity, None)
        take = promising & (shifted_alpha <= theta)
        shifted = (shifted_powers[1:], jnp.ones_like(growth), shifted_alpha, jnp.zeros_like(k), mu)
        return jax.tree.map(lambda a, b: jnp.where(take, a, b), shifted, unshifted)

    promising = _shift_promising(X, k, powers, squarings, solver)
    chosen = jax.lax.cond(
        eqxi.unvmap_any(promising), partial(check, promising), _unchanged, unshifted
    )
    powers, growth, alpha, squarings, mu = chosen
    powers = _grown((identity, *powers), growth)
    return powers[1], squarings, (powers, alpha), mu


def fitted_by_powers(solver: diffrax.AbstractSolver, n: int) -> bool:
    """Whether `scaled_exponent` fits the scaling to the powers of `tA` (a `Taylor`
    solver whose steps are polynomials), rather than to `||tA||_1`."""
    # (Taylor steps of degree below 4 are actions, even on I.)
    return isinstance(solver, Taylor) and not is_narrow(jnp.eye(n), solver.degree)


def unshifted_exponent(
    X: Inexact[Array, "n n"], k: Int[Array, ""], solver: Taylor
) -> tuple[tuple[Inexact[Array, "n n"], ...], Real[Array, ""], Int[Array, ""], Bool[Array, ""]]:
    """`(powers, alpha, k, promising)`: what `scaled_exponent` gives where it takes no
    shift, from `halved(A, t)`'s `X = tA / 2^k` and `k`, for a solver `fitted_by_powers`
    (the powers `(I, X', ..., X'^q)` of the scaled exponent `X'` that the Taylor step
    combines, their `power_norm_bound` and the number of squarings), and whether it
    would check for the shift (where it is `False`, `scaled_exponent` gives these)."""
    powers, growth, alpha, squarings = _fitted_powers(X, k, solver)
    promising = _shift_promising(X, k, powers, squarings, solver)
    return _grown(powers, growth), alpha, squarings, promising


def halved(
    A: Inexact[Array, "n n"], t: Real[Array, ""], norm: Real[Array, ""] | None = None
) -> tuple[Inexact[Array, "n n"], Int[Array, ""], Real[Array, ""]]:
    """`(X, k, norm)`: `X = tA / 2^k`, the fewest halvings with `||X||_1 <= SCALED_NORM`,
    and `norm = ||tA||_1` (for decisions: not differentiated; NaN where `A` or `t` holds
    one), computed here unless given."""
    if norm is None:
        norm = _decision_norm(A, t)
    k = halvings(norm, SCALED_NORM, MAX_SQUARINGS)
    return t * power_of_two(-k, t.dtype) * A, k, norm


def _fitted_powers(X, k, solver):
    """`(powers, growth, alpha, squarings)`: the powers of `X = tA / 2^k`, and the factor
    `growth = 2^r` that fits them to the Taylor step: `growth X` is the scaled exponent,
    `alpha` its `power_norm_bound`, and `k - r` its number of squarings."""
    identity = jnp.eye(X.shape[-1], dtype=X.dtype)
    powers, alpha = solver.precompute(Constant(X), 0.0, identity, None)
    # The powers of X bound its truncation error more tightly than ||X||_1 does: undo
    # the `r` halvings they do not need, or halve once more (`r = -1`). Scaling by 2^r
    # is exact.
    theta = largest_alpha(solver.degree, X.dtype)
    r = most_doublings(powers, solver.degree, theta, MAX_SQUARINGS)
    r = jnp.clip(r, k - MAX_SQUARINGS, k)
    # (Scaled by `growth` after the choice: the branches pass the powers as formed.)
    growth = power_of_two(r, alpha.dtype)
    return powers, growth, growth * alpha, k - r


def _shift_promising(X, k, powers, squarings, solver) -> Bool[Array, ""]:
    """Whether taking out the mean eigenvalue `mu` may leave no squaring where more than
    `SHIFT_BEYOND` remain (`X = tA / 2^k`, `powers` its powers, `squarings` those the
    Taylor step needs): a guess from the powers at hand, those of `X - mu I` by the
    binomial theorem (O(n^2); cancellation makes it a guess).

    On matrices of `SKIP_PASSES_FROM` rows or more, the guess is made only where the
    norms of those powers are not already known to be too large (`shifted_norms_at_least`,
    O(1) from the norms at hand): that rules out a generic matrix, whose `|mu|` is far
    below its norm, without the guess's passes over the powers.
    """
    many = squarings > SHIFT_BEYOND
    never = jnp.zeros_like(many)

    def guess():
        mu = jax.lax.stop_gradient(trace(X)) / X.shape[-1]
        theta = largest_alpha(solver.degree, X.dtype)
        scale = power_of_two(k, X.dtype)

        def from_shifted_powers(possible):
            shifted = _binomial_shift(powers, mu)
            return possible & (scale * power_norm_bound(shifted, solver.degree) <= theta)

        if X.shape[-1] < SKIP_PASSES_FROM:
            return from_shifted_powers(many)
        at_least = shifted_norms_at_least(power_norms(powers), mu)
        possible = many & (scale * bound_from_norms(at_least, solver.degree) <= theta)
        return jax.lax.cond(
            eqxi.unvmap_any(possible), partial(from_shifted_powers, possible), lambda: never
        )

    return jax.lax.cond(eqxi.unvmap_any(many), guess, lambda: never)


def shifted_norms_at_least(
    norms: dict[int, Real[Array, ""]], mu: Inexact[Array, ""]
) -> dict[int, Real[Array, ""]]:
    """Lower bounds on the 1-norms of the powers of `x - mu I`, from those of `x`
    (`norms = {j: ||x^j||}`, `j >= 1`): by the binomial theorem and the triangle
    inequality, `||(x - mu I)^j|| >= ||x^j|| - sum_{i < j} C(j, i) |mu|^(j - i) ||x^i||`
    (`||x^0|| = ||I|| = 1`)."""
    norms = {0: jnp.ones_like(norms[1]), **norms}
    size = jnp.abs(mu)
    return {
        j: jnp.maximum(
            norms[j] - sum(math.comb(j, i) * size ** (j - i) * norms[i] for i in range(j)), 0
        )
        for j in range(1, len(norms))
    }


def _grown(powers, growth):
    # The powers of `growth X` from those of `X`.
    return tuple(_times_power(power, growth, j) for j, power in enumerate(powers))


def _unchanged(x):
    return x


def _binomial_shift(powers, mu):
    # The powers of `x - mu I` from those of `x`.
    return tuple(
        sum(math.comb(j, i) * (-mu) ** (j - i) * powers[i] for i in range(j + 1))
        for j in range(len(powers))
    )


def _times_power(x, factor, j: int):
    # `factor^j x` without forming `factor^j`, which can overflow where the result does not.
    for _ in range(j):
        x = x * factor
    return x


def balance(
    A: Inexact[Array, "n n"], t: Real[Array, ""]
) -> tuple[Inexact[Array, "n n"], Real[Array, " n"], Real[Array, ""]]:
    """A diagonal similarity `B = D^-1 A D`, `D = diag(d)`, that evens out row and column
    norms (as LAPACK's `gebal`, without permutations); returns `(B, d, ||tB||_1)` (the
    norm for decisions, as `halved` takes it).

    Badly scaled matrices (Moler's 3x3 has an entry 2e10 but eigenvalues below 64) have a
    norm far above their spectral radius, which would ask for needless squarings of
    `exp(tA / 2^k)`, each amplifying rounding errors. The scales are powers of two, so the
    similarity is exact. `B` is used only where it lowers the 1-norm, and is looked for
    only where `||t A||_1 > BALANCE_FROM` (8): below, at most 3 squarings are at stake (a
    batch skips the sweeps where none of its matrices is above).
    """
    norm = _decision_norm(A, t)
    worth = norm > BALANCE_FROM
    return jax.lax.cond(eqxi.unvmap_any(worth), partial(_balanced, worth), _unbalanced, A, t, norm)


def _decision_norm(A, t):
    # `||tA||_1`, for decisions: not differentiated.
    return norm1(jax.lax.stop_gradient(t * A))


def _unbalanced(A, t, norm):
    return A, jnp.ones(A.shape[-1], norm.dtype), norm


def _balanced(worth, A, t, norm):
    real = jnp.finfo(A.dtype).dtype
    magnitude = jnp.abs(jax.lax.stop_gradient(A)) * (1 - jnp.eye(A.shape[-1], dtype=real))

    def sweep(carry):
        i, log2_d, direction, _ = carry
        d = jnp.exp2(log2_d)
        scaled = magnitude * d[None, :] / d[:, None]
        column, row = column_sums(scaled), jnp.sum(scaled, axis=1)
        usable = (column > 0) & (row > 0)
        # Multiplying column i by f and row i by 1/f balances them at f = sqrt(row / column).
        ratio = jnp.where(usable, row / jnp.where(usable, column, 1), 1)
        step = jnp.round(0.5 * jnp.log2(ratio))
        # All indices at once can overshoot where rows are coupled (a 2 x 2 with entries
        # 1 and 1e6 would swap them back and forth): a step against an index's previous
        # direction is halved.
        step = jnp.where(step * direction < 0, jnp.round(0.5 * step), step)
        direction = jnp.where(step != 0, jnp.sign(step), direction)
        return i + 1, log2_d + step, direction, jnp.any(step != 0)

    # Until a sweep changes nothing (one or two for most matrices; later sweeps would
    # repeat it), or BALANCE_SWEEPS sweeps.
    zeros = jnp.zeros(A.shape[-1], real)
    _, log2_d, _, _ = jax.lax.while_loop(
        lambda carry: (carry[0] < BALANCE_SWEEPS) & carry[3],
        sweep,
        (jnp.zeros((), jnp.int32), zeros, zeros, jnp.ones((), bool)),
    )

    def rescaled():
        # Exact powers of two (`jnp.exp2` rounds), so that the similarity is exact.
        d = power_of_two(log2_d.astype(jnp.int32), real)
        B = A * (d[None, :] / d[:, None])
        balanced_norm = _decision_norm(B, t)
        better = worth & (balanced_norm < norm)
        return (
            jnp.where(better, B, A),
            jnp.where(better, d, jnp.ones_like(d)),
            jnp.where(better, balanced_norm, norm),
        )

    # (Where no sweep moved a scale, `B = A`.)
    moved = eqxi.unvmap_any(jnp.any(log2_d != 0))
    return jax.lax.cond(moved, rescaled, partial(_unbalanced, A, t, norm))


def square(
    X: Inexact[Array, "n n"],
    k: int | Int[Array, ""],
    exponent: Inexact[Array, "n n"],
    adjoint: diffrax.AbstractAdjoint,
) -> Inexact[Array, "n n"]:
    """`X^(2^k)` by `k` squarings, for `X = exp(exponent)`; `k` a Python int or a traced
    integer. Where `exponent` is triangular the diagonal and first off-diagonal of `X`
    and of every square are exact (`ExactBand`). The loop is differentiable in the
    modes the solve's `adjoint` is."""
    E = jax.lax.stop_gradient(exponent)
    upper, lower = triangularity(E)

    def squarings(X, count, band: ExactBand | None):
        def body(carry):
            i, X = carry
            X = matmul(X, X)
            return i + 1, X if band is None else band(X, i + 1)

        if band is not None:
            X = band(X, 0)
        if isinstance(count, int):
            for i in range(count):
                _, X = body((i, X))
            return X
        if isinstance(adjoint, (FrechetAdjoint, diffrax.ForwardMode)):
            kind = "lax"
        elif isinstance(adjoint, diffrax.DirectAdjoint):
            kind = "bounded"
        else:
            kind = "checkpointed"
        _, X = eqxi.while_loop(
            lambda carry: carry[0] < count,
            body,
            (jnp.zeros((), jnp.int32), X),
            max_steps=MAX_SQUARINGS,
            kind=kind,
            checkpoints=8 if kind == "checkpointed" else None,
        )
        return X

    # One branch taken per matrix: on small matrices the count of operations is the
    # cost, and the exact band would double a full matrix's. Under `vmap` the branch
    # becomes both, so each loop counts only its own matrices' squarings: a batch with
    # no triangular matrix runs no squaring of the other loop.
    triangular = upper | lower
    if isinstance(k, int):
        band_count, plain_count = k, k
    else:
        band_count, plain_count = jnp.where(triangular, k, 0), jnp.where(triangular, 0, k)
    return jax.lax.cond(
        triangular,
        lambda X: squarings(X, band_count, ExactBand(E, upper, lower)),
        lambda X: squarings(X, plain_count, None),
        X,
    )


def triangularity(E: Inexact[Array, "n n"]) -> tuple[Bool[Array, ""], Bool[Array, ""]]:
    """Whether `E` is upper and whether it is lower triangular (a diagonal `E` is both)."""
    return all_zero(jnp.tril(E, -1)), all_zero(jnp.triu(E, 1))


class ExactBand(eqx.Module):
    """The exact diagonal and first off-diagonal of `exp(2^i E)` for triangular `E`
    (Al-Mohy and Higham 2009, Code Fragment 2.1): `exp(2^i E_jj)`, and `2^i E_j,j+1`
    times the divided difference of `exp` at the neighbouring diagonal entries.

    `band(X, i)` puts them into `X = exp(2^i E)` where `E` is upper or lower triangular
    (as `ExactBand(E, upper, lower)` is told; `X` is returned unchanged otherwise).
    Derivatives are those of `X`: a triangular `E` may be perturbed off its triangle.
    Elementwise work only, set up once: on small matrices the count of operations is the
    cost.
    """

    diagonal: Inexact[Array, " n"]
    following: Inexact[Array, " n"]  # E_j+1,j+1 (the last entry repeats E_n,n)
    above: Inexact[Array, " n"]  # E_j,j+1 where upper triangular, by row (else 0)
    below: Inexact[Array, " n"]  # E_j+1,j where lower triangular, by column (else 0)
    triangular: Bool[Array, ""]

    def __init__(self, E: Inexact[Array, "n n"], upper: Bool[Array, ""], lower: Bool[Array, ""]):
        """`E` and whether it is upper and whether lower triangular."""
        E = jax.lax.stop_gradient(E)
        self.diagonal = jnp.diagonal(E)
        self.following = jnp.concatenate([self.diagonal[1:], self.diagonal[-1:]])
        self.above = jnp.where(upper, jnp.pad(jnp.diagonal(E, 1), (0, 1)), 0)
        self.below = jnp.where(lower, jnp.pad(jnp.diagonal(E, -1), (0, 1)), 0)
        self.triangular = upper | lower

    def __call__(self, X: Inexact[Array, "n n"], i: int | Int[Array, ""]) -> Inexact[Array, "n n"]:
        n = X.shape[-1]
        i = jnp.asarray(i, jnp.int32)
        scale = power_of_two(i, self.diagonal.dtype)
        a, b = scale * self.diagonal, scale * self.following
        exp_a = jnp.exp(a)
        exp_b = jnp.concatenate([exp_a[1:], exp_a[-1:]])  # (b is a shifted by one)
        divided = _exp_divided_difference(a, b, exp_a, exp_b)
        rows, columns = jnp.arange(n)[:, None], jnp.arange(n)[None, :]
        on_diagonal = rows == columns
        exact = jnp.where(
            on_diagonal,
            exp_a[:, None],
            jnp.where(
                columns > rows,
                (scale * self.above * divided)[:, None],
                (scale * self.below * divided)[None, :],
            ),
        )
        band = self.triangular & (on_diagonal | (jnp.abs(rows - columns) == 1))
        # Off the triangle `above`/`below` are 0 and so is `X` (to rounding): exact.
        exact = jax.lax.stop_gradient(exact)
        return jnp.where(band, exact + (X - jax.lax.stop_gradient(X)), X)


def _exp_divided_difference(
    a: Inexact[Array, " m"],
    b: Inexact[Array, " m"],
    exp_a: Inexact[Array, " m"],
    exp_b: Inexact[Array, " m"],
) -> Inexact[Array, " m"]:
    """`(exp(b) - exp(a)) / (b - a)` (`exp(a)` where `a = b`), accurate to rounding, from
    `exp(a)` and `exp(b)`."""
    # exp(p) expm1(q - p) / (q - p), with p the one of larger real part: expm1 has no
    # cancellation, and |expm1(q - p)| <= 2 cannot overflow where the answer does not.
    a_first = a.real >= b.real
    d = jnp.where(a_first, b - a, a - b)
    zero = d == 0
    return jnp.where(a_first, exp_a, exp_b) * jnp.where(
        zero, 1, jnp.expm1(d) / jnp.where(zero, 1, d)
    )
