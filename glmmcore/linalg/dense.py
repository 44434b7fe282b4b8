"""Small dense kernels: Cholesky and triangular solves on C-ordered arrays.

Only the lower triangle of a symmetric input is read.  The factorizations
report failure through their return value instead of raising, so that a
deviance function can answer ``inf`` to the optimizer.

:func:`chol_lower` sends a matrix of ``n >= LAPACK_MIN_SIZE`` rows to LAPACK
unless its envelope holds at most :func:`envelope_max_work` ``(n)`` of a dense
factorization's work.  LAPACK's blocked algorithm is 4x faster than these
row-by-row loops on a dense matrix of 50 rows and 9x from 200 (one thread,
measured here), but it does the dense work whatever the envelope: the loops win
on tiny matrices and on block diagonal or banded ones.  Measured crossovers
(banded matrices, the loops as fast as LAPACK): 27% of the dense work at 48
rows, 20% at 64, 14% at 128, 10-11% at 192-256; :func:`envelope_max_work`
follows them down to :data:`ENVELOPE_MAX_WORK` for large matrices.  The inverse
from the factor (Takahashi within the envelope against ``dpotri``) crosses over
at about the same points.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic

from .scipy_ext import extension

LAPACK_MIN_SIZE = 16
ENVELOPE_MAX_WORK = 0.05   # the envelope's relative work below which the loops win at any size
# Reassociating sums lets LLVM vectorize the dot products (4-5x faster from about 100
# rows); results stay deterministic on a given machine, like BLAS's.
FAST = {"reassoc", "contract"}
# Constant arguments of calls between compiled functions, typed as the Python callers'
# arguments are: a literal (False, 0) would compile the callee once more for its type.
FALSE, TRUE, ZERO = np.bool_(False), np.bool_(True), np.int64(0)


def writable(theta: np.ndarray) -> np.ndarray:
    """``theta`` as a writable C float array: a read-only one (a result's) would compile
    a second specialization of each kernel it is passed to."""
    return np.require(theta, dtype=float, requirements=("C", "W"))


@njit(cache=True, nogil=True)
def envelope(A: np.ndarray, first: np.ndarray, limit: float = np.inf) -> float:
    """First nonzero column of each row of the lower triangle of ``A``, into ``first``.

    Returns the work (multiply-adds) of :func:`chol_envelope` within that
    envelope relative to a dense factorization's ``n^3 / 6``, counted up to
    ``limit``.  The factor has the same envelope, so a block diagonal or banded
    matrix, even with a few dense rows below it, factors in a fraction of the
    time.
    """
    scan_envelope(A, np.zeros(A.shape[0], dtype=np.int64), first)
    return envelope_work(first, limit)


@njit(cache=True, nogil=True)
def scan_envelope(A: np.ndarray, first_min: np.ndarray, first: np.ndarray) -> None:
    """:func:`envelope`'s columns, scanning each row ``i`` from ``first_min[i]``, a column
    before which the row is known to be zero (the structure's, where there is one)."""
    for i in range(A.shape[0]):
        k = first_min[i]
        while k < i and A[i, k] == 0.0:
            k += 1
        first[i] = k


@njit(cache=True, nogil=True)
def envelope_work(first: np.ndarray, limit: float = np.inf) -> float:
    """The relative work of :func:`envelope` for an envelope already known."""
    n = first.shape[0]
    dense = max(float(n) * float(n) * float(n) / 6.0, 1.0)
    work = 0.0
    for i in range(n):
        fi = first[i]
        for j in range(fi, i):
            work += j - max(fi, first[j]) + 1
        work += i - fi
        if work > limit * dense:
            break
    return work / dense


@njit(cache=True, nogil=True, fastmath=FAST)
def chol_envelope(A: np.ndarray, first: np.ndarray, border: int = 0) -> bool:
    """Overwrite the lower triangle of ``A`` with its Cholesky factor, row by row.

    Reads and writes only within the envelope ``first`` (see :func:`envelope`);
    each entry is a dot product of two contiguous row segments.  The last
    ``border`` rows (the blocked system's ``Y`` rows, dense) take their entries
    left of the border by one forward substitution for all of them at once
    (:func:`_border_columns`), the same sums in the same order (``socio_m4``'s
    8 ``Y`` rows below 175 banded ones: 22 -> 16 us).  Nothing is allocated
    without a border: many small blocks are factored in turn (``gpa_rs``: 200 of
    2 x 2, where a per-call array of reciprocals doubled the time).  Returns
    False (leaving ``A`` partly overwritten) if ``A`` is not numerically
    positive definite.
    """
    n = A.shape[0]
    top = n - border
    for i in range(n):
        if i == top:
            _border_columns(A, first, top)
        fi = first[i]
        for j in range(fi if i < top else max(fi, top), i):
            s = A[i, j]
            for k in range(max(fi, first[j]), j):
                s -= A[i, k] * A[j, k]
            A[i, j] = s / A[j, j]
        s = A[i, i]
        for k in range(fi, i):
            s -= A[i, k] * A[i, k]
        if not s > 0.0 or not np.isfinite(s):
            return False
        A[i, i] = np.sqrt(s)
    return True


@njit(cache=True, nogil=True, fastmath=FAST)
def _border_columns(A, first, top):
    """The border rows' entries left of ``top``: a forward substitution with the
    factored rows for all border rows at once, one vector operation per entry of
    the factor (zeros before a border row's envelope stay exact zeros)."""
    border = A.shape[0] - top
    X = np.empty((top, border))
    for j in range(top):
        for r in range(border):
            X[j, r] = A[top + r, j]
    for j in range(top):
        for k in range(first[j], j):
            f = A[j, k]
            for r in range(border):
                X[j, r] -= f * X[k, r]
        d = A[j, j]
        for r in range(border):
            X[j, r] /= d
    for j in range(top):
        for r in range(border):
            A[top + r, j] = X[j, r]


@njit(cache=True, nogil=True)
def envelope_max_work(n: int) -> float:
    """Relative envelope work up to which an ``n``-row factor is made in the envelope
    (module doc): ``0.3 (48 / n)^0.66``, at least :data:`ENVELOPE_MAX_WORK`."""
    return max(ENVELOPE_MAX_WORK, 0.3 * (48.0 / max(n, 1)) ** 0.66)


@njit(cache=True, nogil=True)
def uses_lapack(first: np.ndarray) -> bool:
    """Whether a factor with envelope ``first`` is made (and inverted) by LAPACK."""
    n = first.shape[0]
    limit = envelope_max_work(n)
    return n >= LAPACK_MIN_SIZE and envelope_work(first, limit) > limit


@njit(cache=True, nogil=True, inline="always")
def chol_lower(potrf: int, A: np.ndarray, first: np.ndarray, first_min: np.ndarray,
               border: int = 0) -> bool:
    """Cholesky factor in the lower triangle of ``A``, in place, by LAPACK or in the envelope.

    ``first_min`` bounds the envelope from the left (:func:`scan_envelope`;
    zeros when nothing is known).  Leaves ``A``'s envelope in ``first`` either
    way (the factor has the same one, with exact zeros before it), for
    :func:`solve_lower_t_envelope`.  ``border``: :func:`chol_envelope`'s.
    """
    scan_envelope(A, first_min, first)
    if uses_lapack(first):
        return chol_lower_lapack(potrf, A)
    return chol_envelope(A, first, border)


@njit(cache=True, nogil=True)
def chol_lower_small(A: np.ndarray) -> bool:
    """Cholesky factor in the lower triangle of ``A``, in place, within its envelope.

    Nested designs give block diagonal rest blocks with a dense border, whose
    leading zeros are skipped.  Returns False if ``A`` is not numerically
    positive definite.
    """
    first = np.empty(A.shape[0], dtype=np.int64)
    envelope(A, first)
    return chol_envelope(A, first, ZERO)


# LAPACK's dpotrf and dpotri as scipy exports them, without scipy.linalg
# (glmmcore.linalg.scipy_ext); compiled code receives the addresses as integers (a ctypes
# function would pin the address into numba's cache)
extension("scipy.linalg.cython_lapack")
DPOTRF = get_cython_function_address("scipy.linalg.cython_lapack", "dpotrf")
DPOTRI = get_cython_function_address("scipy.linalg.cython_lapack", "dpotri")


@intrinsic
def _call_potrf(typingctx, fn, uplo, n, a, lda, info):
    sig = types.void(*([types.int64] * 6))

    def codegen(context, builder, signature, args):
        i8p, i32p = ir.IntType(8).as_pointer(), ir.IntType(32).as_pointer()
        argtypes = [i8p, i32p, ir.DoubleType().as_pointer(), i32p, i32p]
        fnty = ir.FunctionType(ir.VoidType(), argtypes)
        fptr = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fptr, [builder.inttoptr(v, t) for v, t in zip(args[1:], argtypes)])
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def chol_lower_lapack(potrf: int, A: np.ndarray) -> bool:
    """Cholesky factor in the lower triangle of a C-ordered ``A``, in place, by LAPACK.

    ``A`` read as Fortran-ordered is ``A.T``, whose upper triangle is ``A``'s
    lower one, so ``dpotrf`` with ``uplo = 'U'`` works in place without a copy.
    """
    ints = np.empty(3, dtype=np.int32)
    ints[0] = A.shape[0]
    ints[1] = A.shape[0]
    ints[2] = 0
    uplo = np.empty(1, dtype=np.uint8)
    uplo[0] = 85  # 'U'
    _call_potrf(potrf, uplo.ctypes.data, ints[0:1].ctypes.data, A.ctypes.data,
                ints[1:2].ctypes.data, ints[2:3].ctypes.data)
    return ints[2] == 0


@njit(cache=True, nogil=True)
def inverse_lower_lapack(potri: int, L: np.ndarray) -> bool:
    """Overwrite a lower Cholesky factor ``L`` (C-ordered) with the lower triangle of
    ``(L L')^{-1}``, by LAPACK's ``dpotri`` (:data:`DPOTRI`) on the transposed view, as
    :func:`chol_lower_lapack` does; its arguments are ``dpotrf``'s."""
    return chol_lower_lapack(potri, L)


@njit(cache=True, nogil=True, fastmath=FAST)
def solve_lower(L: np.ndarray, b: np.ndarray) -> None:
    """Solve ``L x = b`` in place (``L`` lower triangular)."""
    n = L.shape[0]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * b[k]
        b[i] = s / L[i, i]


@njit(cache=True, nogil=True, fastmath=FAST)
def solve_lower_envelope(L: np.ndarray, b: np.ndarray, first: np.ndarray) -> None:
    """Solve ``L x = b`` in place for the leading ``len(b)`` rows, within the envelope."""
    for i in range(b.shape[0]):
        s = b[i]
        for k in range(first[i], i):
            s -= L[i, k] * b[k]
        b[i] = s / L[i, i]


@njit(cache=True, nogil=True, fastmath=FAST)
def solve_lower_t_envelope(L: np.ndarray, b: np.ndarray, first: np.ndarray) -> None:
    """Solve ``L' x = b`` in place, reading row ``i`` of ``L`` from ``first[i]`` only."""
    n = b.shape[0]
    for i in range(n - 1, -1, -1):
        xi = b[i] / L[i, i]
        b[i] = xi
        for k in range(first[i], i):
            b[k] -= L[i, k] * xi


@njit(cache=True, nogil=True, fastmath=FAST)
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


def semidefinite_cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix: a zero pivot gives a zero
    column, so sds of 0 and correlations of +-1 have a factor (a theta, a sampler)."""
    p = cov.shape[0]
    L = np.zeros((p, p))
    for j in range(p):
        d = cov[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(cov[j, j], 1e-300):
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (cov[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L
