"""Conditional covariances of the random effects (lme4's ``condVar``/``postVar``).

Given theta (and beta), the random effects ``b = Lambda u`` have conditional
covariance ``scale * Lambda (L L')^{-1} Lambda'``; its diagonal blocks, one
``p x p`` block per level, come from the diagonal blocks of ``(L L')^{-1}``,
which each factor backend computes without forming the whole inverse.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def scaled_condvar(predictor: Any, factor: Any, theta: np.ndarray,
                   scale: float) -> list[np.ndarray]:
    """``scale * T (L L')^{-1}_aa T'`` for every level ``a`` of every block."""
    inverse_blocks = factor.inverse_diag_blocks()
    Ts = predictor.reterms.T_matrices(theta)
    return [scale * np.einsum("ij,ajk,lk->ail", T, V, T) for T, V in zip(Ts, inverse_blocks)]
