"""The Magnus series of a polynomial generator in exact rational arithmetic."""

import functools
from fractions import Fraction

import numpy as np


@functools.cache
def magnus_series(s: int, max_weight: int):
    """The Magnus series of a generator of degree `s - 1`, from its samples at `s` Gauss
    nodes, truncated after the terms of order `h^max_weight`.

    Returns `(nodes, to_powers, series)`: the nodes on `[0, 1]`; the matrix taking the
    samples `A(t + c_i h)` to the coefficients `C_j` of `sum_j C_j (tau - 1/2)^j`; and
    for each word length `k = 1, 2, ...` the words (shape `(words, k)`) and coefficients
    (shape `(2, words)`) of `Omega` as a Lie polynomial in the letters `x_j = h C_j`
    (weight `j + 1`, as `x_j = O(h^(j + 1))`) in right-nested commutators
    `[x_a, [x_b, ...]]`, for all of `Omega` (first row) and for its terms of the top
    weight alone (second row).

    The series is the logarithm of the time-ordered exponential in the free algebra,
    `U = sum_w F_w x_w` over words `w = (j_1, ..., j_k)` with the iterated integrals
    `F_w = int_{1 > tau_1 > ... > tau_k > 0} prod_l (tau_l - 1/2)^(j_l)`, computed with
    exact rationals; by the Dynkin-Specht-Wever lemma a Lie polynomial of length `k` is
    `1/k` times the right-nested commutators of its words.
    """
    weight = lambda w: sum(j + 1 for j in w)

    def integral(p):  # the antiderivative vanishing at 0 of a polynomial (coefficients)
        return [Fraction(0)] + [c / (k + 1) for k, c in enumerate(p)]

    def times_power(p, j):  # p(tau) (tau - 1/2)^j
        for _ in range(j):
            p = [
                (p[k - 1] if k else 0) - Fraction(1, 2) * (p[k] if k < len(p) else 0)
                for k in range(len(p) + 1)
            ]
        return p

    # Iterated integrals as polynomials in tau, the first letter the latest time.
    integrals, words, frontier = {(): [Fraction(1)]}, {}, [()]
    while frontier:
        grown = []
        for rest in frontier:
            for j in range(s):
                w = (j,) + rest
                if weight(w) <= max_weight:
                    integrals[w] = integral(times_power(integrals[rest], j))
                    words[w] = sum(integrals[w])  # its value at tau = 1
                    grown.append(w)
        frontier = grown
    # log(1 + X) = X - X^2 / 2 + X^3 / 3 - ..., truncated by weight.
    log, power, n = {}, dict(words), 1
    while power:
        for w, c in power.items():
            log[w] = log.get(w, 0) + Fraction((-1) ** (n + 1), n) * c
        product = {}
        for w1, c1 in power.items():
            for w2, c2 in words.items():
                if weight(w1 + w2) <= max_weight:
                    product[w1 + w2] = product.get(w1 + w2, 0) + c1 * c2
        power, n = product, n + 1
    log = {w: c for w, c in log.items() if c != 0}
    series = []
    for k in range(1, max(map(len, log)) + 1):
        words = sorted(w for w in log if len(w) == k)
        coefficients = np.array(
            [
                [float(log[w] / k) for w in words],
                [float(log[w] / k) if weight(w) == max_weight else 0.0 for w in words],
            ]
        )
        series.append((np.array(words, dtype=np.int32).reshape(len(words), k), coefficients))
    nodes = (np.polynomial.legendre.leggauss(s)[0] + 1) / 2
    to_powers = np.linalg.inv(np.vander(nodes - 0.5, s, increasing=True))
    return tuple(nodes), to_powers, tuple(series)
