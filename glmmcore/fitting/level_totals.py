"""Poisson fits by the levels' totals, where every fixed effect is constant within levels.

With the log link, a random intercept (``z = 1``) and every column of X constant
within the levels of its factor (a per-gene design: samples nested in subjects,
the condition a subject's), each level's linear predictor is ``c_j + offset_i``
and the Poisson log-likelihood

    sum_i y_i eta_i - exp(eta_i) - log y_i!
        = sum_j Y_j eta*_j - exp(eta*_j) + sum_i (y_i offset_i - log y_i!) - sum_j Y_j o_j,

with ``Y_j = sum_{i in j} y_i``, ``o_j = log sum_{i in j} exp(offset_i)`` and
``eta*_j = c_j + o_j``: the model of the levels' totals (one observation a level,
offset ``o_j``) has the same likelihood up to a term free of the parameters.  Its
working weights are the levels' sums of the observations' (``exp(eta*_j) = sum_i
mu_i``), so the Laplace and ``nAGQ = 0`` objectives, their derivatives, the modes
and beta's covariance are the same too: the fast path fits the totals (G
observations, not n) and adds the difference in log-likelihood back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..families.poisson import Poisson

# log y! of whole y below this from a table (made once per process)
_TABLE_SIZE = 256
_LOG_FACTORIALS = np.array([math.lgamma(k + 1.0) for k in range(_TABLE_SIZE)])


@dataclass
class LevelTotals:
    """The design of the levels' totals: one row per level."""

    X: np.ndarray
    codes: np.ndarray
    z: np.ndarray
    offset: np.ndarray
    weights: np.ndarray
    row_codes: np.ndarray       # the observations' levels
    row_offset: np.ndarray      # and offsets

    def totals(self, Y: np.ndarray) -> np.ndarray:
        """The levels' totals of the columns of ``Y`` (C-contiguous)."""
        out = np.zeros((self.X.shape[0], Y.shape[1]))
        _level_totals(self.row_codes, Y, out)
        return out

    def loglik_difference(self, Y: np.ndarray, totals: np.ndarray) -> np.ndarray:
        """Each column's log-likelihood minus that of its totals' model (free of the
        parameters): ``sum_i (y_i offset_i - log y_i!) - sum_j (Y_j o_j - log Y_j!)``."""
        rows, levels = np.empty(Y.shape[1]), np.empty(Y.shape[1])
        _offset_terms(Y, self.row_offset, _LOG_FACTORIALS, rows)
        _offset_terms(totals, self.offset, _LOG_FACTORIALS, levels)
        return rows - levels


def level_totals(fitter: Any) -> LevelTotals | None:
    """The totals' design for a fast fitter where the module doc's conditions hold (a
    built-in Poisson family with the log link, prior weights 1, ``z = 1``, every level
    observed and every column of X constant within levels), else None."""
    family = fitter.model.family
    if (fitter.is_lmm or type(family) is not Poisson or family.link.name != "log"
            or not np.all(fitter.weights == 1.0) or not np.all(fitter.z == 1.0)):
        return None
    codes, G, n = fitter.codes, fitter.G, fitter.codes.shape[0]
    counts = np.bincount(codes, minlength=G)
    if G == 0 or np.any(counts == 0) or G >= n:
        return None
    first = np.zeros(G, dtype=np.int64)
    first[codes[::-1]] = np.arange(n)[::-1]         # each level's first row
    X = fitter.X[first]
    if not np.array_equal(fitter.X, X[codes]):
        return None
    top = np.full(G, -np.inf)
    np.maximum.at(top, codes, fitter.offset)
    offset = top + np.log(np.bincount(codes, weights=np.exp(fitter.offset - top[codes]),
                                      minlength=G))
    return LevelTotals(X=np.ascontiguousarray(X), codes=np.arange(G, dtype=np.int64),
                       z=np.ones(G), offset=offset, weights=np.ones(G), row_codes=codes,
                       row_offset=fitter.offset)


@njit(cache=True, nogil=True)
def _level_totals(codes, Y, out):
    """``out[j] += Y[i]`` for the rows ``i`` of level ``j``."""
    for i in range(Y.shape[0]):
        g = codes[i]
        for c in range(Y.shape[1]):
            out[g, c] += Y[i, c]


@njit(cache=True, nogil=True)
def _offset_terms(Y, offset, table, out):
    """``out[c] = sum_i Y[i, c] offset_i - log Y[i, c]!`` (lgamma(y + 1)), from ``table``
    for whole numbers below its size."""
    k = table.shape[0]
    out[:] = 0.0
    for i in range(Y.shape[0]):
        for c in range(Y.shape[1]):
            y = Y[i, c]
            w = int(y) if 0.0 <= y < k else -1
            out[c] += y * offset[i] - (table[w] if w >= 0 and w == y else math.lgamma(y + 1.0))
