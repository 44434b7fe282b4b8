"""Text summary of a fit, laid out as lme4's ``summary()`` prints it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def format_summary(fit: Any) -> str:
    """The whole summary text of a :class:`~glmmcore.result.MixedModelResult`."""
    parts = [_header(fit), _criteria(fit), _scaled_residuals(fit), _random_effects(fit),
             _fixed_effects(fit), _correlation(fit), _convergence(fit)]
    return "\n".join(p for p in parts if p) + "\n"


def _header(fit: Any) -> str:
    fam = fit.family
    if fit.is_lmm:
        how = "REML" if fit.reml else "maximum likelihood "
        lines = [f"Linear mixed model fit by {how} ['lmerMod']"]
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
    if fit.reml:
        return f"REML criterion at convergence: {fit.reml_criterion:.4f}\n"
    df_resid = fit.nobs - fit.nparams
    table = pd.DataFrame([[fit.aic, fit.bic, fit.loglik, fit.deviance, df_resid]],
                         columns=["AIC", "BIC", "logLik", "deviance", "df.resid"])
    body = table.to_string(index=False, float_format=lambda v: f"{v:.1f}")
    return "\n".join("  " + line for line in body.splitlines()) + "\n"


def _scaled_residuals(fit: Any) -> str:
    r = fit.residuals("pearson").to_numpy()
    if fit.is_lmm:
        r = r / fit.sigma
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1])
    table = pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"])
    return "Scaled residuals:\n" + table.to_string(index=False, float_format=lambda v:
                                                     f"{v:.4f}") + "\n"


def _random_effects(fit: Any) -> str:
    vc = fit.varcorr
    rows = []
    for grp, sub in vc.groupby("grp", sort=False):
        variances = sub[sub["var2"].isna()]
        covs = sub[sub["var2"].notna()]
        names = list(variances["var1"]) if grp != "Residual" else [""]
        for i, (_, row) in enumerate(variances.iterrows()):
            corr = [_corr(covs, names[j], names[i]) for j in range(i)]
            rows.append([grp if i == 0 else "", row["var1"] if grp != "Residual" else "",
                         _g(row["vcov"], 4), _g(row["sdcor"], 4), " ".join(corr)])
    table = pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
    if not any(r[4] for r in rows):
        table = table.drop(columns="Corr")
    lines = ["Random effects:", _left_table(table)]
    groups = ", ".join(f"{k}, {v}" for k, v in fit.ngroups.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
    if fit.n_dropped:
        lines.append(f"({fit.n_dropped} observations deleted due to missingness)")
    return "\n".join(lines) + "\n"


def _corr(covs: pd.DataFrame, a: str, b: str) -> str:
    hit = covs[(covs["var1"] == a) & (covs["var2"] == b)]
    return f"{hit['sdcor'].iloc[0]:.2f}" if len(hit) else "    "


def _fixed_effects(fit: Any) -> str:
    est, se = fit.fixef, fit.stderr
    stat = est / se
    table = pd.DataFrame({"Estimate": est, "Std. Error": se})
    if fit.is_lmm or fit.has_scale:
        table["t value"] = stat
    else:
        table["z value"] = stat
        table["Pr(>|z|)"] = 2 * stats.norm.sf(np.abs(stat))
    formatted = table.apply(lambda col: col.map(lambda v: _g(v, 5)))
    if "Pr(>|z|)" in table:
        formatted["Pr(>|z|)"] = table["Pr(>|z|)"].map(_pvalue)
        formatted[""] = table["Pr(>|z|)"].map(_stars)
    lines = ["Fixed effects:", formatted.to_string()]
    if "Pr(>|z|)" in table:
        lines.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
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


def _left_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    widths = [max(len(str(c)), *(len(str(v)) for v in table[c])) for c in cols]
    out = [" " + " ".join(str(c).ljust(w) for c, w in zip(cols, widths))]
    for _, row in table.iterrows():
        out.append(" " + " ".join(str(row[c]).ljust(w) for c, w in zip(cols, widths)))
    return "\n".join(line.rstrip() for line in out)


def _g(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    return f"{value:.{digits}g}"


def _pvalue(p: float) -> str:
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def _stars(p: float) -> str:
    for cut, mark in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return mark
    return ""


def _abbreviate(name: str) -> str:
    if name == "(Intercept)":
        return "(Intr)"
    letters = "".join(ch for ch in name if ch.isalnum())
    return letters[:6]
