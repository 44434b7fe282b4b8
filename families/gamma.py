"""The Gamma family for positive continuous responses; the shape is estimated by ML.

``phi`` is the dispersion ``1 / shape`` (the squared coefficient of variation,
glmmTMB's ``sigma^2``), estimated with the other parameters by maximizing the
complete Laplace likelihood.  lme4's ``glmer`` reports a log-likelihood for
Gamma models that is not a true likelihood; glmmTMB's is the reference, so the
Laplace approximation uses the observed information (the exact Laplace
approximation, as glmmTMB), not lme4's Fisher weights.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .base import ExtraParameter, Family
from .links import IDENTITY, INVERSE, LOG
from .special import digamma
from .vecmath import vlog


@njit(cache=True, inline="always")
def gamma_variance(mu: float, phi: float) -> float:
    return phi * mu * mu


@njit(cache=True, inline="always")
def gamma_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    return 2.0 * wt * ((y - mu) / mu - vlog(y / mu)) / phi   # vlog: PIRLS's loop vectorizes


@njit(cache=True, inline="always")
def gamma_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    k = 1.0 / phi
    return wt * (k * math.log(k * y / mu) - k * y / mu - math.log(y) - math.lgamma(k))


@njit(cache=True, inline="always")
def gamma_dlogpdf_dmu(y: float, mu: float, wt: float, phi: float) -> float:
    return wt * (y - mu) / (phi * mu * mu)


@njit(cache=True, inline="always")
def gamma_d2logpdf_dmu2(y: float, mu: float, wt: float, phi: float) -> float:
    return wt * (mu - 2.0 * y) / (phi * mu * mu * mu)


@njit(cache=True, inline="always")
def gamma_dvariance_dmu(mu: float, phi: float) -> float:
    return 2.0 * phi * mu


@njit(cache=True, inline="always")
def gamma_dlogpdf_dphi(y: float, mu: float, wt: float, phi: float) -> float:
    k = 1.0 / phi   # d/dk of the log-density, times dk/dphi = -k^2
    return -wt * k * k * (math.log(k * y / mu) + 1.0 - y / mu - digamma(k))


class Gamma(Family):
    """Positive responses with variance ``phi * mu^2``."""

    name = "gamma"
    links = {"log": LOG, "inverse": INVERSE, "identity": IDENTITY}
    default_link = "inverse"
    canonical_link = "inverse"
    extra = ExtraParameter("dispersion")
    variance = gamma_variance
    dev_resid = gamma_dev_resid
    logpdf = gamma_logpdf
    dvariance_dmu = gamma_dvariance_dmu
    dlogpdf_dphi = gamma_dlogpdf_dphi
    # glmmTMB's exact Laplace approximation is the reference for Gamma models
    laplace = "observed"
    dlogpdf_dmu = gamma_dlogpdf_dmu
    d2logpdf_dmu2 = gamma_d2logpdf_dmu2

    def in_support(self, y: np.ndarray) -> np.ndarray:
        """Strictly positive values."""
        return y > 0

    def start_phi(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Pearson estimate of the dispersion from the starting fit."""
        return float(max(np.mean(weights * ((y - mu) / mu) ** 2), 1e-6))

    def display_params(self, phi: float) -> dict[str, float]:
        """The shape, and the coefficient of variation (glmmTMB's sigma)."""
        return {"shape": 1.0 / phi, "cv": float(np.sqrt(phi))}

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Gamma draws with mean ``mu`` and shape ``weights / phi``."""
        shape = weights / phi
        return rng.gamma(shape, mu / shape)
