"""The inverse of a profile's zeta: R's ``interpSpline`` then ``backSpline``.

``interpSpline`` interpolates zeta as a natural cubic spline of the
parameter.  ``backSpline`` inverts it piece by piece: on each interval the
parameter is the cubic in zeta with the knots' values and, at the knots, the
reciprocals of the forward spline's slopes (Hermite interpolation), the
first and last pieces quadratic.  lme4's profile intervals are this inverse
at the normal quantiles, so the same construction gives the same intervals.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline


def inverse_profile(values: np.ndarray, zetas: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The parameter values where the profile's zeta equals each of ``at``.

    NaN where ``at`` lies outside the zetas profiled.  Raises ValueError when
    the spline cannot be inverted (fewer than 4 points, or zeta not strictly
    increasing at the knots).
    """
    knots, coef = back_spline(np.asarray(values, dtype=float), np.asarray(zetas, dtype=float))
    return _evaluate(knots, coef, np.asarray(at, dtype=float))


def back_spline(values: np.ndarray, zetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (zetas) and per-knot cubic coefficients of the inverse (R's backSpline)."""
    order = np.argsort(values)
    x, y = values[order], zetas[order]
    if x.size < 4:
        raise ValueError("a spline needs at least 4 points")
    kdiff = np.diff(x)
    if np.any(kdiff <= 0):
        raise ValueError("knot positions must be strictly increasing")
    slope = CubicSpline(x, y, bc_type="natural")(x, 1)
    adiff = np.diff(y)
    if not np.all(adiff > 0):
        raise ValueError("the spline must be monotone")
    nk = x.size
    b = np.zeros((nk, 4))
    b[:, 0] = x
    b[:, 1] = 1.0 / slope
    for i in range(nk - 1):
        a = np.array([[adiff[i] ** 2, adiff[i] ** 3], [2 * adiff[i], 3 * adiff[i] ** 2]])
        rhs = np.array([kdiff[i] - adiff[i] * b[i, 1], b[i + 1, 1] - b[i, 1]])
        b[i, 2:4] = np.linalg.solve(a, rhs)
    b[nk - 1, 1:] = np.nan
    # the end pieces are quadratic: first through both ends and the far slope, last
    # through both ends and the near slope
    b[0, 3] = b[nk - 2, 3] = 0.0
    first = np.array([[adiff[0], adiff[0] ** 2], [1.0, 2 * adiff[0]]])
    b[0, 1:3] = np.linalg.solve(first, np.array([kdiff[0], 1.0 / slope[1]]))
    b[nk - 2, 2] = (kdiff[-1] - adiff[-1] * b[nk - 2, 1]) / adiff[-1] ** 2
    if b[0, 2] > 0:
        b[0, 2] = 0.0
        b[0, 1] = kdiff[0] / adiff[0]
    if b[nk - 2, 2] < 0:
        b[nk - 2, 2] = 0.0
        b[nk - 2, 1] = kdiff[-1] / adiff[-1]
    return y, b


def _evaluate(knots: np.ndarray, coef: np.ndarray, at: np.ndarray) -> np.ndarray:
    """R's ``predict.polySpline``: piece ``i`` on ``(k_i, k_{i+1}]`` (the first knot in
    the first piece), NaN outside the knots."""
    out = np.full(at.shape, np.nan)
    for j, z in enumerate(at.ravel()):
        if not knots[0] <= z <= knots[-1]:
            continue
        i = 0 if z == knots[0] else int(np.searchsorted(knots, z, side="left")) - 1
        d = z - knots[i]
        out.flat[j] = coef[i, 0] + d * (coef[i, 1] + d * (coef[i, 2] + d * coef[i, 3]))
    return out
