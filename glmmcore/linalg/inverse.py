"""Blocks of the inverse of the blocked system, from its factor.

For a factor ``L`` of the random-effects system (optionally with the first
``nx`` columns of ``Y`` appended, the fixed effects of a linear mixed model),
the diagonal ``p x p`` block of ``(L L')^{-1}`` of every level is needed by the
conditional variances (``nx = 0``) and by the gradient of the profiled
deviance (``nx = p`` for REML); the Laplace gradient needs the coupled
entries too (:mod:`.selected`).  With ``S22 = (L22 L22')^{-1}`` (``L22`` the
factor of ``D``'s rows) and ``W_j = L21_j L11_j^{-1}`` the coupled rows of
first-block level ``j`` (rest rows where ``j`` co-occurs, and the ``nx``
``Y`` rows)::

    rest levels:        blocks of S22
    first-block level:  L11_j^{-T} L11_j^{-1} + W_j' P_j,  P_j = S22[R_j, R_j] W_j
    coupled entries:    S[R_j, j] = -P_j

``S22`` is needed only where rows couple, inside ``D``'s envelope: Takahashi's
recurrences give it there at the cost of a factorization when ``D`` was
factored in its envelope; LAPACK's ``dpotri`` when ``D`` was dense.  ``P_j``
reads ``S22`` at scattered columns of each coupled row, so ``S22`` is taken
in blocks of rows that stay in cache while every level's rows in the block
are done (:func:`coupled_products`, as :func:`.schur.update_rest_rows` does
for ``D``).  Measured against the former route for dense ``D`` (``dtrtri``,
then each level's ``||L22^{-1} W_j||^2`` from rows of ``L22^{-T}``, 330 MB
read per call at InstEval's size): see docs/design.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from .dense import (
    DPOTRI,
    FALSE,
    TRUE,
    inverse_lower_lapack,
    solve_lower_t,
    uses_lapack,
)
from .schur import ROW_BLOCK, rows_below

if TYPE_CHECKING:
    from .blocked import BlockedFactor


def schur_inverse(D: np.ndarray, first: np.ndarray, size: int,
                  symmetric: bool = True) -> np.ndarray:
    """``(L L')^{-1}`` of ``L = D[:size, :size]`` within ``L``'s envelope.

    In the lower triangle, and the upper too if ``symmetric``; ``first`` is
    the envelope (:func:`.dense.envelope`).  Entries outside it are 0, not
    the inverse's: rows coupled through a first-block level lie within it,
    except where an entry of ``D`` is an exact zero because every product
    forming it is (a fixed-effect column that is 0 on a level's rows), and
    there the entry read is multiplied by such a zero.  ``D`` is left
    unchanged (:func:`schur_inverse_into`).
    """
    S = np.empty((size, size))
    if not schur_inverse_into(D, first, size, symmetric, DPOTRI, S):
        raise FloatingPointError("dpotri failed: the factor is singular")
    return S


@njit(cache=True, nogil=True)
def schur_inverse_into(D, first, size, symmetric, potri, S):
    """:func:`schur_inverse` into ``S`` (``size x size``); False if ``dpotri`` fails.

    The route follows the factorization's rule (:func:`.dense.uses_lapack`),
    applied to the ``size`` rows inverted (either route works from either
    factor: LAPACK's factor has exact zeros before the envelope): Takahashi's
    recurrences within the envelope, or LAPACK's ``dpotri`` on a copy of the
    factor's lower triangle (``potri`` = :data:`.dense.DPOTRI`, called from
    here: through scipy's Python wrapper it cost 20-40 us more on small ``D``).
    """
    env = first[:size]
    if uses_lapack(env):
        for i in range(size):
            for j in range(i + 1):
                S[i, j] = D[i, j]
            for j in range(i + 1, size):
                S[i, j] = 0.0
        if not inverse_lower_lapack(potri, S):
            return False
    else:
        S[:size, :size] = 0.0
        _takahashi_envelope(D[:size, :size], env, S)
    if symmetric:
        _symmetrize_envelope(S, env)
    return True


@njit(cache=True, nogil=True, inline="always")
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
    col_ptr, col_row = _envelope_columns(first)
    for i in range(n - 1, -1, -1):
        cnt = 0
        for e in range(col_ptr[i], col_ptr[i + 1]):
            k = col_row[e]
            if L[k, i] != 0.0:
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


@njit(cache=True, nogil=True, inline="always")
def _envelope_columns(first):
    """The envelope by columns: column ``i``'s rows ``k > i`` (ascending) are
    ``col_row[col_ptr[i]:col_ptr[i + 1]]``, those whose envelope starts at or before
    ``i``.  Found by scanning every row below each column, they cost Takahashi's
    recurrences ``n^2 / 2`` tests (``socio_m4``, 175 rows, 708 in the envelope: the
    inverse 23 -> 15 us)."""
    n = first.shape[0]
    col_ptr = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        for i in range(first[k], k):
            col_ptr[i + 1] += 1
    for i in range(n):
        col_ptr[i + 1] += col_ptr[i]
    fill = col_ptr[:n].copy()
    col_row = np.empty(col_ptr[n], dtype=np.int64)
    for k in range(n):
        for i in range(first[k], k):
            col_row[fill[i]] = k
            fill[i] += 1
    return col_ptr, col_row


@njit(cache=True, nogil=True)
def _symmetrize_envelope(S, first):
    """Copy the lower triangle to the upper within the envelope, in tiles of 64."""
    n = S.shape[0]
    for i0 in range(0, n, 64):
        for j0 in range(0, i0 + 1, 64):
            for i in range(i0, min(i0 + 64, n)):
                for j in range(max(j0, first[i]), min(j0 + 64, i)):
                    S[j, i] = S[i, j]


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
    args = factor.diag_blocks_args(nx, summed)
    if not diag_blocks_into(*args):
        raise FloatingPointError("dpotri failed: the factor is singular")
    out, ooff = args[-2], args[-1]
    return [out[ooff[b]:ooff[b + 1]].reshape(1 if summed else levels, k, k)
            for b, (levels, k) in enumerate(factor.block_shapes())]


@njit(cache=True, nogil=True)
def diag_blocks_into(D, first, nx, potri, L11, L21v, LY1, flat_ptr, rest_p, rest_off,
                     rest_perm, rows, ptr, W, P, S, summed, out, ooff):
    """Each block's diagonal blocks of ``(L L')^{-1}``, per level or (``summed``) summed.

    Block ``b``'s ``(levels or 1) x k x k`` blocks go to ``out[ooff[b]:ooff[b + 1]]``
    (the first block, then the rest blocks).  ``rows, ptr`` are :func:`coupled_rows`
    for ``nx``; ``W, P`` (one ``p1``-row per coupled row) and ``S`` (``q_r + nx``
    square) are workspace.  One compiled call: the gradient of a small LMM makes
    it at every evaluation.  False if ``dpotri`` fails.
    """
    q_r = D.shape[0] - LY1.shape[1]
    if not schur_inverse_into(D, first, q_r + nx, FALSE, potri, S):
        return False
    solved_couplings(flat_ptr, L21v, LY1, L11, nx, ptr, W)
    coupled_products(S, rows, ptr, W, np.int64(ROW_BLOCK), TRUE, P)
    out[:] = 0.0
    l1, p1 = L11.shape[0], L11.shape[1]
    first_diag_blocks(L11, ptr, W, P, TRUE, summed,
                      out[ooff[0]:ooff[1]].reshape((1 if summed else l1, p1, p1)))
    nr = rest_p.shape[0]
    for k in range(nr):
        pk = rest_p[k]
        stop = rest_off[k + 1] if k + 1 < nr else q_r
        levels = 1 if summed else (stop - rest_off[k]) // pk
        _rest_blocks(S, rest_perm, rest_off[k], stop, pk, summed,
                     out[ooff[k + 1]:ooff[k + 2]].reshape((levels, pk, pk)))
    return True


def first_block_products(factor: BlockedFactor, nx: int,
                         half: bool = False) -> tuple[np.ndarray, ...]:
    """``(S22, ptr, W, P)`` of the module doc, with ``nx`` ``Y`` rows in ``D``.

    ``half``: ``P`` from the lower triangle only (:func:`coupled_products`),
    enough for the diagonal blocks.

    Level ``j``'s coupled rows are ``ptr[j]:ptr[j + 1]`` of ``W`` and ``P``
    (one ``p1``-row each; rest rows ascending, then the ``Y`` rows).
    """
    s = factor.s
    S = schur_inverse(factor.D, factor.first, s.q_r + nx, symmetric=not half)
    rows, ptr = factor.coupled_rows(nx)
    W = np.empty((rows.shape[0], s.p1))
    solved_couplings(s.flat_ptr, factor.L21v, factor.LY1, factor.L11, nx, ptr, W)
    P = np.empty_like(W)
    coupled_products(S, rows, ptr, W, ROW_BLOCK, half, P)
    return S, ptr, W, P


def coupled_rows(flat_row: np.ndarray, flat_ptr: np.ndarray, nx: int,
                 q_r: int) -> tuple[np.ndarray, np.ndarray]:
    """Each first-block level's coupled rows of ``D``: ``rows[ptr[j]:ptr[j + 1]]``, its
    rest rows (ascending), then the ``nx`` ``Y`` rows."""
    counts = np.diff(flat_ptr) + nx
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = np.empty(int(ptr[-1]), dtype=np.int64)
    rest = np.ones(rows.shape[0], dtype=bool)
    for t in range(nx):
        rest[ptr[1:] - nx + t] = False
        rows[ptr[1:] - nx + t] = q_r + t
    rows[rest] = flat_row
    return rows, ptr


@njit(cache=True, nogil=True)
def solved_couplings(flat_ptr, L21v, LY1, L11, nx, ptr, W):
    """``W_j = L21_j L11_j^{-1}`` of every first-block level, one ``p1``-row per coupled
    row (:func:`coupled_rows`), into ``W``."""
    l1, p1 = L11.shape[0], L11.shape[1]
    for j in range(l1):
        o = ptr[j]
        for t in range(flat_ptr[j], flat_ptr[j + 1]):
            for c in range(p1):
                W[o, c] = L21v[t * p1 + c]
            o += 1
        for t in range(nx):
            for c in range(p1):
                W[o, c] = LY1[j, t, c]
            o += 1
        if p1 == 1:
            inv = 1.0 / L11[j, 0, 0]
            for x in range(ptr[j], o):
                W[x, 0] *= inv
        else:
            for x in range(ptr[j], o):
                solve_lower_t(L11[j], W[x])


@njit(cache=True, nogil=True)
def coupled_products(S, rows, ptr, W, block, half, P):
    """``P_j = S[R_j, R_j] W_j`` of every level ``j``, ``S`` symmetric where rows couple.

    With ``half``, only the lower triangle of ``S[R_j, R_j]`` is used, its
    diagonal halved, so that ``W_j' S[R_j, R_j] W_j = W_j' P_j + P_j' W_j`` at half
    the work (the diagonal blocks need no more).  ``S`` is taken ``block`` rows
    at a time; within a level the rows ascend, so its rows in the next block
    follow the previous block's (``cursor``).  Not ``fastmath``: vectorized
    gathers over a level's few rows were 1.5x slower (``socio_m4``).
    """
    l1, p1 = ptr.shape[0] - 1, W.shape[1]
    n = S.shape[0]
    cursor = ptr[:l1].copy()
    for top in range(0, n, block):
        bottom = min(top + block, n)
        for j in range(l1):
            lo, hi = ptr[j], ptr[j + 1]
            end = rows_below(rows, cursor[j], hi, bottom)
            for x in range(cursor[j], end):
                r = rows[x]
                stop = x if half else hi
                if p1 == 1:         # without the loop over columns: 1.3x faster
                    acc = 0.5 * S[r, r] * W[x, 0] if half else 0.0
                    for y in range(lo, stop):
                        acc += S[r, rows[y]] * W[y, 0]
                    P[x, 0] = acc
                else:
                    for c in range(p1):
                        acc = 0.5 * S[r, r] * W[x, c] if half else 0.0
                        for y in range(lo, stop):
                            acc += S[r, rows[y]] * W[y, c]
                        P[x, c] = acc
            cursor[j] = end


@njit(cache=True, nogil=True)
def first_diag_blocks(L11, ptr, W, P, half, summed, out):
    """Add ``L11_j^{-T} L11_j^{-1} + W_j' S[R_j, R_j] W_j`` of every first-block level ``j``.

    ``P`` from :func:`coupled_products` with the same ``half``.  Into
    ``out[j]``, or into ``out[0]`` when ``summed``.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    work = np.empty((p1, p1))
    for j in range(l1):
        o = out[0] if summed else out[j]
        if p1 == 1:
            inv = 1.0 / L11[j, 0, 0]
            acc = 0.0
            for x in range(ptr[j], ptr[j + 1]):
                acc += W[x, 0] * P[x, 0]
            o[0, 0] += inv * inv + (2.0 * acc if half else acc)
            continue
        _add_own_inverse(L11[j], work, o)
        for x in range(ptr[j], ptr[j + 1]):
            for a in range(p1):
                for b in range(p1):
                    v = W[x, a] * P[x, b]
                    if half:
                        v += P[x, a] * W[x, b]
                    o[a, b] += v


@njit(cache=True, nogil=True)
def _add_own_inverse(L, work, out):
    """Add ``(L L')^{-1} = L^{-T} L^{-1}`` of a small lower factor to ``out``.

    ``work`` (``p x p``) receives ``L^{-1}``; explicit loops, 4x faster than
    two triangular solves per column at ``p = 2``.
    """
    p = L.shape[0]
    for i in range(p):
        work[i, i] = 1.0 / L[i, i]
        for j in range(i):
            s = 0.0
            for k in range(j, i):
                s += L[i, k] * work[k, j]
            work[i, j] = -s * work[i, i]
    for a in range(p):
        for b in range(p):
            s = 0.0
            for c in range(max(a, b), p):
                s += work[c, a] * work[c, b]
            out[a, b] += s


@njit(cache=True, nogil=True, inline="always")
def _rest_blocks(S, rest_perm, start, stop, p, summed, out):
    """Add the blocks of ``S22`` (its lower triangle) of one rest block's levels."""
    for r0 in range(rest_perm.shape[0]):
        e0 = rest_perm[r0]
        if e0 < start or e0 >= stop or (e0 - start) % p != 0:
            continue
        level = 0 if summed else (e0 - start) // p
        for a in range(p):
            for b in range(p):
                ra, rb = r0 + a, r0 + b
                out[level, a, b] += S[ra, rb] if ra >= rb else S[rb, ra]
