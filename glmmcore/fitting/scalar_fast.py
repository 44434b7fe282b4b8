"""The fast path: whole compiled fits for models with one scalar random-effects term.

The per-feature models of batch work (``y ~ cond + offset(lsf) + (1 | subject)``)
have one grouping factor with one column.  Their random-effects system is
diagonal, so a whole fit (start, PIRLS, the optimization, the derivatives the
checks need) runs in one compiled function without the GIL
(:mod:`glmmcore.objectives.scalar_glmm`, :mod:`glmmcore.objectives.scalar_lmm`):
no Python per iteration, and threads fit features in parallel.

:meth:`glmmcore.MixedModel.fit` takes this path by itself when it applies
(:func:`fast_fitter`), and the batch engine calls :meth:`ScalarFastFitter.fit_columns`
on blocks of responses.  The objective is the regular path's, so is the
optimum; the checks after the fit are the regular path's too
(:func:`glmmcore.fitting.checks.check_convergence` on the same derivatives).  Where
the fast path does not apply, or its fit does not pass them, the regular path
fits: answers never get worse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..design.rescale import column_scales
from ..errors import DataError
from ..objectives import scalar_lmm
from ..results.result import MixedModelResult
from .checks import check_convergence
from .diagnostics import (
    apply_flags,
    check_response_varies,
    confounded_flags,
    report,
    structure_flags,
)

# the default maxeval; a fit asked to stop earlier takes the regular path, which counts
_MIN_MAXEVAL = 1000
_lock = threading.Lock()


def fast_fitter(model: Any) -> ScalarFastFitter | None:
    """The model's fast fitter, or None where the fast path does not apply (module doc).

    Built on first use and kept on the model; thread-safe.
    """
    return kept_fitter(model, "_fast_fitter", applies, ScalarFastFitter)


def kept_fitter(model: Any, name: str, applies_to: Any, build: Any) -> Any:
    """``build(model)`` where ``applies_to(model)``, else None: made once (under a lock,
    so that threads share one) and kept on the model as attribute ``name``."""
    cached = model.__dict__.get(name, False)
    if cached is not False:
        return cached
    with _lock:
        if name not in model.__dict__:
            model.__dict__[name] = build(model) if applies_to(model) else None
    return model.__dict__[name]


def applies(model: Any) -> bool:
    """Whether the fast path applies to a model (any response).

    One random-effects term with one column (``(1 | g)``, ``(0 + x | g)``), the
    blocked factorization, fixed effects on sane scales; an LMM, or a GLMM by
    Laplace or ``nAGQ=0`` with a canonical link and no extra family parameter, or
    by Laplace with any link and extra parameter (the negative binomial's size, the
    Gamma's dispersion, a plugin's precision) whose gradient's terms the family's
    kernels give (``laplace_weights``: :func:`glmmcore.objectives.family_kernels.gradient_route`),
    the log-determinant at Fisher's weights (lme4's Laplace approximation) or at the
    observed information (``laplace = "observed"``).
    """
    predictor = model.predictor
    blocks = predictor.reterms.blocks
    if (len(blocks) != 1 or blocks[0].p != 1 or predictor.reterms.ntheta != 1
            or predictor.backend != "blocked" or predictor.p == 0
            or column_scales(predictor.X) is not None):
        return False
    if model.is_lmm:
        return True
    family = model.family
    if model.nagq not in (0, 1) or getattr(family, "fixed_phi", None) is not None:
        return False        # a family parameter held fixed: the regular path
    from ..objectives.family_kernels import family_kernels  # (an LMM loads no GLMM code)
    kernels = family_kernels(family)
    simple = (kernels.canonical and family.extra is None and not kernels.laplace_observed
              and not kernels.newton)
    if simple:
        return True
    # PIRLS's Newton steps need the observed information's kernel (a canonical link's
    # Fisher scoring is Newton's method already), the gradient the family's terms
    by_kernels = kernels.laplace_weights != 0 and (kernels.canonical or kernels.newton)
    return by_kernels and model.nagq == 1 and (kernels.observed_weights != 0
                                               or not kernels.laplace_observed)


def control_allows(control: Any) -> bool:
    """Whether a fit's control leaves the choice of optimizer open (the fast path has its
    own): the default optimizer, start rule and checks, no early stop."""
    return (control.optimizer == "auto" and control.start == "auto"
            and control.check_convergence and control.maxeval >= _MIN_MAXEVAL
            and getattr(control, "fast_path", True))


def positive_definite(H: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` of a stack of symmetric matrices ``H`` that are positive definite
    (numpy's Cholesky factorization succeeds): all at once, one by one only where
    one of them is not."""
    try:
        np.linalg.cholesky(H[rows])
        return rows
    except np.linalg.LinAlgError:
        pass
    keep = np.zeros(rows.size, dtype=bool)
    for k, j in enumerate(rows):
        try:
            np.linalg.cholesky(H[j])
            keep[k] = True
        except np.linalg.LinAlgError:
            pass
    return rows[keep]


@dataclass
class FastFits:
    """The compiled fits of a block of responses, one row per response.

    ``status`` is 0 where the fit ended on its criterion; ``theta``, ``beta``,
    ``loglik`` ... are NaN elsewhere (those responses take the regular path).
    ``vcov`` holds each fit's covariance of beta, ``gradient`` and ``hessian``
    the derivatives the checks use (over theta, beta for Laplace; theta else).
    """

    status: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    loglik: np.ndarray
    deviance: np.ndarray
    phi: np.ndarray
    sigma: np.ndarray
    vcov: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray
    nevals: np.ndarray
    pirls_iterations: np.ndarray


class ScalarFastFitter:
    """The response-independent parts of the fast path for one model."""

    def __init__(self, model: Any) -> None:
        self.model = model
        predictor = model.predictor
        block = predictor.reterms.blocks[0]
        self.X = np.ascontiguousarray(predictor.X, dtype=float)
        self.codes = np.ascontiguousarray(block.factor.codes, dtype=np.int64)
        self.G = int(block.nlevels)
        self.z = np.ascontiguousarray(block.X[:, 0], dtype=float)
        self.offset = np.ascontiguousarray(model.response.offset, dtype=float)
        self.weights = np.ascontiguousarray(model.response.weights, dtype=float)
        self.diagonal = predictor.reterms.is_diagonal()
        self.is_lmm = model.is_lmm
        self._confounded: dict[bytes, list] = {}
        if self.is_lmm:
            self.sums = scalar_lmm.model_sums(self.X, self.codes, self.G, self.z, self.weights)
            self.ldW = float(np.sum(np.log(self.weights)))
        else:
            family = model.family
            self._has_scale = family.extra is not None and family.extra.name == "dispersion"
            from .level_totals import level_totals
            self.totals = level_totals(self)

    def kernels(self) -> Any:
        """The family's compiled kernels, looked up once per process (their addresses are
        this process's: a pickled fitter leaves them behind)."""
        kernels = self.__dict__.get("_kernels")
        if kernels is None:
            from ..objectives.family_kernels import family_kernels
            kernels = self._kernels = family_kernels(self.model.family)
        return kernels

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_kernels"}

    # -- blocks of responses -------------------------------------------------------
    def fit_columns(self, Y: np.ndarray, weights: np.ndarray | None = None) -> FastFits:
        """Compiled fits of the columns of ``Y`` (one row per observation used, on the
        family's scale: proportions for binomial with ``weights`` the trials); the GIL
        is released throughout, so threads may fit blocks in parallel."""
        Y = np.ascontiguousarray(Y, dtype=float)
        m, p = Y.shape[1], self.X.shape[1]
        wt = self.weights if weights is None else np.ascontiguousarray(weights, dtype=float)
        if self.is_lmm:
            return self._lmm_columns(Y, wt)
        from ..objectives import scalar_glmm
        from ..objectives.family_kernels import call_map
        family = self.model.family
        kernels = self.kernels()
        X, codes, z, offset = self.X, self.codes, self.z, self.offset
        totals = self.totals if weights is None else None
        if totals is not None:      # the levels' totals' model: the same fit (level_totals)
            Y_rows, Y = Y, totals.totals(Y)
            X, codes, z, offset, wt = totals.X, totals.codes, totals.z, totals.offset, \
                totals.weights
        mu0 = np.empty_like(Y)
        for j in range(m):
            mu0[:, j] = family.start_mu(Y[:, j], wt)
        eta0 = np.empty_like(Y)
        call_map(kernels.linkfun_vec, mu0, eta0)    # the link, elementwise: the block at once
        has_phi = family.extra is not None
        phi0 = np.ones(m)
        glm = np.full((m, p + 1), np.nan)
        if has_phi:         # the family's start, from the fit without random effects
            mu = np.empty_like(Y)
            scalar_glmm.glm_means(X, codes, self.G, z, Y, wt, offset, eta0, kernels.update,
                                  mu, glm)
            phi0 = np.array([family.start_phi(Y[:, j], mu[:, j], wt) for j in range(m)])
        observed = kernels.laplace_observed
        kern = (kernels.update, kernels.dvariance_vec, kernels.logpdf_vec,
                kernels.observed_weights if kernels.newton or observed else 0, has_phi,
                kernels.laplace_weights, kernels.weight_slope, kernels.dlogpdf_dphi_vec,
                observed, kernels.update_newton, kernels.devres_vec,
                kernels.linkinv_vec, kernels.newton_terms, kernels.phi_weights)
        k = 1 + p + int(has_phi)
        out_x, out_u = np.full((m, k), np.nan), np.zeros((m, self.G))
        out_beta, out_grad = np.full((m, p), np.nan), np.full((m, k), np.nan)
        out_hess, info = np.full((m, k, k), np.nan), np.zeros((m, 4))
        given_theta = np.full((m, p, p), np.nan)
        info[:, 0] = -1
        scalar_glmm.fit_columns(X, codes, self.G, z, Y, wt, offset, eta0, phi0, glm, kern,
                                self.model.nagq, out_x, out_u, out_beta, out_grad, out_hess,
                                given_theta, info)
        if totals is not None:
            info[:, 1] -= 2.0 * totals.loglik_difference(Y_rows, Y)
        status = info[:, 0].astype(np.int64)
        laplace = self.model.nagq >= 1
        vcov = given_theta
        if laplace:         # from the Hessian where it is positive definite, as regular
            rows = positive_definite(out_hess, np.flatnonzero(status == 0))
            if rows.size:
                vcov[rows] = 2.0 * np.linalg.inv(out_hess[rows])[:, 1:1 + p, 1:1 + p]
        nk = k if laplace else 1
        phi = np.exp(out_x[:, 1 + p]) if has_phi else np.ones(m)
        return FastFits(status=status, theta=out_x[:, :1].copy(), beta=out_beta, u=out_u,
                        loglik=-0.5 * info[:, 1], deviance=info[:, 1], phi=phi,
                        sigma=np.sqrt(phi) if self._has_scale else np.ones(m),
                        vcov=vcov, gradient=out_grad[:, :nk], hessian=out_hess[:, :nk, :nk],
                        nevals=info[:, 2].astype(np.int64),
                        pirls_iterations=info[:, 3].astype(np.int64))

    def _lmm_columns(self, Y: np.ndarray, wt: np.ndarray) -> FastFits:
        m, p, n = Y.shape[1], self.X.shape[1], self.X.shape[0]
        a, c, XtX = self.sums if wt is self.weights else scalar_lmm.model_sums(
            self.X, self.codes, self.G, self.z, wt)
        ldW = self.ldW if wt is self.weights else float(np.sum(np.log(wt)))
        T = Y - self.offset[:, None]
        out_beta, u, info = np.zeros((m, p)), np.zeros((m, self.G)), np.zeros((m, 9))
        reml = bool(self.model.reml)
        scalar_lmm.fit_columns(self.X, self.codes, self.z, wt, a, c, XtX, T, reml, ldW,
                               out_beta, u, info)
        status = info[:, 0].astype(np.int64)
        theta = info[:, 1:2].copy()
        dof = n - p if reml else n
        sigma = np.sqrt(np.maximum(info[:, 4], 0.0) / dof)
        vcov = np.full((m, p, p), np.nan)
        rows = np.flatnonzero(status == 0)      # sigma^2 P(theta)^{-1}, the block at once
        t2 = theta[rows] ** 2
        f = t2 / (1.0 + t2 * a)
        P = XtX - np.swapaxes(c * f[:, :, None], 1, 2) @ c
        vcov[rows] = sigma[rows, None, None] ** 2 * np.linalg.inv(P)
        bad = status != 0
        theta[bad] = np.nan
        out_beta[bad] = np.nan
        return FastFits(status=status, theta=theta, beta=out_beta, u=u,
                        loglik=np.where(bad, np.nan, -0.5 * info[:, 2]),
                        deviance=np.where(bad, np.nan, info[:, 3]), phi=sigma ** 2,
                        sigma=sigma, vcov=vcov,
                        gradient=info[:, 5:6].copy(), hessian=info[:, 6:7, None].copy(),
                        nevals=info[:, 8].astype(np.int64),
                        pirls_iterations=np.zeros(m, dtype=np.int64))

    # -- one response, as a result ---------------------------------------------------
    def fit(self, response: Any, control: Any) -> MixedModelResult | None:
        """The result of a fit to ``response``, or None when the regular path should fit
        it (flags before the fit, a fit that did not end on its criterion or fails the
        checks)."""
        model = self.model
        if not self.is_lmm:
            if not np.any(response.weights > 0):
                raise DataError("every observation has weight zero (no trials)")
            check_response_varies(response)
        flags = structure_flags(model.predictor, response) + self._confounded_flags(
            response.weights)
        if flags:
            return None
        same = response.weights is self.weights or np.array_equal(response.weights,
                                                                  self.weights)
        fits = self.fit_columns(response.y[:, None], None if same else response.weights)
        if fits.status[0] != 0:
            return None
        return self._result(response, fits, control)

    def _confounded_flags(self, weights: np.ndarray) -> list:
        key = weights.tobytes() if weights is not self.weights else b""
        if key not in self._confounded:
            self._confounded[key] = confounded_flags(self.model.predictor, weights)
        return self._confounded[key]

    def _result(self, response: Any, fits: FastFits, control: Any) -> MixedModelResult | None:
        model, p = self.model, self.X.shape[1]
        theta, beta = fits.theta[0].copy(), fits.beta[0].copy()
        laplace = not self.is_lmm and model.nagq >= 1
        has_phi = not self.is_lmm and model.family.extra is not None
        phi = float(fits.phi[0])
        x = (np.concatenate([theta, beta, [np.log(phi)] if has_phi else []]) if laplace
             else theta)
        lower = np.concatenate([[0.0], np.full(x.size - 1, -np.inf)])
        what = ("Newton on (theta, beta), Laplace" if laplace else
                "Newton on theta, nAGQ=0" if not self.is_lmm else "grid and Brent on theta")
        messages = [f"fast path ({what}): {int(fits.nevals[0])} evaluations"]
        conv = check_convergence(fits.gradient[0], fits.hessian[0], x, lower, self.diagonal,
                                 1, messages)
        if not conv.converged or not np.all(np.isfinite(fits.vcov[0])):
            return None
        u = fits.u[0].copy()
        b = theta[0] * u
        eta = self.X @ beta + b[self.codes] * self.z + response.offset
        if self.is_lmm:
            target = response.y - response.offset
            from .diagnostics import zero_sigma
            if zero_sigma(float(fits.sigma[0]), target):
                return None
            apply_flags(conv, [])
            report(conv, control)
            extra = {"has_scale": True, "pwrss": float(fits.sigma[0] ** 2 * (
                model.nobs - p if model.reml else model.nobs)),
                "nevals": int(fits.nevals[0]), "fast_path": True}
            return MixedModelResult(
                model=model, response=response, method="REML" if model.reml else "ML",
                theta=theta, beta=beta, u=u, b=b, sigma=float(fits.sigma[0]),
                vcov_beta=fits.vcov[0], loglik=float(fits.loglik[0]), nparams=p + 2,
                deviance=float(fits.deviance[0]), convergence=conv, eta=eta, extra=extra)
        from .glmm_fit import _numerical_flags
        family = response.family
        mu = family.linkinv_array(eta)
        conv.extra.update({"pirls_iterations": int(fits.pirls_iterations[0]),
                           "pirls_halvings": 0, "pirls_failures": 0})
        apply_flags(conv, _numerical_flags(response, model.predictor, mu, 0))
        report(conv, control)
        extra = {"phi": phi, "nevals": int(fits.nevals[0]), "has_scale": self._has_scale,
                 "stage": 2 if laplace else 1, "fast_path": True,
                 "conditional_deviance": float(np.sum(family.dev_resid_array(
                     response.y, mu, response.weights, phi)))}
        if has_phi:
            extra["family_params"] = family.display_params(phi)
        return MixedModelResult(
            model=model, response=response, method="Laplace" if laplace else "nAGQ=0",
            theta=theta, beta=beta, u=u, b=b, sigma=float(fits.sigma[0]),
            vcov_beta=fits.vcov[0], loglik=float(fits.loglik[0]), nparams=1 + p + has_phi,
            deviance=float(fits.deviance[0]), convergence=conv, eta=eta, extra=extra)
