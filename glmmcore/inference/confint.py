"""Confidence intervals (lme4's ``confint.merMod``): Wald, likelihood profile, bootstrap.

Rows are lme4's ``oldNames = FALSE`` names: the random effects' standard
deviations and correlations (``sd_(Intercept)|Subject``,
``cor_Days.(Intercept)|Subject``), ``sigma``, then the fixed effects; columns
are the two percentages, as R labels them (``2.5 %``, ``97.5 %``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import GlmmWarning
from ..spec.arguments import check_choice, check_int, check_real
from .parameters import variance_names
from .profile import profile, select_parameters
from .spline import inverse_profile

METHODS = ("profile", "wald", "boot")


def confint(result: Any, parm: Any = None, *, level: float = 0.95, method: str = "profile",
            nsim: int = 1000, seed: Any = None, n_jobs: int | None = None) -> pd.DataFrame:
    """Confidence intervals of a fit's parameters (see :meth:`MixedModelResult.confint`)."""
    level = check_real(level, "level", minimum=1e-6, maximum=1 - 1e-6)
    method = check_choice(str(method).lower() if isinstance(method, str) else method,
                          "method", METHODS)
    names = variance_names(result) + list(result.predictor.fixed.names)
    which = select_parameters(parm, names, len(variance_names(result)))
    columns = _percent_labels(level)
    if method == "wald":
        table = wald_intervals(result, level)
    elif method == "profile":
        table = profile_intervals(profile(result, [names[w] for w in which]), level)
    else:
        from .bootstrap import bootstrap
        draws = bootstrap(result, check_int(nsim, "nsim", minimum=2), seed=seed,
                          n_jobs=n_jobs)
        table = percentile_intervals(draws, level)
    table.columns = columns
    return table.loc[[names[w] for w in which]]


def wald_intervals(result: Any, level: float) -> pd.DataFrame:
    """``estimate +- z se`` for the fixed effects; NaN for the variance parameters (lme4)."""
    z = stats.norm.ppf([(1 - level) / 2, (1 + level) / 2])
    se = np.sqrt(np.diag(result.vcov_beta))
    fixed = result.beta[:, None] + se[:, None] * z[None, :]
    variance = np.full((len(variance_names(result)), 2), np.nan)
    return pd.DataFrame(np.vstack([variance, fixed]),
                        index=variance_names(result) + list(result.predictor.fixed.names))


def profile_intervals(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """Intervals from a profile (lme4's ``confint.thpr``).

    Each parameter's zeta is interpolated by a natural cubic spline of the
    parameter and inverted (R's ``interpSpline`` and ``backSpline``) at the
    normal quantiles ``-+z``.  Where the profile stops at a bound before zeta
    reaches ``z`` (a standard deviation at 0, a correlation at +-1) the bound
    is the limit.  A profile the spline cannot invert (not monotone) is
    interpolated linearly, with a warning, when it is monotone within 0.01 in
    zeta, else its interval is NaN.
    """
    z = stats.norm.ppf([(1 - level) / 2, (1 + level) / 2])
    bounds = table.attrs.get("bounds", {})
    rows = {}
    for name, part in table.groupby("parameter", sort=False):
        part = part.dropna(subset=["zeta"]).sort_values("value")
        values, zetas = part["value"].to_numpy(), part["zeta"].to_numpy()
        try:
            limits = inverse_profile(values, zetas, z)
        except ValueError:
            limits = _linear_limits(name, values, zetas, z)
        lower, upper = bounds.get(name, (np.nan, np.nan))
        lower = np.nan if np.isinf(lower) else lower
        upper = np.nan if np.isinf(upper) else upper
        rows[name] = [lower if np.isnan(limits[0]) else limits[0],
                      upper if np.isnan(limits[1]) else limits[1]]
    return pd.DataFrame.from_dict(rows, orient="index")


def _linear_limits(name: str, values: np.ndarray, zetas: np.ndarray,
                   z: np.ndarray) -> np.ndarray:
    if np.min(np.diff(zetas), initial=0.0) < -0.01:
        warnings.warn(f"non-monotonic profile for {name}: no interval", GlmmWarning,
                      stacklevel=4)
        return np.array([np.nan, np.nan])
    warnings.warn(f"bad spline fit for {name}: falling back to linear interpolation",
                  GlmmWarning, stacklevel=4)
    return np.array([_crossing(values, zetas, target) for target in z])


def _crossing(values: np.ndarray, zetas: np.ndarray, target: float) -> float:
    """Where the profile, followed outwards from the estimate (zeta 0), first reaches
    ``target``, interpolated linearly; NaN if it never does."""
    centre = int(np.argmin(np.abs(zetas)))
    order = range(centre, -1, -1) if target < 0 else range(centre, len(values))
    previous = None
    for k in order:
        if previous is not None and (zetas[k] - target) * (zetas[previous] - target) <= 0 \
                and zetas[k] != zetas[previous]:
            share = (target - zetas[previous]) / (zetas[k] - zetas[previous])
            return float(values[previous] + share * (values[k] - values[previous]))
        previous = k
    return np.nan


def percentile_intervals(draws: pd.DataFrame, level: float) -> pd.DataFrame:
    """Bootstrap percentile intervals, as R's ``boot.ci(type = "perc")`` (lme4's default):
    order statistics interpolated on the normal quantile scale, failed draws left out."""
    alpha = np.array([(1 - level) / 2, (1 + level) / 2])
    columns = [c for c in draws.columns if c not in ("converged", "error")]
    rows = {c: percentile_interval(draws[c].to_numpy(dtype=float), alpha) for c in columns}
    return pd.DataFrame.from_dict(rows, orient="index")


def percentile_interval(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """R's ``boot:::norm.inter``: the ``(R + 1) alpha``-th order statistics, interpolated
    between neighbours on the normal quantile scale (the extremes where out of range)."""
    t = np.sort(t[np.isfinite(t)])
    n = t.size
    if n == 0:
        return np.full(alpha.size, np.nan)
    rank = (n + 1) * alpha
    k = np.trunc(rank).astype(int)
    out = np.empty(alpha.size)
    for i in range(alpha.size):
        if k[i] == rank[i] and 1 <= k[i] <= n:
            out[i] = t[k[i] - 1]
        elif k[i] == 0:
            out[i] = t[0]
        elif k[i] >= n:
            out[i] = t[-1]
        else:
            q, q0, q1 = stats.norm.ppf([alpha[i], k[i] / (n + 1), (k[i] + 1) / (n + 1)])
            out[i] = t[k[i] - 1] + (q - q0) / (q1 - q0) * (t[k[i]] - t[k[i] - 1])
    return out


def _percent_labels(level: float) -> list[str]:
    """R's ``format.perc(a, 3)``: ``2.5 %``, ``97.5 %``."""
    a = [(1 - level) / 2, (1 + level) / 2]
    return [f"{float(f'{100 * x:.3g}'):g} %" for x in a]
