"""Profiled deviance of a linear mixed model (penalized least squares).

With ``L`` the factor of ``Lambda' Z' W Z Lambda + I``, ``R_X`` that of the
fixed effects' Schur complement and ``r2`` the penalized weighted residual
sum of squares (all from one factorization of the system with ``[X y]``
appended), the deviance profiled over ``beta`` and ``sigma`` is (lme4, Bates
et al. 2015, eq. 34 and 41)::

    ML:   log|L|^2 - sum(log w) + n (1 + log(2 pi r2 / n))
    REML: log|L|^2 - sum(log w) + log|R_X|^2 + (n-p) (1 + log(2 pi r2 / (n-p)))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..design.predictor import Predictor
from ..errors import DataError, ModelSpecError, show
from ..fitting.diagnostics import (
    Flag,
    apply_flags,
    confounded_flags,
    exact_fit,
    has,
    report,
    structure_flags,
    zero_sigma,
)
from ..fitting.optimize import (
    FD_STEP,
    Convergence,
    OptimResult,
    bobyqa,
    fd_derivatives,
    gradient_hessian,
    lbfgsb,
    polished_and_checked,
    unchecked_convergence,
)
from ..fitting.start import lower_start, moment_theta
from ..linalg.condvar import scaled_condvar
from ..linalg.dense import solve_lower, solve_lower_t
from ..results.result import MixedModelResult
from .lmm_gradient import profiled_gradient

LOG_2PI = float(np.log(2.0 * np.pi))
LBFGSB_MIN_THETA = 3     # fewer covariance parameters: BOBYQA needs few evaluations anyway
LBFGSB_SMALL_D = 200     # rows of D up to which 3 parameters take L-BFGS-B (uses_gradient)


@dataclass
class LmmSolution:
    """Everything that follows from theta at the optimum.

    Attributes
    ----------
    beta
        Fixed effects.
    u
        Spherical random effects (``b = Lambda u``).
    sigma
        Residual standard deviation.
    RX_lower
        Lower factor ``R_X'`` of the fixed effects' Schur complement.
    pwrss
        Penalized weighted residual sum of squares.
    ldL2, ldRX2
        ``log|L|^2`` and ``log|R_X|^2``.
    """

    beta: np.ndarray
    u: np.ndarray
    sigma: float
    RX_lower: np.ndarray
    pwrss: float
    ldL2: float
    ldRX2: float


class LmmDeviance:
    """The profiled (RE)ML deviance as a function of theta.

    The weighted cross-products are formed once here; each call applies
    ``Lambda(theta)`` and refactors, so a call costs no more than the
    factorization.  The response column is ``y - offset - X beta_ls``
    (``beta_ls`` the weighted least-squares fit without random effects,
    :attr:`beta_ls`): the same deviance and random effects, the fixed effects
    shifted by ``beta_ls``, but the penalized residual sum of squares is no
    longer the small difference of two large sums (``gpa_rs``: ``y'y`` is 12x
    the residual sum), so the deviance carries less round-off for the
    optimizer to stall in.

    Parameters
    ----------
    predictor
        X and the random-effects layout.
    y, weights, offset
        Response, prior weights (positive) and offset.
    reml
        REML criterion if True, else ML deviance.
    """

    def __init__(self, predictor: Predictor, y: np.ndarray, weights: np.ndarray,
                 offset: np.ndarray, reml: bool) -> None:
        self.predictor = predictor
        self.n, self.p = predictor.n, predictor.p
        self.reml = reml
        self.ldW = float(np.sum(np.log(weights)))
        X, target = predictor.X, y - offset
        self.beta_ls = _weighted_ls(X, target, weights)
        Y = np.empty((self.n, self.p + 1))
        Y[:, :self.p] = X
        Y[:, self.p] = target - X @ self.beta_ls
        self.ls_residuals = Y[:, self.p].copy()     # for the moment start (lmm_start)
        self.factor = predictor.new_factor(self.p + 1)
        self.factor.crossprod(np.ascontiguousarray(weights, dtype=float), Y)
        self.nevals = 0
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None
        self._factored_at: tuple[bytes, float] | None = None   # theta of the factor, value
        self.gradient_args: tuple | None = None     # lmm_gradient.gradient_args

    def __call__(self, theta: np.ndarray) -> float:
        """Deviance (REML criterion if ``reml``) at ``theta``.

        A call at the theta of the last factorization reuses it: the optimizer
        starts where the last start candidate was evaluated, when it won.
        """
        key = np.asarray(theta, dtype=float).tobytes()
        if self._factored_at is not None and self._factored_at[0] == key:
            return self._factored_at[1]       # the optimizer's start, just chosen by value
        self.nevals += 1
        self._factored_at = None
        if not self.factor.factor(theta):
            return np.inf
        value = self.criterion(self.reml)
        self._factored_at = (key, value)
        return value

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Deviance and its gradient at ``theta`` (:mod:`glmmcore.objectives.lmm_gradient`).

        A block whose ``T`` is nearly singular (on or near the boundary) takes
        its derivatives from the analytic gradient at ``theta`` with its small
        diagonal elements raised to :data:`~glmmcore.fitting.optimize.FD_STEP`: a
        forward difference's accuracy, at the cost of one more factorization.
        There the derivative of an even deviance (a variance at 0) is
        ``f'' FD_STEP`` instead of 0, which shows L-BFGS-B which way it falls.
        The last result is kept: the optimizer's final point is asked for
        again by the checks.
        """
        if self._last is not None and self._last[0].tobytes() == theta.tobytes():
            return self._last[1], self._last[2].copy()
        value = self(theta)
        if not math.isfinite(value):
            return value, np.zeros_like(theta)
        grad, missing = profiled_gradient(self, theta)
        if missing.any():
            raised = np.where(self.predictor.reterms.is_diagonal() & missing,
                              np.maximum(theta, FD_STEP), theta)
            self(raised)
            grad[missing] = profiled_gradient(self, raised)[0][missing]
        self._last = (np.array(theta, dtype=float), value, grad.copy())
        return value, grad

    def criterion(self, reml: bool) -> float:
        """Deviance of the current factorization, ML or REML."""
        return _criterion(self.factor.y_lower, self.factor.logdet_re - self.ldW, self.n, self.p,
                          reml)

    def ld_rx2(self) -> float:
        """``log|R_X|^2`` of the current factorization."""
        return _ld_rx2(self.factor.y_lower, self.p)

    def refactor(self, theta: np.ndarray) -> bool:
        """Factor at ``theta`` outside an evaluation (not counted); False if not positive
        definite."""
        self._factored_at = None
        return self.factor.factor(theta)

    def solution(self, theta: np.ndarray) -> LmmSolution:
        """beta, u, sigma and the factor pieces at ``theta``."""
        if not self.refactor(theta):
            raise FloatingPointError("the penalized system is not positive definite at theta")
        u, beta = self.factor.solve(self.p)
        beta += self.beta_ls
        pwrss = self.factor.y_diag(self.p) ** 2
        dof = self.n - self.p if self.reml else self.n
        return LmmSolution(beta=beta, u=u, sigma=float(np.sqrt(pwrss / dof)),
                           RX_lower=np.array(self.factor.y_lower[:self.p, :self.p]),
                           pwrss=float(pwrss), ldL2=float(self.factor.logdet_re),
                           ldRX2=self.ld_rx2())


def _weighted_ls(X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares coefficients by the normal equations (an SVD if they fail).

    Only a shift of the response (:class:`LmmDeviance`): any beta gives the same
    fit, a good one a small residual.  X has full column rank (aliased columns
    were dropped), so the normal equations' Cholesky factor exists unless X is
    nearly collinear, where the SVD takes over.  Half the time of ``lstsq``'s SVD.
    """
    Xw = X * weights[:, None]
    try:
        L = np.linalg.cholesky(X.T @ Xw)
    except np.linalg.LinAlgError:
        sw = np.sqrt(weights)
        return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    return _cholesky_solve(L, Xw.T @ y)


@njit(cache=True, nogil=True)
def _cholesky_solve(L, b):
    """``(L L')^{-1} b`` for a lower triangular ``L``."""
    x = b.copy()
    solve_lower(L, x)
    solve_lower_t(L, x)
    return x


@njit(cache=True, nogil=True)
def _criterion(y_lower, logdet, n, p, reml):
    """The module doc's deviance from the factor's ``Y`` rows (``R_X'``, then the response's
    row); ``logdet`` is ``log|L|^2 - sum(log w)``."""
    pwrss = y_lower[p, p] ** 2
    if not reml:
        return logdet + n * (1.0 + LOG_2PI + np.log(pwrss / n))
    nmp = n - p
    return logdet + _ld_rx2(y_lower, p) + nmp * (1.0 + LOG_2PI + np.log(pwrss / nmp))


@njit(cache=True, nogil=True)
def _ld_rx2(y_lower, p):
    """``log|R_X|^2`` from the factor's ``Y`` rows (``R_X'`` in the first ``p``)."""
    out = 0.0
    for i in range(p):
        out += 2.0 * np.log(y_lower[i, i])
    return out


def fit_lmm(model: Any, response: Any, control: Any,
            start: np.ndarray | None = None) -> MixedModelResult:
    """Fit a linear mixed model: optimize the profiled deviance over theta.

    ``start`` (theta) replaces the start rule ``control.start`` when given.
    """
    predictor = model.predictor
    dev = LmmDeviance(predictor, response.y, response.weights, response.offset, model.reml)
    flags = structure_flags(predictor, response) + confounded_flags(predictor,
                                                                    response.weights)
    target = response.y - response.offset
    if exact_fit(dev.ls_residuals, target):
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
    if zero_sigma(result.sigma, target) and not has(flags, "constant_within_groups"):
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


def check_lmm_weights(w: np.ndarray) -> None:
    """A linear mixed model's prior weights must be positive."""
    bad = np.flatnonzero(w <= 0)
    if bad.size:
        raise DataError(f"weights of a linear mixed model must be positive; observation "
                        f"{bad[0]} has weight {show(w[bad[0]])}")


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
    """Minimize the profiled deviance from ``start``: L-BFGS-B if ``gradient``, else BOBYQA.

    Returns the optimizer's result, its message, and the function that gives
    the gradient and Hessian at a point for the convergence checks: by
    differences of the analytic gradient after L-BFGS-B, of the deviance
    after BOBYQA.
    """
    lower = dev.predictor.reterms.theta_lower
    if gradient:
        opt = lbfgsb(dev.value_and_gradient, start, lower, rel_tol=control.rel_tol,
                     maxeval=control.maxeval)
        return (opt, [f"L-BFGS-B: {opt.message} after {opt.nevals} evaluations"],
                lambda x: gradient_hessian(dev.value_and_gradient, x, lower))
    opt = bobyqa(dev, start, lower, rel_tol=control.rel_tol, x_tol=control.x_tol,
                 maxeval=control.maxeval)
    return (opt, [f"bobyqa: {opt.message} after {opt.nevals} evaluations"],
            lambda x: fd_derivatives(dev, x, lower))


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
        return optimizer == "lbfgsb"
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


def check_identifiable(predictor: Predictor, reml: bool = False) -> None:
    """lme4's checks that a residual variance is left for an LMM; REML needs residual
    degrees of freedom (lme4: "objective in x0 returns NA")."""
    n, p = predictor.n, predictor.p
    if reml and p >= n:
        raise ModelSpecError(
            f"{p} fixed-effect columns for {n} observations leave no residual degrees of "
            "freedom, so the REML criterion is undefined; remove fixed effects or fit by "
            "ML (REML=False), where the fit is flagged as exact")
    for term in predictor.reterms.terms:
        block = predictor.reterms.blocks[term.block]
        if block.nlevels >= n:
            raise ModelSpecError(f"grouping factor '{block.factor.name}' has {block.nlevels} "
                                 f"levels for {n} observations; in a linear mixed model the "
                                 "levels must be fewer than the observations, or no residual "
                                 "variance is left")
        q = block.nlevels * len(term.colnames)
        if q >= n:
            raise ModelSpecError(f"term '{term.label}' ({', '.join(term.colnames)}) has {q} "
                                 f"random effects for {n} observations; its variances and the "
                                 "residual variance are not identifiable")
