"""Denominator degrees of freedom: coefficient tables and type III F tests.

``coef_table(fit, ddf)`` and ``anova_table(fit, ddf)`` behind
``result.coef_table(ddf=...)``, ``result.summary(ddf=...)`` and
``result.anova(ddf=...)``:

- ``"satterthwaite"`` -- lmerTest's Satterthwaite approximation
  (:mod:`.satterthwaite`), ML or REML fits;
- ``"kenward-roger"`` -- pbkrtest's adjusted covariance and degrees of freedom
  (:mod:`.kenward_roger`), REML fits;
- ``"asymptotic"`` -- Wald tests against the normal (z) or chi-square
  distribution: the only choice for a GLMM.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ArgumentError, ModelSpecError
from ..linalg.threads import single_threaded_blas
from ..results.rformat import (
    STAR_LEGEND,
    format_numbers,
    format_pvalues,
    print_matrix,
    significance_stars,
    zapsmall,
)
from ..results.summary import normal_two_sided_p
from . import kenward_roger as kr_mod
from . import satterthwaite as satt
from .contrasts import type3_contrasts

DDF_METHODS = ("satterthwaite", "kenward-roger", "asymptotic")
_ALIASES = {"satterthwaite": "satterthwaite", "kenward-roger": "kenward-roger",
            "kenward_roger": "kenward-roger", "kr": "kenward-roger",
            "asymptotic": "asymptotic", "wald": "asymptotic", "z": "asymptotic"}
COEF_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
ANOVA_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
ANOVA_HEADINGS = {
    "satterthwaite": "Type III Analysis of Variance Table with Satterthwaite's method",
    "kenward-roger": "Type III Analysis of Variance Table with Kenward-Roger's method",
    "asymptotic": "Type III Analysis of Variance Table with asymptotic (Wald) tests"}


def check_ddf(fit: Any, ddf: Any) -> str:
    """The method named by ``ddf`` (case and ``-``/``_`` ignored), checked against the fit.

    Raises
    ------
    ArgumentError
        An unknown method; Satterthwaite or Kenward-Roger for a GLMM (its
        tests are asymptotic); Kenward-Roger for an ML fit (pbkrtest's method
        is defined for REML).
    """
    key = str(ddf).strip().lower().replace(" ", "-") if isinstance(ddf, str) else None
    method = _ALIASES.get(key) if key is not None else None
    if method is None:
        raise ArgumentError(f"ddf must be one of {', '.join(map(repr, DDF_METHODS))}; "
                            f"got {ddf!r}")
    if method != "asymptotic" and not fit.is_lmm:
        raise ArgumentError(f"ddf={ddf!r} is for linear mixed models; a GLMM's tests are "
                            "asymptotic (ddf='asymptotic': z tests)")
    if method == "kenward-roger" and not fit.reml:
        raise ArgumentError("ddf='kenward-roger' needs a REML fit (pbkrtest's method); "
                            "this fit is ML: refit with REML=True or use ddf='satterthwaite'")
    return method


def coef_table(fit: Any, ddf: str) -> pd.DataFrame:
    """Fixed-effects table with denominator degrees of freedom (lmerTest's ``summary``).

    Columns ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)``
    (Satterthwaite, Kenward-Roger: the standard error from the adjusted
    covariance); ``"asymptotic"`` gives ``Estimate``, ``Std. Error``,
    ``z value``, ``Pr(>|z|)``.
    """
    method = check_ddf(fit, ddf)
    est = fit.fixef
    if method == "asymptotic":
        se = fit.stderr
        z = est / se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": normal_two_sided_p(z.to_numpy())})
    p = len(est)
    with single_threaded_blas():       # small dense algebra: see glmmcore.linalg.threads
        if method == "satterthwaite":
            parts = satt.varpar_covariance(fit)
            var_df = [satt.contrast_df(parts, np.eye(p)[i]) for i in range(p)]
            se = np.sqrt([v for v, _ in var_df])
            df = np.array([d for _, d in var_df])
        else:
            kr = kr_mod.kenward_roger(fit)
            se = np.sqrt(np.diag(kr.vcov_adjusted))
            df = np.array([kr_mod.coefficient_df(kr, i) for i in range(p)])
    t = est.to_numpy() / se
    return pd.DataFrame({"Estimate": est.to_numpy(), "Std. Error": se, "df": df, "t value": t,
                         "Pr(>|t|)": 2.0 * stats.t.sf(np.abs(t), df)}, index=est.index)


def anova_table(fit: Any, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Type III F tests of the fixed-effects terms (lmerTest's ``anova(fit, type = 3)``).

    One row per term (the intercept has none), lmerTest's columns: ``Sum Sq``
    and ``Mean Sq`` (the F statistic times ``sigma^2``), ``NumDF``, ``DenDF``,
    ``F value``, ``Pr(>F)``.  Kenward-Roger's F is pbkrtest's scaled statistic
    (its sums of squares are from the unscaled one, as lmerTest prints them);
    ``"asymptotic"`` tests the Wald chi-square over its df against ``F(q, inf)``.

    Raises
    ------
    ModelSpecError
        A model whose type III hypotheses cannot be formed (aliased columns,
        a non-hierarchical model, contrasts other than treatment coding).
    """
    method = check_ddf(fit, ddf)
    contrasts = type3_contrasts(fit.predictor.fixed)
    if not contrasts:
        raise ModelSpecError("the model has no fixed-effects terms to test besides the "
                             "intercept")
    with single_threaded_blas():       # small dense algebra: see glmmcore.linalg.threads
        table = _anova_rows(fit, method, contrasts)
    table.attrs["heading"] = ANOVA_HEADINGS[method]
    return table


def _anova_rows(fit: Any, method: str, contrasts: dict[str, np.ndarray]) -> pd.DataFrame:
    beta = np.asarray(fit.beta, dtype=float)
    sigma2 = float(fit.sigma) ** 2 if fit.is_lmm else 1.0
    parts = satt.varpar_covariance(fit) if method == "satterthwaite" else None
    kr = kr_mod.kenward_roger(fit) if method == "kenward-roger" else None
    rows = []
    for L in contrasts.values():
        if method == "satterthwaite":
            F, q, den = satt.f_test(parts, L, beta)
            F_ss = F
        elif method == "kenward-roger":
            res = kr_mod.kr_test(kr, L, beta)
            F, q, den, F_ss = res["F"], res["ndf"], res["ddf"], res["F_unscaled"]
        else:
            q = int(np.linalg.matrix_rank(L))
            Lb = L @ beta
            F = F_ss = float(Lb @ np.linalg.solve(L @ fit.vcov_beta @ L.T, Lb)) / q
            den = np.inf
        pvalue = stats.chi2.sf(F * q, q) if np.isinf(den) else stats.f.sf(F, q, den)
        mean_sq = F_ss * sigma2
        rows.append([mean_sq * q, mean_sq, q, den, F, pvalue])
    return pd.DataFrame(rows, index=list(contrasts), columns=ANOVA_COLUMNS)


def format_anova(table: pd.DataFrame, digits: int = 5) -> str:
    """An :func:`anova_table` as lmerTest prints it (R's ``print.anova``): the heading, sums
    of squares and df columns each with ``digits`` significant digits (after R's
    ``zapsmall``), F rounded to ``digits - 1`` decimals, p-values by ``format.pval`` and
    significance stars with their legend."""
    dig_tst = max(1, min(5, digits - 1))
    columns = [format_numbers(zapsmall(table[c].to_numpy(), digits), digits)
               for c in ANOVA_COLUMNS[:4]]
    columns.append(format_numbers(np.round(table["F value"].to_numpy(), dig_tst), digits))
    pvalues = table["Pr(>F)"].to_numpy()
    columns.append(format_pvalues(pvalues, dig_tst))
    names = list(ANOVA_COLUMNS)
    stars = bool(np.any(pvalues < 0.1))
    if stars:
        marks = significance_stars(pvalues)
        width = max(len(m) for m in marks)
        columns.append([m.ljust(width) for m in marks])
        names.append("")
    text = print_matrix([str(i) for i in table.index], names, columns)
    heading = table.attrs.get("heading")
    out = (heading + "\n" if heading else "") + text
    return out + ("\n---\n" + STAR_LEGEND if stars else "")
