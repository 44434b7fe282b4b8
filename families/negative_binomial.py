"""The negative binomial family (NB2), its size ``theta`` estimated or fixed.

``Var(y) = mu + mu^2 / theta``, as lme4's ``glmer.nb`` and glmmTMB's
``nbinom2``; ``theta`` is estimated jointly with the other parameters by
maximizing the complete Laplace likelihood (glmmTMB's approach; lme4 alternates).
``NegativeBinomial(theta=1)`` (``get_family("negative_binomial", theta=1)``) holds
it fixed, as ``glmer(..., family = MASS::negative.binomial(theta = 1))``; the
fit's AIC then counts only the estimated parameters (lme4 counts theta too).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from glmmcore.errors import FamilyError, show

from .base import ExtraParameter
from .links import LOG, SQRT
from .poisson import Poisson
from .special import LOG_FROM, digamma_series, vdigamma
from .vecmath import vlog


@njit(cache=True, inline="always")
def nb_variance(mu: float, theta: float) -> float:
    return mu + mu * mu / theta


@njit(cache=True, inline="always")
def nb_dev_resid(y: float, mu: float, wt: float, theta: float) -> float:
    # vlog and a select, not ylogy's branch: PIRLS's update loop vectorizes
    ylogy = y * vlog(y / mu) if y > 0.0 else 0.0
    return 2.0 * wt * (ylogy - (y + theta) * vlog((y + theta) / (mu + theta)))


@njit(cache=True, inline="always")
def nb_logpdf(y: float, mu: float, wt: float, theta: float) -> float:
    out = (math.lgamma(y + theta) - math.lgamma(theta) - math.lgamma(y + 1.0)
           + theta * math.log(theta / (theta + mu)))
    if y > 0.0:
        out += y * math.log(mu / (theta + mu))
    return wt * out


@njit(cache=True, inline="always")
def nb_dlogpdf_dmu(y: float, mu: float, wt: float, theta: float) -> float:
    return wt * (y / mu - (y + theta) / (mu + theta))


@njit(cache=True, inline="always")
def nb_d2logpdf_dmu2(y: float, mu: float, wt: float, theta: float) -> float:
    return wt * ((y + theta) / ((mu + theta) * (mu + theta)) - y / (mu * mu))


@njit(cache=True, inline="always")
def nb_dvariance_dmu(mu: float, theta: float) -> float:
    return 1.0 + 2.0 * mu / theta


@njit(cache=True, inline="always")
def nb_dlogpdf_dphi(y: float, mu: float, wt: float, theta: float) -> float:
    # log(theta / t) + digamma(y + theta) - digamma(theta) + (mu - y) / t, with vlog and
    # digamma's series, no branch: the loop over observations vectorizes; log(theta / t)
    # and digamma(y + theta)'s log(y + theta + 8) are one logarithm (two per observation
    # took 30 of the kernel's 75 us on patents)
    t = theta + mu
    x = y + theta
    acc, shifted, r, tail = digamma_series(x)
    big = x > LOG_FROM          # digamma(x) = log(x) there (vdigamma)
    rest = 0.0 if big else acc - 0.5 * r - tail
    return wt * (vlog(theta / t * (x if big else shifted)) + rest + (mu - y) / t
                 - vdigamma(theta))


class NegativeBinomial(Poisson):
    """Overdispersed counts (NB2); ``phi`` is the size ``theta``.

    Parameters
    ----------
    link
        ``"log"`` (default) or ``"sqrt"``.
    theta
        A fixed size (``MASS::negative.binomial(theta)``); estimated when None.
    """

    name = "negative_binomial"
    links = {"log": LOG, "sqrt": SQRT}
    default_link = "log"
    extra = ExtraParameter("theta")
    variance = nb_variance
    dev_resid = nb_dev_resid
    logpdf = nb_logpdf
    dvariance_dmu = nb_dvariance_dmu
    dlogpdf_dphi = nb_dlogpdf_dphi
    # the log link is not canonical for NB2: PIRLS takes Newton steps with these kernels
    canonical_link = None
    dlogpdf_dmu = nb_dlogpdf_dmu
    d2logpdf_dmu2 = nb_d2logpdf_dmu2

    def __init__(self, link: str | None = None, theta: float | None = None) -> None:
        super().__init__(link)
        if theta is not None:
            value = float(theta) if isinstance(theta, (int, float)) else math.nan
            if isinstance(theta, bool) or not (math.isfinite(value) and value > 0):
                raise FamilyError(f"negative_binomial theta must be a positive finite number, "
                                  f"not {show(theta)}")
            self.fixed_phi = value

    def prepare_response(self, values: list[pd.Series], weights: np.ndarray, name: str,
                         labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
        """Non-negative whole numbers, as the Poisson family."""
        return super().prepare_response(values, weights, name, labels)

    def start_phi(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Moment estimate from the Poisson start: ``mean(mu^2) / mean((y - mu)^2 - mu)``."""
        excess = np.mean(weights * ((y - mu) ** 2 - mu))
        return float(np.clip(np.mean(mu ** 2) / excess, 0.05, 1e3)) if excess > 0 else 10.0

    def display_params(self, phi: float) -> dict[str, float]:
        """The size ``theta``."""
        return {"theta": phi}

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Negative binomial draws (gamma-Poisson mixture)."""
        return rng.poisson(rng.gamma(phi, mu / phi)).astype(float)
