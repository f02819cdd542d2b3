"""The Taylor polynomial of `exp` at a square matrix: the one evaluation that the
`Taylor` solver's steps and the Magnus solvers' step exponential share.

`T_m(X) = sum_{k <= m} X^k / k!` is evaluated with as few matrix products as known:

- degree 21 by the scheme of Sastre, Ibáñez and Defez (Appl. Math. Comput. 340 (2019)
  206): 5 products, where Paterson-Stockmeyer needs 8. It matches the series through
  `X^21` and adds terms in `X^22 .. X^24` that differ from it, which the truncation
  bound counts;
- degree 18 by the scheme of Bader, Blanes and Casas (Mathematics 7 (2019) 1174):
  5 products, where Paterson-Stockmeyer needs 7;
- degree 12 by a formula of Sastre's form (Linear Algebra Appl. 539 (2018) 229), exactly
  the series: 4 products, where Paterson-Stockmeyer needs 5. A step of degree 21 takes it
  where `alpha` allows (`taylor_step_polynomial`);
- any other degree by Paterson-Stockmeyer: about `2 sqrt(m)` products.
"""

import functools
import math
from fractions import Fraction

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int, Real

from .._linalg import exponent, matmul, norms1

# Coefficients of the degree-18 scheme (B1 in powers 0-3 of X, B2..B5 in powers 0, 1,
# 2, 3 and 6): `A9 = B1 B5 + B4`, `T18 = B2 + (B3 + A9) A9`.
_T18_B1 = (0.0, -0.10036558103014462001, -0.00802924648241156960, -0.00089213849804572995)
_T18_B = (
    (0.0, 0.39784974949964507614, 1.36783778460411719922,
     0.49828962252538267755, -0.00063789819459472330),
    (-10.9676396052962062593, 1.68015813878906197182, 0.05717798464788655127,
     -0.00698210122488052084, 0.00003349750170860705),
    (-0.09043168323908105619, -0.06764045190713819075, 0.06759613017704596460,
     0.02955525704293155274, -0.00001391802575160607),
    (0.0, 0.0, -0.09233646193671185927, -0.01693649390020817171, -0.00001400867981820361),
)  # fmt: skip


# Coefficients c1..c20 of the degree-21 scheme, in `y0 = X^3 (c1 X^3 + c2 X^2 + c3 X)`,
# `y1 = (y0 + c4 X^3 + c5 X^2 + c6 X)(y0 + c7 X^3 + c8 X^2) + c9 y0 + c10 X^3 + c11 X^2`,
# `T21 = (y1 + c12 X^3 + c13 X^2 + c14 X)(y1 + c15 y0 + c16 X) + c17 y1 + c18 y0
#        + c19 X^3 + c20 X^2 + X + I`.
_T21_C = (
    1.161658834444880e-06, 4.500852739573010e-06, 5.374708803114821e-05,
    2.005403977292901e-03, 6.974348269544424e-02, 9.418613214806352e-01,
    2.852960512714315e-03, -7.544837153586671e-03, 1.829773504500424e00,
    3.151382711608315e-02, 1.392249143769798e-01, -2.269101241269351e-03,
    -5.394098846866402e-02, 3.112216227982407e-01, 9.343851261938047e00,
    6.865706355662834e-01, 3.233370163085380e00, -5.726379787260966e00,
    -1.413550099309667e-02, -1.638413114712016e-01,
)  # fmt: skip
# Coefficients of the degree-12 formula, `y0 = X^3 (c1 X^3 + c2 X^2 + c3 X)`,
# `T12 = (y0 + a3 X^3 + a2 X^2 + a1 X)(y0 + b3 X^3 + b2 X^2) + f y0 + g3 X^3 + X^2 / 2
# + X + I`: the solution with the smallest coefficients of the equations that match
# the series term by term (solved with mpmath at 50 digits; `tests/test_testmats.py`
# checks the match).
_T12_C = (
    4.5691089927761735304e-05, 2.7414653956657041183e-04, 2.1931723165325632946e-03,
    1.6261583454203994347e-02, 1.9550942054103509702e-01, 1.3093238729699402869e00,
    1.7732587452050736719e-02, 3.8063431169682893854e-02, 5.0188519759285061501e00,
    1.1682930754905271573e-01,
)  # fmt: skip
# Degrees with a scheme of their own (the others use Paterson-Stockmeyer), and the
# products each spends.
_SCHEME_PRODUCTS = {12: 4, 18: 5, 21: 5}
# From this size on, a degree-21 step evaluates degree 12 where `alpha` allows (4
# products instead of 5); below, products cost too little to pay for the branch.
LOWER_DEGREE_FROM = 64


def num_powers(degree: int) -> int:
    """The highest power of `x` that `taylor_powers` forms for degree `degree`."""
    return 3 if degree in _SCHEME_PRODUCTS else max(1, math.ceil(math.sqrt(degree)))


def num_products(degree: int) -> int:
    """The matrix products `taylor_polynomial` spends on degree `degree`."""
    if degree in _SCHEME_PRODUCTS:
        return _SCHEME_PRODUCTS[degree]
    q = num_powers(degree)
    top = degree // q
    return q - 1 + top - (1 if degree % q == 0 and top > 0 else 0)


def cheapest_degree(tolerance: float, max_degree: int = 30) -> int:
    """The degree whose scaling and squaring costs the fewest products for a given
    truncation `tolerance` (relative to `||T_m||`): with `alpha` above the degree's bound
    `theta_m` (`largest_alpha`), a step of degree `m` needs `log2(alpha / theta_m)`
    squarings, so the degree minimising `num_products(m) - log2(theta_m)` is cheapest at
    every `alpha` that needs squarings. 21 at every tolerance from 1e-16 to 1e-4."""

    def cost(m):
        return num_products(m) - math.log2(_largest_alpha(m, tolerance))

    return min(range(1, max_degree + 1), key=cost)


def taylor_polynomial(x: Inexact[Array, "n n"], degree: int) -> Inexact[Array, "n n"]:
    """`T_m(x)`, the degree-`m` Taylor polynomial of `exp` at `x`."""
    return taylor_from_powers(taylor_powers(x, degree), degree)


def taylor_powers(x: Inexact[Array, "n n"], degree: int) -> tuple[Inexact[Array, "n n"], ...]:
    """`(I, x, x^2, ..., x^q)`: the powers the degree-`degree` evaluation combines. Those
    of `c x` are `c^j x^j`: a solve computes them once for all its steps."""
    powers = [jnp.eye(x.shape[-1], dtype=x.dtype), x]
    for _ in range(num_powers(degree) - 1):
        powers.append(matmul(powers[-1], x))
    return tuple(powers)


def taylor_from_powers(
    powers: tuple[Inexact[Array, "n n"], ...], degree: int
) -> Inexact[Array, "n n"]:
    """`taylor_polynomial` from the powers of `x` that `taylor_powers` gives."""
    if degree == 21:
        return _sastre_ibanez_defez_21(powers)
    if degree == 18:
        return _bader_blanes_casas_18(powers)
    if degree == 12:
        return _sastre_12(powers)
    return _paterson_stockmeyer(powers, degree)


def taylor_step_polynomial(
    powers: tuple[Inexact[Array, "n n"], ...], alpha: Real[Array, ""], degree: int
) -> tuple[Inexact[Array, "n n"], Real[Array, ""]]:
    """`(T(x), truncation_bound(alpha, ...))`: `taylor_from_powers(powers, degree)` and its
    bound, or for degree 21 on matrices of at least `LOWER_DEGREE_FROM` rows, degree 12
    (4 products instead of 5) where `alpha` is within its reach (`largest_alpha(12)`,
    0.34 in double precision: a well-scaled matrix that needs no squaring) for every
    matrix of a batch."""

    def of_degree(m):
        return taylor_from_powers(powers, m), truncation_bound(alpha, m)

    if degree != 21 or powers[0].shape[-1] < LOWER_DEGREE_FROM:
        return of_degree(degree)
    within = eqxi.unvmap_all(alpha <= largest_alpha(12, powers[0].dtype))
    return jax.lax.cond(within, lambda: of_degree(12), lambda: of_degree(degree))


def power_norm_bound(powers: tuple[Inexact[Array, "n n"], ...], degree: int) -> Real[Array, ""]:
    """Al-Mohy and Higham's `alpha`: the least `max(||x^p||^(1/p), ||x^(p+1)||^(1/(p+1)))`
    over the `p` with `p (p - 1) <= degree + 1` whose powers are at hand (1-norms).

    Every power `x^j`, `j >= degree + 1`, has `||x^j|| <= alpha^j` (SIAM J. Matrix Anal.
    Appl. 31 (2009) 970, Lemma 4.1): for a non-normal `x`, `alpha` can be far below
    `||x||`, which would overestimate the truncation error and ask for needless squarings.
    """
    return bound_from_norms(power_norms(powers), degree)


def bound_from_norms(norms: dict[int, Real[Array, ""]], degree: int) -> Real[Array, ""]:
    """`power_norm_bound` from the 1-norms `{j: ||x^j||}` of the powers after `I`
    (`power_norms`), or from bounds on them."""
    return functools.reduce(
        jnp.minimum,
        [
            functools.reduce(jnp.maximum, [norms[j] ** (1 / j) for j in candidate])
            for candidate in _bound_candidates(len(norms), degree)
        ],
    )


def most_doublings(
    powers: tuple[Inexact[Array, "n n"], ...], degree: int, theta: float, most: int
) -> Int[Array, ""]:
    """The largest `r <= most` with `power_norm_bound` of the powers of `2^r x` at most
    `theta` (`-1` where even `r = 0` exceeds it): `alpha 2^r <= theta`, without
    `alpha`'s roots.

    For each power, the largest `r` with `2^r ||x^j||^(1/j) <= theta` is
    `floor(log2(theta^j / ||x^j||) / j) = floor(floor(log2(theta^j / ||x^j||)) / j)`, in
    integers from the exponent of `theta^j / ||x^j||`: roots, one `pow` per entry, cost
    more than the rest of the scaling on batches of small matrices.
    """
    norms = power_norms(powers)
    dtype = norms[1].dtype

    def within(j):
        return exponent(jnp.asarray(theta**j, dtype) / norms[j]) // j

    r = functools.reduce(
        jnp.maximum,
        [
            functools.reduce(jnp.minimum, [within(j) for j in candidate])
            for candidate in _bound_candidates(len(powers) - 1, degree)
        ],
    )
    return jnp.clip(r, -1, most).astype(jnp.int32)


def power_norms(powers: tuple[Inexact[Array, "n n"], ...]) -> dict[int, Real[Array, ""]]:
    """`{j: ||x^j||_1}` for the powers `(I, x, ..., x^q)` after `I`, for decisions: never
    differentiated (the roots have no derivative at 0)."""
    powers = jax.lax.stop_gradient(powers[1:])
    norms = norms1(list(powers))
    return {j: norms[j - 1] for j in range(1, len(powers) + 1)}


def _bound_candidates(q: int, degree: int) -> list[tuple[int, ...]]:
    # The powers each candidate for `alpha` takes the largest root of: `x` alone, then
    # `(x^p, x^(p+1))` for the `p` with `p (p - 1) <= degree + 1` and `p + 1 <= q`.
    return [(1,)] + [(p, p + 1) for p in range(2, q) if p * (p - 1) <= degree + 1]


def largest_alpha(degree: int, dtype) -> float:
    """The largest `alpha` (`power_norm_bound`) at which `truncation_bound` is at most
    the unit roundoff of `dtype`: 1.77 for degree 21 and 1.14 for degree 18 in double
    precision."""
    return _largest_alpha(degree, float(jnp.finfo(dtype).eps) / 2)


@functools.cache
def _largest_alpha(degree: int, u: float) -> float:
    # The bound grows with alpha: bisection (60 halvings of [0, 8], to 1e-17).
    low, high = 0.0, 8.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _bound(middle, degree) <= u else (low, middle)
    return low


@functools.cache
def _excess(degree: int) -> tuple[tuple[int, float], ...]:
    """`(k, |p_k - 1/k!|)` for the powers `k > degree` where the evaluation's polynomial
    `p` differs from the series, up to its own degree (nothing for Paterson-Stockmeyer,
    which is the series truncated): the scheme run on exact polynomials in `x`."""
    if degree != 21:
        return ()
    powers = tuple(_Polynomial({j: Fraction(1)}) for j in range(4))
    p = _sastre_ibanez_defez_21(powers, product=_Polynomial.product).coefficients
    return tuple(
        (k, float(abs(p.get(k, 0) - Fraction(1, math.factorial(k)))))
        for k in range(degree + 1, max(p) + 1)
    )


class _Polynomial:
    """A polynomial in `x` with rational coefficients (`{power: coefficient}`), closed
    under what the evaluation schemes do: sums, scalings, products."""

    def __init__(self, coefficients: dict[int, Fraction]):
        self.coefficients = coefficients

    def __add__(self, other: "_Polynomial") -> "_Polynomial":
        out = dict(self.coefficients)
        for k, v in other.coefficients.items():
            out[k] = out.get(k, Fraction(0)) + v
        return _Polynomial(out)

    def __rmul__(self, scalar: float) -> "_Polynomial":
        return _Polynomial({k: Fraction(scalar) * v for k, v in self.coefficients.items()})

    def product(self, other: "_Polynomial") -> "_Polynomial":
        out: dict[int, Fraction] = {}
        for i, a in self.coefficients.items():
            for j, b in other.coefficients.items():
                out[i + j] = out.get(i + j, Fraction(0)) + a * b
        return _Polynomial(out)


def _bound(alpha, degree: int):
    # `truncation_bound` on Python floats or arrays alike.
    excess = _excess(degree)
    m = excess[-1][0] if excess else degree  # the series alone beyond this power
    # The geometric tail factor is exact for alpha <= (m + 2) / 2; beyond, the bound is
    # far above any tolerance anyway.
    ratio = alpha / (m + 2)
    tail = 1 / (1 - (min(ratio, 0.5) if isinstance(ratio, float) else jnp.minimum(ratio, 0.5)))
    series = alpha ** (m + 1) * (tail / float(math.factorial(m + 1)))
    return sum((e * alpha**k for k, e in excess), series)


def truncation_bound(alpha: Real[Array, ""], degree: int) -> Real[Array, ""]:
    """A bound on `||T(x) - exp(x)||_1`, the truncation error of the degree-`m`
    evaluation `T` (`taylor_polynomial`), with `alpha = power_norm_bound(...)`:
    `alpha^(m+1) / (m+1)! / (1 - alpha / (m+2))` for the series truncated, plus
    `sum_k |p_k - 1/k!| alpha^k` over the powers where a scheme's polynomial `p`
    differs from the series."""
    return _bound(alpha, degree)


def _paterson_stockmeyer(powers, degree: int):
    # With block size q = ceil(sqrt(m)), T_m(X) = sum_j B_j (X^q)^j where each B_j is a
    # combination of I, X, ..., X^(q-1); Horner's rule in X^q then needs floor(m / q)
    # products (one fewer when the top block is a multiple of I), after the q - 1
    # products for the powers.
    q = num_powers(degree)
    coefficients = [1 / math.factorial(k) for k in range(degree + 1)]
    x_q = powers[q]

    def block(j):
        return sum(coefficients[j * q + i] * powers[i] for i in range(q) if j * q + i <= degree)

    top = degree // q
    if degree % q == 0 and top > 0:
        # The top block is coefficients[degree] * I: its product with X^q is a scaling.
        polynomial = block(top - 1) + coefficients[degree] * x_q
        top -= 1
    else:
        polynomial = block(top)
    for j in range(top - 1, -1, -1):
        polynomial = block(j) + matmul(x_q, polynomial)
    return polynomial


def _sastre_ibanez_defez_21(powers, product=matmul):
    # (`product` and the powers may be exact polynomials: `_excess` runs the same scheme.)
    eye, x, x2, x3 = powers
    c = (None, *_T21_C)
    y0 = product(x3, c[1] * x3 + c[2] * x2 + c[3] * x)
    y1 = (
        product(y0 + c[4] * x3 + c[5] * x2 + c[6] * x, y0 + c[7] * x3 + c[8] * x2)
        + c[9] * y0 + c[10] * x3 + c[11] * x2
    )  # fmt: skip
    return (
        product(y1 + c[12] * x3 + c[13] * x2 + c[14] * x, y1 + c[15] * y0 + c[16] * x)
        + c[17] * y1 + c[18] * y0 + c[19] * x3 + c[20] * x2 + x + eye
    )  # fmt: skip


def _sastre_12(powers, product=matmul):
    # (`product` and the powers may be exact polynomials, as for `_excess`.)
    eye, x, x2, x3 = powers
    c1, c2, c3, a3, a2, a1, b3, b2, f, g3 = _T12_C
    y0 = product(x3, c1 * x3 + c2 * x2 + c3 * x)
    return (
        product(y0 + a3 * x3 + a2 * x2 + a1 * x, y0 + b3 * x3 + b2 * x2)
        + f * y0 + g3 * x3 + 0.5 * x2 + x + eye
    )  # fmt: skip


def _bader_blanes_casas_18(powers):
    # The scheme's constant term, 1, is the product of its factors' constant terms
    # (-11.06 and -0.090): it is taken out (`(d + M)(c + N) = dc + dN + cM + MN`), so
    # that rounding errors scale with `||x||`, not with 1, and a step near the identity
    # stays unitary to rounding over thousands of steps.
    eye, x, x2, x3 = powers
    x6 = matmul(x3, x3)
    powers = (eye, x, x2, x3, x6)

    def combination(c):  # without the constant term
        return sum(ci * p for ci, p in zip(c[1:], powers[1:]) if ci != 0.0)

    b2, b3, b4, b5 = (combination(c) for c in _T18_B)
    n9 = matmul(combination(_T18_B1), b5) + b4  # A9 = c + N9
    m9 = b3 + n9  # B3 + A9 = d + M9
    c, d = _T18_B[2][0], _T18_B[1][0] + _T18_B[2][0]
    return eye + b2 + d * n9 + c * m9 + matmul(m9, n9)  # (dc = 1: the Taylor coefficient)
