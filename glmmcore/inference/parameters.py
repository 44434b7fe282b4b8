"""The variance parameters on lme4's standard-deviation/correlation scale.

lme4 reports intervals for the random effects as standard deviations and
correlations (``confint(fit, oldNames = FALSE)``): per term, the lower
triangle of its covariance matrix by columns, with standard deviations on the
diagonal and correlations below it, named ``sd_(Intercept)|Subject`` and
``cor_Days.(Intercept)|Subject``; then ``sigma`` for models with a scale.
Theta holds the same terms in the same order, as the lower triangles of the
relative Cholesky factors, so the two scales map term by term.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..linalg.dense import semidefinite_cholesky


def variance_names(result: Any) -> list[str]:
    """lme4's ``oldNames = FALSE`` names of the sd/cor parameters (and ``sigma``)."""
    names = []
    for term in result.predictor.reterms.terms:
        cols = term.colnames
        for c in range(len(cols)):
            for r in range(c, len(cols)):
                kind = f"sd_{cols[r]}" if r == c else f"cor_{cols[r]}.{cols[c]}"
                names.append(f"{kind}|{term.label}")
    if result.has_scale:
        names.append("sigma")
    return names


def term_sizes(result: Any) -> list[int]:
    """Columns of each term, in theta's order."""
    return [len(term.colnames) for term in result.predictor.reterms.terms]


def theta_to_sdcor(theta: np.ndarray, sizes: list[int], scale: float = 1.0) -> np.ndarray:
    """Standard deviations and correlations of ``scale^2 T T'`` per term (lme4's Cv_to_Sv)."""
    out, start = [], 0
    for k in sizes:
        T = _lower_from_vector(theta[start:start + k * (k + 1) // 2], k)
        cov = scale ** 2 * (T @ T.T)
        sd = np.sqrt(np.diag(cov))
        for c in range(k):
            for r in range(c, k):
                if r == c:
                    out.append(sd[r])
                else:
                    denom = sd[r] * sd[c]
                    out.append(cov[r, c] / denom if denom > 0 else 0.0)
        start += k * (k + 1) // 2
    return np.array(out, dtype=float)


def sdcor_to_theta(sdcor: np.ndarray, sizes: list[int], scale: float = 1.0) -> np.ndarray:
    """Theta whose ``scale^2 T T'`` has the given sds and correlations (lme4's Sv_to_Cv).

    A correlation of +-1 makes the covariance only semi-definite; its factor
    is then the Cholesky factor with the zero pivot's column left at 0.
    """
    out, start = [], 0
    for k in sizes:
        m = k * (k + 1) // 2
        S = _lower_from_vector(np.asarray(sdcor[start:start + m], dtype=float), k)
        sd = np.diag(S).copy()
        corr = S + S.T - np.diag(np.diag(S) * 2) + np.eye(k)
        cov = np.outer(sd, sd) * corr / scale ** 2
        T = semidefinite_cholesky(cov)
        for c in range(k):
            for r in range(c, k):
                out.append(T[r, c])
        start += m
    return np.array(out, dtype=float)


def sdcor_bounds(sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the sd/cor parameters: sds in [0, inf), correlations in [-1, 1]."""
    lower, upper = [], []
    for k in sizes:
        for c in range(k):
            for r in range(c, k):
                lower.append(0.0 if r == c else -1.0)
                upper.append(np.inf if r == c else 1.0)
    return np.array(lower), np.array(upper)


def _lower_from_vector(values: np.ndarray, k: int) -> np.ndarray:
    """The lower triangle filled by columns from ``values``."""
    T = np.zeros((k, k))
    i = 0
    for c in range(k):
        for r in range(c, k):
            T[r, c] = values[i]
            i += 1
    return T
