"""Digamma and trigamma as scalar ``numba.njit`` functions.

``math`` has ``lgamma`` but not its derivatives, and a kernel cannot call
scipy.  Both functions shift the argument up to ``x + m >= SHIFT`` with the
recurrences ``psi(x) = psi(x + 1) - 1/x`` and ``psi1(x) = psi1(x + 1) + 1/x^2``
and then sum the asymptotic (Stirling) series.  The shift's sum is kept as one
fraction (``num / den``, multiplications in the loop and a single division at
the end: a division's latency is several multiplications').  Near the positive
root of digamma, where the recurrence would cancel to a small absolute but large
relative error, digamma uses its Taylor series about the root instead.  Both
agree with ``scipy.special`` to better than 1e-13 relative for positive
arguments (the tests check 1e-12); non-positive arguments give NaN (a Beta
kernel never asks for them).
"""

from __future__ import annotations

import math

from numba import njit

SHIFT = 7.0     # the asymptotic series are summed at x >= SHIFT (8 and 9 terms)
TINY = 1e-100   # below, trigamma is 1/x^2 (the shift's x^2 would underflow)
# the root of digamma, as hi + lo, and psi's Taylor coefficients psi^(k)(root) / k! there
ROOT_HI = 1.4616321449683622
ROOT_LO = 9.549995429965697e-17
ROOT_WINDOW = 0.02
ROOT_TAYLOR = (0.9676722454476212, -0.4427631689835921, 0.258499760955651,
               -0.16394270544240652, 0.10782405069126237, -0.07219956125645471,
               0.04880428816414311, -0.03316112647484736)


@njit(cache=True, inline="always")
def digamma(x: float) -> float:
    """The digamma function psi(x) = d log Gamma(x) / dx, for x > 0."""
    if not x > 0.0:
        return math.nan
    if math.isinf(x):
        return math.inf
    dx = (x - ROOT_HI) - ROOT_LO
    if abs(dx) < ROOT_WINDOW:
        s = 0.0
        for k in range(len(ROOT_TAYLOR) - 1, -1, -1):
            s = s * dx + ROOT_TAYLOR[k]
        return s * dx
    num, den = 0.0, 1.0             # sum 1 / (x + k), k < m
    while x < SHIFT:
        num = num * x + den
        den *= x
        x += 1.0
    inv = 1.0 / x
    z = inv * inv
    # Bernoulli terms B_2k / (2k x^2k), k = 1..8
    series = z * (1.0 / 12.0 - z * (1.0 / 120.0 - z * (1.0 / 252.0 - z * (
        1.0 / 240.0 - z * (1.0 / 132.0 - z * (691.0 / 32760.0 - z * (
            1.0 / 12.0 - z * (3617.0 / 8160.0))))))))
    return math.log(x) - 0.5 * inv - series - num / den


@njit(cache=True, inline="always")
def trigamma(x: float) -> float:
    """The trigamma function psi1(x) = d^2 log Gamma(x) / dx^2, for x > 0."""
    if not x > 0.0:
        return math.nan
    if math.isinf(x):
        return 0.0
    if x < TINY:
        return (1.0 / x) / x
    num, den = 0.0, 1.0             # sum 1 / (x + k)^2, k < m
    while x < SHIFT:
        x2 = x * x
        num = num * x2 + den
        den *= x2
        x += 1.0
    inv = 1.0 / x
    z = inv * inv
    # 1/x + 1/(2x^2) + sum B_2k / x^(2k+1), k = 1..9
    series = z * (1.0 / 6.0 - z * (1.0 / 30.0 - z * (1.0 / 42.0 - z * (
        1.0 / 30.0 - z * (5.0 / 66.0 - z * (691.0 / 2730.0 - z * (
            7.0 / 6.0 - z * (3617.0 / 510.0 - z * (43867.0 / 798.0)))))))))
    return (1.0 + 0.5 * inv + series) * inv + num / den
