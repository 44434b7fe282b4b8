"""Text summary of a fit, laid out as lme4's ``summary()`` prints it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .rformat import format_numbers, print_coefmat


def format_summary(fit: Any, ddf: str | None = None) -> str:
    """The whole summary text of a :class:`~glmmcore.results.result.MixedModelResult`; with
    ``ddf``, the fixed effects with degrees of freedom and p-values, as lmerTest prints them."""
    table = None
    if ddf is not None:
        from ..inference.ddf import coef_table as ddf_table
        table = ddf_table(fit, ddf)
    parts = [_header(fit, ddf if table is not None and "df" in table else None),
             _criteria(fit), _scaled_residuals(fit), _random_effects(fit),
             _fixed_effects(fit, table), _correlation(fit), _convergence(fit)]
    return "\n".join(p for p in parts if p) + "\n"


_DDF_NAMES = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger"}


def _header(fit: Any, ddf: str | None = None) -> str:
    fam = fit.family
    if fit.is_lmm:
        how = "REML" if fit.reml else "maximum likelihood "
        if ddf is None:
            lines = [f"Linear mixed model fit by {how} ['lmerMod']"]
        else:
            from ..inference.ddf import check_ddf
            name = _DDF_NAMES[check_ddf(fit, ddf)]
            lines = [f"Linear mixed model fit by {how}. t-tests use {name}'s method "
                     "['lmerModLmerTest']"]
    else:
        how = {"Laplace": "Laplace Approximation", "nAGQ=0": "nAGQ = 0 (beta in PIRLS)"}.get(
            fit.method, f"Adaptive Gauss-Hermite Quadrature, nAGQ = {fit.nagq}")
        lines = [f"Generalized linear mixed model fit by maximum likelihood ({how}) "
                 "['glmerMod']", f" Family: {fam.name}  ( {fam.link.name} )"]
        if fit.response.info.get("success"):
            lines.append(f"Response: {fit.response.name} (success = "
                         f"{fit.response.info['success']!r})")
    lines += [f"Formula: {fit.formula}", f"   Data: {fit.data_label}"]
    for name, value in fit.extra.get("family_params", {}).items():
        lines.append(f"{name}: {_g(value, 6)}")
    return "\n".join(lines) + "\n"


def _criteria(fit: Any) -> str:
    """lme4's line or table of criteria, rounded to 1 decimal and formatted as R's ``format``."""
    if fit.reml:
        value = format_numbers([round(fit.reml_criterion, 1)])[0]
        return f"REML criterion at convergence: {value}\n"
    df_resid = fit.nobs - fit.nparams
    values = format_numbers([round(v, 1) for v in (fit.aic, fit.bic, fit.loglik, fit.deviance,
                                                   df_resid)])
    values[-1] = str(df_resid)
    return _named_vector(["AIC", "BIC", "logLik", "deviance", "df.resid"], values) + "\n"


def _scaled_residuals(fit: Any) -> str:
    r = fit.residuals("pearson").to_numpy()
    if fit.is_lmm:
        r = r / fit.sigma
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1])
    # R's zapsmall(q, 5) (round to 5 - log10(max |q|) decimals, that count rounded), then
    # print(digits = 4)
    largest = np.max(np.abs(q))
    decimals = max(0, int(np.floor(5.5 - np.log10(largest)))) if largest > 0 else 5
    values = format_numbers(np.round(q, decimals), 4)
    return ("Scaled residuals:\n" +
            _named_vector(["Min", "1Q", "Median", "3Q", "Max"], values) + "\n")


def _named_vector(names: list[str], values: list[str]) -> str:
    """A named vector as R prints it: names over values, all right-aligned to one width."""
    width = max(len(v) for v in [*names, *values])
    return "\n".join(" ".join(v.rjust(width) for v in row) for row in (names, values))


def _random_effects(fit: Any) -> str:
    lines = ["Random effects:", format_varcorr(fit.varcorr)]
    groups = "; ".join(f"{k}, {v}" for k, v in fit.ngroups.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    if fit.n_dropped:
        lines.append(f"({fit.n_dropped} observations deleted due to missingness)")
    return "\n".join(lines) + "\n"


def format_varcorr(varcorr: pd.DataFrame) -> str:
    """The random-effects table of lme4's summary from ``varcorr`` rows.

    As lme4 prints it (``formatVC`` with 4 digits): variances and standard
    deviations each formatted as one column (R's ``format``), correlations
    with 2 decimals in the lower triangle, one ``Corr`` column per
    correlated term after the first.
    """
    names, variances, sds, corrs = [], [], [], []
    for grp, sub in varcorr.groupby("grp", sort=False):
        var = sub[sub["var2"].isna()]
        cols = list(var["var1"]) if grp != "Residual" else [""]
        names += [(grp if i == 0 else "", c) for i, c in enumerate(cols)]
        variances += list(var["vcov"])
        sds += list(var["sdcor"])
        corrs += _corr_rows(sub[sub["var2"].notna()], cols)
    width = max((len(r) for r in corrs), default=0)
    columns = [[g for g, _ in names], [n for _, n in names], format_numbers(variances, 4),
               format_numbers(sds, 4)]
    headers = ["Groups", "Name", "Variance", "Std.Dev."]
    for j in range(width):
        columns.append([r[j] if j < len(r) else "" for r in corrs])
        headers.append("Corr" if j == 0 else "")
    return _left_table(headers, columns)


def _corr_rows(covs: pd.DataFrame, cols: list[str]) -> list[list[str]]:
    """A term's correlations as lme4 prints them: the lower triangle, row by row.

    Formatted together with 2 decimals (R's ``format(round(x, 2), nsmall = 2)``
    of the whole matrix, diagonal included), so the widths agree.
    """
    p = len(cols)
    corr = np.eye(p)
    for _, row in covs.iterrows():
        i, j = cols.index(row["var1"]), cols.index(row["var2"])
        corr[i, j] = corr[j, i] = row["sdcor"]
    text = [f"{v:.2f}" if np.isfinite(v) else "NaN" for v in np.round(corr, 2).ravel()]
    text = _right([t if t != "-0.00" else "0.00" for t in text])
    return [[text[i * p + j] for j in range(i)] for i in range(p)]


def coef_table(fit: Any) -> pd.DataFrame:
    """The fixed-effects table of lme4's summary, as numbers.

    Columns ``Estimate``, ``Std. Error``, ``t value`` (linear mixed models and
    families with a scale) or ``z value``, and for GLMMs ``Pr(>|z|)``, the
    two-sided Wald p-value from the normal distribution (lme4 gives none for
    a linear mixed model, whose degrees of freedom are not known).
    """
    est, se = fit.fixef, fit.stderr
    table = pd.DataFrame({"Estimate": est, "Std. Error": se})
    stat = "t value" if fit.is_lmm or fit.has_scale else "z value"
    table[stat] = est / se
    if not fit.is_lmm:
        table["Pr(>|z|)"] = normal_two_sided_p(table[stat].to_numpy())
    return table


def normal_two_sided_p(z: np.ndarray) -> np.ndarray:
    """``2 P(Z > |z|)`` for a standard normal Z: ``erfc(|z| / sqrt 2)``, exact in the tail.

    By :func:`math.erfc` rather than scipy.stats, whose import (0.7 s of CPU) was
    most of a small command-line fit's time.
    """
    return np.array([math.erfc(abs(v) / math.sqrt(2.0)) if not math.isnan(v) else math.nan
                     for v in np.asarray(z, dtype=float)])


def _fixed_effects(fit: Any, table: pd.DataFrame | None = None) -> str:
    """lme4's fixed-effects block, or lmerTest's from a table with a ``df`` column."""
    if table is None:
        table = coef_table(fit)
    df = table["df"] if "df" in table else None
    pcol = table.columns[-1] if table.columns[-1].startswith("Pr(") else None
    stat = table.columns[3] if df is not None else table.columns[2]
    lines = ["Fixed effects:", print_coefmat(list(table.index), table["Estimate"],
                                             table["Std. Error"], table[stat], stat,
                                             None if pcol is None else table[pcol],
                                             pcol or "Pr(>|z|)", df=df)]
    if fit.predictor.fixed.dropped:
        lines.append("fixed-effect model matrix is rank deficient so dropping "
                     f"{len(fit.predictor.fixed.dropped)} column(s): "
                     f"{', '.join(fit.predictor.fixed.dropped)}")
    return "\n".join(lines) + "\n"


def _correlation(fit: Any) -> str:
    p = len(fit.beta)
    if p < 2 or p > 12:
        return ""
    sd = np.sqrt(np.diag(fit.vcov_beta))
    corr = fit.vcov_beta / np.outer(sd, sd)
    names = list(fit.fixef.index)
    short = [_abbreviate(n) for n in names[:-1]]
    rows = []
    for i in range(1, p):
        rows.append([f"{corr[i, j]:.3f}" if j < i else "" for j in range(p - 1)])
    table = pd.DataFrame(rows, index=names[1:], columns=short)
    return "Correlation of Fixed Effects:\n" + table.to_string() + "\n"


def _convergence(fit: Any) -> str:
    conv = fit.convergence
    lines = []
    if conv.is_singular:
        lines.append("boundary (singular) fit: a variance component is estimated as 0")
    if not conv.converged:
        lines.append(f"Convergence warning: {conv.reason}")
    lines += [f"Note: {flag}" for flag in conv.extra.get("flags", [])]
    return "\n".join(lines)


def _left_table(headers: list[str], columns: list[list[str]]) -> str:
    """A character matrix as R prints it with ``quote = FALSE``: left-aligned columns."""
    widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(headers, columns)]
    rows = [headers, *zip(*columns)]
    return "\n".join((" " + " ".join(v.ljust(w) for v, w in zip(row, widths))).rstrip()
                     for row in rows)


def _right(strings: list[str]) -> list[str]:
    width = max((len(v) for v in strings), default=0)
    return [v.rjust(width) for v in strings]


def _g(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    return f"{value:.{digits}g}"


def _abbreviate(name: str) -> str:
    if name == "(Intercept)":
        return "(Intr)"
    letters = "".join(ch for ch in name if ch.isalnum())
    return letters[:6]
