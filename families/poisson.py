"""The Poisson family for counts (use an offset for exposure)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from glmmcore.errors import ResponseError, show

from .base import Family
from .binomial import ylogy
from .links import IDENTITY, LOG, SQRT
from .vecmath import vexp


@njit(cache=True, inline="always")
def poisson_variance(mu: float, phi: float) -> float:
    return mu


@njit(cache=True, inline="always")
def poisson_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    return 2.0 * wt * (ylogy(y, mu) - (y - mu))


@njit(cache=True, inline="always")
def poisson_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    out = -mu - math.lgamma(y + 1.0)
    if y > 0.0:
        out += y * math.log(mu)
    return wt * out


@njit(cache=True, inline="always")
def poisson_cumulant(eta: float) -> float:
    return vexp(eta)   # quadrature's loop over nodes and observations then vectorizes


@njit(cache=True, inline="always")
def poisson_dlogpdf_dmu(y: float, mu: float, wt: float, phi: float) -> float:
    return wt * (y / mu - 1.0)


@njit(cache=True, inline="always")
def poisson_d2logpdf_dmu2(y: float, mu: float, wt: float, phi: float) -> float:
    return -wt * y / (mu * mu)


@njit(cache=True, inline="always")
def poisson_dvariance_dmu(mu: float, phi: float) -> float:
    return 1.0


class Poisson(Family):
    """Counts with variance equal to the mean."""

    name = "poisson"
    links = {"log": LOG, "sqrt": SQRT, "identity": IDENTITY}
    default_link = "log"
    canonical_link = "log"
    dlogpdf_dmu = poisson_dlogpdf_dmu
    score_residual = False
    d2logpdf_dmu2 = poisson_d2logpdf_dmu2
    variance = poisson_variance
    dev_resid = poisson_dev_resid
    logpdf = poisson_logpdf
    dvariance_dmu = poisson_dvariance_dmu
    cumulant = poisson_cumulant
    zero_responses_matter = True
    zero_responses_label = "zero counts only"

    def prepare_response(self, values: list[pd.Series], weights: np.ndarray, name: str,
                         labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
        """Non-negative whole numbers."""
        y, weights, info = super().prepare_response(values, weights, name, labels)
        bad = np.flatnonzero((y < 0) | (np.abs(y - np.round(y)) > 1e-7))
        if bad.size:
            i = bad[0]
            raise ResponseError(f"poisson response '{name}' must be non-negative whole "
                                f"numbers; row {show(labels[i])} has {show(y[i])} "
                                f"({bad.size} such rows)")
        return y, weights, info

    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``poisson()$initialize``."""
        return y + 0.1

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Poisson draws."""
        return rng.poisson(mu).astype(float)
