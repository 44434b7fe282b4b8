"""Blocked Cholesky factor of the penalized system (MixedModels.jl's layout).

The system factored, with ``W`` the weights and ``Y`` dense columns appended
(``[X y]`` for a linear mixed model, the working response for PIRLS)::

    [ Lambda' Z' W Z Lambda + I    Lambda' Z' W Y ]
    [ Y' W Z Lambda                Y' W Y         ]

Rows come in three groups: the random effects of the first block (the
grouping factor with most levels), those of the other blocks ("rest"), and
the ``m`` columns of ``Y``.  The first group's diagonal part is block
diagonal (one ``p1 x p1`` block per level), so it factors in O(levels); its
coupling to the rest is sparse (only co-occurring levels); the rest and
``Y`` form one dense Schur complement ``D``, factored by LAPACK or, when its
envelope is small, within it (:func:`.dense.chol_lower`).

The weighted cross-products (:mod:`.crossprod`) do not depend on theta;
:meth:`BlockedFactor.crossprod` makes them once per weight vector, and
:meth:`BlockedFactor.factor` applies ``Lambda(theta)`` to them at block level,
so an LMM's cost per theta does not grow with ``n``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .crossprod import _crossprod, all_scalar
from .dense import (
    DPOTRF,
    DPOTRI,
    ZERO,
    chol_envelope,
    chol_lower,
    solve_lower,
    solve_lower_t,
    solve_lower_t_envelope,
)
from .inverse import blocked_inverse_blocks, coupled_rows
from .scalar_first import factor_first_scalars, one_pass_applies
from .schur import schur_init, schur_update
from .structure import BlockedStructure, build_structure  # noqa: F401 (public here too)


class BlockedFactor:
    """Workspace and factor of the blocked system for one structure and ``m``.

    Call :meth:`crossprod` when the weights or ``Y`` change, :meth:`factor`
    for each theta, then read :attr:`logdet_re`, :attr:`D` or call
    :meth:`solve`.
    """

    def __init__(self, s: BlockedStructure, m: int) -> None:
        self.s, self.m = s, m
        l1, p1, q_r = s.l1, s.p1, s.q_r
        nv = int(s.r1_voff[-1])
        self.A11 = np.zeros((l1, p1, p1))
        self.r1v = np.zeros(nv)
        self.rrv = np.zeros(int(s.rr_voff[-1]))
        self.A1Y = np.zeros((l1, p1, m))
        self.ArY = np.zeros((q_r, m))
        self.AYY = np.zeros((m, m))
        self.L11 = np.zeros((l1, p1, p1))
        self.L21v = np.zeros(nv)
        self.LY1 = np.zeros((l1, m, p1))
        self.D = np.zeros((q_r + m, q_r + m))
        self.first = np.zeros(q_r + m, dtype=np.int64)   # D's envelope
        self.first_min = np.concatenate([s.d_first, np.zeros(m, dtype=np.int64)])
        self.tbuf = np.zeros(s.tidx.shape[0])
        self.logdet_re = np.nan
        self._factor_args = self.factor_args()
        self._coupled_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._workspace: dict[int, tuple] = {}       # the inverse blocks' (diag_blocks_args)
        self._offsets: dict[tuple[int, bool], np.ndarray] = {}
        self.kept: dict = {}     # callers' arrays made once per workspace (lmm_gradient)
        self._q_r = q_r

    def crossprod(self, w: np.ndarray, Y: np.ndarray) -> None:
        """Weighted cross-products of ``[Z, Y]`` (``Y`` is ``n x m``)."""
        _crossprod(*self.crossprod_args(), w, Y, *self.crossprod_work())

    def factor(self, theta: np.ndarray) -> bool:
        """Factor the system at ``theta``; False if not positive definite."""
        ok, logdet = _factor(theta, *self._factor_args)
        self.logdet_re = logdet
        return ok

    def factor_args(self) -> tuple:
        """Everything :func:`_factor` takes after theta (also PIRLS's compiled loop)."""
        s = self.s
        return (s.tidx, s.toff, s.rest_p, s.row_term, s.row_start, s.r1_ptr, s.r1_row,
                s.r1_term, s.r1_voff, s.rr_row, s.rr_col, s.rr_rterm, s.rr_cterm, s.rr_voff,
                s.flat_row, s.flat_ptr, *self.crossprod_work(), self.L11,
                self.L21v, self.LY1, self.D, self.first, self.first_min, self.tbuf, DPOTRF)

    def crossprod_work(self) -> tuple:
        """The cross-product arrays :func:`_crossprod` fills (A11, r1v, rrv, A1Y, ArY, AYY)."""
        return self.A11, self.r1v, self.rrv, self.A1Y, self.ArY, self.AYY

    def crossprod_args(self) -> tuple:
        """Everything :func:`_crossprod` takes besides w and Y, in its order."""
        s = self.s
        return (s.codes1, s.X1, s.rest_rows, s.Xr, s.rest_p, s.rest_xoff, s.obs_r1, s.r1_voff,
                s.obs_rr, s.rr_voff)

    def solve_args(self) -> tuple:
        """Everything :func:`_solve` takes besides nsolve, u and x."""
        s = self.s
        return (s.r1_ptr, s.r1_row, s.r1_term, s.r1_voff, s.rest_p, s.rest_perm, self.L11,
                self.L21v, self.LY1, self.D, self.first)

    def solve(self, nsolve: int) -> tuple[np.ndarray, np.ndarray]:
        """Back-substitute with ``Y``'s column ``nsolve`` as right-hand side.

        Returns the spherical random effects ``u`` (length q) and the
        coefficients ``x`` of the first ``nsolve`` columns of ``Y``.
        """
        u = np.empty(self.s.q)
        x = np.empty(nsolve)
        _solve(nsolve, *self.solve_args(), u, x)
        return u, x

    def y_diag(self, i: int) -> float:
        """Diagonal element ``i`` of the factor of the ``Y`` rows."""
        k = self._q_r + i
        return self.D[k, k]

    def inverse_diag_blocks(self, nx: int = 0, summed: bool = False) -> list[np.ndarray]:
        """Diagonal ``p x p`` blocks of ``(L L')^{-1}``, one array per block.

        With ``nx > 0`` the system includes the first ``nx`` columns of ``Y``;
        ``summed`` gives each block's sum over levels
        (:func:`.inverse.blocked_inverse_blocks`).
        """
        return blocked_inverse_blocks(self, nx, summed)

    def diag_blocks_args(self, nx: int, summed: bool) -> tuple:
        """The arguments of :func:`.inverse.diag_blocks_into` for ``nx``: the factor, its
        workspace (made once per ``nx``) and a new output with its block offsets."""
        s = self.s
        if nx not in self._workspace:
            rows, ptr = self.coupled_rows(nx)
            self._workspace[nx] = (rows, ptr, np.empty((rows.shape[0], s.p1)),
                                   np.empty((rows.shape[0], s.p1)),
                                   np.empty((s.q_r + nx, s.q_r + nx)))
        if (nx, summed) not in self._offsets:
            sizes = np.array([(1 if summed else levels) * k * k
                              for levels, k in self.block_shapes()], dtype=np.int64)
            self._offsets[nx, summed] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ooff = self._offsets[nx, summed]
        return (self.D, self.first, nx, DPOTRI, self.L11, self.L21v, self.LY1, s.flat_ptr,
                s.rest_p, s.rest_off, s.rest_perm, *self._workspace[nx], summed,
                np.empty(int(ooff[-1])), ooff)

    def block_shapes(self) -> list[tuple[int, int]]:
        """``(levels, columns)`` of each block: the first, then the rest blocks."""
        s = self.s
        ends = np.append(s.rest_off[1:], s.q_r)
        return [(s.l1, s.p1)] + [(int(e - o) // int(p), int(p))
                                 for o, e, p in zip(s.rest_off, ends, s.rest_p)]

    def coupled_rows(self, nx: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``D`` coupled to each first-block level, with ``nx`` ``Y`` rows
        (:func:`.inverse.coupled_rows`); made once per ``nx``."""
        if nx not in self._coupled_rows:
            s = self.s
            self._coupled_rows[nx] = coupled_rows(s.flat_row, s.flat_ptr, nx, s.q_r)
        return self._coupled_rows[nx]

    @property
    def y_lower(self) -> np.ndarray:
        """Lower factor of the ``Y`` rows (``m x m``)."""
        return self.D[self._q_r:, self._q_r:]


@njit(cache=True, nogil=True)
def _factor(theta, tidx, toff, rest_p, row_term, row_start, r1_ptr, r1_row, r1_term, r1_voff,
            rr_row, rr_col, rr_rterm, rr_cterm, rr_voff, flat_row, flat_ptr, A11, r1v, rrv, A1Y,
            ArY, AYY, L11, L21v, LY1, D, first, first_min, tbuf, potrf):
    """Factor the blocked system at theta; returns (positive definite, log|L|^2)."""
    for e in range(tidx.shape[0]):
        tbuf[e] = theta[tidx[e]] if tidx[e] >= 0 else 0.0
    l1, p1 = A11.shape[0], A11.shape[1]
    q_r = D.shape[0] - AYY.shape[0]
    schur_init(tbuf, toff, rest_p, row_term, row_start, rr_row, rr_col, rr_rterm, rr_cterm,
               rr_voff, rrv, ArY, AYY, D, first_min)
    if one_pass_applies(p1, rest_p, q_r):
        logdet = factor_first_scalars(tbuf, toff, r1_term, r1v, A11, A1Y, flat_row, flat_ptr,
                                      L11, L21v, LY1, D)
    else:
        T1 = tbuf[0:p1 * p1].reshape((p1, p1))
        if not _factor_first(T1, A11, L11):
            return False, np.inf
        logdet = 0.0
        for j in range(l1):
            for a in range(p1):
                logdet += 2.0 * np.log(L11[j, a, a])
        _coupling(T1, tbuf, toff, rest_p, r1_ptr, r1_term, r1_voff, r1v, A1Y, L11, L21v, LY1)
        schur_update(flat_row, flat_ptr, L21v, LY1, D)
    if not chol_lower(potrf, D, first, first_min, AYY.shape[0]):
        return False, np.inf
    for i in range(q_r):
        logdet += 2.0 * np.log(D[i, i])
    return True, logdet


@njit(cache=True, nogil=True, inline="always")
def _factor_first(T1, A11, L11):
    l1, p1 = A11.shape[0], A11.shape[1]
    if p1 == 1:
        t2 = T1[0, 0] * T1[0, 0]
        for j in range(l1):
            L11[j, 0, 0] = np.sqrt(t2 * A11[j, 0, 0] + 1.0)
        return True
    tmp = np.empty((p1, p1))
    dense = np.zeros(p1, dtype=np.int64)     # each block factored whole, nothing allocated
    for j in range(l1):
        A = A11[j]
        for a in range(p1):
            for b in range(p1):
                s = 0.0
                for c in range(p1):
                    s += A[a, c] * T1[c, b]
                tmp[a, b] = s
        M = L11[j]
        for a in range(p1):
            for b in range(a + 1):
                s = 0.0
                for c in range(p1):
                    s += T1[c, a] * tmp[c, b]
                M[a, b] = s + (1.0 if a == b else 0.0)
            for b in range(a + 1, p1):
                M[a, b] = 0.0
        if not chol_envelope(M, dense, ZERO):
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _coupling(T1, tbuf, toff, rest_p, r1_ptr, r1_term, r1_voff, r1v, A1Y, L11, L21v, LY1):
    """Rows coupled to each first-block level: (Lambda' A) T1 L11^{-T}."""
    l1, p1 = L11.shape[0], L11.shape[1]
    m = A1Y.shape[2]
    if p1 == 1 and all_scalar(rest_p):
        _coupling_scalars(tbuf, toff, r1_ptr, r1_term, r1v, A1Y, L11, L21v, LY1)
        return
    row = np.empty(p1)
    for j in range(l1):
        L = L11[j]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            k = r1_term[blk]
            pk = rest_p[k]
            t0 = toff[k + 1]
            vo = r1_voff[blk]
            for a in range(pk):
                for b in range(p1):
                    s = 0.0
                    for c in range(pk):
                        tca = tbuf[t0 + c * pk + a]
                        if tca != 0.0:
                            for d in range(p1):
                                s += tca * r1v[vo + c * p1 + d] * T1[d, b]
                    row[b] = s
                solve_lower(L, row)
                for b in range(p1):
                    L21v[vo + a * p1 + b] = row[b]
        for t in range(m):
            for b in range(p1):
                s = 0.0
                for d in range(p1):
                    s += A1Y[j, d, t] * T1[d, b]
                row[b] = s
            solve_lower(L, row)
            for b in range(p1):
                LY1[j, t, b] = row[b]


@njit(cache=True, nogil=True)
def _coupling_scalars(tbuf, toff, r1_ptr, r1_term, r1v, A1Y, L11, L21v, LY1):
    """:func:`_coupling` for scalar terms: each value scaled by ``t_k t_1 / L11_j``."""
    m = A1Y.shape[2]
    for j in range(L11.shape[0]):
        scale = tbuf[0] / L11[j, 0, 0]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            L21v[blk] = tbuf[toff[r1_term[blk] + 1]] * r1v[blk] * scale
        for t in range(m):
            LY1[j, t, 0] = A1Y[j, 0, t] * scale


@njit(cache=True, nogil=True)
def _solve(nsolve, r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v, LY1, D,
           first, u, x):
    l1, p1 = L11.shape[0], L11.shape[1]
    m = LY1.shape[1]
    q_r = D.shape[0] - m
    dsz = q_r + nsolve
    rhs_row = q_r + nsolve
    xd = np.empty(dsz)
    for i in range(dsz):
        xd[i] = D[rhs_row, i]
    if dsz > 0:
        solve_lower_t_envelope(D, xd, first)
    for i in range(nsolve):
        x[i] = xd[q_r + i]
    off1 = l1 * p1
    for i in range(q_r):
        u[off1 + rest_perm[i]] = xd[i]
    y1 = np.empty(off1)                    # the first block's part of L^{-1} rhs
    for j in range(l1):
        for c in range(p1):
            y1[j * p1 + c] = LY1[j, nsolve, c]
    back_substitute_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve,
                          y1, xd, u)


@njit(cache=True, nogil=True)
def back_substitute_first(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, LY1, nsolve, y1,
                          rest, u):
    """``u_j = L11_j^{-T} (y1_j - L21_j' rest_r - LY1_j' rest_y)`` for every first-block level.

    ``rest`` holds the solution of the rest rows in the factorization's order,
    followed by that of the first ``nsolve`` ``Y`` columns (``rest_y``).  A
    scalar first block takes a loop without per-level arrays (6x faster at
    5,000 levels).  Used by :func:`_solve` and :func:`.rhs_solve.solve_rhs`.
    """
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = rest.shape[0] - nsolve
    if p1 == 1:
        for j in range(l1):
            s = y1[j]
            for blk in range(r1_ptr[j], r1_ptr[j + 1]):
                vo, r0 = r1_voff[blk], r1_row[blk]
                for a in range(rest_p[r1_term[blk]]):
                    s -= L21v[vo + a] * rest[r0 + a]
            for t in range(nsolve):
                s -= LY1[j, t, 0] * rest[q_r + t]
            u[j] = s / L11[j, 0, 0]
        return
    part = np.empty(p1)
    for j in range(l1):
        for c in range(p1):
            part[c] = y1[j * p1 + c]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                xa = rest[r0 + a]
                for c in range(p1):
                    part[c] -= L21v[vo + a * p1 + c] * xa
        for t in range(nsolve):
            for c in range(p1):
                part[c] -= LY1[j, t, c] * rest[q_r + t]
        solve_lower_t(L11[j], part)
        for c in range(p1):
            u[j * p1 + c] = part[c]
