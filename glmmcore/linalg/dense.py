"""Small dense kernels: Cholesky and triangular solves on C-ordered arrays.

Only the lower triangle of a symmetric input is read.  The factorizations
report failure through their return value instead of raising, so that a
deviance function can answer ``inf`` to the optimizer.  Matrices of
:data:`LAPACK_MIN_SIZE` rows or more go to LAPACK in place; smaller ones stay
in these compiled loops, which avoid LAPACK's call overhead.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.linalg.lapack import dpotrf

LAPACK_MIN_SIZE = 96


@njit(cache=True, nogil=True)
def chol_lower_small(A: np.ndarray) -> bool:
    """Overwrite the lower triangle of ``A`` with its Cholesky factor.

    Returns False (leaving ``A`` partly overwritten) if ``A`` is not
    numerically positive definite.
    """
    n = A.shape[0]
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= A[j, k] * A[j, k]
        if not s > 0.0 or not np.isfinite(s):
            return False
        d = np.sqrt(s)
        A[j, j] = d
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= A[i, k] * A[j, k]
            A[i, j] = s / d
    return True


def chol_lower_lapack(A: np.ndarray) -> bool:
    """Cholesky factor in the lower triangle of a C-ordered ``A``, in place, by LAPACK.

    ``A.T`` is Fortran-ordered, and its upper triangle is ``A``'s lower one,
    so ``dpotrf`` on it with ``uplo = 'U'`` works in place without a copy.
    """
    factor, info = dpotrf(A.T, lower=0, overwrite_a=1, clean=0)
    if not np.shares_memory(factor, A):
        A[:, :] = factor.T
    return info == 0


@njit(cache=True, nogil=True)
def solve_lower(L: np.ndarray, b: np.ndarray) -> None:
    """Solve ``L x = b`` in place (``L`` lower triangular)."""
    n = L.shape[0]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * b[k]
        b[i] = s / L[i, i]


@njit(cache=True, nogil=True)
def solve_lower_t(L: np.ndarray, b: np.ndarray) -> None:
    """Solve ``L' x = b`` in place (``L`` lower triangular), reading ``L`` by rows."""
    n = L.shape[0]
    for i in range(n - 1, -1, -1):
        xi = b[i] / L[i, i]
        b[i] = xi
        for k in range(i):
            b[k] -= L[i, k] * xi


@njit(cache=True, nogil=True)
def log_diag_sum(L: np.ndarray, start: int, stop: int) -> float:
    """``sum(log(diag(L)[start:stop]))``."""
    s = 0.0
    for i in range(start, stop):
        s += np.log(L[i, i])
    return s


@njit(cache=True, nogil=True)
def lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix."""
    n = L.shape[0]
    out = np.zeros((n, n))
    for j in range(n):
        col = np.zeros(n)
        col[j] = 1.0
        solve_lower(L, col)
        out[:, j] = col
    return out
