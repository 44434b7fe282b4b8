"""Entries of the inverse of the blocked system where observations couple random effects.

The Laplace gradient (:mod:`glmmcore.laplace_gradient`) needs, for every
observation ``i``, the block of ``S = (L L')^{-1}`` (the random effects' system
alone) on the random effects that ``i`` touches: its first-block level ``j``,
and one level of every other block.  These entries lie where the
cross-products have theirs, so they are stored in the same layouts:

- ``S11[j]``: the ``p1 x p1`` diagonal block of first-block level ``j``;
- ``S21v``: laid out as the coupling values ``L21v`` (pair ``t`` of a
  first-block level and a rest row holds ``p1`` values at ``t * p1``);
- ``S22v``: laid out as the rest pairs' values ``rrv`` (``rr_voff``).

With ``L = [L11 0; L21 L22]`` and ``W_j = L21_j L11_j^{-1}`` the coupled rows
of level ``j``: ``S[R_j, j] = -S22[R_j, R_j] W_j`` and
``S_jj = (L11_j L11_j')^{-1} - W_j' S[R_j, j]``; ``S22 = (L22 L22')^{-1}`` comes
from Takahashi's recurrences within ``D``'s envelope, which holds every rest
pair an observation couples, or from LAPACK's ``dpotri`` when ``D`` is dense.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit
from scipy.linalg import lapack

from .dense import FAST, solve_lower_t
from .inverse import (
    _add_own_inverse,
    _level_buffers,
    _level_rows,
    _takahashi_envelope,
    dense_route,
)
from .schur import ROW_BLOCK

if TYPE_CHECKING:
    from .blocked import BlockedFactor


def observation_inverse(factor: BlockedFactor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S11, S21v, S22v)`` of a factored :class:`~.blocked.BlockedFactor` (module doc)."""
    s = factor.s
    S22 = schur_inverse_full(factor.D, factor.first, s.q_r)
    S11 = np.zeros((s.l1, s.p1, s.p1))
    S21v = np.zeros(factor.L21v.shape[0])
    if s.p1 == 1:
        _symmetrize_lower(S22)
        _first_selected_scalar(S22, s.flat_row, s.flat_ptr, factor.L11, factor.L21v, S11, S21v,
                               ROW_BLOCK)
    else:
        _first_selected(S22, s.flat_row, s.flat_ptr, factor.L11, factor.L21v, factor.LY1, S11,
                        S21v)
    S22v = np.zeros(int(s.rr_voff[-1]))
    _rest_selected(S22, s.rr_row, s.rr_col, s.rr_rterm, s.rr_cterm, s.rest_p, s.rr_voff, S22v)
    return S11, S21v, S22v


def schur_inverse_full(D: np.ndarray, first: np.ndarray, size: int) -> np.ndarray:
    """``(L L')^{-1}`` of ``L = D[:size, :size]`` in the lower triangle, within ``L``'s envelope.

    Everywhere when ``L`` is dense (``dpotri`` on the transposed view: ``L``
    in C order is ``L'`` in Fortran order, so the result's upper triangle
    there is the lower one here); ``D`` is left unchanged.
    """
    sub = D[:size, :size]
    if dense_route(first[:size], size):
        inv, info = lapack.dpotri(sub.T, lower=0)
        if info != 0:
            raise FloatingPointError(f"dpotri failed (info={info})")
        return inv.T
    Z = np.zeros((size, size))
    _takahashi_envelope(sub, first[:size], Z)
    return Z


@njit(cache=True, nogil=True)
def _first_selected(S22, flat_row, flat_ptr, L11, L21v, LY1, S11, S21v):
    """``S_jj`` and ``S[R_j, j]`` of every first-block level ``j`` (module doc)."""
    l1, p1 = L11.shape[0], L11.shape[1]
    rows, W = _level_buffers(flat_ptr, 0, p1)
    work = np.empty(p1)
    acc = np.empty(p1)
    for j in range(l1):
        L = L11[j]
        cnt = _level_rows(j, flat_row, flat_ptr, L21v, LY1, 0, 0, rows, W)
        for a in range(cnt):
            solve_lower_t(L, W[a])
        _add_own_inverse(L, work, S11[j])
        base = flat_ptr[j] * p1
        for x in range(cnt):
            rx = rows[x]
            acc[:] = 0.0
            for y in range(cnt):
                ry = rows[y]
                z = S22[rx, ry] if rx >= ry else S22[ry, rx]
                for c in range(p1):
                    acc[c] -= z * W[y, c]
            for c in range(p1):
                S21v[base + x * p1 + c] = acc[c]
            for a in range(p1):
                for b in range(p1):
                    S11[j, a, b] -= W[x, a] * acc[b]


@njit(cache=True, nogil=True)
def _symmetrize_lower(S):
    """Copy the lower triangle to the upper, in blocks (rows of S then read contiguously)."""
    n = S.shape[0]
    for i0 in range(0, n, 64):
        for j0 in range(0, i0 + 1, 64):
            for i in range(i0, min(i0 + 64, n)):
                for j in range(j0, min(j0 + 64, i)):
                    S[j, i] = S[i, j]


@njit(cache=True, nogil=True, fastmath=FAST)
def _first_selected_scalar(S22, flat_row, flat_ptr, L11, L21v, S11, S21v, block):
    """:func:`_first_selected` for a scalar first block, ``S22`` symmetric.

    ``S[R_j, j]`` reads rows of ``S22`` at the levels' coupled columns: scattered
    reads, so ``S22`` is taken in blocks of ``block`` rows that stay in
    cache while every level's rows in the block are done (as
    :func:`.schur.update_rest_rows` does for ``D``): at 2,000 rest rows and
    50,000 levels 570 ms row by row of the levels, ~120 ms in blocks.
    """
    l1 = L11.shape[0]
    q_r = S22.shape[0]
    cursor = flat_ptr[:l1].copy()
    for top in range(0, q_r, block):
        bottom = min(top + block, q_r)
        for j in range(l1):
            lo, hi = flat_ptr[j], flat_ptr[j + 1]
            x = cursor[j]
            while x < hi and flat_row[x] < bottom:
                row = flat_row[x]
                acc = 0.0
                for y in range(lo, hi):
                    acc -= S22[row, flat_row[y]] * L21v[y]
                S21v[x] = acc / L11[j, 0, 0]
                x += 1
            cursor[j] = x
    for j in range(l1):
        inv = 1.0 / L11[j, 0, 0]
        s_jj = inv * inv
        for x in range(flat_ptr[j], flat_ptr[j + 1]):
            s_jj -= L21v[x] * inv * S21v[x]
        S11[j, 0, 0] = s_jj


@njit(cache=True, nogil=True)
def _rest_selected(S22, rr_row, rr_col, rr_rterm, rr_cterm, rest_p, rr_voff, S22v):
    """``S22`` at every co-occurring pair of rest levels, in ``rrv``'s layout."""
    for t in range(rr_row.shape[0]):
        pa, pb = rest_p[rr_rterm[t]], rest_p[rr_cterm[t]]
        vo = rr_voff[t]
        for a in range(pa):
            ra = rr_row[t] + a
            for b in range(pb):
                rb = rr_col[t] + b
                S22v[vo + a * pb + b] = S22[ra, rb] if ra >= rb else S22[rb, ra]
