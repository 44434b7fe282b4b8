"""Beta regression for proportions in (0, 1), with the precision estimated.

Mean-precision parametrization (Ferrari & Cribari-Neto 2004, glmmTMB's
``beta_family()``): ``y ~ Beta(mu * phi, (1 - mu) * phi)``, so that
``E(y) = mu`` and ``Var(y) = mu (1 - mu) / (1 + phi)``.  glmmcore estimates
``phi`` (the *precision*) jointly with the other parameters, on the log scale.

Prior weights multiply the log-density (``wt * log p(y)``), as glmmTMB's.

The kernels (see ``docs/family-plugins.md`` for the contract), with
``a = mu phi``, ``b = (1 - mu) phi``, ``psi`` digamma and ``psi1`` trigamma:

- ``logpdf = wt (lgamma(phi) - lgamma(a) - lgamma(b) + (a - 1) log y + (b - 1) log(1 - y))``
- ``dev_resid = 2 wt (l(y; y) - l(y; mu))``, the log-density at ``mu = y`` minus that
  at ``mu``: zero at ``mu = y``; slightly negative near it, because the Beta
  likelihood in ``mu`` peaks where ``psi(a) - psi(b) = logit(y)``, not at ``y``
  (betareg's deviance residuals take the same reference and an absolute value).
- ``variance = 1 / (phi^2 (psi1(a) + psi1(b)))``, the inverse Fisher information
  of ``mu``; not ``Var(y)``, since Beta is not an exponential-dispersion family.
- ``dlogpdf_dmu = wt phi (logit(y) - psi(a) + psi(b))`` and
  ``d2logpdf_dmu2 = -wt phi^2 (psi1(a) + psi1(b))``, for the exact Laplace
  approximation (``laplace = "observed"``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit

from glmmcore.errors import ResponseError, show
from glmmcore.families.base import ExtraParameter, Family
from glmmcore.families.links import CLOGLOG, LOGIT, PROBIT

from .special import digamma, trigamma


@njit(cache=True, inline="always")
def beta_variance(mu: float, phi: float) -> float:
    return 1.0 / (phi * phi * (trigamma(mu * phi) + trigamma((1.0 - mu) * phi)))


@njit(cache=True, inline="always")
def beta_dev_resid(y: float, mu: float, wt: float, phi: float) -> float:
    a, b = mu * phi, (1.0 - mu) * phi
    logit_y = math.log(y) - math.log1p(-y)
    return 2.0 * wt * (math.lgamma(a) + math.lgamma(b) - math.lgamma(y * phi)
                       - math.lgamma((1.0 - y) * phi) + phi * (y - mu) * logit_y)


@njit(cache=True, inline="always")
def beta_logpdf(y: float, mu: float, wt: float, phi: float) -> float:
    a, b = mu * phi, (1.0 - mu) * phi
    return wt * (math.lgamma(phi) - math.lgamma(a) - math.lgamma(b)
                 + (a - 1.0) * math.log(y) + (b - 1.0) * math.log1p(-y))


@njit(cache=True, inline="always")
def beta_dlogpdf_dmu(y: float, mu: float, wt: float, phi: float) -> float:
    logit_y = math.log(y) - math.log1p(-y)
    return wt * phi * (logit_y - digamma(mu * phi) + digamma((1.0 - mu) * phi))


@njit(cache=True, inline="always")
def beta_d2logpdf_dmu2(y: float, mu: float, wt: float, phi: float) -> float:
    return -wt * phi * phi * (trigamma(mu * phi) + trigamma((1.0 - mu) * phi))


@njit(cache=True, inline="always")
def beta_dlogpdf_dphi(y: float, mu: float, wt: float, phi: float) -> float:
    return wt * (digamma(phi) - mu * digamma(mu * phi) - (1.0 - mu) * digamma((1.0 - mu) * phi)
                 + mu * math.log(y) + (1.0 - mu) * math.log1p(-y))


class Beta(Family):
    """Proportions strictly between 0 and 1; ``phi`` is the precision.

    Parameters
    ----------
    link
        ``"logit"`` (default), ``"probit"`` or ``"cloglog"``.
    """

    name = "beta"
    links = {"logit": LOGIT, "probit": PROBIT, "cloglog": CLOGLOG}
    default_link = "logit"
    extra = ExtraParameter("precision")
    variance = beta_variance
    dev_resid = beta_dev_resid
    logpdf = beta_logpdf
    laplace = "observed"
    dlogpdf_dmu = beta_dlogpdf_dmu
    d2logpdf_dmu2 = beta_d2logpdf_dmu2
    # the gradient in the precision (glmmcore takes the rest of the gradient from the
    # kernels above: docs/family-plugins.md, "The gradient path")
    dlogpdf_dphi = beta_dlogpdf_dphi
    mean_bounds = (0.0, 1.0)

    def check_support(self, y: np.ndarray, name: str, labels: pd.Index) -> None:
        """Raise :class:`ResponseError` at the first value outside (0, 1).

        :meth:`Family.prepare_response` calls it; the message names the family,
        the link, the column, the first bad row and value.
        """
        bad = np.flatnonzero(~self.in_support(y))
        if bad.size:
            i = bad[0]
            raise ResponseError(
                f"response '{name}' has a value outside the support (0, 1) of the beta "
                f"family (link '{self.link.name}'): {show(y[i])} in row {show(labels[i])} "
                f"({bad.size} such rows); exact 0s and 1s need a transformation such as "
                f"(y (n - 1) + 0.5) / n or a zero/one-inflated model")

    def in_support(self, y: np.ndarray) -> np.ndarray:
        """Values strictly between 0 and 1."""
        return (y > 0.0) & (y < 1.0)

    def start_phi(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray) -> float:
        """Moment estimate ``mean(mu (1 - mu)) / mean((y - mu)^2) - 1`` from the GLM start."""
        spread = np.average((y - mu) ** 2, weights=weights)
        phi = np.average(mu * (1.0 - mu), weights=weights) / max(spread, 1e-12) - 1.0
        return float(np.clip(phi, 0.5, 1e6))

    def display_params(self, phi: float) -> dict[str, float]:
        """The precision ``phi``."""
        return {"precision": phi}

    def response_variance(self, mu: np.ndarray, phi: float = 1.0) -> np.ndarray:
        """``Var(y) = mu (1 - mu) / (1 + phi)`` (the kernel is the inverse information)."""
        mu = np.asarray(mu, dtype=float)
        return mu * (1.0 - mu) / (1.0 + phi)

    def simulate(self, mu: np.ndarray, weights: np.ndarray, phi: float,
                 rng: np.random.Generator) -> np.ndarray:
        """Beta draws with mean ``mu`` and precision ``phi`` (weights are not used).

        Draws that round to exactly 0 or 1 (possible when ``mu phi`` or
        ``(1 - mu) phi`` is tiny) are moved to the nearest representable
        value inside (0, 1), so that they stay in the support.
        """
        mu = np.asarray(mu, dtype=float)
        draws = rng.beta(mu * phi, (1.0 - mu) * phi)
        return np.clip(draws, np.finfo(float).tiny, np.nextafter(1.0, 0.0))
