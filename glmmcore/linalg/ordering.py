"""Order the levels of the rest blocks so that their Schur complement has a small envelope.

In the blocked factorization the rows of the non-first blocks form one dense
matrix ``D``, but its nonzeros are only where two levels co-occur in an
observation or share a level of the first block.  Crossed designs run in
sessions or waves (speed dating: each participant meets the partners of one
wave) make ``D`` block diagonal up to a permutation of the levels; the
factorization then works within the envelope of ``D`` at a fraction of a dense
one's cost (:func:`glmmcore.linalg.dense.chol_lower`).  The reverse
Cuthill-McKee ordering of the levels' graph finds such a permutation (and a
narrow band when there is one); each block keeps its rows together, its levels
taken in the order the ordering visits them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee


def rest_level_ranks(codes1: np.ndarray, rest_codes: np.ndarray,
                     rest_levels: np.ndarray) -> list[np.ndarray]:
    """New position of each level of every rest block.

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
    list of ndarray
        For rest block ``k``, ``ranks[k][level]`` is the level's new index.
    """
    n, nr = rest_codes.shape
    if nr == 0:
        return []
    node_off = np.concatenate([[0], np.cumsum(rest_levels)]).astype(np.int64)
    nodes = rest_codes + node_off[None, :-1]
    nnodes = int(node_off[-1])
    obs = np.repeat(np.arange(n), nr)
    # levels sharing a first-block level, or an observation, are coupled in D
    by_first = sp.csr_matrix((np.ones(n * nr), (np.repeat(codes1, nr), nodes.ravel())),
                             shape=(int(codes1.max()) + 1 if n else 0, nnodes))
    by_obs = sp.csr_matrix((np.ones(n * nr), (obs, nodes.ravel())), shape=(n, nnodes))
    graph = (by_first.T @ by_first + by_obs.T @ by_obs).tocsr()
    graph.data[:] = 1.0
    order = reverse_cuthill_mckee(graph, symmetric_mode=True)
    position = np.empty(nnodes, dtype=np.int64)
    position[order] = np.arange(nnodes)
    ranks = []
    for k in range(nr):
        pos = position[node_off[k]:node_off[k + 1]]
        rank = np.empty(pos.size, dtype=np.int64)
        rank[np.argsort(pos, kind="stable")] = np.arange(pos.size)
        ranks.append(rank)
    return ranks
