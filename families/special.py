"""The digamma function as a scalar ``numba.njit`` kernel (``math`` has only ``lgamma``).

Needed by the derivatives of the Gamma and negative binomial log-densities in
their extra parameter.  The argument is raised past :data:`ASYMPTOTIC_FROM` by
``psi(x) = psi(x + 1) - 1 / x`` and the asymptotic series summed there; within
1e-13 relative of ``scipy.special.digamma`` away from its root near 1.4616
(where the absolute error stays below 1e-15), tested.
"""

from __future__ import annotations

import math

from numba import njit

from .vecmath import vlog

ASYMPTOTIC_FROM = 8.0
LOG_FROM = 1e15     # vdigamma is log(x) above (the series' products overflow near 1e38)


@njit(cache=True, inline="always")
def _asymptotic_tail(z: float) -> float:
    """``sum_k B_2k / (2k x^2k)``, k = 1..6, at ``z = 1 / x^2``: what digamma's
    asymptotic series subtracts beyond ``log(x) - 1 / (2x)``."""
    # Bernoulli numbers B_2k / (2k): 1/12, 1/120, 1/252, 1/240, 1/132, 691/32760
    return z * (1.0 / 12.0 - z * (1.0 / 120.0 - z * (1.0 / 252.0 - z * (
        1.0 / 240.0 - z * (1.0 / 132.0 - z * (691.0 / 32760.0))))))


@njit(cache=True, inline="always")
def digamma(x: float) -> float:
    """``d log Gamma(x) / dx`` for ``x > 0`` (NaN otherwise)."""
    if not x > 0.0:
        return math.nan
    if x > 1e15:
        return math.log(x)
    acc = 0.0
    while x < ASYMPTOTIC_FROM:
        acc -= 1.0 / x
        x += 1.0
    z = 1.0 / (x * x)
    tail = _asymptotic_tail(z)
    return acc + math.log(x) - 0.5 / x - tail


@njit(cache=True, inline="always")
def digamma_series(x: float) -> tuple[float, float, float, float]:
    """:func:`vdigamma`'s terms but its logarithm, branch-free: ``(acc, y, r, tail)`` with
    ``digamma(x) = acc + log(y) - r / 2 - tail`` for ``0 < x <= 1e15`` (:data:`LOG_FROM`):
    ``acc`` the eight recurrence steps' sum (their reciprocals as one fraction: the terms
    are positive, so it loses nothing), ``y = x + 8``, ``r = 1 / y``, ``tail`` the
    asymptotic series' rest.  A caller adding another logarithm makes one of both."""
    a, b, c, d = x * (x + 1.0), (x + 2.0) * (x + 3.0), (x + 4.0) * (x + 5.0), (x + 6.0) * (x + 7.0)
    # 1/x + 1/(x+1) = (2x + 1) / (x (x+1)), and so on in pairs, then pairs of pairs
    p1, p2 = (2.0 * x + 1.0) * b + (2.0 * x + 5.0) * a, a * b
    p3, p4 = (2.0 * x + 9.0) * d + (2.0 * x + 13.0) * c, c * d
    acc = -(p1 * p4 + p3 * p2) / (p2 * p4)
    y = x + 8.0
    r = 1.0 / y
    z = r * r
    return acc, y, r, _asymptotic_tail(z)


@njit(cache=True, inline="always")
def vdigamma(x: float) -> float:
    """:func:`digamma` as branch-free arithmetic, so that a loop calling it vectorizes:
    always eight steps of the recurrence, then the asymptotic series at ``x + 8`` with
    :func:`~glmmcore.families.vecmath.vlog` (:func:`digamma_series`); ``log(x)`` above
    1e15, NaN for ``x <= 0``."""
    acc, y, r, tail = digamma_series(x)
    out = acc + vlog(y) - 0.5 * r - tail
    if x > LOG_FROM:
        out = vlog(x)
    if not x > 0.0:
        out = math.nan
    return out
