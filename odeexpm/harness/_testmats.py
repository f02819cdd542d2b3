"""The `testmats` suite: the test matrices of Al-Mohy and Higham's scaling-and-squaring
papers, and the hard cases of SciPy's `expm` tests.

- `expm_testmats` 1-32, the set of Al-Mohy and Higham, "A new scaling and squaring
  algorithm for the matrix exponential", SIAM J. Matrix Anal. Appl. 31 (2009) 970, at
  n = 8 where the size is free (random ones with NumPy seeds, not MATLAB's values), and
  the entries that Al-Mohy, Fasi and Higham's later 38-matrix version changed or added;
- SciPy's `TestExpM` cases that its Padé code treats apart: the triangularity
  perturbation (`expm(logm(A))` for an upper-triangular `A` with entries 3e4, whose
  logarithm has entries up to 3e14, and the same with 1e-17 below the diagonal), the
  sinch overflow of gh-11839, and its integer Markov generator.

Each case carries its condition number `kappa` (SciPy's `expm_cond`, in the Frobenius
norm): a backward-stable method's relative error is at most about `u kappa`. References
are mpmath at 80 digits (these inputs lose up to 36 of them).
"""

import math

import numpy as np

from ._cases import Case, expm_case, suite
from ._references import Reference

HIGH_PRECISION = Reference(label="mpmath-80", dps=80)
AMH = "Al-Mohy & Higham (2009), expm_testmats"
AMFH = "Al-Mohy, Fasi & Higham, expm_testmats (38-matrix version)"
SCIPY = "SciPy's TestExpM"
N = 8
# The test matrices whose exponential is wanted with a derivative (one per size class).
WITH_GRADIENTS = ("amh-07-kenney-laub-5x5", "amh-25-awad-1e17", "scipy-triangular-logm")


def _awad(b: float, low: float | None = None) -> np.ndarray:
    return np.array([[1 - b / 2, b / 2], [-b / 2 if low is None else low, 1 + b / 2]])


def _chain(rates) -> np.ndarray:
    rates = np.asarray(rates, float)
    return np.diag(-rates) + np.diag(rates[:-1], -1)


def _from_entries(n: int, rows, columns, values) -> np.ndarray:
    A = np.zeros((n, n))
    np.add.at(A, (np.asarray(rows) - 1, np.asarray(columns) - 1), values)
    return A


def _triw(n: int, alpha: float, k: int) -> np.ndarray:
    """MATLAB's `gallery('triw', n, alpha, k)`: unit diagonal, `alpha` on the `k`
    superdiagonals."""
    return np.tril(np.eye(n) + alpha * np.triu(np.ones((n, n)), 1), k)


def _invol(n: int) -> np.ndarray:
    """MATLAB's `gallery('invol', n)`: an involutory matrix (a scaled Hilbert matrix)."""
    A = 1 / (np.arange(n)[:, None] + np.arange(n)[None, :] + 1.0)
    d = -float(n)
    A[:, 0] *= d
    for i in range(1, n):
        d = -(n + i) * (n - i) * d / (i * i)
        A[i, :] *= d
    return A


def _godunov() -> np.ndarray:
    # EigTool's Godunov matrix: eigenvalues 0, +-1, +-2, +-4; far from normal.
    return np.array([
        [289, 2064, 336, 128, 80, 32, 16],
        [1152, 30, 1312, 512, 288, 128, 32],
        [-29, -2000, 756, 384, 1008, 224, 48],
        [512, 128, 640, 0, 640, 512, 128],
        [1053, 2256, -504, -384, -756, 800, 208],
        [-287, -16, 1712, -128, 1968, -30, 2032],
        [-2176, -287, -1565, -512, -541, -1152, -289],
    ], float)  # fmt: skip


def _rosser() -> np.ndarray:
    return np.array([
        [611, 196, -192, 407, -8, -52, -49, 29],
        [196, 899, 113, -192, -71, -43, -8, -44],
        [-192, 113, 899, 196, 61, 49, 8, 52],
        [407, -192, 196, 611, 8, 44, 59, -23],
        [-8, -71, 61, 8, 411, -599, 208, 208],
        [-52, -43, 49, 44, -599, 411, 208, 208],
        [-49, -8, 8, 59, 208, 208, 99, -911],
        [29, -44, 52, -23, 208, 208, -911, 99],
    ], float)  # fmt: skip


def _najfeld_havel(signs: float) -> np.ndarray:
    T = np.array([[1, 10, 100], [1, 9, 100], [1, 11, 99]], float)
    return np.linalg.solve(T.T, (T @ np.diag(signs * np.array([1e-3, 1.0, 100.0]))).T).T


def _pang_2(n: int) -> np.ndarray:
    A = _triw(n, 1.0, n - 1).astype(complex)
    np.fill_diagonal(A, np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) * 1j)
    A[np.arange(n - 1), np.arange(1, n)] = -2 * (n - 1) - 2 + 4 * np.arange(1, n)
    return A


def _invol_schur_upper() -> np.ndarray:
    import scipy.linalg

    T, _ = scipy.linalg.schur(_invol(13), output="complex")
    return np.triu(T, 1)


def testmats() -> dict[str, np.ndarray]:
    """The `expm_testmats` matrices by name (Al-Mohy and Higham's numbering)."""
    rng = np.random.default_rng(11)
    forsythe = np.diag(np.ones(9), 1)
    forsythe[-1, 0] = 1e-10
    h = N // 2
    dieci_papini = np.block([[1.3 * np.ones((h, h)), 1e6 * np.ones((h, h))],
                             [np.zeros((h, h)), -1.3 * np.ones((h, h))]]) / N  # fmt: skip
    pang_3 = _triw(N, 1.0, 1)
    np.fill_diagonal(pang_3, np.arange(-(N - 1) / 2, (N - 1) / 2 + 1))
    kuda = -np.eye(N) + 0.5 * (np.diag(np.ones(N - 1), 1) + np.diag(np.ones(N - 1), -1))
    kuda[0, 1] = kuda[-1, -2] = 1.0
    niesen_lambda = 1e6j
    niesen_mu = 0.5 * (-1 + np.sqrt(1 + 4 * niesen_lambda))
    awad_4 = np.block([[_awad(1e3), 1e10 * np.ones((2, 2))], [np.zeros((2, 2)), -_awad(1e3)]])
    jemc_a1 = np.array([[-0.4, 0, 0], [0, -1.5, 0], [2.0, 2.0, -3.0]])
    jemc_a2 = np.array([[-0.03, 0, 0.03 * 7], [0, -0.5, 0.5 * 0.6], [0, 2.0, -2.0]])
    half_lives = np.array([3.8235 * 60 * 24, 3.10, 26.8, 19.9]) / 60
    return {
        "amh-01-ward-1": np.array([[4.0, 2, 0], [1, 4, 1], [1, 1, 4]]),
        "amh-02-ward-2": np.array(
            [
                [29.87942128909879, 0.7815750847907159, -2.289519314033932],
                [0.7815750847907159, 25.72656945571064, 8.680737820540137],
                [-2.289519314033932, 8.680737820540137, 34.39400925519054],
            ]
        ),  # fmt: skip
        "amh-03-ward-3": np.array([[-131.0, 19, 18], [-390, 56, 54], [-387, 57, 52]]),
        "amh-04-ward-4-forsythe": forsythe,
        "amh-05-najfeld-havel": _najfeld_havel(-1.0),
        "amh-06-kenney-laub-2": np.array([[0.1, 1e6], [0, 0.1]]),
        "amh-07-kenney-laub-5x5": np.array(
            [
                [0, 3.8e3, 0, 0, 0],
                [0, -3.8e3, 1, 0, 0],
                [0, 0, -1, 5.5e6, 0],
                [0, 0, 0, -5.5e6, 2.7e7],
                [0, 0, 0, 0, -2.7e7],
            ]
        ),  # fmt: skip
        "amh-08-dieci-papini": dieci_papini,
        "amh-09-rosser": 2.05 * _rosser() / np.max(np.sum(np.abs(_rosser()), axis=0)),
        "amh-10-rotation-1e4": np.array([[0.0, 1e4], [-1e4, 0]]),
        "amh-11-nilpotent": 1e2 * np.triu(rng.standard_normal((N, N)), 1),
        "amh-12-log-pascal": np.diag(np.arange(1.0, N), -1),
        "amh-13-kenney-laub-4x4": np.array(
            [[48.0, -49, 50, 49], [0, -2, 100, 0], [0, -1, -2, 1], [-50, 50, 50, -52]]
        ),
        "amh-14-pang-1": np.array(
            [
                [0.0, 30, 1, 1, 1, 1],
                [-100, 0, 1, 1, 1, 1],
                [0, 0, 0, -6, 1, 1],
                [0, 0, 500, 0, 1, 1],
                [0, 0, 0, 0, 0, 200],
                [0, 0, 0, 0, -15, 0],
            ]
        ),  # fmt: skip
        "amh-15-pang-2": _pang_2(N),
        "amh-16-pang-3": pang_3,
        "amh-17-kenney-laub-5": np.array([[0.0, 1e6], [0, 0]]),
        "amh-18-jemc-52": np.array([[-0.6, 0, 1.2], [0, -0.6, 0.45], [-2.4, 4, -4 * (1 - 1.2)]]),
        "amh-19-jemc-55": np.block([[np.zeros((3, 3)), np.eye(3)], [jemc_a2, jemc_a1]]),
        "amh-20-kenney-laub-3": np.array([[-1.0, 1e7], [0, -1e7]]),
        "amh-21-decay-chain": _chain(math.log(2) / half_lives),
        "amh-22-decay-branches": np.array(
            [[-0.01145, 0, 0], [0.3594 * 0.01145, -0.2270, 0], [0.6406 * 0.01145, 0.2270, 0]]
        ),
        "amh-23-decay-chain-10": _chain(
            [
                4.916e-18,
                3.329e-7,
                8.983e-14,
                2.852e-13,
                1.373e-11,
                2.098e-6,
                9.850e-10,
                1.601e-6,
                5.796e-8,
                0.0,
            ]
        ),  # fmt: skip
        "amh-24-niesen": np.array([[0, 1], [niesen_lambda, -1]]) - niesen_mu * np.eye(2),
        "amh-25-awad-1e17": np.array([[1.0, 1e17], [0, 1]]),
        "amh-26-awad-4x4": awad_4,
        "amh-27-awad-1e5": _awad(1e5),
        "amh-28-awad-1e3": _awad(1e3, low=-(1e3**4) / 2),
        "amh-29-godunov-10": _godunov() / 10,
        "amh-30-trefethen-embree": 10 * np.array([[0.0, 1, 2], [-0.01, 0, 3], [0, 0, 0]]),
        "amh-31-invol-schur": _invol_schur_upper(),
        "amh-32-tridiagonal": kuda,
        "amfh-05-najfeld-havel": _najfeld_havel(1.0),
        "amfh-27-awad-1e4": _awad(1e4),
        "amfh-28-awad-1e2": _awad(1e2, low=-(1e2**4) / 2),
        "amfh-29-godunov-100": _godunov() / 100,
        "amfh-33-lara-1": np.array(
            [[-3.328853448977761e-07, 4.915959875924379e-18], [0, -4.915959875924379e-18]]
        ),
        "amfh-34-lara-2": np.array(
            [
                [-2.974063693062615e-07, 0, 1.024464026382002e-14],
                [2.974063693062615e-07, -1.379680196333551e-13, 0],
                [0, 0, -1.024464026382002e-14],
            ]
        ),  # fmt: skip
        "amfh-35-lara-3": np.array(
            [
                [-2.421897905520424e-03, 0, 5.383443102348909e-03],
                [0, -3.200125487349701e-04, 0],
                [0, 3.200125487349701e-04, -5.398342527725431e-03],
            ]
        ),  # fmt: skip
        "amfh-36-lara-4": np.array(
            [
                [-1.000000000000312e-04, 0, 0, 0],
                [1.000000000000000e-04, -1.000000000009379e-04, 0, 0],
                [0, 1.000000000000000e-04, -1.188523972153541e-06, 0],
                [0, 0, 1.188523972153541e-06, -1.024464026382002e-14],
            ]
        ),  # fmt: skip
        "amfh-37-lara-5": _from_entries(
            12,
            [1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12],
            [1, 7, 1, 2, 2, 3, 10, 3, 4, 4, 5, 12, 5, 6, 6, 7, 7, 8, 6, 9, 8, 10, 10, 11, 11, 12],
            [
                -1.000000000000049e-04,
                5.880666420493406e-14,
                1.000000000000000e-04,
                -4.926419193745169e-04,
                4.926419193745169e-04,
                -3.405151448232769e-06,
                2.980258985838552e-12,
                3.405151448232769e-06,
                -1.000000009110124e-04,
                1.000000000000000e-04,
                -1.000000033477380e-04,
                1.212838692746004e-09,
                1.000000000000000e-04,
                -1.000015370544945e-04,
                1.000000000000000e-04,
                -1.000000000588073e-04,
                1.000000000000000e-04,
                -3.885005720114481e-05,
                1.537023753355886e-09,
                -5.077325179294990e-11,
                3.885005720114481e-05,
                -1.000000029802590e-04,
                1.000000000000000e-04,
                -1.906345381077957e-05,
                1.906345381077957e-05,
                -1.212838692746004e-09,
            ],
        ),  # fmt: skip
        "amfh-38-lara-6": _from_entries(
            8,
            [1, 1, 2, 2, 2, 3, 3, 3, 4, 5, 5, 6, 6, 7, 7, 8, 8],
            [1, 4, 1, 2, 4, 2, 3, 4, 4, 4, 5, 5, 6, 6, 7, 7, 8],
            [
                -2.930607054625170e-05,
                1.292290622141271e-07,
                2.446793135977101e-05,
                -2.106574217602557e-05,
                2.051479647948103e-08,
                2.106574217602557e-05,
                -9.549786402447881e-15,
                1.855074206409039e-12,
                -1.100000000000049e-04,
                1.000000000000000e-04,
                -4.926419193745169e-04,
                4.926419193745169e-04,
                -3.405151448232769e-06,
                3.405151448232769e-06,
                -1.000000091101239e-05,
                1.000000000000000e-05,
                -3.347737955438215e-12,
            ],
        ),  # fmt: skip
    }


# SciPy's test_triangularity_perturbation: the logarithm of an upper-triangular `A`
# (diagonal near 0.3, entries 3e4 above it); `expm` must give `A` back to 1e-4.
TRIANGULAR_A = np.array([
    [3.2346e-1, 3e4, 3e4, 3e4],
    [0, 3.0089e-1, 3e4, 3e4],
    [0, 0, 3.221e-1, 3e4],
    [0, 0, 0, 3.0744e-1],
])  # fmt: skip
TRIANGULAR_LOGM = np.array([
    [-1.12867982029050462e00, 9.61418377142025565e04,
     -4.52485573953179264e09, 2.92496941103871812e14],
    [0, -1.20101052953082288e00, 9.63469687211303099e04, -4.68104828911105442e09],
    [0, 0, -1.13289322264498393e00, 9.53249183094775653e04],
    [0, 0, 0, -1.17947533272554850e00],
])  # fmt: skip


def scipy_cases() -> dict[str, np.ndarray]:
    """SciPy's hard `expm` cases by name."""
    perturbed = TRIANGULAR_LOGM.copy()
    perturbed[1, 0] = 1e-17
    tree = np.zeros((7, 7))
    tree[[0, 1, 2], [0, 1, 2]] = 1.0
    tree[[0, 0, 1, 1, 2, 2], [1, 2, 3, 4, 5, 6]] = -0.5
    return {
        "scipy-triangular-logm": TRIANGULAR_LOGM,
        "scipy-triangular-logm-perturbed": perturbed,
        "scipy-sinch-overflow": -(2.0**11) * tree,
        "scipy-integer-markov": np.array(
            [[-500.0, 500, 0, 0], [0, -550, 360, 190], [0, 630, -630, 0], [0, 0, 0, 0]]
        ),
    }


@suite("testmats", methods=("pade", "scipy", "ode", "ode-frechet"))
def testmats_suite(quick: bool) -> list[Case]:
    """Al-Mohy and Higham's expm test matrices and SciPy's hard expm cases, with their
    condition numbers."""
    named = {**testmats(), **scipy_cases()}
    if quick:
        named = {name: named[name] for name in ("amh-25-awad-1e17", "amh-06-kenney-laub-2")}
    cases = []
    for name, A in named.items():
        source = SCIPY if name.startswith("scipy") else AMFH if name.startswith("amfh") else AMH
        cases.append(
            expm_case(
                name,
                A,
                reference=HIGH_PRECISION,
                gradients=name in WITH_GRADIENTS,
                source=source,
            )
        )
    return cases
