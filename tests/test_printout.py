"""The summary's tables laid out as lme4 prints them (R's printCoefmat, format, formatVC).

``tests/data/lme4_printout.json`` holds lme4 1.1-31's ``print(summary(fit))`` of every seed
model with the printed fit's estimates at full precision, made by
``tests/data/lme4_printout.R`` (R is not needed to run these tests).  The formatting is
checked on lme4's own estimates, so every digit must agree, and on our fits of models whose
estimates agree with lme4's to the printed digits.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmcore
from conftest import lme4_name
from glmmcore.results.rformat import format_numbers, format_pvalues, print_coefmat
from glmmcore.results.summary import coef_table, format_varcorr

PRINTOUT = json.loads((Path(__file__).parent / "data" / "lme4_printout.json").read_text())
MODELS = [name for name in PRINTOUT if not name.startswith("_")]


def _block(text: str, title: str, stop: tuple[str, ...]) -> list[str]:
    """The lines of a summary section after ``title``, up to a blank or a ``stop`` line."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = lines.index(title) + 1
    out = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(stop):
            break
        out.append(line.rstrip())
    return out


def _fixed_block(text: str) -> list[str]:
    return _block(text, "Fixed effects:", ("Correlation", "optimizer", "fit warnings",
                                           "boundary", "Model", "fixed-effect"))


def _random_block(text: str) -> list[str]:
    return _block(text, "Random effects:", ("Number of obs",))


def _criteria_block(text: str) -> list[str]:
    """The REML criterion or the AIC table: the lines after the header's blank line."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = lines.index("") + 1
    return lines[start:lines.index("", start)]


@pytest.mark.parametrize("name", MODELS)
def test_coefficient_table_of_lme4s_estimates_matches_lme4s_print(name):
    expected = _fixed_block(PRINTOUT[name]["summary"])
    ref = PRINTOUT[name]
    terms = list(ref["fixef"])
    est = np.array([ref["fixef"][t] for t in terms])
    se = np.array([ref["se"][t] for t in terms])
    header = expected[0].split()
    stat_name = "t value" if "t" in header else "z value"
    pvalue = 2 * stats.norm.sf(np.abs(est / se)) if "Pr(>|z|)" in header else None
    text = print_coefmat(terms, est, se, est / se, stat_name, pvalue)
    assert text.splitlines() == expected


@pytest.mark.parametrize("name", MODELS)
def test_variance_table_of_lme4s_estimates_matches_lme4s_print(name):
    expected = _random_block(PRINTOUT[name]["summary"])
    # jsonlite leaves out the NA fields (var1, var2)
    varcorr = pd.DataFrame(PRINTOUT[name]["varcorr"],
                           columns=["grp", "var1", "var2", "vcov", "sdcor"])
    assert format_varcorr(varcorr).splitlines() == expected


def _fit(datasets, formula: str, data: str, **kw) -> glmmcore.MixedModelResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmmcore.fit(formula, datasets[data], **kw)


@pytest.mark.parametrize("name, formula, kw", [
    ("gpa_rs", "gpa ~ occasion + (1 + occasion | student)", {}),
    ("gpa_uncorr", "gpa ~ occasion + (1 + occasion || student)", {}),
    ("gpa_ri_ml", "gpa ~ occasion + (1 | student)", {"REML": False}),
])
def test_our_summary_prints_lme4s_tables(name, formula, kw, datasets):
    """Models whose estimates agree with lme4's to every printed digit: the summary's
    tables are lme4's, line for line."""
    ours = _fit(datasets, formula, "gpa", **kw).summary()
    lme4 = PRINTOUT[name]["summary"]
    assert _fixed_block(ours) == _fixed_block(lme4)
    assert _random_block(ours) == _random_block(lme4)
    assert _criteria_block(ours) == _criteria_block(lme4)
    assert _block(ours, "Scaled residuals:", ()) == _block(lme4, "Scaled residuals:", ())


@pytest.mark.parametrize("name, formula, data, kw", [
    ("speed_laplace", "decision ~ sex + samerace + attractive_sc + sincere_sc + intelligent_sc "
     "+ (1 | iid)", "sd", {"family": "binomial"}),
    ("nurses_slope", "stress ~ age + sex + experience + treatment + wardtype + hospsize + "
     "(1 + treatment | hospital) + (1 | wardid)", "nurses", {}),
])
def test_our_coefficient_tables_have_lme4s_layout(name, formula, data, kw, datasets):
    """Where the last printed digits differ (optima and finite-difference standard errors
    agree to about 1e-5; a model where such a difference changes a column's decimals, as
    5.109 against lme4's 5.110 printed 5.11 does, is not among these), every column has
    lme4's decimals, notation and width: the
    tables agree with each digit replaced by 9 (coefficients named as lme4 names them), and
    so do the scaled residuals."""
    fit = _fit(datasets, formula, data, **kw)
    table = coef_table(fit)
    pvalue = table["Pr(>|z|)"] if "Pr(>|z|)" in table else None
    text = print_coefmat([lme4_name(t) for t in table.index], table["Estimate"],
                         table["Std. Error"], table.iloc[:, 2], table.columns[2], pvalue)
    lme4 = PRINTOUT[name]["summary"]
    assert _digits_as_9(text.splitlines()) == _digits_as_9(_fixed_block(lme4))
    assert _digits_as_9(_block(fit.summary(), "Scaled residuals:", ())) == \
        _digits_as_9(_block(lme4, "Scaled residuals:", ()))


def _digits_as_9(lines: list[str]) -> list[str]:
    return [re.sub(r"\d", "9", line) for line in lines]


def test_r_format_rules():
    """Outputs of R 4.2.2's format() / format.pval() for the same inputs."""
    # format(c(0.022114, 0.0021998, 10.053), digits = 4)
    assert format_numbers([0.022114, 0.0021998, 10.053], 4) == [
        " 0.02211", " 0.00220", "10.05300"]
    # format(c(1.865e-05, 0.5), digits = 4): scientific notation is narrower
    assert format_numbers([1.865e-05, 0.5], 4) == ["1.865e-05", "5.000e-01"]
    # format(c(-0.66973, 22.7, 9.1313), digits = 4)
    assert format_numbers([-0.66973, 22.7, 9.1313], 4) == ["-0.6697", "22.7000", " 9.1313"]
    # format(c(9996, 1), digits = 3): rounding would widen 9996 to 1e+04 but fixed keeps it
    assert format_numbers([9996, 1], 3) == ["9996", "   1"]
    # format(c(NaN, 1.5, Inf), digits = 4)
    assert format_numbers([np.nan, 1.5, np.inf], 4) == ["NaN", "1.5", "Inf"]
    # format.pval(c(0.0338, 0.5, 1e-20), digits = 3); format.pval(c(2e-5, 1e-20), digits = 3)
    assert format_pvalues([0.0338, 0.5, 1e-20], 3) == ["0.0338", "0.5000", "<2e-16"]
    assert format_pvalues([2e-5, 1e-20], 3) == ["2e-05", "<2e-16"]
    assert format_pvalues([2.123e-5, 1e-20], 3) == ["2.12e-05", "< 2e-16"]
    # format.pval(c(0.282572, 0.000114, 1.92e-9), digits = 3): fixed notation from 1e-4
    assert format_pvalues([0.282572, 0.000114, 1.92e-9], 3) == [
        "0.282572", "0.000114", "1.92e-09"]


def test_coefficient_tables_as_r_prints_them():
    """R 4.2.2's printCoefmat(m, digits = 4) of the same matrices."""
    est, se = np.array([1.0, 5.0]), np.array([2.0, 1.0])
    text = print_coefmat(["a", "b"], est, se, est / se, "z value",
                         2 * stats.norm.sf(np.abs(est / se)))
    assert text.splitlines() == [
        "  Estimate Std. Error z value Pr(>|z|)",
        "a        1          2     0.5    0.617",
        "b        5          1     5.0 5.73e-07 ***",
        "---",
        "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    text = print_coefmat(["a", "b"], np.array([1234.5, 1e-7]), np.array([10.0, 2.0]),
                         np.array([123.45, 5e-8]), "t value")
    assert text.splitlines() == ["   Estimate Std. Error t value",
                                 "a 1.234e+03  1.000e+01   123.5",
                                 "b 1.000e-07  2.000e+00     0.0"]


def test_no_stars_or_legend_when_no_p_value_is_below_0_1():
    est, se = np.array([1.0, 0.2]), np.array([2.0, 1.0])
    text = print_coefmat(["a", "b"], est, se, est / se, "z value",
                         2 * stats.norm.sf(np.abs(est / se)))
    assert "Signif" not in text and "*" not in text
    text = print_coefmat(["a", "b"], est, np.array([np.nan, 1.0]), est / se, "t value")
    assert text.splitlines()[1].split()[2] == "NA"


def test_the_note_on_levels_without_successes_says_what_it_means():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(25), 12)
    x = rng.normal(size=g.size)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + 0.8 * x + rng.normal(size=25)[g]))))
    y[g == 7] = 0
    y[g == 11] = 0
    fit = _fit({"d": pd.DataFrame({"y": y, "x": x, "g": g})}, "y ~ x + (1 | g)", "d",
               family="binomial")
    note = ("2 level(s) of 'g' have no successes (all responses 0): only the random-effects "
            "distribution keeps their conditional modes finite")
    assert note in fit.convergence.extra["flags"]
    assert f"Note: {note}" in fit.summary()
    modes = fit.ranef["g"]["(Intercept)"]
    assert set(modes.nsmallest(2).index) == {7, 11}


def test_normal_p_values_match_scipy_in_the_tails():
    from glmmcore.results.summary import normal_two_sided_p
    z = np.array([0.0, 1e-8, 0.5, -1.96, 3.0, -8.5, 20.0, 37.0, np.inf, np.nan])
    expected = 2 * stats.norm.sf(np.abs(z))
    np.testing.assert_allclose(normal_two_sided_p(z), expected, rtol=1e-12)   # 2e-13 at 1e-299
