"""Order the levels of the rest blocks so that their Schur complement has a small envelope.

In the blocked factorization the rows of the non-first blocks form one dense
matrix ``D``, but its nonzeros are only where two levels co-occur in an
observation or share a level of the first block.  Crossed designs run in
sessions or waves (speed dating: each participant meets the partners of one
wave) make ``D`` block diagonal up to a permutation of the levels; the
factorization then works within the envelope of ``D`` at a fraction of a dense
one's cost (:func:`glmmcore.linalg.dense.chol_lower`).  Data often number the
levels wave by wave already; when the levels' own order leaves ``D`` without a
small envelope, the reverse Cuthill-McKee ordering of the levels' graph is
tried, and kept if it finds one.  Each block keeps its rows together, its
levels taken in the order the ordering visits them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dense import ENVELOPE_MAX_WORK


def rest_level_ranks(codes1: np.ndarray, rest_codes: np.ndarray,
                     rest_levels: np.ndarray) -> list[np.ndarray] | None:
    """New position of each level of every rest block, or None to keep the levels' order.

    Parameters
    ----------
    codes1
        ``(n,)`` level of the first block in each observation.
    rest_codes
        ``(n, nr)`` level of each rest block in each observation.
    rest_levels
        ``(nr,)`` number of levels of each rest block.

    Returns
    -------
    list of ndarray or None
        For rest block ``k``, ``ranks[k][level]`` is the level's new index;
        None when the levels' own order has a small envelope already or no
        ordering found one.
    """
    n, nr = rest_codes.shape
    if nr == 0 or n == 0:
        return None
    node_off = np.concatenate([[0], np.cumsum(rest_levels)]).astype(np.int64)
    nodes = np.ascontiguousarray(rest_codes + node_off[None, :-1])
    by_level = np.argsort(codes1, kind="stable")
    level_ptr = np.concatenate([[0], np.cumsum(np.bincount(codes1))]).astype(np.int64)
    sorted_nodes = np.ascontiguousarray(nodes[by_level])
    nnodes = int(node_off[-1])
    if envelope_work(sorted_nodes, level_ptr, nodes, np.arange(nnodes)) <= ENVELOPE_MAX_WORK:
        return None
    # here, not at the top: scipy.sparse adds 0.3 s to every ``import glmmcore``
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    indptr, indices = coupling_pattern(sorted_nodes, level_ptr, nodes, nnodes)
    graph = sp.csr_matrix((np.ones(indices.size, dtype=np.int8), indices, indptr),
                          shape=(nnodes, nnodes))
    order = reverse_cuthill_mckee(graph, symmetric_mode=True)
    visit = np.empty(nnodes, dtype=np.int64)
    visit[order] = np.arange(nnodes)
    ranks, position = [], np.empty(nnodes, dtype=np.int64)
    for k in range(nr):       # each block's levels in visiting order, the blocks contiguous
        lo, hi = node_off[k], node_off[k + 1]
        rank = np.empty(hi - lo, dtype=np.int64)
        rank[np.argsort(visit[lo:hi], kind="stable")] = np.arange(hi - lo)
        ranks.append(rank)
        position[lo:hi] = lo + rank
    if envelope_work(sorted_nodes, level_ptr, nodes, position) > ENVELOPE_MAX_WORK:
        return None
    return ranks


@njit(cache=True, nogil=True)
def coupling_pattern(sorted_nodes, level_ptr, nodes, nnodes):
    """Which rest levels are coupled in D: they share a first-block level or an observation.

    The pattern as CSR ``(indptr, indices)``, sorted, diagonal included; marked
    pair by pair in a dense boolean matrix (at most ``DENSE_REST_MAX`` levels
    square): 3x faster than the sparse products of incidence matrices it
    replaces (InstEval: 64 -> 20 ms), and the same pattern.
    """
    adj = np.zeros((nnodes, nnodes), dtype=np.bool_)
    nr = nodes.shape[1]
    stamp = np.zeros(nnodes, dtype=np.int64)      # level j + 1 marks the nodes it holds
    held = np.empty(nnodes, dtype=np.int64)
    for j in range(level_ptr.shape[0] - 1):
        count = 0
        for i in range(level_ptr[j], level_ptr[j + 1]):
            for k in range(nr):
                a = sorted_nodes[i, k]
                if stamp[a] != j + 1:
                    stamp[a] = j + 1
                    held[count] = a
                    count += 1
        for x in range(count):
            for y in range(count):
                adj[held[x], held[y]] = True
    for i in range(nodes.shape[0]):
        for k in range(nr):
            for k2 in range(nr):
                adj[nodes[i, k], nodes[i, k2]] = True
    indptr = np.zeros(nnodes + 1, dtype=np.int32)
    for a in range(nnodes):
        indptr[a + 1] = indptr[a] + np.sum(adj[a])
    indices = np.empty(indptr[nnodes], dtype=np.int32)
    for a in range(nnodes):
        t = indptr[a]
        for b in range(nnodes):
            if adj[a, b]:
                indices[t] = b
                t += 1
    return indptr, indices


@njit(cache=True, nogil=True)
def envelope_work(sorted_nodes, level_ptr, nodes, position):
    """Envelope Cholesky work on D's pattern with the levels at ``position``, relative to dense.

    ``sorted_nodes`` holds each observation's rest levels, observations grouped
    by first-block level (``level_ptr``); ``nodes`` the same in data order.
    A level's first column in D is the smallest position among the levels it
    shares a first-block level or an observation with.
    """
    nnodes = position.shape[0]
    first = position.copy()
    nr = nodes.shape[1]
    for j in range(level_ptr.shape[0] - 1):
        lo = nnodes
        for i in range(level_ptr[j], level_ptr[j + 1]):
            for k in range(nr):
                lo = min(lo, position[sorted_nodes[i, k]])
        for i in range(level_ptr[j], level_ptr[j + 1]):
            for k in range(nr):
                v = sorted_nodes[i, k]
                first[v] = min(first[v], lo)
    for i in range(nodes.shape[0]):
        lo = nnodes
        for k in range(nr):
            lo = min(lo, position[nodes[i, k]])
        for k in range(nr):
            first[nodes[i, k]] = min(first[nodes[i, k]], lo)
    by_row = np.empty(nnodes, dtype=np.int64)
    for v in range(nnodes):
        by_row[position[v]] = first[v]
    work = 0.0
    for i in range(nnodes):
        for j in range(by_row[i], i):
            work += j - max(by_row[i], by_row[j]) + 1
        work += i - by_row[i]
    dense = max(float(nnodes) ** 3 / 6.0, 1.0)
    return work / dense
