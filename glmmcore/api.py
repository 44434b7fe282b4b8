"""``glmmcore.fit``: formula -> terms -> deviance -> optimizer -> result.

Each stage is public in its own module (:mod:`~glmmcore.formula`,
:mod:`~glmmcore.frame`, :mod:`~glmmcore.fixed`, :mod:`~glmmcore.reterms`,
:mod:`~glmmcore.predictor`, :mod:`~glmmcore.lmm`, :mod:`~glmmcore.glmm`,
:mod:`~glmmcore.optimize`); :func:`fit` strings them together and does every
check on the input before any heavy work.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, ModelSpecError, show
from .fixed import fixed_design
from .formula import parse_formula
from .frame import model_frame
from .optimize import OPTIMIZERS
from .predictor import build_predictor
from .registry import get_family
from .response import Response, build_response
from .result import MixedModelResult
from .reterms import build_reterms
from .start import check_start_rule
from .threads import single_threaded_blas


@dataclass(frozen=True)
class FitControl:
    """Settings of the fitting machinery (lme4's ``lmerControl``/``glmerControl``).

    Attributes
    ----------
    backend
        ``"auto"``, ``"blocked"`` or ``"sparse"`` factorization (see
        :mod:`glmmcore.predictor`).
    rel_tol, x_tol
        Optimizer tolerances on the objective (relative) and the parameters.
    maxeval
        Most objective evaluations per optimizer run.
    check_convergence
        Estimate gradient and Hessian at the optimum and check them.
    start
        Starting theta: ``"auto"`` takes lme4's start or a moment guess from
        the fit without random effects, whichever has the lower objective;
        ``"lme4"`` takes lme4's (see :mod:`glmmcore.start`).
    warn
        Emit a warning when a check fails (the diagnostics are on the
        result either way).
    optimizer
        ``"bobyqa"`` (lme4's), or ``"lbfgsb"``: L-BFGS-B with an analytic
        gradient: of an LMM's profiled deviance (:mod:`glmmcore.lmm_gradient`)
        or of a canonical-link GLMM's Laplace or ``nAGQ=0`` deviance
        (:mod:`glmmcore.laplace_gradient`); a ModelSpecError for other models.
        ``"auto"`` takes L-BFGS-B where it is the faster
        (:func:`glmmcore.lmm.uses_gradient`, :func:`glmmcore.glmm.uses_gradients`),
        BOBYQA otherwise.
    """

    backend: str = "auto"
    rel_tol: float = 1e-12
    x_tol: float = 1e-9
    maxeval: int = 100_000
    check_convergence: bool = True
    warn: bool = True
    start: str = "auto"
    optimizer: str = "auto"

    def __post_init__(self) -> None:
        check_start_rule(self.start)
        if self.optimizer not in OPTIMIZERS:
            raise ModelSpecError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                 f"not {self.optimizer!r}")

    @classmethod
    def from_any(cls, control: Any) -> FitControl:
        """A control from None, a FitControl or a dict of its fields."""
        if control is None:
            return cls()
        if isinstance(control, cls):
            return control
        if isinstance(control, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(control) - known)
            if unknown:
                raise ModelSpecError(f"unknown control setting(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(known))}")
            return replace(cls(), **control)
        raise ModelSpecError(f"control must be a FitControl or a dict, "
                             f"not {type(control).__name__}")


def fit(formula: str, data: Any, *, family: Any = "gaussian", link: str | None = None,
        REML: bool = True, nAGQ: int = 1, weights: Any = None, offset: Any = None,
        control: FitControl | dict | None = None, data_label: str = "data") -> MixedModelResult:
    """Fit a linear or generalized linear mixed model given by an lme4 formula.

    Parameters
    ----------
    formula
        lme4 syntax, e.g. ``"y ~ x + (1 + x | g)"``.
    data
        A data frame (pandas, polars, pyarrow or anything with ``__dataframe__``).
    family, link
        A family name, class or instance, and optionally a link name.
        ``"gaussian"`` with the identity link fits a linear mixed model.
    REML
        REML (default) or ML for a linear mixed model; ignored otherwise.
    nAGQ
        GLMM integration: 0 (beta inside PIRLS), 1 (Laplace), k > 1 (adaptive
        Gauss-Hermite quadrature with k nodes per random effect).
    weights, offset
        Prior weights and offset: a column name or an array.
    control
        :class:`FitControl` or a dict of its fields.
    data_label
        Name of the data shown in the summary.

    Returns
    -------
    MixedModelResult
    """
    ctrl = FitControl.from_any(control)
    parsed = parse_formula(formula)
    fam = get_family(family, link)
    frame = model_frame(parsed, data, weights=weights, offset=offset)
    response = build_response(parsed, frame, fam)
    fixed = fixed_design(parsed.fixed, frame.table, parsed.text)
    reterms = build_reterms(parsed, frame.table)
    predictor = build_predictor(fixed, reterms, ctrl.backend)
    result = _fit_response(predictor, response, bool(REML), int(nAGQ), ctrl, frame.n_dropped,
                           parsed.text)
    result.data_label = data_label
    result.extra["row_labels"] = frame.row_labels
    return result


def refit(fit: MixedModelResult, newresp: Any, *,
          control: FitControl | dict | None = None) -> MixedModelResult:
    """Fit the same model to another response, reusing everything else (lme4's ``refit``).

    X, Z, the random-effects terms and the factorization's layout (CHOLMOD's
    symbolic analysis included) are taken from ``fit``; only the response is
    read, checked and fitted.  Weights, offset, family, REML and nAGQ stay.

    Parameters
    ----------
    fit
        A fitted model.
    newresp
        One value per observation the model used (``fit.nobs``, after rows
        with missing values were dropped), on the scale ``fit`` was given its
        response (binomial: 0/1, booleans, a two-level column or proportions).
    control
        :class:`FitControl` or a dict of its fields (default: the defaults).

    Returns
    -------
    MixedModelResult
    """
    old = fit.response
    values = np.asarray(newresp)
    if values.ndim != 1 or values.shape[0] != fit.nobs:
        raise DataError(f"newresp must have one value per observation the model used "
                        f"({fit.nobs}), not shape {values.shape}")
    labels = fit.extra.get("row_labels", pd.RangeIndex(fit.nobs))
    series = pd.Series(values, name=old.name)
    if series.isna().any():
        i = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise DataError(f"newresp has a missing value in row {show(labels[i])}: a refit "
                        "keeps the model's observations, so none can be dropped")
    y, weights, info = old.family.prepare_response([series], old.weights.copy(), old.name,
                                                   labels)
    response = Response(name=old.name, y=np.ascontiguousarray(y, dtype=float),
                        weights=np.ascontiguousarray(weights, dtype=float),
                        offset=old.offset, family=old.family, info=info)
    result = _fit_response(fit.predictor, response, fit.reml, fit.nagq,
                           FitControl.from_any(control), fit.n_dropped, fit.formula)
    result.data_label = fit.data_label
    result.extra["row_labels"] = labels
    return result


def _fit_response(predictor: Any, response: Response, reml: bool, nagq: int,
                  control: FitControl, n_dropped: int, formula: str) -> MixedModelResult:
    """The fitting stage: a linear or generalized linear mixed model."""
    # a GLMM's fit makes numpy calls over n-vectors throughout (tens of ms at least)
    with single_threaded_blas(predictor.uses_blas or not response.family.is_gaussian_identity):
        if response.family.is_gaussian_identity:
            from .lmm import fit_lmm
            return fit_lmm(predictor, response, reml, control, n_dropped, formula)
        from .glmm import fit_glmm
        return fit_glmm(predictor, response, nagq, control, n_dropped, formula)
