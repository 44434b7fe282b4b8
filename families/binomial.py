"""The binomial family: Bernoulli and binomial-count responses.

Accepted responses: 0/1 numbers, booleans, a two-level string or categorical
column (the second level in sorted order is the success), proportions with
``weights=`` the number of trials, and ``cbind(successes, failures)``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from glmmcore.errors import ResponseError, show

from .base import Family
from .links import CLOGLOG, LOGIT, PROBIT


@njit(cache=True, inline="always")
def ylogy(y: float, mu: float) -> float:
    """``y log(y / mu)`` with the limit 0 at y = 0."""
    return y * math.log(y / mu) if y > 0.0 else 0.0


@njit(cache=True, inline="always")
def binomial_variance(mu: float, phi: float) -> float:
    return mu * (1.0 - mu)


@njit(cache=True, inline="always")
def binomial_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    if y == 1.0:  # Bernoulli responses need no division
        return -2.0 * wt * math.log(mu)
    if y == 0.0:
        return -2.0 * wt * math.log(1.0 - mu)
    return 2.0 * wt * (ylogy(y, mu) + ylogy(1.0 - y, 1.0 - mu))


@njit(cache=True, inline="always")
def binomial_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    if wt == 1.0:  # Bernoulli: the binomial coefficient is 1
        return math.log(mu) if y > 0.5 else math.log(1.0 - mu)
    k = wt * y
    out = math.lgamma(wt + 1.0) - math.lgamma(k + 1.0) - math.lgamma(wt - k + 1.0)
    if k > 0.0:
        out += k * math.log(mu)
    if wt - k > 0.0:
        out += (wt - k) * math.log(1.0 - mu)
    return out


@njit(cache=True, inline="always")
def binomial_dlogpdf_dmu(y: float, mu: float, wt: float, phi: float) -> float:
    # wt (y / mu - (1 - y) / (1 - mu)) over one division: the probit's PIRLS calls it per row
    return wt * (y - mu) / (mu * (1.0 - mu))


@njit(cache=True, inline="always")
def binomial_d2logpdf_dmu2(y: float, mu: float, wt: float, phi: float) -> float:
    nu, v = 1.0 - mu, mu * (1.0 - mu)
    return -wt * (y * nu * nu + (1.0 - y) * mu * mu) / (v * v)


@njit(cache=True, inline="always")
def binomial_dvariance_dmu(mu: float, phi: float) -> float:
    return 1.0 - 2.0 * mu


class Binomial(Family):
    """Binomial responses; ``y`` is the proportion of successes, ``weights`` the trials."""

    name = "binomial"
    links = {"logit": LOGIT, "probit": PROBIT, "cloglog": CLOGLOG}
    default_link = "logit"
    canonical_link = "logit"
    dlogpdf_dmu = binomial_dlogpdf_dmu
    score_residual = False
    d2logpdf_dmu2 = binomial_d2logpdf_dmu2
    variance = binomial_variance
    dev_resid = binomial_dev_resid
    logpdf = binomial_logpdf
    dvariance_dmu = binomial_dvariance_dmu
    # no cumulant: log(1 + exp(eta)) costs a log1p where dev_resid costs a log, and PIRLS's
    # update was 5-8% slower with it (speed_laplace, speed_slopes), quadrature 13% faster
    mean_bounds = (0.0, 1.0)
    zero_responses_matter = True
    zero_responses_label = "no successes (all responses 0)"

    def prepare_response(self, values: list[pd.Series], weights: np.ndarray, name: str,
                         labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
        """0/1, booleans, two levels, proportions with trials, or cbind counts."""
        if len(values) == 2:
            return _from_counts(values, weights, name, labels)
        series = values[0]
        if pd.api.types.is_bool_dtype(series):
            return series.to_numpy(dtype=float), weights, {}
        if not pd.api.types.is_numeric_dtype(series):
            return _from_levels(series, weights, name)
        y = series.to_numpy(dtype=float)
        bad = np.flatnonzero((y < 0) | (y > 1))
        if bad.size:
            i = bad[0]
            raise ResponseError(f"binomial response '{name}' must be in [0, 1] (0/1, or a "
                                f"proportion with weights = trials); row {show(labels[i])} has "
                                f"{show(y[i])} ({bad.size} such rows)")
        successes = y * weights
        off = np.flatnonzero(np.abs(successes - np.round(successes)) > 1e-7)
        if off.size:
            i = off[0]
            raise ResponseError(f"binomial response '{name}' times the weights (trials) must "
                                f"be whole numbers of successes; row {show(labels[i])} has "
                                f"{show(y[i])} x {show(weights[i])} trials")
        return y, weights, {}

    def in_support(self, y: np.ndarray) -> np.ndarray:
        """Proportions in [0, 1]."""
        return (y >= 0) & (y <= 1)

    def start_mu(self, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """R's ``binomial()$initialize``."""
        return (weights * y + 0.5) / (weights + 1.0)

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Proportions of successes out of ``weights`` trials."""
        trials = np.maximum(np.round(weights).astype(np.int64), 1)
        return rng.binomial(trials, mu) / trials


def _from_levels(series: pd.Series, weights: np.ndarray,
                 name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    if isinstance(series.dtype, pd.CategoricalDtype):
        levels = list(series.cat.remove_unused_categories().cat.categories)
    else:
        levels = sorted(series.unique(), key=str)
    if len(levels) != 2:
        shown = ", ".join(map(str, levels[:5]))
        raise ResponseError(f"binomial response '{name}' is not numeric and has "
                            f"{len(levels)} levels ({shown}); it needs exactly two")
    y = (series == levels[1]).to_numpy(dtype=float)
    return y, weights, {"success": levels[1], "failure": levels[0]}


def _from_counts(values: list[pd.Series], weights: np.ndarray, name: str,
                 labels: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
    counts = []
    for series, what in zip(values, ("successes", "failures")):
        if not pd.api.types.is_numeric_dtype(series):
            raise ResponseError(f"{what} in '{name}' must be numeric counts")
        c = series.to_numpy(dtype=float)
        bad = np.flatnonzero((c < 0) | (np.abs(c - np.round(c)) > 1e-7))
        if bad.size:
            i = bad[0]
            raise ResponseError(f"{what} in '{name}' must be non-negative whole numbers; "
                                f"row {show(labels[i])} has {show(c[i])}")
        counts.append(c)
    trials = counts[0] + counts[1]
    y = np.divide(counts[0], trials, out=np.zeros_like(trials), where=trials > 0)
    return y, weights * trials, {"trials": "cbind"}
