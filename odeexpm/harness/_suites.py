"""The built-in suites of constant generators. Every random case uses a fixed seed.

Sizes are chosen to share shapes (n = 2, 3, 4, 8, 32, 128), because every new shape and
dtype costs each method one more compilation (1-4 s forward, 5-15 s for a derivative, about
2.5 times that in complex arithmetic). For the same reason derivatives are asked for on the
n = 8 cases of the full run and on the 2 x 2 cases of a quick run (`quick=True` keeps to
2 x 2 cases: one compilation per method).
"""

import math

import numpy as np

from ._cases import Case, expm_case, suite
from ._references import Reference, closed_form_2x2, closed_form_nilpotent_shift

CLOSED_FORM_2x2 = Reference(label="closed form", expm=closed_form_2x2)
FINITE_SERIES = Reference(label="finite series", expm=closed_form_nilpotent_shift)

BURKARDT = "Burkardt's test_matrix_exponential set (Moler and Van Loan; Ward)"


def _exact_gram(H: np.ndarray) -> np.ndarray:
    """`H H^T` with each entry's products summed exactly: the same on every machine, where
    `H @ H.T` rounds as the CPU's BLAS kernel does."""
    return np.array([[math.fsum(H[i] * H[j]) for j in range(len(H))] for i in range(len(H))])


@suite("hard")
def hard(quick: bool) -> list[Case]:
    """Classic hard matrices from the literature (Moler & Van Loan, Ward, Burkardt)."""
    eps = 1e-8
    cases = [
        expm_case(
            "moler-vanloan-2x2",
            np.array([[-49.0, 24.0], [-64.0, 31.0]]),
            reference=CLOSED_FORM_2x2,
            gradients=quick,
            source=f"{BURKARDT}, test 3: the naive Taylor series loses ~1e6 * eps.",
        ),
        expm_case(
            "ward-2x2",
            np.array([[0.0, 1.0], [-39.0, -40.0]]),
            reference=CLOSED_FORM_2x2,
            source=f"{BURKARDT}: eigenvalues -1 and -39.",
        ),
        expm_case(
            "near-defective-2x2",
            np.array([[1.0 + eps, 1.0], [0.0, 1.0 - eps]]),
            reference=CLOSED_FORM_2x2,
            source=f"{BURKARDT}, test 7: eigenvalues 1 +- 1e-8, eigenvectors almost parallel.",
        ),
    ]
    if quick:
        return cases
    forsythe = np.diag(np.ones(3), 1)
    forsythe[-1, 0] = 1e-10
    return cases + [
        expm_case(
            "ward-3x3",
            np.array([[-131.0, 19.0, 18.0], [-390.0, 56.0, 54.0], [-387.0, 57.0, 52.0]]),
            source=f"{BURKARDT}, test 12: eigenvalues -1, -2, -20; large humps.",
        ),
        expm_case(
            "moler-badly-scaled-3x3",
            np.array([[0.0, 1e-8, 0.0], [-(2e10 + 4e8 / 6), -3.0, 2e10], [200 / 3, 0.0, -200 / 3]]),
            source=f"{BURKARDT}, test 14: ||A|| ~ 2e10, eigenvalues <= 64 in size; "
            "jax.scipy.linalg.expm returns NaN.",
        ),
        expm_case(
            "nilpotent-4x4",
            np.diag(np.full(3, 6.0), 1),
            reference=FINITE_SERIES,
            source=f"{BURKARDT}, test 4: 6 on the superdiagonal; exp is a finite sum.",
        ),
        expm_case(
            "jordan-4x4",
            -np.eye(4) + np.diag(np.ones(3), 1),
            reference=FINITE_SERIES,
            source="A Jordan block, eigenvalue -1: defective.",
        ),
        expm_case(
            "forsythe-4x4",
            forsythe,
            source=f"{BURKARDT}, test 13: Forsythe's matrix; eigenvalues 10^-2.5 times the "
            "4th roots of 1.",
        ),
    ]


@suite("random")
def random(quick: bool) -> list[Case]:
    """Gaussian matrices with N(0, 1/n) entries (||A||_2 ~ 2): typical, well-conditioned."""
    sizes = (2,) if quick else (8, 32, 128)
    cases = []
    for n in sizes:
        A = np.random.default_rng(1000 + n).standard_normal((n, n)) / np.sqrt(n)
        cases.append(
            expm_case(
                f"gaussian-{n}",
                A,
                reference=CLOSED_FORM_2x2 if n == 2 else None,
                gradients=n <= 8,
                source="Gaussian, seed 1000 + n.",
            )
        )
    return cases


@suite("nonnormal")
def nonnormal(quick: bool) -> list[Case]:
    """Non-normal triangular matrices: exp(tA) grows transiently before it decays."""
    cases = [
        expm_case(
            "triangular-2x2",
            np.array([[-1.0, 1e4], [0.0, -1.1]]),
            reference=CLOSED_FORM_2x2,
            gradients=quick,
            source="Departure from normality 1e4 with eigenvalues -1, -1.1.",
        )
    ]
    if quick:
        return cases
    for n in (8, 32):
        rng = np.random.default_rng(2000 + n)
        A = 3 * np.triu(rng.standard_normal((n, n)), 1) + np.diag(-np.linspace(0.5, 4.0, n))
        cases.append(
            expm_case(
                f"triangular-{n}",
                A,
                gradients=n == 8,
                source="Eigenvalues -0.5..-4, strictly upper part 3 N(0, 1); seed 2000 + n.",
            )
        )
    return cases


def path_laplacian(n: int) -> np.ndarray:
    """The graph Laplacian of the path on `n` vertices (eigenvalues in [0, 4))."""
    L = 2 * np.eye(n) - np.diag(np.ones(n - 1), 1) - np.diag(np.ones(n - 1), -1)
    L[0, 0] = L[-1, -1] = 1.0
    return L


@suite("stiff")
def stiff(quick: bool) -> list[Case]:
    """Stiff dissipative generators: a scaled graph Laplacian; -1e6 H H^T (exp: a projector)."""
    # Quick: a fixed 2 x 1 H whose norm (6e6) is still beyond Padé's 16 squarings.
    n, k = (2, 1) if quick else (8, 3)
    H = (
        np.array([[1.0], [2.0]])
        if quick
        else np.random.default_rng(3000 + n).standard_normal((n, k))
    )
    cases = [
        expm_case(
            f"projector-{n}",
            -1e6 * _exact_gram(H),
            reference=CLOSED_FORM_2x2 if n == 2 else None,
            gradients=True,
            source=f"H is {n} x {k}; exp(-1e6 H H^T) ~ I - P_range(H); "
            "jax.scipy.linalg.expm returns NaN (norm above its 16 squarings).",
        )
    ]
    if not quick:
        cases.append(
            expm_case(
                "laplacian-8",
                -100.0 * path_laplacian(8),
                gradients=True,
                source="-100 L for the path graph on 8 vertices: eigenvalues 0 to -390.",
            )
        )
    return cases


@suite("skew")
def skew(quick: bool) -> list[Case]:
    """Skew-symmetric and skew-Hermitian (-iH) generators: exp is orthogonal or unitary."""
    if quick:
        return [
            expm_case(
                "skew-2x2",
                np.array([[0.0, 2.5], [-2.5, 0.0]]),
                reference=CLOSED_FORM_2x2,
                gradients=True,
                source="A rotation by 2.5 rad.",
            )
        ]
    n = 8
    rng = np.random.default_rng(4000 + n)
    S = rng.standard_normal((n, n)) / np.sqrt(n)
    G = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2 * n)
    return [
        expm_case(f"skew-{n}", S - S.T, gradients=True, source="S - S^T, S Gaussian; seed 4008."),
        expm_case(
            f"hermitian-{n}",
            -1j * (G + G.conj().T),
            gradients=True,
            source="-iH with H = G + G^H, G complex Gaussian; seed 4008.",
        ),
    ]


@suite("large_norm")
def large_norm(quick: bool) -> list[Case]:
    """Norms up to ~1e4 with a bounded exponential: long rotations, shifted and unshifted."""
    cases = [
        expm_case(
            "rotation-1000",
            1000.0 * np.array([[0.0, 1.0], [-1.0, 0.0]]),
            reference=CLOSED_FORM_2x2,
            gradients=quick,
            source="A rotation by 1000 rad.",
        )
    ]
    if quick:
        return cases
    n = 8
    S = np.random.default_rng(5000 + n).standard_normal((n, n)) / np.sqrt(n)
    cases.append(
        expm_case(
            f"shifted-skew-{n}",
            1000.0 * (S - S.T) - 50.0 * np.eye(n),
            gradients=True,
            source="1000 (S - S^T) - 50 I: ||A||_1 ~ 3e3, ||exp(A)||_2 = e^-50.",
        )
    )
    return cases
