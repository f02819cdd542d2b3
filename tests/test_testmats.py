"""`expm` on Al-Mohy and Higham's test matrices and SciPy's hard cases, against SciPy.

The goal: within 10 times SciPy's relative error (or `10 u n`) wherever SciPy is inside
the forward-stability line `10 u max(kappa_exp, n)`, and no worse than SciPy where it is
not; the same for the gradient. References: mpmath at 80 digits (the harness's).
"""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import odeexpm
import pytest
import scipy.linalg
from odeexpm import harness
from odeexpm._scaling import ExactBand, apply_shift
from odeexpm._solver.polynomial import (
    cheapest_degree,
    largest_alpha,
    num_products,
    power_norm_bound,
    taylor_polynomial,
    taylor_powers,
    truncation_bound,
)
from odeexpm.harness._testmats import TRIANGULAR_A, TRIANGULAR_LOGM

from .helpers import rel_err

U = 2.0**-53
CASES = harness.get_suite("testmats").cases()
# Misses of the goal, measured (none since balancing stopped oscillating on Niesen's
# complex 2x2: 16 squarings and 1.5e-12 before, against SciPy's 1.4e-13).
KNOWN_MISSES: dict[str, float] = {}


def _within_scipy(error, scipy_error, kappa, n, name):
    line = 10 * U * max(kappa, n)
    if scipy_error <= line:
        return error <= max(KNOWN_MISSES.get(name, 10.0) * scipy_error, 10 * U * n)
    return error <= max(scipy_error, line)


# One batch per shape and dtype: one compilation each.
GROUPS: dict[str, list] = {}
for _case in CASES:
    GROUPS.setdefault(f"n={_case.n}{'-complex' if _case.is_complex else ''}", []).append(_case)


@pytest.mark.parametrize("group", GROUPS.values(), ids=GROUPS.keys())
def test_within_scipy(group):
    wide = np.complex128 if group[0].is_complex else np.float64
    X = odeexpm.expm(np.stack([case.data["A"] for case in group]))
    misses = []
    for case, Xi in zip(group, X):
        expected = case.expected("expm", wide)
        error = rel_err(Xi, expected)
        scipy_error = rel_err(scipy.linalg.expm(case.data["A"]), expected)
        if not _within_scipy(error, scipy_error, case.tags["condition"], case.n, case.name):
            misses.append((case.name, error, scipy_error))
    assert not misses


GRADIENT_CASES = [case for case in CASES if "vjp" in case.quantities]


@pytest.mark.parametrize("case", GRADIENT_CASES, ids=[case.name for case in GRADIENT_CASES])
def test_gradient_within_scipy(case):
    A, W = case.data["A"], case.data["W"]
    expected = case.expected("vjp", np.float64)
    _, vjp = jax.vjp(odeexpm.expm, jnp.asarray(A))
    error = rel_err(vjp(jnp.asarray(W))[0], expected)
    scipy_error = rel_err(scipy.linalg.expm_frechet(A.T, W, compute_expm=False), expected)
    assert _within_scipy(error, scipy_error, case.tags["condition"], case.n, case.name)
    assert error < 1e-13


def test_scipy_triangularity_perturbation():
    # SciPy's own test: exp(logm(A)) gives the triangular A back; with a 1e-17 below the
    # diagonal the answer differs (the exponential is that ill-conditioned).
    np.testing.assert_allclose(odeexpm.expm(TRIANGULAR_LOGM), TRIANGULAR_A, rtol=1e-4)
    perturbed = TRIANGULAR_LOGM.copy()
    perturbed[1, 0] = 1e-17
    assert not np.allclose(odeexpm.expm(perturbed), TRIANGULAR_A, rtol=1e-4, atol=1e-15)


def _divided_difference_2x2(a, b, c):
    """exp([[a, c], [0, b]]) in closed form (a != b)."""
    return np.array([[np.exp(a), c * (np.exp(b) - np.exp(a)) / (b - a)], [0, np.exp(b)]])


@pytest.mark.parametrize(
    "A, expected",
    [
        (np.array([[1.0, 1e17], [0, 1]]), np.e * np.array([[1.0, 1e17], [0, 1]])),
        (np.array([[0.1, 1e6], [0, 0.1]]), np.exp(0.1) * np.array([[1.0, 1e6], [0, 1]])),
        (np.array([[-1.0, 1e7], [0, -1e7]]), _divided_difference_2x2(-1.0, -1e7, 1e7)),
    ],
    ids=["awad-1e17", "kenney-laub", "stiff"],
)
def test_triangular_exact_upper_and_lower(A, expected):
    assert rel_err(odeexpm.expm(A), expected) < 4 * U
    assert rel_err(odeexpm.expm(A.T), expected.T) < 4 * U
    # In a batch with a full matrix, under jit: the check is per matrix.
    full = np.array([[0.0, 1.0], [-1.0, 0.0]])
    X = jax.jit(odeexpm.expm)(jnp.stack([A, full]))
    assert rel_err(X[0], expected) < 4 * U
    assert rel_err(X[1], scipy.linalg.expm(full)) < 4 * U


def test_exact_band_keeps_the_derivative_of_the_squarings():
    # The exact entries replace values only: a perturbation off the triangle still
    # reaches the diagonal's derivative (L_exp(A, E)_00 depends on E_10 here).
    A = np.array([[1.0, 2.0], [0.0, 3.0]])
    E = np.array([[0.0, 0.0], [1.0, 0.0]])
    _, tangent = jax.jvp(odeexpm.expm, (jnp.asarray(A),), (jnp.asarray(E),))
    expected = scipy.linalg.expm_frechet(A, E, compute_expm=False)
    assert rel_err(tangent, expected) < 1e-14
    A = np.triu(np.arange(1.0, 10.0).reshape(3, 3))
    X = jnp.asarray(scipy.linalg.expm(A)) + 1e-3
    fixed = ExactBand(jnp.asarray(A), jnp.asarray(True), jnp.asarray(False))(X, 0)
    np.testing.assert_allclose(np.diag(fixed), np.exp(np.diag(A)), rtol=1e-15)
    assert fixed[1, 0] == 0 and fixed[2, 1] == 0  # in the band, below an upper triangle
    assert fixed[2, 0] == X[2, 0] and fixed[0, 2] == X[0, 2]  # outside the band: untouched


def test_power_norm_bound_bounds_every_higher_power():
    rng = np.random.default_rng(0)
    degree = 16
    for scale in (0.1, 1.0, 10.0):
        x = scale * (np.triu(rng.standard_normal((6, 6)), 1) * 30 + np.diag(rng.random(6)))
        x = x / np.max(np.sum(np.abs(x), axis=0))  # ||x||_1 = 1, far above alpha
        alpha = float(power_norm_bound(taylor_powers(jnp.asarray(x), degree), degree))
        assert alpha <= 1.0
        for j in range(degree + 1, degree + 8):
            power = np.linalg.matrix_power(x, j)
            assert np.max(np.sum(np.abs(power), axis=0)) <= alpha**j * (1 + 1e-12)


def test_truncation_bound_bounds_the_truncation_error():
    rng = np.random.default_rng(1)
    x = np.triu(rng.standard_normal((5, 5)), 1) * 3
    x = 2.0 * x / np.max(np.sum(np.abs(x), axis=0))
    for degree in (8, 12, 16, 18):
        powers = taylor_powers(jnp.asarray(x), degree)
        bound = float(truncation_bound(power_norm_bound(powers, degree), degree))
        tail = sum(np.linalg.matrix_power(x, k) / math.factorial(k) for k in range(degree + 1, 80))
        assert np.max(np.sum(np.abs(tail), axis=0)) <= bound


def test_fewer_squarings_for_non_normal_input():
    # ||A||_1 = 1e6 asks for 20 halvings, max(||A^2||^(1/2), ||A^3||^(1/3)) = 5065 for 13.
    # Taking out the mean eigenvalue 200 leaves S with S^2 = 100^2 I: the powers of S ask
    # for 11 (2154), and the shift itself (exp(200 / 2^k), below the same bound) for 8.
    A = np.array([[300.0, 1e6], [0, 100]])
    S = A - 200 * np.eye(2)
    alpha = max(np.linalg.norm(S @ S, 1) ** (1 / 2), np.linalg.norm(S @ S @ S, 1) ** (1 / 3))
    theta = largest_alpha(18, np.float64)
    expected = max(math.ceil(math.log2(alpha / theta)), math.ceil(math.log2(200 / theta)))
    X, stats = odeexpm.expm(A, return_stats=True)
    assert int(stats.num_squarings) == expected == 11
    exact = np.array([[np.exp(300), 1e6 * (np.exp(300) - np.exp(100)) / 200], [0, np.exp(100)]])
    assert rel_err(X, exact) < 1e-15


def test_multiple_of_identity_plus_nilpotent_needs_no_squaring():
    # Awad's I + N, N^2 = 0 with entries 5e4: exp(A) = e (I + N). The squarings of I + N
    # were all rounding error (SciPy: 6e-5); without the mean eigenvalue, N is exact.
    A = next(case for case in CASES if case.name == "amh-27-awad-1e5").data["A"]
    X, stats = odeexpm.expm(A, return_stats=True)
    assert int(stats.num_squarings) == 0
    assert rel_err(X, np.e * A) < 1e-11  # (A = I + N)


@pytest.mark.parametrize("shift, scale", [(-720.0, 2.0**40), (720.0, 2.0**-40)])
def test_shift_applied_in_normal_halves(shift, scale):
    # exp(-720) is subnormal (35 significant bits) and exp(720) overflows; the products
    # with 2^40 and 2^-40 are normal numbers. Each half, exp(+-360), is.
    Y = apply_shift(jnp.full((2, 2), scale), jnp.asarray(shift))
    exact = float(mpmath.exp(shift) * scale)
    assert np.allclose(np.asarray(Y), exact, rtol=4 * U, atol=0)


def test_a_large_shift_needs_no_squaring():
    # -720 I + N, N^2 = 0: the shift is taken out whole (|shift| / 2 = 360 keeps exp of
    # it normal), with no squaring of I + N, all rounding error for such N (NaN before).
    # What is left is the evaluation's rounding, of order u ||N||: N^2 = 0 is formed
    # with rounding errors of order u ||N||^2.
    N = 2.0**40 * np.array([[-1.0, 1.0], [-1.0, 1.0]])
    X, stats = odeexpm.expm(-720 * np.eye(2) + N, return_stats=True)
    assert int(stats.num_squarings) == 0
    exact = float(mpmath.exp(-720)) * (np.eye(2) + N)
    assert np.max(np.abs(np.asarray(X) - exact) / np.abs(exact)) <= 1e-4


@pytest.mark.parametrize("degree", [1, 2, 5, 9, 12, 16, 18, 20])
def test_num_products_counts_the_evaluation(degree):
    # The cost model of the degree choice is the evaluation's actual count of products.
    x = jnp.ones((3, 3))
    jaxpr = jax.make_jaxpr(lambda x: taylor_polynomial(x, degree))(x)
    products = sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.jaxpr.eqns)
    assert products == num_products(degree)


def test_cheapest_degree():
    # Degree 18 in 5 products covers alpha up to 1.14 in double precision; degree 16
    # needs 6 products for 0.82: 18 is cheaper at every norm that needs squarings.
    assert cheapest_degree(1e-13) == cheapest_degree(2.0**-53) == 18
    assert num_products(18) == 5 and num_products(16) == 6
    assert 1.1 < largest_alpha(18, jnp.float64) < 1.2


def test_exp_divided_difference_against_mpmath():
    import mpmath
    from odeexpm._scaling import _exp_divided_difference

    pairs = [(0.3, 0.3), (0.3, 0.3 + 1e-12), (-1.0, -1e7), (1e-9, -1e-9), (5.0, -700.0),
             (2j, 2j + 1e-10), (1e3j, -1e3j), (-3 + 1j, 2 - 5j), (40.0, 41.0)]  # fmt: skip
    a = jnp.asarray([p[0] for p in pairs], jnp.complex128)
    b = jnp.asarray([p[1] for p in pairs], jnp.complex128)
    got = np.asarray(_exp_divided_difference(a, b, jnp.exp(a), jnp.exp(b)))
    for (x, y), value in zip(pairs, got):
        with mpmath.workdps(50):
            x, y = mpmath.mpc(x), mpmath.mpc(y)
            exact = mpmath.exp(x) if x == y else (mpmath.exp(y) - mpmath.exp(x)) / (y - x)
        assert abs(value - complex(exact)) <= 4 * U * abs(complex(exact))
