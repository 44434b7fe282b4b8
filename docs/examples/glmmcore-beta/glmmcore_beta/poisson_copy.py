"""A copy of glmmcore's Poisson family (log link), registered as ``poisson_plugin``.

It exists to measure the plugin machinery: every kernel, the log link's
included, is defined here rather than imported from glmmcore, so a fit with
``family="poisson_plugin"`` goes through entry-point discovery, kernel
generation and numba's cache exactly as a third-party family does.  Its fits
must equal the built-in ``poisson``'s to rounding, and take the same time.  Like the
built-in it gives its cumulant and uses glmmcore's vectorizable ``vexp`` (a utility any
plugin may use), so that its PIRLS and quadrature loops vectorize as the built-in's do, and
``dvariance_dmu``, so that the Laplace gradient's weight slope is exact rather than a
central difference.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from glmmcore.errors import ResponseError, show
from glmmcore.families.base import Family, Link
from glmmcore.families.vecmath import vexp

EPS = 2.220446049250313e-16


@njit(cache=True, inline="always")
def log_linkfun(mu: float) -> float:
    return math.log(mu)


@njit(cache=True, inline="always")
def log_linkinv(eta: float) -> float:
    return max(vexp(eta), EPS)


@njit(cache=True, inline="always")
def log_mu_eta(eta: float, mu: float) -> float:
    return mu


@njit(cache=True, inline="always")
def log_mu_eta2(eta: float, mu: float) -> float:
    return mu


@njit(cache=True, inline="always")
def ylogy(y: float, mu: float) -> float:
    """``y log(y / mu)``, 0 at ``y = 0``."""
    return y * math.log(y / mu) if y > 0.0 else 0.0


@njit(cache=True, inline="always")
def poisson_variance(mu: float, phi: float) -> float:
    return mu


@njit(cache=True, inline="always")
def poisson_dvariance_dmu(mu: float, phi: float) -> float:
    return 1.0


@njit(cache=True, inline="always")
def poisson_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    return 2.0 * wt * (ylogy(y, mu) - (y - mu))


@njit(cache=True, inline="always")
def poisson_cumulant(eta: float) -> float:
    return vexp(eta)


@njit(cache=True, inline="always")
def poisson_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    out = -mu - math.lgamma(y + 1.0)
    if y > 0.0:
        out += y * math.log(mu)
    return wt * out


LOG = Link("log", log_linkfun, log_linkinv, log_mu_eta, log_mu_eta2)


class PoissonPlugin(Family):
    """Counts with variance equal to the mean (a plugin copy of ``poisson``)."""

    name = "poisson_plugin"
    links = {"log": LOG}
    default_link = "log"
    canonical_link = "log"
    variance = poisson_variance
    dvariance_dmu = poisson_dvariance_dmu
    dev_resid = poisson_dev_resid
    logpdf = poisson_logpdf
    cumulant = poisson_cumulant

    def prepare_response(self, values: list[pd.Series], weights: np.ndarray, name: str,
                         labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
        """Non-negative whole numbers.

        Raises
        ------
        ResponseError
            Naming the column, the first bad row and its value.
        """
        y, weights, info = super().prepare_response(values, weights, name, labels)
        bad = np.flatnonzero((y < 0) | (np.abs(y - np.round(y)) > 1e-7))
        if bad.size:
            i = bad[0]
            raise ResponseError(f"{self.name} response '{name}' must be non-negative whole "
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
