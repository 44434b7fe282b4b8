"""The fast path of an LMM with one vector random-effects term on one grouping factor.

``y ~ Days + (Days | Subject)`` and its kind (one grouping factor, ``k >= 2``
columns, correlated or not) have a block-diagonal random-effects system with a
``k x k`` block per level: a whole fit (start, projected Newton steps, the
derivatives the checks need) runs in one compiled function without the GIL
(:mod:`glmmcore.objectives.vector_lmm`), so threads fit responses of one model in
parallel and a refit costs no Python per evaluation.

:meth:`glmmcore.MixedModel.fit` takes it by itself when it applies
(:func:`vector_fitter`).  The criterion is the regular path's, so is the
optimum; the checks are the regular path's
(:func:`glmmcore.fitting.checks.check_convergence` on the Hessian by forward
differences of the analytic gradient, as after L-BFGS-B).  A response flagged
before the fit, or a fit that does not end on its criterion or fails the
checks, takes the regular path: answers never get worse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..design.rescale import column_scales
from ..objectives import vector_lmm
from ..results.result import MixedModelResult
from .checks import check_convergence
from .diagnostics import (
    apply_flags,
    confounded_flags,
    report,
    structure_flags,
    target_spread,
    zero_sigma,
)
from .scalar_fast import kept_fitter

MAX_COLUMNS = 8         # k: larger blocks take the regular path (its sparse algebra)


def vector_fitter(model: Any) -> VectorLmmFitter | None:
    """The model's vector-term fitter, or None where it does not apply (:func:`applies`).

    Built on first use and kept on the model; thread-safe.
    """
    return kept_fitter(model, "_vector_fitter", applies, VectorLmmFitter)


def applies(model: Any) -> bool:
    """An LMM with one random-effects block of 2 to :data:`MAX_COLUMNS` columns on the
    blocked factorization, with fixed effects on sane scales (as the scalar fast path)."""
    predictor = model.predictor
    blocks = predictor.reterms.blocks
    return (model.is_lmm and len(blocks) == 1 and 2 <= blocks[0].p <= MAX_COLUMNS
            and predictor.backend == "blocked" and predictor.p > 0
            and column_scales(predictor.X) is None)


@dataclass
class VectorFits:
    """The compiled fits of a block of responses, one row per response (``status`` 0
    where the fit ended on its criterion)."""

    status: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    criterion: np.ndarray
    deviance: np.ndarray
    pwrss: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray
    pinv: np.ndarray
    nevals: np.ndarray


class VectorLmmFitter:
    """The response-independent parts of the vector-term fast path for one model."""

    def __init__(self, model: Any) -> None:
        self.model = model
        predictor = model.predictor
        block = predictor.reterms.blocks[0]
        self.X = np.ascontiguousarray(predictor.X, dtype=float)
        self.codes = np.ascontiguousarray(block.factor.codes, dtype=np.int64)
        self.Z = np.ascontiguousarray(block.X, dtype=float)
        self.Zt = np.ascontiguousarray(self.Z.T)
        self.tidx = np.ascontiguousarray(block.theta_index, dtype=np.int64)
        self.lower = predictor.reterms.theta_lower
        self.bounded = np.ascontiguousarray(np.isfinite(self.lower))
        self.weights = np.ascontiguousarray(model.response.weights, dtype=float)
        self.S, self.C, self.XtX = vector_lmm.model_sums(self.X, self.codes, block.nlevels,
                                                         self.Z, self.weights)
        self.ldW = float(np.sum(np.log(self.weights)))
        self.flags = confounded_flags(predictor, self.weights)

    def fit_columns(self, T: np.ndarray) -> VectorFits:
        """Compiled fits of the columns of ``T`` (the responses less the offset, one row
        per observation used, the model's own weights); the GIL is released throughout."""
        T = np.ascontiguousarray(T, dtype=float)
        m, (G, k, p), nt = T.shape[1], self.C.shape, self.lower.size
        theta, beta, u = np.zeros((m, nt)), np.zeros((m, p)), np.zeros((m, G, k))
        grad, hess = np.zeros((m, nt)), np.zeros((m, nt, nt))
        pinv, info = np.zeros((m, p, p)), np.zeros((m, 5))
        vector_lmm.fit_columns(self.X, self.codes, self.Z, self.Zt, self.weights, self.tidx,
                               self.bounded, self.S, self.C, self.XtX, T,
                               bool(self.model.reml), self.ldW, theta, beta, u, grad, hess,
                               pinv, info)
        return VectorFits(status=info[:, 0].astype(np.int64), theta=theta, beta=beta,
                          u=u.reshape(m, G * k), criterion=info[:, 1], deviance=info[:, 2],
                          pwrss=info[:, 3], gradient=grad, hessian=hess, pinv=pinv,
                          nevals=info[:, 4].astype(np.int64))

    def fit(self, response: Any, control: Any) -> MixedModelResult | None:
        """The result of a fit to ``response``, or None when the regular path should fit it
        (other weights, flags before the fit, a fit that did not end on its criterion or
        fails the checks)."""
        model = self.model
        if not (response.weights is self.weights
                or np.array_equal(response.weights, self.weights)):
            return None
        target = response.y - response.offset
        spread = target_spread(target)
        if self.flags or structure_flags(model.predictor, response, spread):
            return None
        fits = self.fit_columns(target[:, None])
        if fits.status[0] != 0:
            return None
        theta = fits.theta[0]
        conv = check_convergence(fits.gradient[0], fits.hessian[0], theta, self.lower,
                                 self.bounded, theta.size,
                                 [f"fast path (projected Newton on theta): "
                                  f"{int(fits.nevals[0])} evaluations"])
        n, p = self.X.shape
        dof = n - p if model.reml else n
        sigma = float(np.sqrt(fits.pwrss[0] / dof))
        if not conv.converged or zero_sigma(sigma, target, spread):
            return None
        apply_flags(conv, [])
        report(conv, control)
        u = fits.u[0]
        b = model.predictor.Lambda_u(theta, u)
        beta = fits.beta[0]
        eta = self.X @ beta + model.predictor.Zb(b) + response.offset
        return MixedModelResult(
            model=model, response=response, method="REML" if model.reml else "ML",
            theta=theta, beta=beta, u=u, b=b, sigma=sigma, vcov_beta=sigma ** 2 * fits.pinv[0],
            loglik=-0.5 * float(fits.criterion[0]), nparams=p + theta.size + 1,
            deviance=float(fits.deviance[0]), convergence=conv, eta=eta,
            extra={"has_scale": True, "pwrss": float(fits.pwrss[0]),
                   "nevals": int(fits.nevals[0]), "fast_path": True})
