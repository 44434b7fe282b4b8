"""The negative binomial family (NB2) with its size ``theta`` estimated.

``Var(y) = mu + mu^2 / theta``, as lme4's ``glmer.nb`` and glmmTMB's
``nbinom2``; ``theta`` is estimated jointly with the other parameters by
maximizing the complete Laplace likelihood (glmmTMB's approach; lme4 alternates).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from .base import ExtraParameter
from .binomial import ylogy
from .links import LOG, SQRT
from .poisson import Poisson


@njit(cache=True, inline="always")
def nb_variance(mu: float, theta: float) -> float:
    return mu + mu * mu / theta


@njit(cache=True, inline="always")
def nb_dev_resid(y: float, mu: float, wt: float, theta: float) -> float:
    return 2.0 * wt * (ylogy(y, mu) - (y + theta) * math.log((y + theta) / (mu + theta)))


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


class NegativeBinomial(Poisson):
    """Overdispersed counts (NB2); ``phi`` is the size ``theta``."""

    name = "negative_binomial"
    links = {"log": LOG, "sqrt": SQRT}
    default_link = "log"
    extra = ExtraParameter("theta")
    variance = nb_variance
    dev_resid = nb_dev_resid
    logpdf = nb_logpdf
    # the log link is not canonical for NB2: PIRLS takes Newton steps with these kernels
    canonical_link = None
    dlogpdf_dmu = nb_dlogpdf_dmu
    d2logpdf_dmu2 = nb_d2logpdf_dmu2

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
