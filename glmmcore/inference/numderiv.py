"""Accurate numerical derivatives: central differences with Richardson extrapolation.

The derivatives of smooth functions that have no cheap analytic form (the
(RE)ML deviance's Hessian in the covariance parameters, the Jacobian of the
fixed effects' covariance) to about 1e-9 relative: central differences at
steps ``h, h/2, h/4, ...`` have errors in even powers of ``h``, which
Richardson's extrapolation removes one after another (as R's ``numDeriv``,
which lmerTest uses, does).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEVELS = 4          # steps h, h/2, h/4, h/8
STEP = 1e-2         # first step, relative to max(|x|, STEP_FLOOR)
STEP_FLOOR = 0.1


def steps_for(x: np.ndarray, step: float = STEP, floor: float = STEP_FLOOR) -> np.ndarray:
    """First steps for :func:`gradient_hessian`: ``step * max(|x|, floor)``."""
    return step * np.maximum(np.abs(np.asarray(x, dtype=float)), floor)


def gradient_hessian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                     steps: np.ndarray, levels: int = LEVELS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, gradient and Hessian of a vector function of ``x``.

    Parameters
    ----------
    f
        ``f(x)`` returns a 1-d array (``m`` values); it must be smooth in a
        neighbourhood of ``x`` of the size of ``steps``.
    x
        The point (``k`` values).
    steps
        First step of each coordinate; each further level halves them.
    levels
        Number of step sizes combined by Richardson's extrapolation.

    Returns
    -------
    value : ndarray, shape (m,)
    gradient : ndarray, shape (k, m)
        ``gradient[i]`` is ``df/dx_i``.
    hessian : ndarray, shape (k, k, m)
        ``hessian[i, j]`` is ``d2f/dx_i dx_j``.

    Notes
    -----
    ``1 + levels * 2 k^2`` evaluations: two per coordinate and four per pair
    of coordinates at each level.
    """
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = np.asarray(f(x), dtype=float)
    grads, hessians = [], []
    for level in range(levels):
        h = np.asarray(steps, dtype=float) / 2.0 ** level
        grads.append(np.empty((k, f0.size)))
        hessians.append(np.empty((k, k, f0.size)))
        grad, hess = grads[-1], hessians[-1]
        for i in range(k):
            e_i = np.zeros(k)
            e_i[i] = h[i]
            fp, fm = np.asarray(f(x + e_i)), np.asarray(f(x - e_i))
            grad[i] = (fp - fm) / (2.0 * h[i])
            hess[i, i] = (fp - 2.0 * f0 + fm) / h[i] ** 2
            for j in range(i):
                e_j = np.zeros(k)
                e_j[j] = h[j]
                mixed = (np.asarray(f(x + e_i + e_j)) - np.asarray(f(x + e_i - e_j))
                         - np.asarray(f(x - e_i + e_j)) + np.asarray(f(x - e_i - e_j)))
                hess[i, j] = hess[j, i] = mixed / (4.0 * h[i] * h[j])
    return f0, richardson(grads), richardson(hessians)


def richardson(estimates: list[np.ndarray]) -> np.ndarray:
    """Richardson's extrapolation of estimates at steps ``h, h/2, h/4, ...`` whose errors
    are even powers of the step."""
    table = [np.asarray(e, dtype=float) for e in estimates]
    for m in range(1, len(table)):
        factor = 4.0 ** m
        table = [(factor * table[i + 1] - table[i]) / (factor - 1.0)
                 for i in range(len(table) - 1)]
    return table[0]
