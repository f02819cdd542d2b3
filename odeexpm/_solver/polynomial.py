"""The Taylor polynomial of `exp` at a square matrix: the one evaluation that the
`Taylor` solver's steps and the Magnus solvers' step exponential share.

`T_m(X) = sum_{k <= m} X^k / k!` is evaluated with as few matrix products as known:

- degree 18 by the scheme of Bader, Blanes and Casas (Mathematics 7 (2019) 1174):
  5 products, where Paterson-Stockmeyer needs 7;
- any other degree by Paterson-Stockmeyer: about `2 sqrt(m)` products.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Real

from .._linalg import matmul, norm1

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


def num_powers(degree: int) -> int:
    """The highest power of `x` that `taylor_powers` forms for degree `degree`."""
    return 3 if degree == 18 else max(1, math.ceil(math.sqrt(degree)))


def num_products(degree: int) -> int:
    """The matrix products `taylor_polynomial` spends on degree `degree`."""
    if degree == 18:
        return 5
    q = num_powers(degree)
    top = degree // q
    return q - 1 + top - (1 if degree % q == 0 and top > 0 else 0)


def cheapest_degree(tolerance: float, max_degree: int = 30) -> int:
    """The degree whose scaling and squaring costs the fewest products for a given
    truncation `tolerance` (relative to `||T_m||`): with `alpha` above the degree's bound
    `theta_m` (`largest_alpha`), a step of degree `m` needs `log2(alpha / theta_m)`
    squarings, so the degree minimising `num_products(m) - log2(theta_m)` is cheapest at
    every `alpha` that needs squarings. 18 at every tolerance from 1e-16 to 1e-4."""

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
    if degree == 18:
        return _bader_blanes_casas_18(powers)
    return _paterson_stockmeyer(powers, degree)


def power_norm_bound(powers: tuple[Inexact[Array, "n n"], ...], degree: int) -> Real[Array, ""]:
    """Al-Mohy and Higham's `alpha`: the least `max(||x^p||^(1/p), ||x^(p+1)||^(1/(p+1)))`
    over the `p` with `p (p - 1) <= degree + 1` whose powers are at hand (1-norms).

    Every power `x^j`, `j >= degree + 1`, has `||x^j|| <= alpha^j` (SIAM J. Matrix Anal.
    Appl. 31 (2009) 970, Lemma 4.1): for a non-normal `x`, `alpha` can be far below
    `||x||`, which would overestimate the truncation error and ask for needless squarings.
    """
    # A bound for decisions, never differentiated (the roots have no derivative at 0).
    # The norms in one reduction: on small matrices the count of operations is the cost.
    norms = norm1(jax.lax.stop_gradient(jnp.stack(powers[1:])))
    d = [norms[j - 1] ** (1 / j) for j in range(1, len(powers))]
    candidates = [d[0]] + [
        jnp.maximum(d[p - 1], d[p]) for p in range(2, len(d)) if p * (p - 1) <= degree + 1
    ]
    return functools.reduce(jnp.minimum, candidates)


def largest_alpha(degree: int, dtype) -> float:
    """The largest `alpha` (`power_norm_bound`) at which `truncation_bound` is at most
    the unit roundoff of `dtype`: 1.14 for degree 18 in double precision."""
    return _largest_alpha(degree, float(jnp.finfo(dtype).eps) / 2)


def _largest_alpha(degree: int, u: float) -> float:
    m = degree
    # alpha^(m+1) / (m+1)! / (1 - alpha / (m+2)) <= u, with alpha <= 1 in the tail factor.
    return (u * math.factorial(m + 1) * (1 - 1 / (m + 2))) ** (1 / (m + 1))


def truncation_bound(alpha: Real[Array, ""], degree: int) -> Real[Array, ""]:
    """A bound on `||sum_{j > m} x^j / j!||_1`, the truncation error of `T_m(x)`:
    `alpha^(m+1) / (m+1)! / (1 - alpha / (m+2))` with `alpha = power_norm_bound(...)`."""
    m = degree
    # The geometric tail factor is exact for alpha <= (m + 2) / 2; beyond, the bound is
    # far above any tolerance anyway.
    tail = 1 / (1 - jnp.minimum(alpha / (m + 2), 0.5))
    return alpha ** (m + 1) * (tail / float(math.factorial(m + 1)))


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
