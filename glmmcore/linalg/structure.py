"""The blocked factorization's layout (:mod:`.blocked`), built once per model.

Where each random effect lies in the blocked system: the first block's levels, the
rows of the dense Schur complement ``D`` that hold the other blocks' levels (in the
fill-reducing order of :mod:`.ordering` when there are many), their couplings and
co-occurring pairs, and the envelope ``D`` can have.  Plain numpy: a model whose fit
takes another path (the fast paths of :mod:`glmmcore.fitting.scalar_fast`, the cold
path) builds it without loading the factorization's compiled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .keys import unique_inverse

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
    position = None
    if q_r >= ORDER_MIN_REST:
        from .ordering import rest_positions  # compiled kernels, needed only here
        position = rest_positions(codes1, rest_codes, levels)
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
