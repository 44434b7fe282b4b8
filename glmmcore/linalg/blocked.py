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

from dataclasses import dataclass

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
from .keys import unique_inverse
from .ordering import rest_positions
from .scalar_first import factor_first_scalars, one_pass_applies
from .schur import schur_init, schur_update

ORDER_MIN_REST = 64   # below this many rest rows, ordering them cannot save much


@dataclass
class BlockedStructure:
    """Response-independent layout of the blocked system (see module doc).

    Built once per model from the grouping factors and reused for every
    weight vector, theta and response.
    """

    codes1: np.ndarray       # (n,) level of the first block
    X1: np.ndarray           # (n, p1) columns of the first block
    rest_rows: np.ndarray    # (n, nr) first row in D of each observation's level per block
    Xr: np.ndarray           # (n, sum p) columns of the other blocks
    rest_p: np.ndarray       # (nr,) columns per block
    rest_xoff: np.ndarray    # (nr,) first column of each block in Xr
    rest_off: np.ndarray     # (nr,) first row of each block among the rest rows
    row_term: np.ndarray     # (q_r,) block of each rest row
    row_start: np.ndarray    # (q_r,) first row of the row's level
    r1_ptr: np.ndarray       # (l1+1,) coupling blocks of each first-block level
    r1_row: np.ndarray       # (nb,) first rest row of each coupling block
    r1_term: np.ndarray      # (nb,) rest block of each coupling block
    r1_voff: np.ndarray      # (nb+1,) offsets of coupling values
    obs_r1: np.ndarray       # (n, nr) coupling block of each observation
    rr_row: np.ndarray       # (npair,) first rest row of the row level of each rest pair
    rr_col: np.ndarray       # (npair,) first rest row of the column level
    rr_rterm: np.ndarray     # (npair,) block of the row level
    rr_cterm: np.ndarray     # (npair,) block of the column level
    rr_voff: np.ndarray      # (npair+1,) offsets of the pair values
    obs_rr: np.ndarray       # (n, nr(nr+1)/2) rest pair of each observation
    tidx: np.ndarray         # theta index of each element of every T, -1 = 0
    toff: np.ndarray         # (K+1,) offsets of the Ts in tidx
    flat_row: np.ndarray     # rest row of each coupled (level, row) pair, level-major
    flat_ptr: np.ndarray     # (l1+1,) each first-block level's pairs in flat_row
    rest_perm: np.ndarray    # (q_r,) rest random effect (terms' level order) of each row
    d_first: np.ndarray      # (q_r,) first column of each row of D that can be nonzero

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.codes1.shape[0]

    @property
    def p1(self) -> int:
        """Columns of the first block."""
        return self.X1.shape[1]

    @property
    def l1(self) -> int:
        """Levels of the first block."""
        return self.r1_ptr.shape[0] - 1

    @property
    def q_r(self) -> int:
        """Random effects outside the first block."""
        return self.row_term.shape[0]

    @property
    def q(self) -> int:
        """All random effects."""
        return self.l1 * self.p1 + self.q_r


def build_structure(blocks: list) -> BlockedStructure:
    """Lay out the blocked system for random-effects blocks (largest first)."""
    first, rest = blocks[0], blocks[1:]
    n = first.X.shape[0]
    l1 = first.nlevels
    rest_p = np.array([b.p for b in rest], dtype=np.int64)
    rest_q = np.array([b.q for b in rest], dtype=np.int64)
    rest_off = np.concatenate([[0], np.cumsum(rest_q)[:-1]]).astype(np.int64) if rest else \
        np.zeros(0, dtype=np.int64)
    q_r = int(rest_q.sum())
    rest_codes = (np.column_stack([b.factor.codes for b in rest]).astype(np.int64) if rest
                  else np.zeros((n, 0), dtype=np.int64))
    codes1 = np.ascontiguousarray(first.factor.codes, dtype=np.int64)
    rest_rows, row_term, row_start, rest_perm = _rest_rows(codes1, rest_codes, rest, rest_p,
                                                           rest_off, q_r)
    Xr = np.ascontiguousarray(np.column_stack([b.X for b in rest])) if rest else np.zeros((n, 0))
    rest_xoff = np.concatenate([[0], np.cumsum(rest_p)[:-1]]).astype(np.int64) if rest else \
        np.zeros(0, dtype=np.int64)
    if rest:
        key = codes1[:, None] * max(q_r, 1) + rest_rows
        uniq, inverse = unique_inverse(key, l1 * max(q_r, 1))
        blk_level = uniq // q_r
        r1_row = uniq % q_r
        r1_term = row_term[r1_row]
        r1_ptr = np.searchsorted(blk_level, np.arange(l1 + 1)).astype(np.int64)
        sizes = rest_p[r1_term] * first.p
        r1_voff = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        obs_r1 = inverse.reshape(n, len(rest))
    else:
        r1_row = r1_term = np.zeros(0, dtype=np.int64)
        r1_ptr = np.zeros(l1 + 1, dtype=np.int64)
        r1_voff = np.zeros(1, dtype=np.int64)
        obs_r1 = np.zeros((n, 0), dtype=np.int64)
    flat = _flat_pairs(r1_ptr, r1_row, rest_p[r1_term] if rest else r1_row)
    rr = _rest_pairs(rest_rows, rest_p, row_term, q_r)
    tparts = [b.theta_index.ravel() for b in blocks]
    toff = np.concatenate([[0], np.cumsum([t.size for t in tparts])]).astype(np.int64)
    return BlockedStructure(
        codes1=codes1, X1=np.ascontiguousarray(first.X), rest_rows=rest_rows, Xr=Xr,
        rest_p=rest_p, rest_xoff=rest_xoff, rest_off=rest_off, row_term=row_term,
        row_start=row_start, r1_ptr=r1_ptr, r1_row=r1_row, r1_term=r1_term, r1_voff=r1_voff,
        obs_r1=obs_r1, rr_row=rr[0], rr_col=rr[1], rr_rterm=rr[2], rr_cterm=rr[3],
        rr_voff=rr[4], obs_rr=rr[5], tidx=np.concatenate(tparts).astype(np.int64), toff=toff,
        flat_row=flat[0], flat_ptr=flat[1], rest_perm=rest_perm,
        d_first=_structural_envelope(row_start, rr, flat))


def _rest_rows(codes1, rest_codes, rest, rest_p, rest_off, q_r):
    """Where each rest level's rows lie in ``D`` (:mod:`.ordering`).

    A level's ``p`` rows are consecutive; the levels follow the ordering's
    positions, or the blocks in turn with each block's levels in order.
    Returns ``(rest_rows, row_term, row_start, rest_perm)``: the first row of
    each observation's level per block (``n x nr``); per row of ``D`` its
    block, its level's first row and the random effect (terms' order) it holds.
    """
    levels = np.array([b.nlevels for b in rest], dtype=np.int64)
    node_off = np.concatenate([[0], np.cumsum(levels)]).astype(np.int64)
    position = (rest_positions(codes1, rest_codes, levels) if q_r >= ORDER_MIN_REST
                else None)
    node_block = np.repeat(np.arange(len(rest), dtype=np.int64), levels)
    node_level = np.arange(int(node_off[-1]), dtype=np.int64) - node_off[node_block]
    at = np.arange(node_block.size) if position is None else np.argsort(position)
    widths = rest_p[node_block[at]]
    node_row = np.empty(node_block.size, dtype=np.int64)
    node_row[at] = np.cumsum(widths) - widths
    row_term = np.repeat(node_block[at], widths)
    row_start = np.repeat(node_row[at], widths)
    within = np.arange(q_r, dtype=np.int64) - row_start
    rest_perm = (rest_off[row_term] + np.repeat(node_level[at], widths) * rest_p[row_term]
                 + within)
    rest_rows = np.ascontiguousarray(node_row[rest_codes + node_off[None, :-1]],
                                     dtype=np.int64)
    return rest_rows, row_term, row_start.astype(np.int64), rest_perm.astype(np.int64)


def _structural_envelope(row_start, rr, flat):
    """First column of each rest row of ``D`` that can be nonzero at any theta.

    A row's entries left of its own level's block come from a rest level it
    co-occurs with (:func:`_rest_pairs`) or shares a first-block level with
    (:func:`_flat_pairs`); elsewhere :func:`.schur.schur_init` writes exact
    zeros.  The scan for the numerical envelope starts here
    (:func:`.dense.chol_lower`).
    """
    first = row_start.copy()     # own level's block; its rows share their couplings
    rr_row, rr_col = rr[0], rr[1]
    lo = np.minimum(rr_row, rr_col)
    np.minimum.at(first, rr_row, lo)
    np.minimum.at(first, rr_col, lo)
    flat_row, flat_ptr = flat
    counts = np.diff(flat_ptr)
    coupled = counts > 0
    np.minimum.at(first, flat_row, np.repeat(flat_row[flat_ptr[:-1][coupled]], counts[coupled]))
    return first[row_start]


def _flat_pairs(r1_ptr, r1_row, sizes):
    """The coupled (first-block level, rest row) pairs, level-major (rows ascending).

    Pair ``t`` of level ``j`` holds the ``p1`` coupling values at ``L21v[t*p1:]``
    (the blocks' values are stored level-major, row by row).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    flat_row = (np.repeat(r1_row, sizes) + within).astype(np.int64)
    per_block = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return flat_row, per_block[r1_ptr]


def _rest_pairs(rest_rows, rest_p, row_term, q_r):
    """Co-occurring pairs of rest levels and each observation's pairs.

    Pair ``(k, k2)``, ``k2 <= k``, holds block ``k``'s level as its row and
    ``k2``'s as its column, whichever comes first in ``D``
    (:func:`.schur.schur_init` writes it into the lower triangle).
    """
    n, nr = rest_rows.shape
    combos = [(k, k2) for k in range(nr) for k2 in range(k + 1)]
    if not combos:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, np.zeros(1, dtype=np.int64), np.zeros((n, 0),
                                                                                 dtype=np.int64)
    keys = np.stack([rest_rows[:, k] * q_r + rest_rows[:, k2] for k, k2 in combos], axis=1)
    uniq, inverse = unique_inverse(keys, q_r * q_r)
    row, col = uniq // q_r, uniq % q_r
    rterm, cterm = row_term[row], row_term[col]
    voff = np.concatenate([[0], np.cumsum(rest_p[rterm] * rest_p[cterm])]).astype(np.int64)
    return row, col, rterm, cterm, voff, inverse.reshape(n, len(combos))


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
