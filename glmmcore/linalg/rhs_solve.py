"""Solve the blocked system ``L L' x = b`` for a right-hand side given as a vector.

The factorization in :mod:`glmmcore.linalg.blocked` carries its right-hand
sides as the ``Y`` columns of the system, so that :func:`~.blocked._solve`
only back-substitutes.  PIRLS's prediction of the next modes
(:mod:`glmmcore.objectives.pirls_kernel`) needs ``(Lambda' Z' W Z Lambda + I)^{-1} b`` (and,
when PIRLS estimates the fixed effects too, the inverse of the system of
``[Z Lambda, X]``) for a ``b`` formed after the factorization, with the factor
still in place: forward substitution through the first block's levels, their
coupling and ``D``'s rest and fixed-effect rows, then back again.  ``b`` and
``x`` are in the random effects' order; the rest rows of ``D`` are in the
factorization's order (``rest_perm``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .blocked import back_substitute_first
from .dense import solve_lower, solve_lower_envelope, solve_lower_t_envelope


@njit(cache=True, nogil=True)
def solve_rhs(nsolve, r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v, LY1, D,
              first, b, x):
    """``x = (L L')^{-1} b`` with the random effects and the first ``nsolve`` ``Y`` columns.

    The arguments from ``r1_ptr`` to ``first`` are
    :meth:`BlockedFactor.solve_args`.  ``b`` and ``x`` hold the random effects
    (length q) followed by ``nsolve`` entries for the first ``Y`` columns (the
    fixed effects when PIRLS estimates them: the system of ``[Z Lambda, X]``);
    ``b`` is left unchanged.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = D.shape[0] - LY1.shape[1]
    off1 = l1 * p1
    q = off1 + q_r
    rest = np.empty(q_r + nsolve)
    for i in range(q_r):
        rest[i] = b[off1 + rest_perm[i]]
    for t in range(nsolve):
        rest[q_r + t] = b[q + t]
    y1 = np.empty(off1)
    _forward_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve, b, y1,
                   rest)
    solve_lower_envelope(D, rest, first)
    solve_lower_t_envelope(D, rest, first)
    for i in range(q_r):
        x[off1 + rest_perm[i]] = rest[i]
    for t in range(nsolve):
        x[q + t] = rest[q_r + t]
    back_substitute_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve,
                          y1, rest, x)


@njit(cache=True, nogil=True, inline="always")
def _forward_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve, b, y1,
                   rest):
    """``y1_j = L11_j^{-1} b_j`` for every first-block level; ``rest -= [L21_j; LY1_j] y1_j``.

    A scalar first block takes :func:`_forward_first_scalar` (a loop without
    per-level arrays, as :func:`.blocked.back_substitute_first`: solve_rhs 137 -> 88 us
    on ``patents_pois_olre``'s 4,809 levels).
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = rest.shape[0] - nsolve
    if p1 == 1:
        _forward_first_scalar(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1,
                              nsolve, b, y1, rest)
        return
    part = np.empty(p1)
    for j in range(l1):
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
        for t in range(nsolve):
            s = 0.0
            for c in range(p1):
                s += LY1[j, t, c] * part[c]
            rest[q_r + t] -= s


@njit(cache=True, nogil=True)
def _forward_first_scalar(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve, b,
                          y1, rest):
    """:func:`_forward_first` for a scalar first block, without the per-level array."""
    q_r = rest.shape[0] - nsolve
    for j in range(L11.shape[0]):
        yj = b[j] / L11[j, 0, 0]
        y1[j] = yj
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                rest[r0 + a] -= L21v[vo + a] * yj
        for t in range(nsolve):
            rest[q_r + t] -= LY1[j, t, 0] * yj
