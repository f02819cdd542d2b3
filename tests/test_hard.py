"""`expm` on the harness's hard, stiff, large-norm, non-normal and skew cases.

Each case carries an independent reference (mpmath, extended precision or a closed
form). The default path must be accurate on every one of them, including those where
JAX's Padé returns NaN.
"""

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
    norms = np.concatenate([[0.0, np.inf], thresholds, np.nextafter(thresholds, 0)])
    expected = [min([s for s in range(65) if norm / 2.0**s < bound], default=64) for norm in norms]
    np.testing.assert_array_equal(halvings(jnp.asarray(norms), bound, 64), expected)
    s = jnp.arange(-70, 70)
    np.testing.assert_array_equal(power_of_two(s, jnp.float64), 2.0 ** np.arange(-70, 70))


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
        B, d = balance(jnp.asarray(A), jnp.asarray(1.0))
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

    B, _ = balance(jnp.array([[-700.0, 1.0], [1e6, -700.0]]), jnp.asarray(1.0))
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
    B, d = balance(A, t_large)
    assert float(jnp.abs(B).sum(0).max()) < 1.5 and not np.all(np.asarray(d) == 1)
    batch = jnp.stack([A, 20 * A, A.T])
    B_batch, d_batch = jax.vmap(balance, in_axes=(0, None))(batch, t_small)
    for i in range(3):
        B_i, d_i = balance(batch[i], t_small)
        np.testing.assert_array_equal(B_batch[i], B_i)
        np.testing.assert_array_equal(d_batch[i], d_i)
    assert np.all(np.asarray(d_batch[0]) == 1) and not np.all(np.asarray(d_batch[1]) == 1)
