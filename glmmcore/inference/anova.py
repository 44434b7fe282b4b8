"""Likelihood-ratio tests of nested models (lme4's ``anova(m0, m1, ...)``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError
from .refits import refit_ml

ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def anova(*results: Any, refit: bool = True, names: Sequence[str] | None = None
          ) -> pd.DataFrame:
    """Likelihood-ratio table of two or more fits of the same response (lme4's ``anova``).

    Parameters
    ----------
    *results
        Fitted models (:class:`~glmmcore.MixedModelResult`) of the same
        observations and response, each nested in the next larger one.
    refit
        Refit REML fits by maximum likelihood first, as lme4 does (REML
        criteria of models with different fixed effects are not comparable);
        ``False`` compares them as they are.
    names
        Row labels, one per result in the order given (default ``model_1``,
        ``model_2``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per model, sorted by number of parameters: ``npar, AIC, BIC,
        logLik, deviance, Chisq, Df, Pr(>Chisq)``; the test columns compare
        each model with the row above (NaN on the first row, and the p-value
        NaN where the two have as many parameters).  ``attrs["formulas"]``
        holds each row's formula and ``attrs["refitted"]`` whether REML fits
        were refitted.

    Raises
    ------
    ArgumentError
        Fewer than two results, something that is not a fit, or names that
        do not match.
    DataError
        Fits of different observations, responses, weights or families.
    """
    names = _checked_names(results, names)
    _check_comparable(results, names)
    refitted = refit and any(r.method == "REML" for r in results)
    fits = [refit_ml(r) for r in results] if refitted else list(results)
    npar = np.array([f.nparams for f in fits])
    order = np.argsort(npar, kind="stable")
    fits = [fits[i] for i in order]
    npar = npar[order]
    loglik = np.array([f.loglik for f in fits])
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, np.diff(loglik))])
    df = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    from scipy import stats  # here: scipy.stats loads scipy.linalg, which a fit avoids
    with np.errstate(invalid="ignore"):
        p = np.where(df == 0, np.nan, stats.chi2.sf(chisq, np.where(df == 0, 1, df)))
    table = pd.DataFrame({
        "npar": npar, "AIC": [f.aic for f in fits], "BIC": [f.bic for f in fits],
        "logLik": loglik, "deviance": -2.0 * loglik, "Chisq": chisq, "Df": df,
        "Pr(>Chisq)": p}, index=pd.Index([names[i] for i in order]))
    table.attrs["formulas"] = [f.formula for f in fits]
    table.attrs["refitted"] = bool(refitted)
    return table


def _checked_names(results: tuple, names: Sequence[str] | None) -> list[str]:
    from ..results.result import MixedModelResult
    if len(results) < 2:
        raise ArgumentError("anova compares two or more fits; for the tests of one fit's "
                            "fixed effects use result.anova()")
    for i, r in enumerate(results):
        if not isinstance(r, MixedModelResult):
            raise ArgumentError(f"anova takes fitted models, not {type(r).__name__} "
                                f"(argument {i + 1})")
    if names is None:
        return [f"model_{i + 1}" for i in range(len(results))]
    names = [str(n) for n in names]
    if len(names) != len(results) or len(set(names)) != len(names):
        raise ArgumentError(f"names must be {len(results)} distinct labels, one per fit, "
                            f"not {names!r}")
    return names


def _check_comparable(results: tuple, names: list[str]) -> None:
    """A likelihood-ratio test compares fits to the same observations of one response."""
    first = results[0]
    for name, r in zip(names[1:], results[1:]):
        where = f"'{names[0]}' and '{name}'"
        if r.nobs != first.nobs:
            raise DataError(f"{where} were fitted to different numbers of observations "
                            f"({first.nobs} and {r.nobs}; missing values dropped from "
                            "different columns?): refit them to the same rows")
        if not np.array_equal(r.response.y, first.response.y):
            raise DataError(f"{where} were fitted to different responses "
                            f"('{first.response.name}' and '{r.response.name}'); a "
                            "likelihood-ratio test compares models of one response")
        if not np.array_equal(r.response.weights, first.response.weights):
            raise DataError(f"{where} were fitted with different weights")
        if type(r.family) is not type(first.family):
            raise DataError(f"{where} have different families ({first.family.name} and "
                            f"{r.family.name}); their likelihoods are not nested")
