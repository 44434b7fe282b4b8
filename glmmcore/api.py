"""``glmmcore.fit`` and ``glmmcore.refit``: front doors over :class:`.MixedModel`.

The pipeline's stages are public in their own modules (formula -> frame ->
fixed and random terms -> predictor and response -> objective -> optimizer ->
result); :class:`~glmmcore.design.model.MixedModel` strings the response-independent
ones together once and :meth:`~glmmcore.design.model.MixedModel.fit` the rest.
"""

from __future__ import annotations

from typing import Any

from .design.model import MixedModel
from .errors import ArgumentError
from .fitting.control import FitControl
from .results.result import MixedModelResult

__all__ = ["FitControl", "fit", "refit"]


def fit(formula: str, data: Any, *, family: Any = "gaussian", link: str | None = None,
        REML: bool = True, nAGQ: int = 1, weights: Any = None, offset: Any = None,
        control: FitControl | dict | None = None, data_label: str = "data") -> MixedModelResult:
    """Fit a linear or generalized linear mixed model given by an lme4 formula.

    ``fit(...)`` is ``MixedModel(...).fit()``; see :class:`~glmmcore.design.model.MixedModel`.

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
    return MixedModel(formula, data, family=family, link=link, REML=REML, nAGQ=nAGQ,
                      weights=weights, offset=offset, control=control,
                      data_label=data_label).fit()


def refit(fit: MixedModelResult, newresp: Any, *,
          control: FitControl | dict | None = None) -> MixedModelResult:
    """Fit the same model to another response, reusing everything else (lme4's ``refit``).

    X, Z, the random-effects terms and the factorization's layout (CHOLMOD's
    symbolic analysis included) are the model's (``fit.model``); only the
    response is read, checked and fitted.  Weights, offset, family, REML and
    nAGQ stay.

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
    if not isinstance(fit, MixedModelResult):
        raise ArgumentError(f"refit takes a fitted model (glmmcore.fit's result), not "
                            f"{type(fit).__name__}")
    control = FitControl.from_any(control)
    model = fit.model
    response = model.response_from_used(newresp)
    return model.fit_response(response, control=control)
