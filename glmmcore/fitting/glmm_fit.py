"""Generalized linear mixed models: Laplace and quadrature deviance, and the fit.

Stages, as lme4's ``glmer``:

0. The GLM without random effects gives starting fixed effects
   (:mod:`glmmcore.objectives.glm_irls`); the start for theta is lme4's or the moment
   guess, whichever has the lower ``nAGQ = 0`` deviance.
1. ``nAGQ = 0``: theta (and the family's extra parameter, on the log scale)
   is optimized while PIRLS estimates beta with the modes; by BOBYQA, or by
   L-BFGS-B with the analytic gradient when the fit ends here and has 2 or
   more covariance parameters (:func:`uses_gradients`).
2. ``nAGQ >= 1``: theta, beta (and the extra parameter) are optimized jointly,
   started from stage 1; the deviance is the Laplace approximation
   (``nAGQ = 1``) or adaptive Gauss-Hermite quadrature (``nAGQ > 1``).
   Where the Laplace deviance has its analytic gradient
   (:mod:`glmmcore.objectives.laplace_gradient`: canonical link, no extra parameter,
   the blocked factorization), L-BFGS-B minimizes it over whitened
   coordinates (:mod:`glmmcore.fitting.whitening`), and then stage 1 is its start
   alone (:func:`_start_stage`); otherwise BOBYQA.

Standard errors come from the finite-difference Hessian of the deviance over
all parameters for ``nAGQ >= 1`` (lme4's default; with the gradient, from
differences of the gradient), from the fixed-effects block of the
factorization for ``nAGQ = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..design.predictor import Predictor
from ..design.rescale import column_scales, rescaled, scaled_back
from ..errors import DataError, ModelSpecError
from ..linalg.condvar import scaled_condvar
from ..objectives.glmm import NAGQ0_LBFGSB_MIN_THETA, GlmmDeviance, rx_vcov
from ..objectives.laplace_gradient import GRADIENT_MIN_THETA
from ..objectives.pirls import Pirls
from ..results.result import MixedModelResult
from .checks import (
    FD_STEP,
    HESSIAN_STEP,
    Convergence,
    check_convergence,
    fd_derivatives,
    gradient_hessian,
    polished_and_checked,
    unchecked_convergence,
)
from .diagnostics import (
    Flag,
    apply_flags,
    check_response_varies,
    confounded_flags,
    report,
    structure_flags,
)
from .optimizers import OPTIMIZERS, Optimizer, main_optimizer
from .optimizers.base import OptimResult
from .optimizers.bobyqa import bobyqa
from .start import lower_start, moment_theta
from .whitening import Whitening

# Relative tolerance of the nAGQ=0 stage when it only starts the joint stage: tighter
# tolerances cost evaluations there that the joint stage does not need. 1e-6 against
# 1e-12 saved 5-20% of all evaluations (seed GLMMs, crossed binomial 100k); 1e-4 against
# 1e-6 saved 1-19 of the start stage's evaluations for up to 9 more in the
# joint stage (patents_pois_olre 22 + 23 -> 14 + 23, patents_pois_sqrt 8 + 23 -> 5 + 32,
# gpa_gamma 47 + 137 -> 28 + 113), the same optima (36 simulated stress fits within 1e-6
# of the log-likelihood, all converged); 1e-3 sent olre's joint stage 23 -> 45.
START_STAGE_REL_TOL = 1e-4


def fit_glmm(model: Any, response: Any, control: Any,
             start: np.ndarray | None = None) -> MixedModelResult:
    """Fit a GLMM by Laplace (nAGQ=1), quadrature (nAGQ>1) or nAGQ=0.

    ``start`` (theta) replaces the start rule ``control.start`` when given.
    """
    predictor, nagq = model.predictor, model.nagq
    _check_weights(response.weights)
    check_response_varies(response)
    flags = structure_flags(predictor, response) + model.for_weights(
        "confounded_flags", response.weights, lambda w: confounded_flags(predictor, w))
    # the fit runs on rescaled columns where X needs them (glmmcore.design.rescale)
    scale, predictor = model.once("rescaled", lambda: _rescaled(predictor))
    dev = GlmmDeviance(predictor, response, nagq, model.take_factor)
    try:
        return _fit(dev, model, response, control, start, flags, scale)
    finally:
        model.give_back(*(w.factor for w in (dev.pirls0, dev.pirls1) if w is not None))


def _fit(dev: GlmmDeviance, model: Any, response: Any, control: Any,
         start: np.ndarray | None, flags: list, scale: np.ndarray | None
         ) -> MixedModelResult:
    """:func:`fit_glmm` once its deviance is made."""
    predictor, nagq = dev.predictor, model.nagq
    gradient1, gradient2 = uses_gradients(dev, control.optimizer, nagq)
    family, reterms, p = response.family, predictor.reterms, predictor.p
    y, wt = response.y, response.weights
    beta_glm = dev.pirls0.start_glm(family.start_mu(y, wt), dev.fixed_phi)
    starts = [reterms.theta_start() if start is None else start]
    if start is None and control.start == "auto":
        # IRLS's working residuals: unit variance unless phi scales them
        starts.append(moment_theta(reterms, dev.pirls0.r, dev.pirls0.w,
                                   scale=None if dev.has_phi else 1.0))
    lower1 = reterms.theta_lower
    if dev.has_phi:
        mu_glm = family.linkinv_array(predictor.X @ beta_glm + response.offset)
        phi0 = family.start_phi(y, mu_glm, wt)
        starts = [np.append(x, np.log(phi0)) for x in starts]
        lower1 = np.append(lower1, -np.inf)
    objective1 = _KnownValues(dev.objective(1), dev.pirls0)
    x1 = lower_start(objective1.remember, starts)
    opt, messages = _start_stage(dev, objective1, x1, lower1, gradient1, gradient2, control)
    if nagq == 0:
        return scaled_back(_result(dev, model, opt.x, lower1, 1, control, messages, gradient1,
                                   at_limit=opt.at_limit, flags=flags), scale)
    u1, beta1 = _start_modes(dev, opt, skipped=skips_start_stage(dev, gradient2))
    nt = dev.ntheta
    lower = np.concatenate([reterms.theta_lower, np.full(p, -np.inf), lower1[nt:]])
    white = Whitening(nt, beta1, rx_vcov(predictor, dev.pirls0.w, opt.x[:nt]),
                      nextra=int(dev.has_phi))
    x1 = np.concatenate([opt.x[:nt], beta1, opt.x[nt:]])
    dev.pirls1.u = u1
    if gradient2:
        _scale_theta(dev, white, x1)
        optimizer = main_optimizer(control.optimizer, True)
        opt = optimizer.minimize(white.value_and_gradient(dev.value_and_gradient),
                                 white.to_z(x1), white.lower_z(lower), rel_tol=control.rel_tol,
                                 x_tol=control.x_tol, maxeval=control.maxeval)
        messages.append(f"stage 2 (Laplace) {optimizer.describe(opt)}")
    else:
        optimizer = main_optimizer(control.optimizer, False)
        opt = _stage2_derivative_free(dev, white, white.to_z(x1), lower, control, optimizer)
        messages.append(f"stage 2 (nAGQ={nagq}) {optimizer.describe(opt)}")
    return scaled_back(_result(dev, model, white.to_x(opt.x), lower, 2, control, messages,
                               gradient2, white, at_limit=opt.at_limit, flags=flags), scale)


def _start_stage(dev: GlmmDeviance, objective1: _KnownValues, x1: np.ndarray,
                 lower1: np.ndarray, gradient1: bool, gradient2: bool,
                 control: Any) -> tuple[OptimResult, list[str]]:
    """Stage 1 (``nAGQ = 0``) from the chosen start ``x1``, and its message.

    Where the joint stage follows with L-BFGS-B and the gradient, stage 1 is
    its chosen start alone: the joint stage's whitened coordinates take it
    from there in fewer evaluations than stage 1 spends (seed
    GLMMs with a joint L-BFGS-B stage: 164 -> 130 evaluations with the checks,
    the same optima; 44 simulated stress fits 1377 -> 1073, all converged,
    within 2e-9 of the log-likelihood).  Otherwise it stops at
    :data:`START_STAGE_REL_TOL` before a joint stage (which starts coarser), by
    L-BFGS-B with the gradient where the family has an extra parameter
    (:func:`skips_start_stage`).
    """
    if skips_start_stage(dev, gradient2):
        return (OptimResult(x1, objective1(x1), 0, "skipped"),
                ["stage 1 (nAGQ=0): its start only (the joint stage has the gradient)"])
    tol1 = control.rel_tol if dev.nagq == 0 else max(control.rel_tol, START_STAGE_REL_TOL)
    # the control's optimizer where stage 1 is the fit; the built-in choice for a start
    optimizer = main_optimizer(control.optimizer if dev.nagq == 0 else "auto", gradient1)
    if optimizer.uses_gradient:
        opt = optimizer.minimize(lambda x: dev.value_and_gradient(x, 1), x1, lower1,
                                 rel_tol=tol1, x_tol=control.x_tol, maxeval=control.maxeval)
    else:
        opt = optimizer.minimize(objective1, x1, lower1, rel_tol=tol1, x_tol=control.x_tol,
                                 maxeval=control.maxeval)
    return opt, [f"stage 1 (nAGQ=0) {optimizer.describe(opt)}"]


def _start_modes(dev: GlmmDeviance, opt: OptimResult,
                 skipped: bool) -> tuple[np.ndarray, np.ndarray]:
    """The modes and fixed effects at the start stage's point, with PIRLS's workspace there
    (its working weights give beta's covariance for the whitening).

    A start stage that was its chosen start alone (:func:`_start_stage`) left the
    workspace there (:class:`_KnownValues`); otherwise one more run puts it there.
    """
    if skipped and np.isfinite(opt.fun):
        return dev.pirls0.u.copy(), dev.pirls0.beta.copy()
    _, out = dev.evaluate(opt.x, 1, complete=False)
    return out.u.copy(), out.beta


def _scale_theta(dev: GlmmDeviance, white: Whitening, x1: np.ndarray) -> None:
    """Scale the joint stage's theta coordinates from the gradient's differences at
    its start (:meth:`~glmmcore.fitting.whitening.Whitening.scale_theta`); the start's own
    value and gradient stay known for the optimizer's first call."""
    nt = dev.ntheta
    value1, grad1 = dev.value_and_gradient(x1, 2)
    if not np.isfinite(value1):
        return
    diagonal = dev.predictor.reterms.is_diagonal()
    usable = ~diagonal | (x1[:nt] >= GRADIENT_MIN_THETA)
    white.scale_theta(lambda x: dev.value_and_gradient(x, 2), x1, grad1, usable, FD_STEP)
    dev.remember(x1, 2, value1, grad1)


class _KnownValues:
    """The start stage's objective, answering a call at a start candidate from its evaluation.

    :func:`~glmmcore.fitting.start.lower_start` evaluates each candidate and BOBYQA's first
    call is at the chosen one, which PIRLS would iterate to the same mode again.  When
    the chosen one was evaluated last (the guess, on 12 of the 14 GLMM workloads) the
    PIRLS workspace still stands there: the value is all the call needs, and the next
    run predicts from there as it would have.  Otherwise the workspace is at the other
    candidate, and a run from a prediction off it took ``patents_pois_olre`` 8
    iterations: the call runs PIRLS from the chosen candidate's own modes instead (2).
    """

    def __init__(self, f: Callable[[np.ndarray], float], pirls: Pirls) -> None:
        self.f, self.pirls = f, pirls
        self.known: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}
        self.last: bytes | None = None

    def remember(self, x: np.ndarray) -> float:
        """``f(x)``, kept with its modes for a later call at ``x``."""
        value = self.f(x)
        self.last = np.asarray(x, dtype=float).tobytes()
        self.known[self.last] = (value, self.pirls.u.copy(), self.pirls.beta.copy())
        return value

    def __call__(self, x: np.ndarray) -> float:
        key, last = np.asarray(x, dtype=float).tobytes(), self.last
        known, self.known, self.last = self.known.get(key), {}, None
        if known is not None and key == last:
            return known[0]
        if known is not None and np.isfinite(known[0]):
            self.pirls.start_from(known[1], known[2])
        return self.f(x)


def skips_start_stage(dev: GlmmDeviance, gradient2: bool) -> bool:
    """Whether stage 1 is its chosen start alone (:func:`_start_stage`): with the joint
    stage's gradient, unless the family estimates an extra parameter, whose start (the GLM's
    moment estimate) and the theta start can be far from the optimum where the joint stage's
    deviance is far from quadratic (gpa_gamma: theta 0.99 for 0.087, log phi -4.2 for
    -4.9; 43 joint evaluations from there, 13 + 12 with stage 1 by L-BFGS-B first).
    """
    return gradient2 and not dev.has_phi


def uses_gradients(dev: GlmmDeviance, optimizer: str, nagq: int) -> tuple[bool, bool]:
    """Whether stage 1 and stage 2 take L-BFGS-B with their analytic gradients.

    The joint stage takes it where there is a gradient, unless BOBYQA is asked
    for.  Stage 1 takes it only when it is the last stage (``nAGQ=0``): as the
    start of the joint stage, at a loose tolerance, BOBYQA is as fast (seed
    GLMMs and crossed binomial 100k: 0.74-1.16x, within this VM's noise; 0.80
    and 1.00x with 6 covariance parameters).  ``"lbfgsb"`` without a gradient
    for the last stage is an error.
    """
    final = 1 if nagq == 0 else 2
    chosen = OPTIMIZERS.get(optimizer)
    if chosen is not None and chosen.uses_gradient and final not in dev.gradients:
        raise ModelSpecError(
            f"optimizer {optimizer!r} needs the analytic gradient, which a generalized linear "
            "mixed model has for nAGQ=0 and the Laplace approximation (nAGQ=1) with the "
            "blocked factorization and a family whose kernels give it (every built-in "
            "family and link; docs/family-plugins.md); use 'auto' or 'bobyqa'")
    if chosen is not None and not chosen.uses_gradient:
        return False, False
    if final == 1:
        return (1 in dev.gradients and (chosen is not None
                                        or dev.ntheta >= NAGQ0_LBFGSB_MIN_THETA)), False
    # with an extra parameter stage 1 runs before the joint stage (skips_start_stage)
    return 1 in dev.gradients and dev.has_phi, 2 in dev.gradients


def _stage2_derivative_free(dev: GlmmDeviance, white: Whitening, z: np.ndarray,
                            lower: np.ndarray, control: Any,
                            optimizer: Optimizer = OPTIMIZERS["bobyqa"]) -> OptimResult:
    """A derivative-free optimizer (BOBYQA) over the joint stage's whitened coordinates,
    from ``z``."""
    nt, p = dev.ntheta, dev.predictor.p
    step = np.concatenate([np.maximum(0.1 * np.abs(z[:nt]), 0.05), np.ones(p),
                           np.full(int(dev.has_phi), 0.1)])
    objective = dev.objective(2)
    return optimizer.minimize(lambda zz: objective(white.to_x(zz)), z, white.lower_z(lower),
                              rel_tol=control.rel_tol, x_tol=control.x_tol,
                              maxeval=control.maxeval, initial_step=step)


def _checked(dev: GlmmDeviance, x: np.ndarray, lower: np.ndarray, stage: int, control: Any,
             messages: list[str], gradient: bool, white: Whitening | None,
             at_limit: bool) -> tuple[np.ndarray, Convergence]:
    """The convergence checks at ``x``, after a Newton polish if they fail
    (:func:`~glmmcore.fitting.checks.polished_and_checked`); not converged when the optimizer
    that gave ``x`` stopped at its evaluation limit (``at_limit``).

    With the gradient the Hessian comes from its forward differences, in the
    joint stage at :data:`~glmmcore.fitting.checks.HESSIAN_STEP` (they give the
    standard errors: at ``FD_STEP`` they were 1e-4 relative off lme4's on
    ``speed_laplace``; at 1e-6, 1e-6 off central ones), and if the checks
    still fail BOBYQA continues from ``x``.
    """
    objective = dev.objective(stage)
    diagonal = dev.predictor.reterms.is_diagonal()
    if gradient:
        def derivatives(at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return gradient_hessian(lambda xx: dev.value_and_gradient(xx, stage), at, lower,
                                    step=HESSIAN_STEP if stage == 2 else FD_STEP)
    else:
        def derivatives(at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return fd_derivatives(objective, at, lower)
    x, conv = polished_and_checked(
        objective, x, None, lower, derivatives, diagonal, dev.ntheta, messages,
        polish_first=False,
        gradient=(lambda at: dev.value_and_gradient(at, stage)[1]) if gradient else None)
    if gradient and not conv.converged:
        again = _bobyqa_from(dev, x, lower, stage, control, white)
        messages.append(f"the checks failed ({conv.reason}); bobyqa from there: "
                        f"{again.message} after {again.nevals} evaluations")
        if again.fun < objective(x):
            x, at_limit = again.x, again.at_limit
            grad, hess = fd_derivatives(objective, x, lower)
            conv = check_convergence(grad, hess, x, lower, diagonal, dev.ntheta, messages)
    if at_limit:
        conv.stopped_at_limit(control.maxeval)
    return x, conv


def _bobyqa_from(dev: GlmmDeviance, x: np.ndarray, lower: np.ndarray, stage: int,
                 control: Any, white: Whitening | None) -> OptimResult:
    """BOBYQA from ``x`` (in the joint stage, over its whitened coordinates)."""
    if stage == 1:
        return bobyqa(dev.objective(1), x, lower, rel_tol=control.rel_tol,
                      x_tol=control.x_tol, maxeval=control.maxeval)
    opt = _stage2_derivative_free(dev, white, white.to_z(x), lower, control)
    return OptimResult(white.to_x(opt.x), opt.fun, opt.nevals, opt.message)


def _result(dev: GlmmDeviance, model: Any, x: np.ndarray, lower: np.ndarray, stage: int,
            control: Any, messages: list[str], gradient: bool,
            white: Whitening | None = None, *, at_limit: bool = False,
            flags: list[Flag] | None = None) -> MixedModelResult:
    """The result at ``x``, after the checks; ``flags`` from before the fit are added to
    the numerical ones, and the warnings emitted (:func:`~glmmcore.fitting.diagnostics.report`)."""
    predictor, response, nt, p = dev.predictor, dev.response, dev.ntheta, dev.predictor.p
    diagonal = predictor.reterms.is_diagonal()
    if control.check_convergence:
        x, conv = _checked(dev, x, lower, stage, control, messages, gradient, white,
                           at_limit)
        hess = conv.hessian
    else:
        hess = None
        conv = unchecked_convergence(x, diagonal, messages)
        if at_limit:
            conv.stopped_at_limit(control.maxeval)
    deviance, out = dev.evaluate(x, stage)      # leaves the workspace at the optimum
    theta, _, phi = dev.split(x, stage)
    pirls = dev.pirls0 if stage == 1 else dev.pirls1
    beta = out.beta
    vcov = _vcov(dev, hess, stage, theta, pirls)
    b = predictor.Lambda_u(theta, out.u)
    eta = predictor.X @ beta + predictor.Zb(b) + response.offset
    mu = response.family.linkinv_array(eta)
    flags = [*(flags or []), *_numerical_flags(response, predictor, mu, dev.failures)]
    if out.stopped_on_deviance:
        flags.append(Flag("no_finite_mode", "PIRLS stopped when the deviance settled, not at "
                          "a finite mode: estimates drift to infinity (separation, or means "
                          "the link cannot reach)"))
    conv.extra.update({"pirls_iterations": out.iterations, "pirls_halvings": out.halvings,
                       "pirls_failures": dev.failures})
    apply_flags(conv, flags)
    report(conv, control)

    method = {0: "nAGQ=0", 1: "Laplace"}.get(dev.nagq, "AGQ")
    has_scale = dev.has_phi and response.family.extra.name == "dispersion"
    extra = {"phi": phi, "nevals": dev.nevals, "has_scale": has_scale, "stage": stage,
             "conditional_deviance": float(np.sum(response.family.dev_resid_array(
                 response.y, mu, response.weights, phi)))}
    if response.family.extra is not None:
        extra["family_params"] = response.family.display_params(phi)
    sigma = float(np.sqrt(phi)) if has_scale else 1.0
    return MixedModelResult(
        model=model, response=response, method=method, theta=theta.copy(), beta=beta,
        u=out.u.copy(), b=b, sigma=sigma, vcov_beta=vcov, loglik=-0.5 * deviance,
        nparams=nt + p + int(dev.has_phi), deviance=deviance, convergence=conv, eta=eta,
        extra=extra)


def _rescaled(predictor: Any) -> tuple[np.ndarray | None, Any]:
    """X's column scales (None if it needs none) and the predictor to fit with."""
    scale = column_scales(predictor.X)
    return scale, predictor if scale is None else rescaled(predictor, scale)


def fit_glmm_at(fit: MixedModelResult, theta: np.ndarray, beta: np.ndarray) -> MixedModelResult:
    """The estimates of a fitted GLMM's model at given theta and beta (Laplace modes),
    without optimizing; a family parameter stays at the fit's."""
    from ..fitting.control import FitControl
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    parts = [np.asarray(theta, dtype=float), np.asarray(beta, dtype=float)]
    if dev.has_phi:
        parts.append([np.log(fit.extra["phi"])])
    x = np.concatenate(parts)
    lower = np.concatenate([fit.predictor.reterms.theta_lower,
                            np.full(x.size - dev.ntheta, -np.inf)])
    return _result(dev, fit.model, x, lower, 2, FitControl(check_convergence=False, warn=False),
                   ["theta and beta given, not optimized"], False)


def glmm_condvar(fit: MixedModelResult) -> list[np.ndarray]:
    """Conditional covariances of a fitted GLMM's random effects, block by block.

    PIRLS runs again at the estimates to give the factor at the modes' weights.
    """
    stage = fit.extra["stage"]
    dev = GlmmDeviance(fit.predictor, fit.response, 0 if stage == 1 else 1)
    parts = [fit.theta] + ([fit.beta] if stage == 2 else [])
    if dev.has_phi:
        parts.append([np.log(fit.extra["phi"])])
    dev.evaluate(np.concatenate(parts), stage)
    pirls = dev.pirls0 if stage == 1 else dev.pirls1
    return scaled_condvar(fit.predictor, pirls.factor, fit.theta, 1.0)


def _vcov(dev: GlmmDeviance, hess: np.ndarray | None, stage: int, theta: np.ndarray,
          pirls: Pirls) -> np.ndarray:
    """Covariance of beta: from the Hessian (stage 2), else the factorization at the mode."""
    nt, p = dev.ntheta, dev.predictor.p
    if stage == 2 and hess is not None:
        try:
            np.linalg.cholesky(hess)
            return 2.0 * np.linalg.inv(hess)[nt:nt + p, nt:nt + p]
        except np.linalg.LinAlgError:
            pass
    return rx_vcov(dev.predictor, pirls.w, theta)


def _check_weights(w: np.ndarray) -> None:
    if not np.any(w > 0):
        raise DataError("every observation has weight zero (no trials)")


def _numerical_flags(response: Any, predictor: Predictor, mu: np.ndarray,
                     failures: int) -> list[Flag]:
    """Numerical problems worth reporting (not errors: the fit completed)."""
    flags = []
    family = response.family
    if family.mean_bounds is not None:
        lo, hi = family.mean_bounds
        eps = 10 * np.finfo(float).eps        # R's glm.fit threshold
        extreme = int(np.sum((mu < lo + eps) | (mu > hi - eps)))
        if extreme:
            flags.append(Flag("separation", f"fitted probabilities numerically 0 or 1 for "
                              f"{extreme} of {len(mu)} observations (complete or "
                              "quasi-complete separation?)"))
    if family.zero_responses_matter:
        for block in predictor.reterms.blocks:
            counts = np.bincount(block.factor.codes, weights=response.y * response.weights,
                                 minlength=block.nlevels)
            zero = int(np.sum(counts == 0))
            if zero:
                label = getattr(family, "zero_responses_label", "only zero responses")
                flags.append(Flag("zero_count_levels", f"{zero} level(s) of "
                                  f"'{block.factor.name}' have {label}: only the "
                                  "random-effects distribution keeps their conditional modes "
                                  "finite"))
    if failures:
        flags.append(Flag("pirls_failures", f"PIRLS failed at {failures} trial parameter "
                          "value(s) the optimizer then avoided"))
    return flags
