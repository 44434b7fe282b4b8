"""Diagonal blocks of the inverse of the blocked system, from its factor.

For a factor ``L`` of the random-effects system (optionally with the first
``nx`` columns of ``Y`` appended, the fixed effects of a linear mixed model),
the diagonal ``p x p`` block of ``(L L')^{-1}`` of every level is needed by the
conditional variances (``nx = 0``) and by the gradient of the profiled
deviance (``nx = p`` for REML).  With ``S = L22 L22'`` the Schur complement
of the first block (the dense ``D`` rows), and ``W_j = L21_j L11_j^{-1}`` the
coupling of first-block level ``j``::

    rest levels:  blocks of S^{-1}
    first block:  L11_j^{-T} L11_j^{-1} + W_j' S^{-1} W_j

Two routes, chosen as the factorization chose (:func:`.dense.chol_lower`):

- ``D`` banded or block diagonal (within its envelope): ``W_j`` has rows only
  where level ``j`` co-occurs with a rest level (and the ``nx`` appended
  rows), pairs that all lie in the envelope of ``L22``; Takahashi's
  recurrences give ``S^{-1}`` there, at the cost of the factorization.
- ``D`` dense (factored by LAPACK): ``L22^{-1}`` by LAPACK's ``dtrtri``
  (a third cheaper than ``dpotri``'s whole ``S^{-1}``, measured here), then
  ``||L22^{-1} W_j||^2`` from ``L22^{-1}``'s columns, which are rows of the
  C-ordered ``L22^{-T}``, and the rest blocks from dot products of those rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from scipy.linalg import lapack

from .dense import ENVELOPE_MAX_WORK, LAPACK_MIN_SIZE, envelope_work, solve_lower, solve_lower_t

if TYPE_CHECKING:
    from .blocked import BlockedFactor


def schur_inverse(D: np.ndarray, first: np.ndarray, size: int) -> tuple[bool, np.ndarray]:
    """What the inverse blocks need of ``S^{-1}``, ``D[:size, :size]`` being ``S``'s factor.

    ``first`` is the factor's envelope (:func:`.dense.envelope`).  Returns
    ``(dense, Z)``: ``dense`` (factored by LAPACK, as :func:`.dense.chol_lower`
    decides) with ``Z = L^{-T}`` (C order, upper triangle); otherwise ``Z``
    holds ``S^{-1}`` in its lower triangle at every position within the
    envelope (read ``[max(a, b), min(a, b)]``).
    """
    sub, first = D[:size, :size], first[:size]
    if dense_route(first, size):
        inv, info = lapack.dtrtri(np.asfortranarray(sub), lower=1, overwrite_c=1)
        if info != 0:
            raise FloatingPointError(f"dtrtri failed (info={info})")
        return True, inv.T
    Z = np.zeros((size, size))
    _takahashi_envelope(sub, first, Z)
    return False, Z


def dense_route(first: np.ndarray, size: int) -> bool:
    """Whether a factor of ``size`` rows with envelope ``first`` was factored by LAPACK."""
    return size >= LAPACK_MIN_SIZE and envelope_work(first, ENVELOPE_MAX_WORK) > ENVELOPE_MAX_WORK


@njit(cache=True, nogil=True)
def _takahashi_envelope(L, first, Z):
    """``(L L')^{-1}`` on the envelope of ``L`` (lower triangle of ``Z``), last column first.

    Column ``i`` of ``L`` has its off-diagonal entries in the rows ``k > i``
    whose envelope starts at or before ``i``; every pair of such rows lies in
    the envelope, so the recurrences never read outside it.
    """
    n = L.shape[0]
    rows = np.empty(n, dtype=np.int64)
    vals = np.empty(n)
    acc = np.empty(n)
    for i in range(n - 1, -1, -1):
        cnt = 0
        for k in range(i + 1, n):
            if first[k] <= i and L[k, i] != 0.0:
                rows[cnt] = k
                vals[cnt] = L[k, i]
                cnt += 1
        lii = L[i, i]
        for a in range(cnt):            # Z[rows[a], i] = -sum_k L[k, i] Z[rows[a], k] / lii
            s = 0.0
            ra = rows[a]
            for b in range(cnt):
                rb = rows[b]
                s += vals[b] * (Z[ra, rb] if ra >= rb else Z[rb, ra])
            acc[a] = -s / lii
        s = 0.0
        for a in range(cnt):
            Z[rows[a], i] = acc[a]
            s += vals[a] * acc[a]
        Z[i, i] = 1.0 / (lii * lii) - s / lii


def blocked_inverse_blocks(factor: BlockedFactor, nx: int = 0,
                           summed: bool = False) -> list[np.ndarray]:
    """Diagonal blocks of ``(L L')^{-1}`` of a :class:`.blocked.BlockedFactor`.

    Parameters
    ----------
    factor
        A factored :class:`~glmmcore.linalg.blocked.BlockedFactor`.
    nx
        Number of ``Y`` columns taken into the system (``p`` for the REML
        gradient, 0 for the random effects alone).
    summed
        Return each block's sum over its levels (shape ``(1, p, p)``) instead.

    Returns
    -------
    list of ndarray
        One ``(levels, p, p)`` array per block, levels in the terms' order.
    """
    s = factor.s
    q_r = s.q_r
    dense, Z = schur_inverse(factor.D, factor.first, q_r + nx)
    first_block = np.zeros((1 if summed else s.l1, s.p1, s.p1))
    args = (Z, s.flat_row, s.flat_ptr, factor.L11, factor.L21v, factor.LY1, nx, summed,
            first_block)
    if dense:
        _first_blocks_dense(*args)
    elif s.p1 == 1:
        _first_blocks_scalar(*args)
    else:
        _first_blocks(*args)
    out = [first_block]
    for k in range(len(s.rest_p)):
        p = int(s.rest_p[k])
        stop = int(s.rest_off[k + 1]) if k + 1 < len(s.rest_p) else q_r
        nlev = (stop - int(s.rest_off[k])) // p
        blocks = np.zeros((1 if summed else nlev, p, p))
        _rest_blocks(Z, dense, s.rest_perm, int(s.rest_off[k]), stop, p, summed, blocks)
        out.append(blocks)
    return out


@njit(cache=True, nogil=True)
def _level_buffers(flat_ptr, nx, p1):
    """``rows`` and ``W`` long enough for any first-block level's coupled rows."""
    most = 0
    for j in range(flat_ptr.shape[0] - 1):
        most = max(most, flat_ptr[j + 1] - flat_ptr[j])
    return np.empty(most + nx, dtype=np.int64), np.empty((most + nx, p1))


@njit(cache=True, nogil=True)
def _level_rows(j, flat_row, flat_ptr, L21v, LY1, nx, q_r, rows, W):
    """Rows of D coupled to first-block level ``j`` (rest rows ascending, then the ``nx``
    ``Y`` rows) into ``rows``, their ``L21_j`` and ``LY1_j`` values into ``W``; the count."""
    p1 = W.shape[1]
    cnt = 0
    for t in range(flat_ptr[j], flat_ptr[j + 1]):
        rows[cnt] = flat_row[t]
        for c in range(p1):
            W[cnt, c] = L21v[t * p1 + c]
        cnt += 1
    for t in range(nx):
        rows[cnt] = q_r + t
        for c in range(p1):
            W[cnt, c] = LY1[j, t, c]
        cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def _first_blocks(Z, flat_row, flat_ptr, L11, L21v, LY1, nx, summed, out):
    """Add ``L11_j^{-T} L11_j^{-1} + W_j' S^{-1} W_j`` of every first-block level ``j``.

    Into ``out[j]``, or into ``out[0]`` when ``summed``.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = Z.shape[0] - nx
    rows, W = _level_buffers(flat_ptr, nx, p1)
    eye = np.empty(p1)
    for j in range(l1):
        L = L11[j]
        o = out[0] if summed else out[j]
        cnt = _level_rows(j, flat_row, flat_ptr, L21v, LY1, nx, q_r, rows, W)
        for a in range(cnt):            # W_j = L21_j L11_j^{-1}, one row at a time
            solve_lower_t(L, W[a])
        _add_own_inverse(L, eye, o)
        for x in range(cnt):
            rx = rows[x]
            for y in range(cnt):
                ry = rows[y]
                z = Z[rx, ry] if rx >= ry else Z[ry, rx]
                if z != 0.0:
                    for a in range(p1):
                        wa = W[x, a] * z
                        for b in range(p1):
                            o[a, b] += wa * W[y, b]


@njit(cache=True, nogil=True)
def _add_own_inverse(L, work, out):
    """Add ``(L L')^{-1}`` of a small lower factor to ``out``, one column at a time."""
    p = L.shape[0]
    for b in range(p):
        for c in range(p):
            work[c] = 1.0 if c == b else 0.0
        solve_lower(L, work)
        solve_lower_t(L, work)
        for a in range(p):
            out[a, b] += work[a]


@njit(cache=True, nogil=True)
def _first_blocks_scalar(Z, flat_row, flat_ptr, L11, L21v, LY1, nx, summed, out):
    """:func:`_first_blocks` for a scalar first block (3-5x faster: no per-row solves)."""
    l1 = L11.shape[0]
    q_r = Z.shape[0] - nx
    rows, W = _level_buffers(flat_ptr, nx, 1)
    for j in range(l1):
        inv = 1.0 / L11[j, 0, 0]
        cnt = _level_rows(j, flat_row, flat_ptr, L21v, LY1, nx, q_r, rows, W)
        s = 1.0                          # (1 + l' S^{-1} l) / L11^2, l = the raw L21_j values
        for x in range(cnt):
            rx = rows[x]
            sx = 0.0
            for y in range(x):
                ry = rows[y]
                sx += (Z[rx, ry] if rx >= ry else Z[ry, rx]) * W[y, 0]
            s += W[x, 0] * (2.0 * sx + Z[rx, rx] * W[x, 0])
        out[0 if summed else j, 0, 0] += s * inv * inv


@njit(cache=True, nogil=True)
def _first_blocks_dense(LinvT, flat_row, flat_ptr, L11, L21v, LY1, nx, summed, out):
    """:func:`_first_blocks` from ``L22^{-T}``: ``G_j = L22^{-1} W_j``, then ``G_j' G_j``.

    Column ``R`` of ``L22^{-1}`` is row ``R`` of ``LinvT``, nonzero from ``R`` on.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    n = LinvT.shape[0]
    q_r = n - nx
    rows, W = _level_buffers(flat_ptr, nx, p1)
    G = np.zeros((p1, n))
    eye = np.empty(p1)
    for j in range(l1):
        L = L11[j]
        o = out[0] if summed else out[j]
        cnt = _level_rows(j, flat_row, flat_ptr, L21v, LY1, nx, q_r, rows, W)
        lo = n
        for a in range(cnt):
            R = rows[a]
            w = W[a]
            solve_lower_t(L, w)          # this row of W_j = L21_j L11_j^{-1}
            lo = min(lo, R)
            for c in range(p1):
                wc = w[c]
                for i in range(R, n):
                    G[c, i] += wc * LinvT[R, i]
        _add_own_inverse(L, eye, o)
        for a in range(p1):
            for b in range(p1):
                acc = 0.0
                for i in range(lo, n):
                    acc += G[a, i] * G[b, i]
                o[a, b] += acc
        for c in range(p1):
            for i in range(lo, n):
                G[c, i] = 0.0


@njit(cache=True, nogil=True)
def _rest_blocks(Z, dense, rest_perm, start, stop, p, summed, out):
    """Add the blocks of ``S^{-1}`` of one rest block's levels, by effect position.

    From the envelope inverse, or (``dense``) as dot products of rows of ``L^{-T}``.
    """
    n = Z.shape[0]
    for r0 in range(rest_perm.shape[0]):
        e0 = rest_perm[r0]
        if e0 < start or e0 >= stop or (e0 - start) % p != 0:
            continue
        level = 0 if summed else (e0 - start) // p
        for a in range(p):
            for b in range(p):
                ra, rb = r0 + a, r0 + b
                if dense:
                    acc = 0.0
                    for i in range(max(ra, rb), n):
                        acc += Z[ra, i] * Z[rb, i]
                    out[level, a, b] += acc
                else:
                    out[level, a, b] += Z[ra, rb] if ra >= rb else Z[rb, ra]
