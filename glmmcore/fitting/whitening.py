"""Coordinates of the GLMM's joint stage in which its deviance is close to ``|z|^2``.

The joint stage (``nAGQ >= 1``) optimizes ``(theta, beta[, log phi])``.  In those
parameters its deviance is badly scaled: beta's coordinates are correlated
(polynomial terms; an intercept beside an uncentred covariate) and theta's
curvature can be thousands of times beta's (``patents_pois_olre``: 4,051 for the
observation-level SD against ~2 for beta in whitened units).  L-BFGS-B's first
steps are then steepest descent across a narrow valley, and BOBYQA's trust region
is round where the valley is not.

The optimizer sees ``z`` instead::

    theta   = s * z_theta                           (s > 0 per parameter)
    log phi = s_phi * z_phi
    beta    = beta1 + K ((theta, log phi) - (theta1, log phi1)) + C z_beta

``C C'`` is beta's covariance at the ``nAGQ = 0`` fit, so the deviance's Hessian
over ``z_beta`` is about ``2 I``.  Without more, ``s = 1`` and ``K = 0``.  With the
deviance's gradient, :meth:`Whitening.scale_theta` takes theta's columns of the
Hessian by forward differences of it (one gradient per covariance parameter) and
sets ``K = -H_bb^{-1} H_bt`` (beta's move with theta along the valley, ``H_bb``
from ``C``) and ``s`` so that the curvature over each ``z_theta`` with beta
profiled is 2 as well; the same for a family's extra parameter ``log phi``,
whose curvature is often hundreds of times beta's (the negative binomial on
``patents``: without it L-BFGS-B's first step overshot ``log theta`` by 1 and
took 26 evaluations, with it 9).  The map is triangular and ``s`` positive, so
theta's bounds stay bounds (``theta >= 0`` iff ``z_theta >= 0``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ValueAndGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]


class Whitening:
    """Optimizer coordinates ``z`` of the joint stage and its parameters ``x``.

    Parameters
    ----------
    ntheta
        Number of covariance parameters (first in ``x``).
    beta1, vcov
        Fixed effects at the ``nAGQ = 0`` fit and their covariance there.
    nextra
        Number of family parameters after beta (``log phi``: 0 or 1).
    """

    def __init__(self, ntheta: int, beta1: np.ndarray, vcov: np.ndarray,
                 nextra: int = 0) -> None:
        self.ntheta, self.beta1 = ntheta, np.asarray(beta1, dtype=float)
        p = self.beta1.size
        try:
            self.C = np.linalg.cholesky(vcov)
        except np.linalg.LinAlgError:
            self.C = np.diag(np.sqrt(np.maximum(np.diag(vcov), 1e-12)))
        # the scaled coordinates: theta's, then the family parameters after beta
        self.scaled = np.concatenate([np.arange(ntheta), ntheta + p + np.arange(nextra)])
        self.theta1 = np.zeros(self.scaled.size)
        self.scale = np.ones(self.scaled.size)
        self.K = np.zeros((p, self.scaled.size))

    def to_x(self, z: np.ndarray) -> np.ndarray:
        """Parameters from optimizer coordinates."""
        nt, p, S = self.ntheta, self.beta1.size, self.scaled
        x = np.array(z, dtype=float)
        x[S] = self.scale * x[S]
        x[nt:nt + p] = (self.beta1 + self.K @ (x[S] - self.theta1)
                        + self.C @ x[nt:nt + p])
        return x

    def to_z(self, x: np.ndarray) -> np.ndarray:
        """Optimizer coordinates from parameters."""
        nt, p, S = self.ntheta, self.beta1.size, self.scaled
        z = np.array(x, dtype=float)
        z[S] = x[S] / self.scale
        z[nt:nt + p] = np.linalg.solve(
            self.C, x[nt:nt + p] - self.beta1 - self.K @ (x[S] - self.theta1))
        return z

    def lower_z(self, lower: np.ndarray) -> np.ndarray:
        """Lower bounds over ``z`` from those over ``x`` (beta's and log phi's are -inf)."""
        low = np.array(lower, dtype=float)
        low[self.scaled] = low[self.scaled] / self.scale
        return low

    def value_and_gradient(self, fg: ValueAndGradient) -> ValueAndGradient:
        """``fg`` over parameters as a function of optimizer coordinates (chain rule)."""
        nt, p, S = self.ntheta, self.beta1.size, self.scaled

        def fg_z(z: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = fg(self.to_x(z))
            g_beta = grad[nt:nt + p].copy()
            grad[S] = self.scale * (grad[S] + self.K.T @ g_beta)
            grad[nt:nt + p] = self.C.T @ g_beta
            return value, grad
        return fg_z

    def scale_theta(self, fg: ValueAndGradient, x1: np.ndarray, grad1: np.ndarray,
                    usable: np.ndarray, step: float) -> int:
        """Set ``s`` and ``K`` from forward differences of the gradient at ``x1``.

        ``grad1`` is the gradient at ``x1``; ``usable`` marks the covariance
        parameters to scale (others keep ``s = 1``, ``K = 0``: a variance at 0,
        whose derivative there is a stand-in); family parameters are always
        scaled.  A parameter whose profiled
        curvature is not positive, or whose neighbour's deviance is not finite,
        is left alone too.  Returns the number of gradients taken.
        """
        nt, p, S = self.ntheta, self.beta1.size, self.scaled
        self.theta1 = np.array(x1[S], dtype=float)
        H_bb_inv = 0.5 * (self.C @ self.C.T)       # the deviance is -2 log L
        usable = np.concatenate([usable, np.ones(S.size - nt, dtype=bool)])
        taken = 0
        for j in np.flatnonzero(usable):
            k = S[j]
            h = step * max(abs(x1[k]), 1.0)
            shifted = np.array(x1, dtype=float)
            shifted[k] += h
            value, grad = fg(shifted)
            taken += 1
            if not np.isfinite(value):
                continue
            column = (np.asarray(grad) - grad1) / h
            h_bt = column[nt:nt + p]
            profiled = column[k] - h_bt @ H_bb_inv @ h_bt
            if np.isfinite(profiled) and profiled > 0:
                # a power of 2: theta -> z -> theta is exact, so the optimizer's first
                # call is at the start itself
                self.scale[j] = 2.0 ** np.round(0.5 * np.log2(2.0 / profiled))
                self.K[:, j] = -H_bb_inv @ h_bt
        return taken
