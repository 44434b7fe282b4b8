"""Fitting a linear mixed model: start, optimizer, checks, fallbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..linalg.condvar import scaled_condvar
from ..objectives.lmm import LmmDeviance, normal_equations
from ..results.result import MixedModelResult
from .checks import (
    Convergence,
    fd_derivatives,
    gradient_hessian,
    polished_and_checked,
    unchecked_convergence,
)
from .diagnostics import (
    Flag,
    apply_flags,
    confounded_flags,
    exact_fit,
    has,
    report,
    structure_flags,
    target_spread,
    zero_sigma,
)
from .optimizers import OPTIMIZERS, main_optimizer
from .optimizers.base import OptimResult
from .optimizers.bobyqa import bobyqa
from .start import lower_start, moment_theta

LBFGSB_MIN_THETA = 3     # fewer covariance parameters: BOBYQA needs few evaluations anyway
LBFGSB_SMALL_D = 200     # rows of D up to which 3 parameters take L-BFGS-B (uses_gradient)


def fit_lmm(model: Any, response: Any, control: Any,
            start: np.ndarray | None = None) -> MixedModelResult:
    """Fit a linear mixed model: optimize the profiled deviance over theta.

    ``start`` (theta) replaces the start rule ``control.start`` when given.  What
    depends on the model and the prior weights alone (the least-squares normal
    equations, the confounding check) the model keeps for its own weights, and the
    factor workspace is one the model's last fit gave back.
    """
    predictor = model.predictor
    normal = model.for_weights("normal_equations", response.weights,
                               lambda w: normal_equations(predictor.X, w))
    factor = model.take_factor(predictor.p + 1)
    try:
        dev = LmmDeviance(predictor, response.y, response.weights, response.offset,
                          model.reml, factor=factor, normal=normal)
        return _fit(dev, model, response, control, start)
    finally:
        model.give_back(factor)


def _fit(dev: LmmDeviance, model: Any, response: Any, control: Any,
         start: np.ndarray | None) -> MixedModelResult:
    """:func:`fit_lmm` once its deviance is made."""
    predictor = model.predictor
    target = response.y - response.offset
    spread = target_spread(target)
    flags = structure_flags(predictor, response, spread) + model.for_weights(
        "confounded_flags", response.weights, lambda w: confounded_flags(predictor, w))
    if exact_fit(dev.ls_residuals, target, spread):
        result = exact_lmm_result(dev, model, response)
        apply_flags(result.convergence, flags)
        report(result.convergence, control)
        return result
    if start is None:
        start = lmm_start(dev, response, control.start)
    gradient = uses_gradient(dev, control.optimizer)
    opt, messages, derivatives = optimize_theta(dev, start, control, gradient)
    diagonal = predictor.reterms.is_diagonal()
    theta = opt.x
    if not control.check_convergence:
        conv = unchecked_convergence(theta, diagonal, messages)
    else:
        theta, conv = checked_optimum(dev, opt, derivatives, messages)
        if gradient and not conv.converged:
            # a flat valley along a bound can end L-BFGS-B early; BOBYQA takes over
            again = bobyqa(dev, theta, predictor.reterms.theta_lower, rel_tol=control.rel_tol,
                           x_tol=control.x_tol, maxeval=control.maxeval)
            messages.append(f"the checks failed ({conv.reason}); bobyqa from there: "
                            f"{again.message} after {again.nevals} evaluations")
            if again.fun < dev(theta):
                theta, conv = checked_optimum(dev, again, derivatives, messages)
                opt = again
            if not conv.converged:
                theta, conv, opt = _bobyqa_from_start(dev, start, theta, conv, opt,
                                                      derivatives, control, messages)
    if opt.at_limit:
        conv.stopped_at_limit(control.maxeval)
    result = lmm_result(dev, model, response, theta, conv)
    if zero_sigma(result.sigma, target, spread) and not has(flags, "constant_within_groups"):
        flags.append(Flag("zero_residual_variance", (
            f"the residual SD ({result.sigma:.3g}) is numerically 0 for this response: the "
            "fixed and random effects fit it exactly, and the likelihood has no maximum")))
    apply_flags(conv, flags)
    report(conv, control)
    return result


def _bobyqa_from_start(dev: LmmDeviance, start: np.ndarray, theta: np.ndarray, conv: Any,
                       opt: OptimResult,
                       derivatives: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                       control: Any, messages: list[str]
                       ) -> tuple[np.ndarray, Any, OptimResult]:
    """BOBYQA from the start, lme4's path, when L-BFGS-B's point fails the checks.

    L-BFGS-B can end on a face of the bounds where a diagonal of ``T`` is 0 and
    the rest of the block still takes its variance (a local optimum: 1 in 20
    responses drawn from a sleepstudy-like fit, 0.2-0.24 below the optimum in
    log-likelihood); BOBYQA from that point stays on the face, from the start
    it does not.  The better of the two points is kept, with the optimizer run that
    gave it (``opt`` gave ``theta``).
    """
    lower = dev.predictor.reterms.theta_lower
    fresh = bobyqa(dev, start, lower, rel_tol=control.rel_tol, x_tol=control.x_tol,
                   maxeval=control.maxeval)
    messages.append(f"the checks failed again ({conv.reason}); bobyqa from the start: "
                    f"{fresh.message} after {fresh.nevals} evaluations")
    if fresh.fun < dev(theta):
        return (*checked_optimum(dev, fresh, derivatives, messages), fresh)
    return theta, conv, opt


def checked_optimum(dev: LmmDeviance, opt: OptimResult,
                    derivatives: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                    messages: list[str]) -> tuple[np.ndarray, Convergence]:
    """The optimizer's point, after a Newton polish, and the convergence checks there."""
    reterms = dev.predictor.reterms
    return polished_and_checked(dev, opt.x, opt.fun, reterms.theta_lower, derivatives,
                                reterms.is_diagonal(), reterms.ntheta, messages,
                                polish_first=True)


def optimize_theta(dev: LmmDeviance, start: np.ndarray, control: Any, gradient: bool) -> tuple[
        OptimResult, list[str], Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Minimize the profiled deviance from ``start`` with the main optimizer
    (:func:`~glmmcore.fitting.optimizers.main_optimizer`: L-BFGS-B if ``gradient``, else
    BOBYQA, unless the control names one).

    Returns the optimizer's result, its message, and the function that gives
    the gradient and Hessian at a point for the convergence checks: by
    differences of the analytic gradient after a gradient method, of the
    deviance otherwise.
    """
    lower = dev.predictor.reterms.theta_lower
    optimizer = main_optimizer(control.optimizer, gradient)
    if optimizer.uses_gradient:
        opt = optimizer.minimize(dev.value_and_gradient, start, lower, rel_tol=control.rel_tol,
                                 x_tol=control.x_tol, maxeval=control.maxeval)
        return (opt, [optimizer.describe(opt)],
                lambda x: gradient_hessian(dev.value_and_gradient, x, lower))
    opt = optimizer.minimize(dev, start, lower, rel_tol=control.rel_tol, x_tol=control.x_tol,
                             maxeval=control.maxeval)
    return (opt, [optimizer.describe(opt)], lambda x: fd_derivatives(dev, x, lower))


def uses_gradient(dev: LmmDeviance, optimizer: str) -> bool:
    """Whether to minimize with L-BFGS-B and the analytic gradient.

    ``"auto"`` takes it on the blocked factorization for 4 or more covariance
    parameters, and for 3 when the dense Schur complement ``D`` has at most
    :data:`LBFGSB_SMALL_D` rows.  A gradient costs 1.6-2 factorizations (about
    1.6 at InstEval's 1,145 dense rows of ``D``), and L-BFGS-B takes 2.5-3.5x
    fewer evaluations than BOBYQA with 3 parameters,
    more with more (measurements in docs/design.md).  With CHOLMOD, whose
    selected inverse is not timed at scale, BOBYQA.
    """
    if optimizer != "auto":
        return OPTIMIZERS[optimizer].uses_gradient
    predictor = dev.predictor
    ntheta = predictor.reterms.ntheta
    if predictor.backend != "blocked" or ntheta < LBFGSB_MIN_THETA:
        return False
    return ntheta > LBFGSB_MIN_THETA or predictor.layout.q_r + dev.p + 1 <= LBFGSB_SMALL_D


def lmm_start(dev: LmmDeviance, response: Any, rule: str) -> np.ndarray:
    """Starting theta by ``rule`` (:mod:`glmmcore.fitting.start`), from weighted LS residuals."""
    reterms = dev.predictor.reterms
    if rule == "lme4":
        return reterms.theta_start()
    guess = moment_theta(reterms, dev.ls_residuals, response.weights)
    return lower_start(dev, [reterms.theta_start(), guess])


def fit_lmm_at(fit: MixedModelResult, theta: np.ndarray) -> MixedModelResult:
    """The estimates of a fitted LMM's model at a given theta, without optimizing."""
    dev = LmmDeviance(fit.predictor, fit.response.y, fit.response.weights,
                      fit.response.offset, fit.reml)
    conv = unchecked_convergence(theta, fit.predictor.reterms.is_diagonal(),
                                 ["theta given, not optimized"])
    return lmm_result(dev, fit.model, fit.response, theta, conv)


def lmm_result(dev: LmmDeviance, model: Any, response: Any, theta: np.ndarray,
               conv: Any) -> MixedModelResult:
    """Estimates, fit statistics and random effects at ``theta``."""
    predictor = dev.predictor
    sol = dev.solution(theta)
    crit = dev.criterion(dev.reml)
    ml_deviance = dev.criterion(False)
    b = predictor.Lambda_u(theta, sol.u)
    eta = predictor.X @ sol.beta + predictor.Zb(b) + response.offset
    RXinv = np.linalg.inv(sol.RX_lower)
    vcov = sol.sigma ** 2 * (RXinv.T @ RXinv)
    return MixedModelResult(
        model=model, response=response, method="REML" if dev.reml else "ML",
        theta=np.array(theta, dtype=float), beta=sol.beta, u=sol.u, b=b, sigma=sol.sigma,
        vcov_beta=vcov, loglik=-0.5 * crit, nparams=predictor.p + len(theta) + 1,
        deviance=ml_deviance, convergence=conv, eta=eta,
        extra={"has_scale": True, "pwrss": sol.pwrss, "nevals": dev.nevals})


def exact_lmm_result(dev: LmmDeviance, model: Any, response: Any) -> MixedModelResult:
    """The result when the fixed effects fit the response exactly.

    The profiled deviance is then ``-inf`` at every theta: nothing is
    optimized, theta is reported as 0, the fixed effects as the exact fit,
    sigma as the round-off left, the log-likelihood as ``+inf`` and the
    standard errors as NaN (not estimable).
    """
    predictor = dev.predictor
    n, p, nt = dev.n, dev.p, predictor.reterms.ntheta
    theta = np.zeros(nt)
    r = dev.ls_residuals
    dof = n - p if dev.reml else n
    sigma = float(np.sqrt(np.sum(response.weights * r * r) / max(dof, 1)))
    conv = unchecked_convergence(theta, predictor.reterms.is_diagonal(),
                                 ["not optimized: the fixed effects fit the response exactly"])
    conv.is_singular = False
    apply_flags(conv, [Flag("perfect_fit", (
        f"the fixed effects fit the response exactly (residual SD {sigma:.3g}): no residual "
        "variance is left, the likelihood has no maximum and the variance components and "
        "standard errors are not estimable"))])
    return MixedModelResult(
        model=model, response=response, method="REML" if dev.reml else "ML", theta=theta,
        beta=dev.beta_ls.copy(), u=np.zeros(predictor.reterms.q),
        b=np.zeros(predictor.reterms.q), sigma=sigma, vcov_beta=np.full((p, p), np.nan),
        loglik=np.inf, nparams=p + nt + 1, deviance=-np.inf, convergence=conv,
        eta=response.y - r, extra={"has_scale": True, "pwrss": float(sigma ** 2 * dof),
                                   "nevals": 0})


def lmm_condvar(fit: MixedModelResult) -> list[np.ndarray]:
    """Conditional covariances of a fitted LMM's random effects, block by block."""
    response = fit.response
    dev = LmmDeviance(fit.predictor, response.y, response.weights, response.offset, fit.reml)
    dev.refactor(fit.theta)
    return scaled_condvar(fit.predictor, dev.factor, fit.theta, fit.sigma ** 2)
