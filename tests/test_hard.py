"""`expm` on the harness's hard, stiff, large-norm, non-normal and skew cases.

Each case carries an independent reference (mpmath, extended precision or a closed
form). The default path must be accurate on every one of them, including those where
JAX's Padé returns NaN.
"""

import math

import numpy as np
import odeexpm
import pytest
from odeexpm import harness
from odeexpm.reference import pade_expm

from .helpers import rel_err

SUITES = ["hard", "stiff", "large_norm", "nonnormal", "skew"]
# Cases whose exponential is ill-conditioned: rounding the input alone costs this much.
CONDITION_LIMITED = {"projector-8": 1e-7}


CASES = [case for name in SUITES for case in harness.get_suite(name).cases(quick=False)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.suite}/{c.name}" for c in CASES])
def test_default_path_is_accurate(case):
    A = case.data["A"]
    dtype = np.complex128 if case.is_complex else np.float64
    X, stats = odeexpm.expm(A, return_stats=True)
    assert bool(stats.successful)
    assert int(stats.num_steps) <= 4
    assert rel_err(X, case.expected("expm", dtype)) < CONDITION_LIMITED.get(case.name, 1e-10)


def test_where_pade_fails():
    moler = harness.get_suite("hard").cases()
    moler = next(case for case in moler if case.name == "moler-badly-scaled-3x3")
    assert np.isnan(np.asarray(pade_expm(moler.data["A"]))).any()
    X = odeexpm.expm(moler.data["A"])
    assert rel_err(X, moler.expected("expm", np.float64)) < 1e-12


def test_halvings_and_powers_of_two():
    # The least s >= 0 with norm / 2^s < bound, against its definition, at and next to
    # the thresholds, and elementwise (as under jax.vmap).
    import jax.numpy as jnp
    from odeexpm._linalg import halvings, power_of_two

    bound = 1.14
    thresholds = bound * 2.0 ** np.arange(-3, 66)
    norms = np.concatenate([[0.0, np.inf, np.nan], thresholds, np.nextafter(thresholds, 0)])
    expected = [min([s for s in range(65) if norm / 2.0**s < bound], default=64) for norm in norms]
    expected[2] = 0  # (NaN: no halving)
    for most in (4, 64):
        np.testing.assert_array_equal(
            halvings(jnp.asarray(norms), bound, most), np.minimum(expected, most)
        )
    # Every integer exponent, past underflow and overflow, as `math.ldexp` gives it
    # (infinity above), in each real dtype. Below the normal range XLA's CPU backend
    # flushes subnormal results to 0 (as it did `jnp.ldexp`'s): 0 or the subnormal.
    for dtype in (np.float64, np.float32, np.float16):
        info = np.finfo(dtype)
        s = np.arange(3 * info.minexp, 3 * info.maxexp)

        def exact(i, dtype=dtype):
            return dtype(math.ldexp(1.0, i)) if i < info.maxexp else dtype(np.inf)

        expected = np.array([exact(int(i)) for i in s], dtype)
        got = power_of_two(jnp.asarray(s, jnp.int32), dtype)
        assert got.dtype == dtype
        got = np.asarray(got)
        normal = s >= info.minexp
        np.testing.assert_array_equal(got[normal], expected[normal])
        assert np.all((got[~normal] == 0) | (got[~normal] == expected[~normal]))


def test_column_sums_norms_and_triangularity_on_every_small_size():
    # Sums and `any` over the rows are written out as operations on the rows for some
    # sizes and reduced for others: the same values on both sides of each limit (up to the
    # order of the additions), NaN and infinity included.
    import jax
    import jax.numpy as jnp
    from odeexpm._linalg import all_zero, column_sums, norm1, norms1, trace
    from odeexpm._scaling import triangularity

    rng = np.random.default_rng(3)
    for n in range(14):
        x = rng.standard_normal((4, 3, n, n))
        for k in range(n):  # upper and lower triangular, diagonal and full matrices
            x[0, :, k, :k] = 0
            x[1, :, k, k + 1 :] = 0
            x[2, 0, k, np.arange(n) != k] = 0
        if n >= 2:
            x[3, 0, 1, 0], x[3, 1, 0, 1] = np.nan, -np.inf
        np.testing.assert_allclose(column_sums(jnp.asarray(x)), x.sum(axis=-2), rtol=1e-15)
        if n:  # (the 1-norm of an empty matrix is not defined)
            expected = np.abs(x).sum(axis=-2).max(axis=-1)
            np.testing.assert_allclose(norm1(jnp.asarray(x)), expected, rtol=1e-15)
        zeroed = np.where(x > 1, x, 0)
        np.testing.assert_array_equal(all_zero(jnp.asarray(zeroed)), (zeroed == 0).all((-2, -1)))
        if n:
            stacked = norms1([jnp.asarray(x[0]), jnp.asarray(x[1])])
            np.testing.assert_allclose(stacked, np.abs(x[:2]).sum(axis=-2).max(axis=-1), rtol=1e-15)
        diagonal_sums = np.abs(np.diagonal(x, axis1=-2, axis2=-1)).sum(-1)  # (order of sums)
        np.testing.assert_array_less(
            np.abs(trace(jnp.asarray(x)) - np.trace(x, axis1=-2, axis2=-1)),
            1e-15 * diagonal_sums + 1e-300,
        )
        upper, lower = jax.vmap(jax.vmap(triangularity))(jnp.asarray(x))
        np.testing.assert_array_equal(upper, (np.tril(x, -1) == 0).all(axis=(-2, -1)))
        np.testing.assert_array_equal(lower, (np.triu(x, 1) == 0).all(axis=(-2, -1)))
        if n >= 2:
            assert upper[0].all() and lower[1].all() and (upper & lower)[2, 0]
            assert not (upper[3, :2] | lower[3, :2]).any()


def test_shifted_norms_at_least_bound_those_of_the_shifted_powers():
    # The lower bounds that spare a generic matrix the guess for the shift by its mean
    # eigenvalue mu are below the norms of the powers of X - mu I, computed directly
    # (near a multiple of I, where they say little, and on generic matrices, where they
    # are close enough to those norms to rule the shift out).
    import jax.numpy as jnp
    from odeexpm._scaling import shifted_norms_at_least
    from odeexpm._solver.polynomial import bound_from_norms, power_norm_bound, power_norms

    rng = np.random.default_rng(5)
    generic = [rng.standard_normal((6, 6)), rng.standard_normal((6, 6)) * (1 + 1j)]
    nilpotent = np.triu(rng.standard_normal((6, 6)), 1) * 50
    near_identity = [3 * np.eye(6) + nilpotent, (2 - 1j) * np.eye(6) + 0.1 * generic[0]]
    for X in generic + near_identity:
        mu = np.trace(X) / 6
        powers = tuple(jnp.asarray(np.linalg.matrix_power(X, j)) for j in range(4))
        shifted = tuple(
            jnp.asarray(np.linalg.matrix_power(X - mu * np.eye(6), j)) for j in range(4)
        )
        bounds = shifted_norms_at_least(power_norms(powers), jnp.asarray(mu))
        for j in (1, 2, 3):
            assert (
                0 <= float(bounds[j]) <= np.abs(np.asarray(shifted[j])).sum(0).max() * (1 + 1e-12)
            )
        if any(X is G for G in generic):
            assert bound_from_norms(bounds, 21) >= 0.5 * power_norm_bound(shifted, 21)


def test_exponents_from_the_bits():
    # floor(log2 |x|), exactly, against `math.frexp`: normal numbers of every magnitude,
    # powers of two and their neighbours; the documented values elsewhere.
    import jax.numpy as jnp
    from odeexpm._linalg import exponent

    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32, np.float16):
        info = np.finfo(dtype)
        powers = np.ldexp(1.0, np.arange(info.minexp, info.maxexp)).astype(dtype)
        x = np.concatenate(
            [
                powers,
                np.nextafter(powers, dtype(0)),
                np.nextafter(powers, dtype(np.inf)),
                -powers,
                rng.uniform(-1, 1, 1000).astype(dtype) * powers[rng.integers(0, powers.size, 1000)],
            ]
        )
        x = x[np.abs(x) >= info.tiny]
        expected = [math.frexp(float(v))[1] - 1 for v in x]
        np.testing.assert_array_equal(exponent(jnp.asarray(x)), expected)
        special = jnp.asarray([np.inf, -np.inf, np.nan, 0.0, info.smallest_subnormal], dtype)
        edges = [info.maxexp] * 2 + [info.minexp - 1] * 3
        np.testing.assert_array_equal(exponent(special), edges)


def test_doublings_without_roots():
    # `most_doublings`, from exponents, against its definition on `power_norm_bound`:
    # the largest r <= 64 with alpha 2^r <= theta (-1 where none), for each degree's
    # powers, on normal, non-normal and nilpotent matrices across magnitudes.
    import jax
    import jax.numpy as jnp
    from odeexpm._solver.polynomial import (
        largest_alpha,
        most_doublings,
        power_norm_bound,
        taylor_powers,
    )

    rng = np.random.default_rng(3)
    A = rng.standard_normal((3000, 4, 4)) * np.exp(rng.uniform(-20, 6, (3000, 1, 1)))
    A[::3] = np.triu(A[::3]) * 100
    A[1::5] = np.triu(A[1::5], 1)
    for degree in (21, 18, 12, 8):
        theta = largest_alpha(degree, np.float64)
        powers = jax.vmap(lambda a, degree=degree: taylor_powers(a, degree))(jnp.asarray(A))
        alpha = np.asarray(jax.vmap(lambda p, degree=degree: power_norm_bound(p, degree))(powers))
        with np.errstate(divide="ignore"):
            expected = np.where(
                alpha <= theta, np.minimum(np.floor(np.log2(theta / alpha)), 64), -1
            )
        got = jax.vmap(lambda p, degree=degree, theta=theta: most_doublings(p, degree, theta, 64))(
            powers
        )
        # (log2 of the quotient may round up across an integer: exact checks where it
        # is not within rounding of one.)
        ratio = np.log2(theta / np.where(alpha > 0, alpha, 1))
        clear = (alpha == 0) | (np.abs(ratio - np.round(ratio)) > 1e-9)
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(np.asarray(got)[clear], expected[clear])


def test_balancing_stops_when_a_sweep_changes_nothing():
    # Stopping at the first sweep that changes nothing gives what all the sweeps give.
    import jax.numpy as jnp
    from odeexpm._scaling import BALANCE_SWEEPS, balance

    def every_sweep(A):  # NumPy, always BALANCE_SWEEPS sweeps
        magnitude = np.abs(A) * (1 - np.eye(len(A)))
        log2_d, direction = np.zeros(len(A)), np.zeros(len(A))
        for _ in range(BALANCE_SWEEPS):
            scaled = magnitude * 2.0 ** log2_d[None, :] / 2.0 ** log2_d[:, None]
            column, row = scaled.sum(0), scaled.sum(1)
            usable = (column > 0) & (row > 0)
            ratio = np.where(usable, row / np.where(usable, column, 1), 1)
            step = np.round(0.5 * np.log2(ratio))
            step = np.where(step * direction < 0, np.round(0.5 * step), step)
            direction = np.where(step != 0, np.sign(step), direction)
            log2_d += step
        return 2.0**log2_d

    moler = np.array([[0, 1e-8, 0], [-(2e10 + 4e8 / 6), -3, 2e10], [200 / 3, 0, -200 / 3]])
    graded = np.diag(10.0 ** np.arange(6), 1)[:6, :6] + np.diag(10.0 ** -np.arange(5), -1)
    for A in [moler, graded, 4 * np.random.default_rng(0).standard_normal((5, 5))]:
        B, d, norm = balance(jnp.asarray(A), jnp.asarray(1.0))
        # (The norm `halved` then takes.)
        np.testing.assert_allclose(float(norm), np.abs(np.asarray(B)).sum(0).max(), rtol=1e-15)
        d_all = every_sweep(A)
        if np.abs(A * (d_all[None, :] / d_all[:, None])).sum(0).max() < np.abs(A).sum(0).max():
            np.testing.assert_array_equal(np.asarray(d), d_all)
        else:  # (used only where it lowers the norm)
            np.testing.assert_array_equal(np.asarray(d), np.ones(len(A)))
        d = np.asarray(d)
        np.testing.assert_array_equal(np.asarray(B), A * (d[None, :] / d[:, None]))


def test_balancing_does_not_swap_coupled_entries_back_and_forth():
    # Steps on both indices at once would swap the off-diagonal entries 1 and 1e6 on every
    # sweep and leave the matrix as it was; balanced, both are near 1e3.
    import jax.numpy as jnp
    from odeexpm._scaling import balance

    B, _, _ = balance(jnp.array([[-700.0, 1.0], [1e6, -700.0]]), jnp.asarray(1.0))
    assert 500 < abs(B[0, 1]) < 2000 and 500 < abs(B[1, 0]) < 2000


def test_balancing_only_where_it_can_save_squarings():
    # Below ||tA||_1 = BALANCE_FROM a matrix is left as it is (balancing could save at
    # most 3 squarings); above, it is balanced, under vmap as alone.
    import jax
    import jax.numpy as jnp
    from odeexpm._scaling import BALANCE_FROM, balance

    A = jnp.array([[-1.0, 1e-3], [4.0, -1.0]])  # 1-norm 5, balanced 1-norm about 1.06
    t_small, t_large = jnp.asarray(1.0), jnp.asarray(2 * BALANCE_FROM / 5)
    np.testing.assert_array_equal(balance(A, t_small)[1], [1.0, 1.0])
    B, d, norm = balance(A, t_large)
    assert float(jnp.abs(B).sum(0).max()) < 1.5 and not np.all(np.asarray(d) == 1)
    np.testing.assert_allclose(float(norm), float(jnp.abs(t_large * B).sum(0).max()), rtol=1e-15)
    batch = jnp.stack([A, 20 * A, A.T])
    B_batch, d_batch, norm_batch = jax.vmap(balance, in_axes=(0, None))(batch, t_small)
    for i in range(3):
        B_i, d_i, norm_i = balance(batch[i], t_small)
        np.testing.assert_array_equal(B_batch[i], B_i)
        np.testing.assert_array_equal(d_batch[i], d_i)
        np.testing.assert_array_equal(norm_batch[i], norm_i)
    assert np.all(np.asarray(d_batch[0]) == 1) and not np.all(np.asarray(d_batch[1]) == 1)
