"""Solve the blocked system ``L L' x = b`` for a right-hand side given as a vector.

The factorization in :mod:`glmmcore.linalg.blocked` carries its right-hand
sides as the ``Y`` columns of the system, so that :func:`~.blocked._solve`
only back-substitutes.  PIRLS's prediction of the next modes
(:mod:`glmmcore.pirls_kernel`) needs ``(Lambda' Z' W Z Lambda + I)^{-1} b`` for a
``b`` formed after the factorization, with the factor still in place: forward
substitution through the first block's levels, their coupling and ``D``'s rest
rows, then back again.  ``b`` and ``x`` are in the random effects' order; the
rest rows of ``D`` are in the factorization's order (``rest_perm``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dense import solve_lower, solve_lower_t, solve_lower_t_envelope


@njit(cache=True, nogil=True)
def solve_rhs(r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v, LY1, D, first,
              b, x):
    """``x = (L L')^{-1} b`` with the random-effects part of the blocked factor.

    The arguments before ``b`` are :meth:`BlockedFactor.solve_args`; ``b`` is
    left unchanged.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = D.shape[0] - LY1.shape[1]
    off1 = l1 * p1
    rest = np.empty(q_r)
    for i in range(q_r):
        rest[i] = b[off1 + rest_perm[i]]
    if p1 == 1:
        _solve_scalar_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v,
                            D, first, b, rest, x)
        return
    y1 = np.empty(off1)
    part = np.empty(p1)
    for j in range(l1):                    # y1_j = L11_j^{-1} b_j; rest -= L21_j y1_j
        for c in range(p1):
            part[c] = b[j * p1 + c]
        solve_lower(L11[j], part)
        for c in range(p1):
            y1[j * p1 + c] = part[c]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                s = 0.0
                for c in range(p1):
                    s += L21v[vo + a * p1 + c] * part[c]
                rest[r0 + a] -= s
    _forward_envelope(D, rest, first)
    solve_lower_t_envelope(D, rest, first)
    for i in range(q_r):
        x[off1 + rest_perm[i]] = rest[i]
    for j in range(l1):                    # x1_j = L11_j^{-T} (y1_j - L21_j' x_rest)
        for c in range(p1):
            part[c] = y1[j * p1 + c]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                xa = rest[r0 + a]
                for c in range(p1):
                    part[c] -= L21v[vo + a * p1 + c] * xa
        solve_lower_t(L11[j], part)
        for c in range(p1):
            x[j * p1 + c] = part[c]


@njit(cache=True, nogil=True)
def _solve_scalar_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v, D,
                        first, b, rest, x):
    """:func:`solve_rhs` for a scalar first block, without per-level arrays (as ``_solve``)."""
    l1 = L11.shape[0]
    y1 = np.empty(l1)
    for j in range(l1):
        yj = b[j] / L11[j, 0, 0]
        y1[j] = yj
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                rest[r0 + a] -= L21v[vo + a] * yj
    _forward_envelope(D, rest, first)
    solve_lower_t_envelope(D, rest, first)
    for i in range(rest.shape[0]):
        x[l1 + rest_perm[i]] = rest[i]
    for j in range(l1):
        s = y1[j]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                s -= L21v[vo + a] * rest[r0 + a]
        x[j] = s / L11[j, 0, 0]


@njit(cache=True, nogil=True)
def _forward_envelope(L, v, first):
    """Solve ``L y = v`` in place for the leading ``len(v)`` rows, within the envelope."""
    for i in range(v.shape[0]):
        s = v[i]
        for k in range(first[i], i):
            s -= L[i, k] * v[k]
        v[i] = s / L[i, i]
