"""The first block's factor and its Schur update in one pass, for scalar terms.

When every term is scalar (``(1 | a) + (1 | b)``; an observation-level effect
beside ``(1 | g)``), a first-block level's share of the factorization is a few
flops: its diagonal ``sqrt(t1^2 a_j + 1)``, its coupling values and ``Y`` row
scaled by ``t1 / L_j``, and their products subtracted from ``D``.  Done as
four passes over the levels (:mod:`.blocked`'s diagonal and coupling, then
:mod:`.schur`'s rest rows and ``Y`` rows) the loops' overhead costs more than
that work; here one pass does it (``patents_pois_olre``, 4,809 levels:
measured in ``bench/README.md``).  ``log|L11|^2`` is summed as a product,
with a logarithm only when the product grows large, not one per level.

Only while ``D``'s rest rows fit in one row block of the Schur update
(:data:`.schur.ROW_BLOCK`): larger ``D`` keeps the Schur update's blocked
order, which is what keeps ``D`` in cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .crossprod import all_scalar
from .dense import FAST
from .schur import ROW_BLOCK, subtract_y_sums

# the running product of the diagonal's squares (each >= 1) is logged and restarted
# above this; a single factor above SINGLE_LOG is logged on its own (no overflow)
PRODUCT_LIMIT = 1e250
SINGLE_LOG = 1e50


@njit(cache=True, nogil=True)
def one_pass_applies(p1, rest_p, q_r):
    """Whether :func:`factor_first_scalars` serves this layout (module doc)."""
    return p1 == 1 and all_scalar(rest_p) and q_r <= ROW_BLOCK


@njit(cache=True, nogil=True, fastmath=FAST)
def factor_first_scalars(tbuf, toff, r1_term, r1v, A11, A1Y, flat_row, flat_ptr, L11, L21v,
                         LY1, D):
    """Factor the first block, its coupling and ``Y`` rows, and subtract their products
    from ``D`` (which holds the rest and ``Y`` rows at theta); returns ``log|L11|^2``.

    With scalar terms each coupling block is one rest row, so a level's pairs
    ``flat_ptr[j]:flat_ptr[j + 1]`` are its coupling blocks (ascending rows).
    """
    l1, m = L11.shape[0], A1Y.shape[2]
    q_r = D.shape[0] - m
    t1 = tbuf[0]
    acc = np.zeros((q_r, m))      # sum_j LY1_j L21_j', subtracted from D's Y rows at the end
    G = np.zeros((m, m))          # sum_j LY1_j LY1_j'
    ly = np.empty(m)
    logdet, product = 0.0, 1.0
    for j in range(l1):
        d = t1 * t1 * A11[j, 0, 0] + 1.0
        L = np.sqrt(d)
        L11[j, 0, 0] = L
        if d > SINGLE_LOG:
            logdet += np.log(d)
        else:
            product *= d
            if product > PRODUCT_LIMIT:
                logdet += np.log(product)
                product = 1.0
        scale = t1 / L
        lo, hi = flat_ptr[j], flat_ptr[j + 1]
        for a in range(lo, hi):
            L21v[a] = tbuf[toff[r1_term[a] + 1]] * r1v[a] * scale
        for t in range(m):
            v = A1Y[j, 0, t] * scale
            ly[t] = v
            LY1[j, t, 0] = v
        for a in range(lo, hi):
            va = L21v[a]
            row = D[flat_row[a]]
            for b in range(lo, a + 1):
                row[flat_row[b]] -= va * L21v[b]
            ra = acc[flat_row[a]]
            for t in range(m):
                ra[t] += ly[t] * va
        for t in range(m):
            for u in range(t + 1):
                G[t, u] += ly[t] * ly[u]
    subtract_y_sums(acc, G, D)
    return logdet + np.log(product)
