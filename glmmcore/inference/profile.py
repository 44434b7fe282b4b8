"""Likelihood profiles (lme4's ``profile.merMod``).

For each parameter, the deviance is minimized over the others with that one
held at a sequence of values; ``zeta`` is the signed square root of the
deviance's rise above the optimum, ``sign(value - estimate) sqrt(dev - dev0)``,
a straight line of slope ``1 / se`` for a quadratic log-likelihood.  The
values are chosen as lme4 chooses them (:func:`_walk`): from the estimate
outwards in steps that aim at a rise of ``delta`` in zeta, extrapolated from
the last two points, until ``|zeta|`` passes the ``1 - alphamax`` cutoff of
the chi-square with as many degrees of freedom as parameters, or a bound.

The parameters are lme4's: standard deviations and correlations of the
random effects, ``sigma`` (LMM), the fixed effects.  A REML fit is profiled
as its ML refit, as lme4 does.  For an LMM the deviance is (lme4's
``devfun2``)::

    log|L|^2 - sum(log w) + r2(theta) / sigma^2 + n log(2 pi sigma^2)

with ``theta`` the relative factor of the sds and correlations over sigma and
``r2`` the penalized residual sum of squares; the variance parameters are
optimized with BOBYQA in their box (sds >= 0, correlations in [-1, 1]).  A
fixed effect held at ``b`` adds ``(b - beta_hat_j)^2 / [(R_X'R_X)^-1]_jj`` to
``r2`` (beta's least squares minimized over the others), and theta is
optimized with the ML deviance profiled over sigma.  For a GLMM every
parameter is held in turn and all others (fixed effects included) are
optimized on the Laplace or quadrature deviance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nlopt
import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ArgumentError, ConvergenceError, ConvergenceWarning, ModelSpecError
from ..spec.arguments import check_int, check_real
from .parameters import (
    sdcor_bounds,
    sdcor_to_theta,
    term_sizes,
    theta_to_sdcor,
    variance_names,
)
from .refits import refit_ml

MIN_STEP = 1e-6         # lme4's nextpar minstep
OPT_TOL = 1e-10         # BOBYQA's tolerances for the optimizations at held values


@dataclass
class _Problem:
    """The deviance over the jointly optimized parameters and how to hold each one."""

    names: list[str]
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_joint: int                                  # parameters optimized jointly
    deviance: Callable[[np.ndarray], float]        # of the jointly optimized parameters
    base: float
    first_steps: np.ndarray           # the first value tried beside each estimate (NaN: below)
    stderr: np.ndarray | None = None  # the fixed effects' (LMM: first step est + delta se)
    fixed_zeta: Callable[[int, float, np.ndarray], tuple[float, np.ndarray]] | None = None
    fixed_start: np.ndarray | None = None


def profile(result: Any, parm: Any = None, *, alphamax: float = 0.01, maxpts: int = 100,
            delta_cutoff: float = 0.125, maxmult: float = 10.0) -> pd.DataFrame:
    """The likelihood profile of a fit (lme4's ``profile``), as a tidy table.

    Parameters
    ----------
    result
        A fitted model (LMM, or GLMM without a scale parameter fitted with
        ``nAGQ >= 1``).  REML fits are profiled as their ML refit.
    parm
        Parameter names (as :meth:`~glmmcore.MixedModelResult.confint`'s
        rows), positions, ``"theta_"`` (the variance parameters) or
        ``"beta_"`` (the fixed effects); ``None``: all.
    alphamax
        Profiles run until ``zeta^2`` passes the ``1 - alphamax`` quantile of
        the chi-square with one degree of freedom per parameter of the model.
    maxpts
        Most points on either side of an estimate.
    delta_cutoff
        The aimed step in zeta, as a fraction of the cutoff.
    maxmult
        Largest step, as a multiple of the last one.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, value, zeta``, sorted by value within each
        parameter (the estimate, at zeta 0, included).  ``attrs["bounds"]``
        maps each parameter to its ``(lower, upper)`` bounds (infinite for
        fixed effects) and ``attrs["estimate"]`` to its estimate.
    """
    alphamax = check_real(alphamax, "alphamax", minimum=1e-12, maximum=0.5)
    maxpts = check_int(maxpts, "maxpts", minimum=3)
    delta_cutoff = check_real(delta_cutoff, "delta_cutoff", minimum=1e-6)
    maxmult = check_real(maxmult, "maxmult", minimum=1.0)
    problem = _problem(result)
    which = select_parameters(parm, problem.names, problem.n_joint if problem.fixed_zeta
                              else len(variance_names(result)))
    cutoff = float(np.sqrt(stats.chi2.ppf(1.0 - alphamax, len(problem.names))))
    delta = cutoff * delta_cutoff
    frames = []
    for w in which:
        values, zetas = _profile_one(problem, w, cutoff, delta, maxpts, maxmult)
        frames.append(pd.DataFrame({"parameter": problem.names[w], "value": values,
                                    "zeta": zetas}))
    table = pd.concat(frames, ignore_index=True)
    table.attrs["bounds"] = {problem.names[w]: (float(problem.lower[w]),
                                                float(problem.upper[w])) for w in which}
    table.attrs["estimate"] = {problem.names[w]: float(problem.estimate[w]) for w in which}
    return table


def select_parameters(parm: Any, names: list[str], n_variance: int) -> list[int]:
    """Positions of the parameters ``parm`` names (lme4's ``get.which``)."""
    if parm is None:
        return list(range(len(names)))
    if isinstance(parm, str):
        if parm == "theta_":
            return list(range(n_variance))
        if parm == "beta_":
            return list(range(n_variance, len(names)))
        parm = [parm]
    out = []
    for p in parm:
        if isinstance(p, (int, np.integer)) and not isinstance(p, bool):
            if not 0 <= p < len(names):
                raise ArgumentError(f"parameter position {p} is out of range 0..{len(names) - 1}")
            out.append(int(p))
        elif isinstance(p, str) and p in names:
            out.append(names.index(p))
        else:
            raise ArgumentError(f"unknown parameter {p!r}; the parameters are "
                                f"{', '.join(names)} (or 'theta_', 'beta_')")
    return out


# -- the walk ------------------------------------------------------------------------
def _profile_one(problem: _Problem, w: int, cutoff: float, delta: float, maxpts: int,
                 maxmult: float) -> tuple[np.ndarray, np.ndarray]:
    """Values and zetas of parameter ``w``: the estimate, then outwards both ways."""
    estimate = problem.estimate[w]
    if w < problem.n_joint:
        lowcut, upcut = problem.lower[w], problem.upper[w]
        others = np.delete(problem.estimate[:problem.n_joint], w)

        def zeta_at(value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
            return _held_zeta(problem, w, value, start)
    else:
        lowcut, upcut = -np.inf, np.inf
        others = problem.fixed_start

        def zeta_at(value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
            return problem.fixed_zeta(w - problem.n_joint, value, start)
    first_value = problem.first_steps[w]
    if np.isnan(first_value):
        first_value = estimate + delta * problem.stderr[w - problem.n_joint]
    first = (first_value, *zeta_at(first_value, others))
    at_estimate = (estimate, 0.0, others)
    points = _walk([at_estimate, first], zeta_at, lowcut, upcut, cutoff, delta, maxpts,
                   maxmult)
    if estimate > lowcut:
        points += _walk([first, at_estimate], zeta_at, lowcut, upcut, cutoff, delta, maxpts,
                        maxmult)
    points = sorted({p[0]: p for p in points}.values(), key=lambda p: p[0])
    points = _repaired(points, zeta_at)
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _repaired(points: list[tuple], zeta_at: Callable, sweeps: int = 3) -> list[tuple]:
    """Points of a profile that is not monotone, optimized again from their neighbours'
    optima, the lower deviance kept.

    The optimization at a held value starts from the last point's optimum
    (lme4's ``startmethod = "prev"``) and can end in a local optimum there: a
    correlation held where the best fit has a standard deviation of 0 (where
    the correlation no longer matters) is found from the side of that 0, not
    from the side of the estimate.
    """
    for _ in range(sweeps):
        zetas = np.array([p[1] for p in points])
        if not np.any(np.diff(zetas) < 0):
            break
        for i, point in enumerate(points):
            for j in (i - 1, i + 1):
                if not 0 <= j < len(points) or point[1] == 0.0:
                    continue
                again = (point[0], *zeta_at(point[0], points[j][2]))
                if abs(again[1]) < abs(points[i][1]) - 1e-9:
                    points[i] = again
    return points


def _walk(rows: list[tuple], zeta_at: Callable, lowcut: float, upcut: float, cutoff: float,
          delta: float, maxpts: int, maxmult: float) -> list[tuple]:
    """lme4's ``fillmat``: extend ``rows`` (value, zeta, others) by extrapolated steps."""
    while (len(rows) < maxpts and lowcut < rows[-1][0] < upcut
           and (np.isnan(rows[-1][1]) or abs(rows[-1][1]) <= cutoff)
           and not (len(rows) > 2 and rows[-1][1] == rows[-2][1])):
        # (a zeta that stays the same: the parameter no longer matters, as a correlation
        # when a standard deviation is held at 0; lme4 creeps on by 1e-6 to maxpts)
        value = _next_value(rows[-2], rows[-1], delta, lowcut, upcut, maxmult)
        rows.append((value, *zeta_at(value, rows[-1][2])))
    return rows


def _next_value(before: tuple, last: tuple, delta: float, lowcut: float, upcut: float,
                maxmult: float) -> float:
    """lme4's ``nextpar``: the step that would raise zeta by ``delta`` on the line through
    the last two points, at most ``maxmult`` times the last step."""
    num = last[0] - before[0]
    denom = last[1] - before[1]
    if np.isnan(denom) or denom == 0:
        step = MIN_STEP
    else:
        step = delta * num / denom
        if step < 0:
            step = MIN_STEP
        elif abs(step) > maxmult * abs(num):
            step = maxmult * abs(num)
    return float(min(upcut, max(lowcut, last[0] + np.sign(num) * step)))


def _held_zeta(problem: _Problem, w: int, value: float,
               start: np.ndarray) -> tuple[float, np.ndarray]:
    """zeta with jointly optimized parameter ``w`` held at ``value``; the others' optimum."""
    def full(others: np.ndarray) -> np.ndarray:
        return np.insert(others, w, value)

    lower = np.delete(problem.lower[:problem.n_joint], w)
    upper = np.delete(problem.upper[:problem.n_joint], w)
    typical = np.abs(np.delete(problem.estimate[:problem.n_joint], w))
    best, fval = box_bobyqa(lambda x: problem.deviance(full(x)), start, lower, upper, typical)
    return _signed_root(fval - problem.base, value - problem.estimate[w]), best


def _signed_root(rise: float, side: float) -> float:
    """lme4's zeta: ``sign(side) sqrt(rise)``, a rise a little below 0 read as 0."""
    if not np.isfinite(rise):
        return np.nan
    if rise < -1e-6:
        warnings.warn(f"profiling found a deviance {-rise:.3g} below the fit's: the fit may "
                      "not be at its optimum", ConvergenceWarning, stacklevel=4)
    return float(np.sign(side) * np.sqrt(max(rise, 0.0)))


def box_bobyqa(f: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
               upper: np.ndarray, typical: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimize ``f`` in a box with BOBYQA; the best point seen and its value.

    The first steps are a tenth of each parameter's typical size (its
    estimate's): a standard deviation that the held parameter pushed near 0
    can still leave it on the first steps.
    """
    x0 = np.clip(np.asarray(x0, dtype=float), lower, upper)
    if x0.size == 0:
        return x0, float(f(x0))
    best = {"x": x0.copy(), "f": np.inf}

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        value = float(f(x))
        if value < best["f"]:
            best["x"], best["f"] = x.copy(), value
        return value if np.isfinite(value) else 1e300

    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_min_objective(objective)
    opt.set_ftol_rel(OPT_TOL)
    opt.set_ftol_abs(OPT_TOL)
    opt.set_xtol_abs(1e-9)
    opt.set_maxeval(50_000)
    width = np.where(np.isfinite(upper - lower), upper - lower, np.inf)
    step = np.maximum(0.1 * np.maximum(np.abs(x0), typical), 0.05)
    opt.set_initial_step(np.minimum(step, 0.25 * width))
    try:
        opt.optimize(x0)
    except nlopt.RoundoffLimited:
        pass
    return best["x"], best["f"]


# -- the deviances ---------------------------------------------------------------------
def _problem(result: Any) -> _Problem:
    if result.is_lmm:
        return _lmm_problem(refit_ml(result))
    if result.has_scale or result.family.extra is not None:
        raise ModelSpecError(f"profiles of GLMMs with a fitted family parameter "
                             f"({result.family.name}) are not defined here (nor in lme4); "
                             "use confint(method='wald') or method='boot'")
    if result.method == "nAGQ=0":
        raise ModelSpecError("an nAGQ=0 fit has no deviance in the fixed effects to profile; "
                             "refit with nAGQ=1, or use confint(method='boot')")
    return _glmm_problem(result)


def _lmm_problem(fit: Any) -> _Problem:
    from ..objectives.lmm import LmmDeviance
    sizes = term_sizes(fit)
    response = fit.response
    dev = LmmDeviance(fit.predictor, response.y, response.weights, response.offset, False)
    n, p = dev.n, dev.p
    log_2pi = np.log(2.0 * np.pi)

    def variance_deviance(pars: np.ndarray) -> float:
        sigma = pars[-1]
        if sigma <= 0:
            return np.inf
        if not dev.refactor(sdcor_to_theta(pars[:-1], sizes, sigma)):
            return np.inf
        pwrss = dev.factor.y_diag(p) ** 2
        return float(dev.factor.logdet_re - dev.ldW + pwrss / sigma ** 2
                     + n * (log_2pi + 2.0 * np.log(sigma)))

    def fixed_zeta(j: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        def held(theta: np.ndarray) -> float:
            return _held_fixed_deviance(dev, theta, j, value)
        from ..fitting.optimizers.bobyqa import bobyqa
        opt = bobyqa(held, start, fit.predictor.reterms.theta_lower, rel_tol=OPT_TOL,
                     x_tol=1e-9)
        return _signed_root(opt.fun - base, value - fit.beta[j]), opt.x

    lower, upper = sdcor_bounds(sizes)
    lower, upper = np.append(lower, 0.0), np.append(upper, np.inf)
    variance = np.append(theta_to_sdcor(fit.theta, sizes, fit.sigma), fit.sigma)
    base = -2.0 * fit.loglik
    nv = variance.size
    estimate = np.concatenate([variance, fit.beta])
    first = np.concatenate([np.where(variance == 0, 1e-3, variance * 1.01), np.full(p, np.nan)])
    return _Problem(
        names=variance_names(fit) + list(fit.predictor.fixed.names), estimate=estimate,
        lower=np.concatenate([lower, np.full(p, -np.inf)]),
        upper=np.concatenate([upper, np.full(p, np.inf)]), n_joint=nv,
        deviance=variance_deviance, base=base, first_steps=first, fixed_zeta=fixed_zeta,
        fixed_start=fit.theta.copy(), stderr=np.sqrt(np.diag(fit.vcov_beta)))


def _held_fixed_deviance(dev: Any, theta: np.ndarray, j: int, value: float) -> float:
    """ML deviance profiled over sigma and the other fixed effects, with ``beta_j = value``."""
    try:
        sol = dev.solution(theta)
    except FloatingPointError:
        return np.inf
    RXinv = np.linalg.inv(sol.RX_lower)
    vjj = float(RXinv[:, j] @ RXinv[:, j])
    pwrss = sol.pwrss + (value - sol.beta[j]) ** 2 / vjj
    n = dev.n
    return float(sol.ldL2 - dev.ldW + n * (1.0 + np.log(2.0 * np.pi * pwrss / n)))


def _glmm_problem(fit: Any) -> _Problem:
    from ..objectives.glmm import GlmmDeviance
    sizes = term_sizes(fit)
    dev = GlmmDeviance(fit.predictor, fit.response, fit.nagq)
    nv = fit.theta.size
    warm = {"u": fit.u.copy()}

    def deviance(pars: np.ndarray) -> float:
        x = np.concatenate([sdcor_to_theta(pars[:nv], sizes), pars[nv:]])
        dev.pirls1.u = warm["u"].copy()
        try:
            value = dev.evaluate(x, 2)[0]
        except ConvergenceError:
            return np.inf
        return float(value)

    lower, upper = sdcor_bounds(sizes)
    variance = theta_to_sdcor(fit.theta, sizes)
    estimate = np.concatenate([variance, fit.beta])
    p = fit.beta.size
    base = deviance(estimate)
    return _Problem(
        names=variance_names(fit) + list(fit.predictor.fixed.names), estimate=estimate,
        lower=np.concatenate([lower, np.full(p, -np.inf)]),
        upper=np.concatenate([upper, np.full(p, np.inf)]), n_joint=estimate.size,
        deviance=deviance, base=base,
        first_steps=np.where(estimate == 0, 1e-3, estimate * 1.01))
