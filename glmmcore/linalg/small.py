"""Cholesky factor and solve of small dense matrices, in loops (no BLAS call).

The compiled whole fits (:mod:`glmmcore.objectives.scalar_glmm`,
:mod:`glmmcore.objectives.scalar_lmm`, :mod:`glmmcore.objectives.vector_lmm`) factor
matrices of a few rows (the fixed effects' system, a level's ``k x k`` block) inside
their loops, where a LAPACK call would cost more than the work.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def small_cholesky(A, L):
    """Lower Cholesky factor of a small matrix into ``L``; False if not positive definite."""
    k = A.shape[0]
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not (s > 0.0) or not np.isfinite(s):
            return False
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, k):
            t = A[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / L[j, j]
        for i in range(j):
            L[i, j] = 0.0
    return True


@njit(cache=True, nogil=True)
def small_cholesky_solve(L, b, out):
    """Solve ``L L' out = b`` with ``L`` from :func:`small_cholesky`."""
    k = L.shape[0]
    for i in range(k):
        s = b[i]
        for m in range(i):
            s -= L[i, m] * out[m]
        out[i] = s / L[i, i]
    for i in range(k - 1, -1, -1):
        s = out[i]
        for m in range(i + 1, k):
            s -= L[m, i] * out[m]
        out[i] = s / L[i, i]
