"""Entries of the inverse of the blocked system where observations couple random effects.

The Laplace gradient (:mod:`glmmcore.objectives.laplace_gradient`) needs, for every
observation ``i``, the block of ``S = (L L')^{-1}`` (the random effects' system
alone) on the random effects that ``i`` touches: its first-block level ``j``,
and one level of every other block.  These entries lie where the
cross-products have theirs, so they are stored in the same layouts:

- ``S11[j]``: the ``p1 x p1`` diagonal block of first-block level ``j``;
- ``S21v``: laid out as the coupling values ``L21v`` (pair ``t`` of a
  first-block level and a rest row holds ``p1`` values at ``t * p1``);
- ``S22v``: laid out as the rest pairs' values ``rrv`` (``rr_voff``).

All three come from :mod:`.inverse`: ``S_jj`` as the diagonal blocks,
``S[R_j, j] = -P_j``, and ``S22`` read at the co-occurring rest pairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from .inverse import first_block_products, first_diag_blocks

if TYPE_CHECKING:
    from .blocked import BlockedFactor


def observation_inverse(factor: BlockedFactor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S11, S21v, S22v)`` of a factored :class:`~.blocked.BlockedFactor` (module doc)."""
    s = factor.s
    S22, ptr, W, P = first_block_products(factor, 0)
    S11 = np.zeros((s.l1, s.p1, s.p1))
    first_diag_blocks(factor.L11, ptr, W, P, False, False, S11)
    S21v = -P.ravel()         # with no Y rows, P's rows are the coupled pairs in L21v's order
    S22v = np.zeros(int(s.rr_voff[-1]))
    _rest_selected(S22, s.rr_row, s.rr_col, s.rr_rterm, s.rr_cterm, s.rest_p, s.rr_voff, S22v)
    return S11, S21v, S22v


@njit(cache=True, nogil=True)
def _rest_selected(S22, rr_row, rr_col, rr_rterm, rr_cterm, rest_p, rr_voff, S22v):
    """``S22`` at every co-occurring pair of rest levels, in ``rrv``'s layout."""
    for t in range(rr_row.shape[0]):
        pa, pb = rest_p[rr_rterm[t]], rest_p[rr_cterm[t]]
        vo = rr_voff[t]
        for a in range(pa):
            for b in range(pb):
                S22v[vo + a * pb + b] = S22[rr_row[t] + a, rr_col[t] + b]
