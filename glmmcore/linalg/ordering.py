"""Order the rest levels so that their Schur complement has a small envelope.

In the blocked factorization the rows of the non-first blocks form one dense
matrix ``D``, but its nonzeros are only where two levels co-occur in an
observation or share a level of the first block.  Crossed designs run in
sessions or waves (speed dating: each participant meets the partners of one
wave) make ``D`` block diagonal up to a permutation of the levels, and nested
ones (``socio_m4``: receivers within groups) banded once each group's row
follows its receivers'; the factorization then works within the envelope of
``D`` at a fraction of a dense one's cost
(:func:`glmmcore.linalg.dense.chol_lower`).  The levels of all rest blocks are
ordered together by reverse Cuthill-McKee on the graph of levels that share an
observation or a first-block level (:func:`reverse_cuthill_mckee`), so rows of
different blocks may interleave; the order is kept when its envelope is
clearly smaller than the one of the blocks in turn, each in its levels' order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dense import ZERO

ORDER_MIN_WORK = 0.01    # an envelope below this relative work is not worth reordering
ORDER_MIN_GAIN = 0.8     # an ordering is kept if its envelope work is below this fraction
# levels coupled to more than max(16, 10 sqrt(levels)) others (a term with a few levels
# crossing everything) go last, as a border: ordered with the rest they would widen
# every row after them
BORDER_MIN_DEGREE = 16
BORDER_DEGREE_SCALE = 10.0


def rest_positions(codes1: np.ndarray, rest_codes: np.ndarray,
                   rest_levels: np.ndarray) -> np.ndarray | None:
    """Position of every rest level in ``D``, or None to keep the blocks in turn.

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
    ndarray or None
        ``position[node_off[k] + level]`` is the place of block ``k``'s level
        among all rest levels (``node_off`` the blocks' cumulative level
        counts); None when the blocks in turn, each in its levels' order, have
        a small envelope already or the ordering does not find a clearly
        smaller one.
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
    natural = envelope_work(sorted_nodes, level_ptr, nodes, np.arange(nnodes))
    if natural <= ORDER_MIN_WORK:
        return None
    indptr, indices = coupling_pattern(sorted_nodes, level_ptr, nodes, nnodes)
    degree = np.diff(indptr)
    border = degree > max(BORDER_MIN_DEGREE, BORDER_DEGREE_SCALE * np.sqrt(nnodes))
    order = reverse_cuthill_mckee(indptr, indices, border)
    interleaved = np.empty(nnodes, dtype=np.int64)
    interleaved[order] = np.arange(nnodes)
    # the same order with each block's levels kept together, blocks in turn
    by_block = np.empty(nnodes, dtype=np.int64)
    for k in range(nr):
        lo, hi = node_off[k], node_off[k + 1]
        by_block[lo + np.argsort(interleaved[lo:hi], kind="stable")] = np.arange(lo, hi)
    best, best_work = None, ORDER_MIN_GAIN * natural
    for position in (interleaved, by_block):
        work = envelope_work(sorted_nodes, level_ptr, nodes, position)
        if work < best_work:
            best, best_work = position, work
    return best


@njit(cache=True, nogil=True)
def reverse_cuthill_mckee(indptr, indices, border):
    """Reverse Cuthill-McKee order of a symmetric graph (CSR, self loops allowed).

    Each connected component is taken from a pseudo-peripheral node (George and
    Liu's search, from the component's node of least degree), breadth first,
    the new neighbours of each node in increasing degree (ties by index); that
    order is reversed and the ``border`` nodes, left out of the searches,
    follow in index order.  Returns the node at each position.
    """
    n = indptr.shape[0] - 1
    degree = np.empty(n, dtype=np.int64)
    for v in range(n):
        degree[v] = indptr[v + 1] - indptr[v]
    order = np.empty(n, dtype=np.int64)
    placed = border.copy()
    mark = np.zeros(n, dtype=np.int64)        # the breadth-first searches' stamps
    queue = np.empty(n, dtype=np.int64)
    stamp, done = ZERO, ZERO
    for seed in _by_degree(degree):
        if placed[seed]:
            continue
        root, stamp = _peripheral_node(seed, indptr, indices, degree, placed, mark, queue,
                                       stamp)
        done = _cuthill_mckee_from(root, indptr, indices, degree, placed, order, done)
    for i in range(done // 2):     # reversed in a loop: a slice copy compiles numba's
        order[i], order[done - 1 - i] = order[done - 1 - i], order[i]   # error messages
    for v in range(n):
        if border[v]:
            order[done] = v
            done += 1
    return order


@njit(cache=True, nogil=True)
def _by_degree(degree):
    """Nodes by increasing degree, ties by index: a counting sort (stable, like
    ``np.argsort(kind="stable")``, whose compiled merge sort takes longer to compile)."""
    n = degree.shape[0]
    top = 0
    for v in range(n):
        top = max(top, degree[v])
    start = np.zeros(top + 2, dtype=np.int64)
    for v in range(n):
        start[degree[v] + 1] += 1
    for d in range(top + 1):
        start[d + 1] += start[d]
    out = np.empty(n, dtype=np.int64)
    for v in range(n):
        out[start[degree[v]]] = v
        start[degree[v]] += 1
    return out


@njit(cache=True, nogil=True)
def _level_search(root, indptr, indices, placed, mark, queue, stamp):
    """Breadth-first search from ``root`` among unplaced nodes, marking them ``stamp``.

    Leaves the nodes reached in ``queue``, level by level; returns their number,
    where the last level starts, and the number of levels.
    """
    queue[0] = root
    mark[root] = stamp
    head, tail, last, depth = 0, 1, 0, 0
    while head < tail:
        last, level_end = head, tail
        depth += 1
        while head < level_end:
            v = queue[head]
            head += 1
            for t in range(indptr[v], indptr[v + 1]):
                w = indices[t]
                if not placed[w] and mark[w] != stamp:
                    mark[w] = stamp
                    queue[tail] = w
                    tail += 1
    return tail, last, depth


@njit(cache=True, nogil=True)
def _peripheral_node(seed, indptr, indices, degree, placed, mark, queue, stamp):
    """A pseudo-peripheral node of ``seed``'s component, and the last stamp used.

    From ``seed``, move to the least-degree node of the farthest level while
    that makes the level structure deeper.
    """
    root = seed
    stamp += 1
    tail, last, depth = _level_search(root, indptr, indices, placed, mark, queue, stamp)
    while True:
        best = queue[last]
        for x in range(last + 1, tail):
            v = queue[x]
            if degree[v] < degree[best] or (degree[v] == degree[best] and v < best):
                best = v
        stamp += 1
        tail, last, deeper = _level_search(best, indptr, indices, placed, mark, queue, stamp)
        if deeper <= depth:
            return root, stamp
        root, depth = best, deeper


@njit(cache=True, nogil=True)
def _cuthill_mckee_from(root, indptr, indices, degree, placed, order, done):
    """Append ``root``'s component to ``order`` in Cuthill-McKee order from ``done``;
    returns the new count."""
    order[done] = root
    placed[root] = True
    head, tail = done, done + 1
    while head < tail:
        v = order[head]
        head += 1
        begin = tail
        for t in range(indptr[v], indptr[v + 1]):
            w = indices[t]
            if not placed[w]:
                placed[w] = True
                order[tail] = w
                tail += 1
        for x in range(begin + 1, tail):      # insertion sort by (degree, index)
            w = order[x]
            y = x - 1
            while y >= begin and (degree[order[y]] > degree[w] or
                                  (degree[order[y]] == degree[w] and order[y] > w)):
                order[y + 1] = order[y]
                y -= 1
            order[y + 1] = w
    return tail


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
