"""Fixed-effects columns on very different scales, rescaled for a GLMM fit.

A GLMM's joint stage optimizes beta directly, and its finite-difference
checks step each coefficient by a fixed relative amount: a predictor times
1e8 (coefficient 1e-8) then overflows a log link (lme4 warns "Some predictor
variables are on very different scales" and stops in PIRLS).  When lme4's
``check.scaleX`` rule fires, the non-0/1 columns are divided by powers of 2
near their standard deviations (exact in floating point), the model is fitted
so, and beta, its covariance and the derivatives are scaled back: the result
is the one on the original scale.  A linear mixed model profiles beta out and
needs none of this.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

SCALE_LIMIT = 3.0       # lme4's check.scaleX tolerance, log10(1000)


def column_scales(X: np.ndarray) -> np.ndarray | None:
    """Divisors of X's columns, or None when lme4's rule finds the scales fine
    (every non-0/1 column's SD within [1/1000, 1000] and within 1000x of the others)."""
    sd = X.std(axis=0)
    varying = (sd > 0) & ~np.all((X == 0) | (X == 1), axis=0)
    if not np.any(varying):
        return None
    logs = np.log10(sd[varying])
    if np.max(np.abs(logs)) <= SCALE_LIMIT and np.ptp(logs) <= SCALE_LIMIT:
        return None
    scale = np.ones(X.shape[1])
    scale[varying] = 2.0 ** np.round(np.log2(sd[varying]))
    return scale


def rescaled(predictor: Any, scale: np.ndarray) -> Any:
    """The predictor with X's columns divided by ``scale``."""
    fixed = replace(predictor.fixed, X=np.ascontiguousarray(predictor.X / scale))
    # one layout for both (built here if the model has not yet)
    return replace(predictor, fixed=fixed, built_layout=predictor.layout)


def scaled_back(result: Any, scale: np.ndarray | None) -> Any:
    """A result fitted on :func:`rescaled` columns, on the original ones (its model is
    the original; ``scale`` None: nothing was rescaled)."""
    if scale is None:
        return result
    nt, p = result.theta.size, scale.size
    result.beta = result.beta / scale
    result.vcov_beta = result.vcov_beta / np.outer(scale, scale)
    conv = result.convergence
    # x = (theta, beta_scaled, ...) with beta_scaled = beta * scale: d/dbeta = scale d/dbeta_s
    factor = np.ones(conv.gradient.size)
    factor[nt:nt + p] = scale
    conv.gradient = conv.gradient * factor
    conv.hessian = conv.hessian * np.outer(factor, factor)
    return result
