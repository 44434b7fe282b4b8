"""Sparse factor of the penalized system by CHOLMOD (scikit-sparse), lme4's way.

For random-effects designs whose Schur complement would be large (many
crossed levels outside the first block), the whole random-effects system
``Lambda' Z' W Z Lambda + I`` is factored by CHOLMOD with a fill-reducing
ordering.  The symbolic analysis is done once per model; each theta only
refactors numerically (``cholesky_inplace``).  The dense columns ``Y`` (``[X
y]`` or the working response) are handled by a small dense Schur complement,
as in lme4 (``RZX``, ``RX``).

Cross-products are kept at the level of blocks (one ``p_k x p_m`` block per
co-occurring pair of levels), so that applying ``Lambda(theta)`` costs the
number of blocks, not the number of observations.  The interface matches
:class:`glmmcore.linalg.blocked.BlockedFactor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.linalg import solve_triangular
from sksparse.cholmod import CholmodNotPositiveDefiniteError, analyze

from .dense import writable
from .threads import rescan_blas

rescan_blas()      # CHOLMOD's BLAS (the system's) is loaded now: limit its threads too


@dataclass
class SparseStructure:
    """Response-independent layout of the sparse system."""

    codes: np.ndarray      # (n, K) level codes
    Xall: np.ndarray       # (n, sum p) block columns side by side
    xoff: np.ndarray       # (K,) first column of each block in Xall
    p: np.ndarray          # (K,) columns per block
    off: np.ndarray        # (K,) first row of each block
    obs_pair: np.ndarray   # (n, K(K+1)/2) level-pair block of each observation
    pair_row: np.ndarray   # first row of each level pair
    pair_col: np.ndarray   # first column of each level pair
    pair_rterm: np.ndarray
    pair_cterm: np.ndarray
    pair_voff: np.ndarray  # value offsets of the pairs
    pair_pos: np.ndarray   # position in the CSC data of each pair value, -1 = upper
    pattern: sp.csc_matrix  # lower-triangular pattern of the system
    symbolic: object        # CHOLMOD analysis of the pattern
    tidx: np.ndarray
    toff: np.ndarray

    @property
    def q(self) -> int:
        """All random effects."""
        return self.pattern.shape[0]

    def __getstate__(self) -> dict:
        # CHOLMOD's factor does not pickle; the analysis is redone from the pattern
        state = dict(self.__dict__)
        state["symbolic"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.symbolic = analyze(self.pattern, mode="supernodal")

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.codes.shape[0]


def build_sparse_structure(blocks: list) -> SparseStructure:
    """Lay out the sparse system and analyse it (fill-reducing ordering)."""
    n = blocks[0].X.shape[0]
    K = len(blocks)
    p = np.array([b.p for b in blocks], dtype=np.int64)
    qk = np.array([b.q for b in blocks], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(qk)[:-1]]).astype(np.int64)
    q = int(qk.sum())
    codes = np.ascontiguousarray(np.column_stack([b.factor.codes for b in blocks]),
                                 dtype=np.int64)
    Xall = np.ascontiguousarray(np.column_stack([b.X for b in blocks]))
    xoff = np.concatenate([[0], np.cumsum(p)[:-1]]).astype(np.int64)
    starts = off[None, :] + codes * p[None, :]
    combos = [(k, k2) for k in range(K) for k2 in range(k + 1)]
    keys = np.stack([starts[:, k] * q + starts[:, k2] for k, k2 in combos], axis=1)
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    pair_row, pair_col = (uniq // q).astype(np.int64), (uniq % q).astype(np.int64)
    term_of_row = np.repeat(np.arange(K), qk)
    pair_rterm, pair_cterm = term_of_row[pair_row], term_of_row[pair_col]
    sizes = p[pair_rterm] * p[pair_cterm]
    pair_voff = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows, cols, vidx = _scalar_entries(pair_row, pair_col, p[pair_rterm], p[pair_cterm],
                                       pair_voff)
    order = np.lexsort((rows, cols))
    pattern = sp.csc_matrix((np.ones(len(order)), (rows[order], cols[order])), shape=(q, q))
    pattern.sort_indices()
    pair_pos = -np.ones(int(pair_voff[-1]), dtype=np.int64)
    pair_pos[vidx[order]] = np.arange(len(order))
    symbolic = analyze(pattern, mode="supernodal")
    tparts = [b.theta_index.ravel() for b in blocks]
    toff = np.concatenate([[0], np.cumsum([t.size for t in tparts])]).astype(np.int64)
    return SparseStructure(codes=codes, Xall=Xall, xoff=xoff, p=p, off=off,
                           obs_pair=inverse.reshape(n, len(combos)).astype(np.int64),
                           pair_row=pair_row, pair_col=pair_col, pair_rterm=pair_rterm,
                           pair_cterm=pair_cterm, pair_voff=pair_voff, pair_pos=pair_pos,
                           pattern=pattern, symbolic=symbolic,
                           tidx=np.concatenate(tparts).astype(np.int64), toff=toff)


def _scalar_entries(pair_row, pair_col, prow, pcol, voff):
    rows, cols, vidx = [], [], []
    for e in range(len(pair_row)):
        a, b = np.meshgrid(np.arange(prow[e]), np.arange(pcol[e]), indexing="ij")
        r, c = pair_row[e] + a.ravel(), pair_col[e] + b.ravel()
        keep = r >= c
        rows.append(r[keep])
        cols.append(c[keep])
        vidx.append(voff[e] + np.arange(prow[e] * pcol[e])[keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vidx)


class SparseFactor:
    """Workspace and CHOLMOD factor for one structure and ``m`` dense columns."""

    def __init__(self, s: SparseStructure, m: int) -> None:
        self.s, self.m = s, m
        self.values = np.zeros(int(s.pair_voff[-1]))
        self.ZtY = np.zeros((s.q, m))
        self.YtY = np.zeros((m, m))
        self.A = s.pattern.copy()
        self.F = s.symbolic.copy()
        self.LtY = np.zeros((s.q, m))
        self.RZY = np.zeros((s.q, m))
        self.DY = np.zeros((m, m))
        self.tbuf = np.zeros(s.tidx.shape[0])
        self.logdet_re = np.nan

    def crossprod(self, w: np.ndarray, Y: np.ndarray) -> None:
        """Weighted cross-products of ``[Z, Y]`` (``Y`` is ``n x m``)."""
        s = self.s
        _crossprod(s.codes, s.Xall, s.xoff, s.p, s.off, s.obs_pair, s.pair_voff, w, Y,
                   self.values, self.ZtY, self.YtY)

    def factor(self, theta: np.ndarray) -> bool:
        """Factor the system at ``theta``; False if not positive definite."""
        s = self.s
        _apply_lambda(writable(theta), s.tidx, s.toff, s.p, s.off, s.pair_rterm, s.pair_cterm,
                      s.pair_voff, s.pair_pos, self.values,
                      self.A.data, self.ZtY, self.LtY, self.tbuf)
        try:
            self.F.cholesky_inplace(self.A, beta=1.0)
        except CholmodNotPositiveDefiniteError:
            return False
        self.logdet_re = self.F.logdet()
        self.RZY = np.asarray(self.F.solve_L(self.F.apply_P(self.LtY),
                                             use_LDLt_decomposition=False))
        # numpy's Cholesky of the m x m Schur complement: this path is the one a first
        # fit takes before the compiled kernels exist (glmmcore.fitting.cold_path)
        schur = self.YtY - self.RZY.T @ self.RZY
        try:
            self.DY = np.linalg.cholesky(schur)
        except np.linalg.LinAlgError:
            self.DY = _leading_cholesky(schur)
            return False
        return bool(np.all(np.isfinite(self.DY)))

    def solve(self, nsolve: int) -> tuple[np.ndarray, np.ndarray]:
        """Back-substitute with ``Y``'s column ``nsolve`` as right-hand side."""
        x = self.DY[nsolve, :nsolve].copy()
        if nsolve:
            x = solve_triangular(self.DY[:nsolve, :nsolve], x, lower=True, trans="T")
        rhs = self.RZY[:, nsolve] - self.RZY[:, :nsolve] @ x
        u = self.F.apply_Pt(self.F.solve_Lt(rhs, use_LDLt_decomposition=False))
        return np.asarray(u).ravel(), x

    def y_diag(self, i: int) -> float:
        """Diagonal element ``i`` of the factor of the ``Y`` rows."""
        return self.DY[i, i]

    def inverse_diag_blocks(self, nx: int = 0, summed: bool = False) -> list[np.ndarray]:
        """Diagonal ``p x p`` blocks of ``(L L')^{-1}`` by selected inversion.

        The entries of the inverse on the pattern of ``L`` (Takahashi's
        recurrences) include every level's diagonal block, without forming
        the dense inverse.  With ``nx > 0`` the system includes the first
        ``nx`` columns of ``Y``; their Schur complement adds ``V V'`` with
        ``V = L^{-T} R_ZX R_X^{-T}`` (``nx`` solves with the factor).
        """
        s = self.s
        L = self.F.copy().L().tocsc()
        L.sort_indices()
        Z = _takahashi(L.indptr, L.indices, L.data)
        perm = np.asarray(self.F.P())
        pinv = np.empty_like(perm)
        pinv[perm] = np.arange(perm.size)
        V = None
        if nx:
            RX = np.tril(self.DY[:nx, :nx])
            W = solve_triangular(RX, self.RZY[:, :nx].T, lower=True).T
            V = np.asarray(self.F.apply_Pt(self.F.solve_Lt(W, use_LDLt_decomposition=False)))
        out = []
        for k in range(len(s.p)):
            p = int(s.p[k])
            nlev = (int(s.off[k + 1]) if k + 1 < len(s.p) else s.q) - int(s.off[k])
            blocks = _gather_blocks(L.indptr, L.indices, Z, pinv, int(s.off[k]), nlev // p, p)
            if V is not None:
                Vk = V[int(s.off[k]):int(s.off[k]) + nlev].reshape(nlev // p, p, nx)
                blocks += np.einsum("lax,lbx->lab", Vk, Vk)
            out.append(blocks.sum(axis=0, keepdims=True) if summed else blocks)
        return out

    @property
    def y_lower(self) -> np.ndarray:
        """Lower factor of the ``Y`` rows (``m x m``)."""
        return self.DY


def _leading_cholesky(A: np.ndarray) -> np.ndarray:
    """The factor's rows before the first that fails (zeros after), as a factorization in
    place leaves them: a zero response column (rx_vcov's) fails only its own row."""
    out = np.zeros_like(A)
    for k in range(A.shape[0] - 1, 0, -1):
        try:
            out[:k, :k] = np.linalg.cholesky(A[:k, :k])
        except np.linalg.LinAlgError:
            continue
        return out
    return out


@njit(cache=True, nogil=True)
def _crossprod(codes, Xall, xoff, p, off, obs_pair, pair_voff, w, Y, values, ZtY, YtY):
    values[:] = 0.0
    ZtY[:] = 0.0
    YtY[:] = 0.0
    n, K = codes.shape
    m = Y.shape[1]
    for i in range(n):
        wi = w[i]
        if wi == 0.0:
            continue
        for t in range(m):
            for u in range(t + 1):
                YtY[t, u] += wi * Y[i, t] * Y[i, u]
        c = 0
        for k in range(K):
            row0 = off[k] + codes[i, k] * p[k]
            for a in range(p[k]):
                xa = wi * Xall[i, xoff[k] + a]
                for t in range(m):
                    ZtY[row0 + a, t] += xa * Y[i, t]
            for k2 in range(k + 1):
                vo = pair_voff[obs_pair[i, c]]
                c += 1
                for a in range(p[k]):
                    xa = wi * Xall[i, xoff[k] + a]
                    for b in range(p[k2]):
                        values[vo + a * p[k2] + b] += xa * Xall[i, xoff[k2] + b]
    for t in range(m):
        for u in range(t + 1, m):
            YtY[t, u] = YtY[u, t]


@njit(cache=True, nogil=True)
def _apply_lambda(theta, tidx, toff, p, off, pair_rterm, pair_cterm, pair_voff, pair_pos,
                  values, data, ZtY, LtY, tbuf):
    """CSC data of Lambda' A Lambda and rows of Lambda' Z' W Y."""
    for e in range(tidx.shape[0]):
        tbuf[e] = theta[tidx[e]] if tidx[e] >= 0 else 0.0
    for e in range(pair_rterm.shape[0]):
        k, k2 = pair_rterm[e], pair_cterm[e]
        pr, pc = p[k], p[k2]
        Tr = tbuf[toff[k]:toff[k] + pr * pr].reshape((pr, pr))
        Tc = tbuf[toff[k2]:toff[k2] + pc * pc].reshape((pc, pc))
        vo = pair_voff[e]
        for a in range(pr):
            for b in range(pc):
                pos = pair_pos[vo + a * pc + b]
                if pos < 0:
                    continue
                s = 0.0
                for c in range(pr):
                    for d in range(pc):
                        s += Tr[c, a] * values[vo + c * pc + d] * Tc[d, b]
                data[pos] = s
    m = ZtY.shape[1]
    K = p.shape[0]
    q = ZtY.shape[0]
    for r in range(q):
        k = 0
        while k + 1 < K and off[k + 1] <= r:
            k += 1
        pk = p[k]
        s0 = off[k] + ((r - off[k]) // pk) * pk
        Tk = tbuf[toff[k]:toff[k] + pk * pk].reshape((pk, pk))
        for t in range(m):
            s = 0.0
            for c in range(pk):
                s += Tk[c, r - s0] * ZtY[s0 + c, t]
            LtY[r, t] = s


@njit(cache=True, nogil=True)
def _entry(indptr, indices, Z, i, k):
    """Z[i, k] of a symmetric matrix stored on a lower-triangular CSC pattern."""
    row, col = (i, k) if i >= k else (k, i)
    lo, hi = indptr[col], indptr[col + 1]
    pos = lo + np.searchsorted(indices[lo:hi], row)
    return Z[pos]


@njit(cache=True, nogil=True)
def _takahashi(indptr, indices, data):
    """Entries of (L L')^{-1} on the pattern of the lower factor L (sorted CSC)."""
    n = indptr.shape[0] - 1
    Z = np.zeros_like(data)
    for j in range(n - 1, -1, -1):
        start, end = indptr[j], indptr[j + 1]
        ljj = data[start]
        for pi in range(end - 1, start, -1):
            i = indices[pi]
            s = 0.0
            for pk in range(start + 1, end):
                s += data[pk] * _entry(indptr, indices, Z, i, indices[pk])
            Z[pi] = -s / ljj
        s = 0.0
        for pk in range(start + 1, end):
            s += data[pk] * Z[pk]
        Z[start] = 1.0 / (ljj * ljj) - s / ljj
    return Z


@njit(cache=True, nogil=True)
def _gather_blocks(indptr, indices, Z, pinv, off, nlev, p):
    out = np.empty((nlev, p, p))
    for a in range(nlev):
        r0 = off + a * p
        for x in range(p):
            for y in range(p):
                out[a, x, y] = _entry(indptr, indices, Z, pinv[r0 + x], pinv[r0 + y])
    return out
