"""Link functions as scalar ``njit`` kernels.

``mu_eta(eta, mu)`` receives ``mu = linkinv(eta)`` as well, so that links
whose derivative is a function of the mean (logit, log, inverse) do not
compute it twice.  The clamping follows R's ``make.link`` and ``binomial()``
so that the iterations see the same means lme4 sees near 0 and 1.
"""

from __future__ import annotations

import math

from numba import njit

from .base import Link
from .vecmath import vexp

EPS = 2.220446049250313e-16
PROBIT_THRESH = 8.125890664701906   # -qnorm(eps)
INV_SQRT_2PI = 0.3989422804014327


@njit(cache=True, inline="always")
def identity_linkfun(mu: float) -> float:
    return mu


@njit(cache=True, inline="always")
def identity_linkinv(eta: float) -> float:
    return eta


@njit(cache=True, inline="always")
def identity_mu_eta(eta: float, mu: float) -> float:
    return 1.0


@njit(cache=True, inline="always")
def log_linkfun(mu: float) -> float:
    return math.log(mu)


@njit(cache=True, inline="always")
def log_linkinv(eta: float) -> float:
    return max(vexp(eta), EPS)   # vexp: loops over observations can vectorize


@njit(cache=True, inline="always")
def log_mu_eta(eta: float, mu: float) -> float:
    return mu  # max(exp(eta), eps), as linkinv


@njit(cache=True, inline="always")
def inverse_linkfun(mu: float) -> float:
    return 1.0 / mu


@njit(cache=True, inline="always")
def inverse_linkinv(eta: float) -> float:
    return 1.0 / eta


@njit(cache=True, inline="always")
def inverse_mu_eta(eta: float, mu: float) -> float:
    return -mu * mu


@njit(cache=True, inline="always")
def logit_linkfun(mu: float) -> float:
    return math.log(mu / (1.0 - mu))


@njit(cache=True, inline="always")
def logit_linkinv(eta: float) -> float:
    t = math.exp(-abs(eta))  # never overflows
    mu = 1.0 / (1.0 + t) if eta >= 0.0 else t / (1.0 + t)
    return min(max(mu, EPS), 1.0 - EPS)  # as R, keep 0 < mu < 1


@njit(cache=True, inline="always")
def logit_mu_eta(eta: float, mu: float) -> float:
    return max(mu * (1.0 - mu), EPS)


@njit(cache=True, inline="always")
def probit_linkfun(mu: float) -> float:
    return _qnorm(mu)


@njit(cache=True, inline="always")
def probit_linkinv(eta: float) -> float:
    e = min(max(eta, -PROBIT_THRESH), PROBIT_THRESH)
    return 0.5 * math.erfc(-e / math.sqrt(2.0))


@njit(cache=True, inline="always")
def probit_mu_eta(eta: float, mu: float) -> float:
    return max(INV_SQRT_2PI * math.exp(-0.5 * eta * eta), EPS)


@njit(cache=True, inline="always")
def cloglog_linkfun(mu: float) -> float:
    return math.log(-math.log1p(-mu))


@njit(cache=True, inline="always")
def cloglog_linkinv(eta: float) -> float:
    return max(min(-math.expm1(-math.exp(eta)), 1.0 - EPS), EPS)


@njit(cache=True, inline="always")
def cloglog_mu_eta(eta: float, mu: float) -> float:
    e = min(eta, 700.0)
    return max(math.exp(e) * math.exp(-math.exp(e)), EPS)


@njit(cache=True, inline="always")
def sqrt_linkfun(mu: float) -> float:
    return math.sqrt(mu)


@njit(cache=True, inline="always")
def sqrt_linkinv(eta: float) -> float:
    return eta * eta


@njit(cache=True, inline="always")
def sqrt_mu_eta(eta: float, mu: float) -> float:
    return 2.0 * eta


@njit(cache=True, inline="always")
def identity_mu_eta2(eta: float, mu: float) -> float:
    return 0.0


@njit(cache=True, inline="always")
def log_mu_eta2(eta: float, mu: float) -> float:
    return mu


@njit(cache=True, inline="always")
def inverse_mu_eta2(eta: float, mu: float) -> float:
    return 2.0 * mu * mu * mu


@njit(cache=True, inline="always")
def logit_mu_eta2(eta: float, mu: float) -> float:
    return mu * (1.0 - mu) * (1.0 - 2.0 * mu)


@njit(cache=True, inline="always")
def probit_mu_eta2(eta: float, mu: float) -> float:
    return -eta * INV_SQRT_2PI * math.exp(-0.5 * eta * eta)


@njit(cache=True, inline="always")
def cloglog_mu_eta2(eta: float, mu: float) -> float:
    e = math.exp(min(eta, 700.0))
    return e * math.exp(-e) * (1.0 - e)


@njit(cache=True, inline="always")
def sqrt_mu_eta2(eta: float, mu: float) -> float:
    return 2.0


@njit(cache=True)
def _qnorm(p: float) -> float:
    """Normal quantile (Acklam's rational approximation, one Newton step)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = ((((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
             / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0))
    elif p > 1.0 - 0.02425:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -((((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
              / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0))
    else:
        q = p - 0.5
        r = q * q
        x = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
             / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0))
    e = 0.5 * math.erfc(-x / math.sqrt(2.0)) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


def _link(name: str) -> Link:
    g = globals()
    return Link(name, g[f"{name}_linkfun"], g[f"{name}_linkinv"], g[f"{name}_mu_eta"],
                g[f"{name}_mu_eta2"])


IDENTITY = _link("identity")
LOG = _link("log")
INVERSE = _link("inverse")
LOGIT = _link("logit")
PROBIT = _link("probit")
CLOGLOG = _link("cloglog")
SQRT = _link("sqrt")
