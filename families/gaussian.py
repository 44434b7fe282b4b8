"""The Gaussian family: identity link gives a linear mixed model (PLS, REML/ML).

With the log or inverse link the model is a GLMM whose dispersion ``phi``
(the residual variance) is estimated with the other parameters.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .base import ExtraParameter, Family
from .links import IDENTITY, INVERSE, LOG

LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True, inline="always")
def gaussian_variance(mu: float, phi: float) -> float:
    return phi


@njit(cache=True, inline="always")
def gaussian_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    r = y - mu
    return wt * r * r / phi


@njit(cache=True, inline="always")
def gaussian_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    r = y - mu
    return -0.5 * (LOG_2PI + math.log(phi / wt) + wt * r * r / phi)


@njit(cache=True, inline="always")
def gaussian_dvariance_dmu(mu: float, phi: float) -> float:
    return 0.0


@njit(cache=True, inline="always")
def gaussian_dlogpdf_dphi(y: float, mu: float, wt: float, phi: float) -> float:
    r = y - mu
    return 0.5 * (wt * r * r / phi - 1.0) / phi


class Gaussian(Family):
    """Normal responses; ``phi`` is the residual variance."""

    name = "gaussian"
    links = {"identity": IDENTITY, "log": LOG, "inverse": INVERSE}
    default_link = "identity"
    canonical_link = "identity"
    extra = ExtraParameter("dispersion")
    variance = gaussian_variance
    dev_resid = gaussian_dev_resid
    logpdf = gaussian_logpdf
    dvariance_dmu = gaussian_dvariance_dmu
    dlogpdf_dphi = gaussian_dlogpdf_dphi

    @property
    def is_gaussian_identity(self) -> bool:
        """A linear mixed model: fitted by penalized least squares."""
        return self.link.name == "identity"

    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The response itself where the link is defined there; elsewhere (y <= 0 under
        the log link, y = 0 under the inverse link) a tenth of the mean |y| over the
        rest (R's ``glm`` stops there: "cannot find valid starting values")."""
        mu = np.asarray(y, dtype=float).copy()
        bad = {"log": mu <= 0, "inverse": mu == 0}.get(self.link.name)
        if bad is None or not np.any(bad):
            return mu
        good = np.abs(mu[~bad]) if self.link.name == "inverse" else mu[~bad]
        mu[bad] = 0.1 * float(np.mean(good)) if good.size else 1.0
        return mu

    def start_phi(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Mean squared residual of the starting fit."""
        return float(max(np.sum(weights * (y - mu) ** 2) / len(y), 1e-8))

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Normal draws with variance ``phi / weights``."""
        return mu + rng.standard_normal(mu.shape) * np.sqrt(phi / weights)
