"""The Schur complement of the first block in the blocked factorization.

After the first block's levels are factored (``L11``) and their coupling rows
``C_j = L21_j`` computed, the rest rows and ``Y`` form one dense matrix
``D = A_rest - sum_j C_j C_j'`` (lower triangle), which
:mod:`glmmcore.linalg.blocked` then factors.  :func:`schur_init` writes
``A_rest`` at theta, :func:`schur_update` subtracts the levels' products.

The products scatter over D, so the order of the sums decides the speed once D
outgrows the cache.  :func:`schur_update` takes D in blocks of
``ROW_BLOCK`` rows (about 1-2 MB at the sizes that matter) and, per block, the
levels in order, each level's values read where they lie.  Measured against
level by level (all of D at once) and row by row of D: 1.8 / 2.3 / 5.7 ms at
D = 201 (100,000 crossed binomial rows), 8-9 / 19 / 9-15 ms at InstEval's
1,145, 62 / 343 / 440 ms at 2,005 (1,000,000 rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dense import FAST

ROW_BLOCK = 128


@njit(cache=True, nogil=True, inline="always")
def schur_init(tbuf, toff, rest_p, row_term, row_start, rr_row, rr_col, rr_rterm, rr_cterm,
                rr_voff, rrv, ArY, AYY, D, first_min):
    """Lower triangle of [Lambda_r' A_rr Lambda_r + I, .; Y'W Z_r Lambda_r, Y'WY].

    A rest row's entries left of ``first_min`` (its structural envelope) are
    not written: zero when ``D`` was made, they stay zero, as no update and
    neither Cholesky route writes a nonzero there (``socio_m4``: 11.2 -> 10.1 us).
    """
    q_r = ArY.shape[0]
    m = AYY.shape[0]
    for r in range(q_r):
        for c in range(first_min[r], r):
            D[r, c] = 0.0
        D[r, r] = 1.0
    for e in range(rr_row.shape[0]):   # T_r' V T_c of each co-occurring pair of levels
        pr, pc = rest_p[rr_rterm[e]], rest_p[rr_cterm[e]]
        tr, tc = toff[rr_rterm[e] + 1], toff[rr_cterm[e] + 1]
        r0, c0, vo = rr_row[e], rr_col[e], rr_voff[e]
        for a in range(pr):
            for b in range(pc):
                # a level's own block: its lower triangle; rows of two levels: wherever the
                # ordering put them, into the lower triangle
                if r0 == c0 and a < b:
                    continue
                s = 0.0
                for x in range(pr):
                    txa = tbuf[tr + x * pr + a]
                    if txa != 0.0:
                        for y in range(pc):
                            s += txa * rrv[vo + x * pc + y] * tbuf[tc + y * pc + b]
                if r0 + a >= c0 + b:
                    D[r0 + a, c0 + b] += s
                else:
                    D[c0 + b, r0 + a] += s
    for c in range(q_r):               # T_k[e, cc] of column c's block is tbuf[t0 + e * pk]
        pk = rest_p[row_term[c]]
        s0 = row_start[c]
        t0 = toff[row_term[c] + 1] + c - s0
        for t in range(m):
            s = 0.0
            for e in range(pk):
                s += ArY[s0 + e, t] * tbuf[t0 + e * pk]
            D[q_r + t, c] = s
    for t in range(m):
        for u in range(t + 1):
            D[q_r + t, q_r + u] = AYY[t, u]


@njit(cache=True, nogil=True, inline="always")
def schur_update(flat_row, flat_ptr, L21v, LY1, D):
    """Subtract each first-block level's coupling rows: ``D -= sum_j C_j C_j'``."""
    update_rest_rows(flat_row, flat_ptr, L21v, LY1.shape[2], D, D.shape[0] - LY1.shape[1],
                     ROW_BLOCK)
    _update_y_rows(flat_row, flat_ptr, L21v, LY1, D)


@njit(cache=True, nogil=True, fastmath=FAST)
def update_rest_rows(flat_row, flat_ptr, L21v, p1, D, q_r, block):
    """:func:`schur_update` for the rest rows, ``block`` rows of D at a time.

    Within a level the rest rows ascend, so each level's entries in a block of
    rows are the next ones after the previous block's (``cursor``), and the
    entries ``b <= a`` stay in the lower triangle.
    """
    l1 = flat_ptr.shape[0] - 1
    cursor = flat_ptr[:l1].copy()
    for top in range(0, q_r, block):
        bottom = min(top + block, q_r)
        for j in range(l1):
            lo, end = flat_ptr[j], rows_below(flat_row, cursor[j], flat_ptr[j + 1], bottom)
            for a in range(cursor[j], end):
                row = D[flat_row[a]]
                if p1 == 1:
                    va = L21v[a]
                    for b in range(lo, a + 1):
                        row[flat_row[b]] -= va * L21v[b]
                else:
                    for b in range(lo, a + 1):
                        s = 0.0
                        for c in range(p1):
                            s += L21v[a * p1 + c] * L21v[b * p1 + c]
                        row[flat_row[b]] -= s
            cursor[j] = end


@njit(cache=True, nogil=True, inline="always")
def rows_below(rows, start, stop, bottom):
    """End of the run of ``rows[start:stop]`` (ascending) that lies below ``bottom``: a
    level's rows in the current block of rows, taken in blocks (``cursor`` = ``start``)."""
    end = start
    while end < stop and rows[end] < bottom:
        end += 1
    return end


@njit(cache=True, nogil=True, fastmath=FAST)
def _update_y_rows(flat_row, flat_ptr, L21v, LY1, D):
    """:func:`schur_update` for the ``Y`` rows of D.

    The products with the rest rows are summed into a ``q_r x m`` buffer, one
    contiguous row of ``m`` per coupled pair (a vector operation, where D's
    ``Y`` rows would take ``m`` scattered updates), then subtracted from D;
    the ``Y`` block's ``sum_j LY1_j LY1_j'`` is summed whole (``m x m``, a
    vector operation per level) and subtracted once.  Per level, loops over a
    triangle of a few entries cost more than their work: ``patents_pois_olre``
    (4,809 levels, ``m = 4``) 184 -> 129 us, A/B in one process.
    """
    l1, m, p1 = LY1.shape
    q_r = D.shape[0] - m
    acc = np.zeros((q_r, m))
    G = np.zeros((m, m))
    for j in range(l1):
        for t in range(flat_ptr[j], flat_ptr[j + 1]):
            r = flat_row[t]
            for c in range(p1):
                v = L21v[t * p1 + c]
                for t_y in range(m):
                    acc[r, t_y] += LY1[j, t_y, c] * v
        for c in range(p1):
            for t_y in range(m):
                a = LY1[j, t_y, c]
                for u in range(m):
                    G[t_y, u] += a * LY1[j, u, c]
    subtract_y_sums(acc, G, D)


@njit(cache=True, nogil=True, inline="always")
def subtract_y_sums(acc, G, D):
    """Subtract the levels' summed products from D's ``Y`` rows: ``acc`` (``q_r x m``)
    from their rest columns, the lower triangle of ``G`` (``m x m``) from their ``Y`` block."""
    q_r, m = acc.shape
    for t in range(m):
        for r in range(q_r):
            D[q_r + t, r] -= acc[r, t]
        for u in range(t + 1):
            D[q_r + t, q_r + u] -= G[t, u]
