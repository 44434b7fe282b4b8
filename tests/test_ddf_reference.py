"""Denominator degrees of freedom against lmerTest and pbkrtest.

tests/data/lme4_inference.json (written by tests/data/r/inference.R) holds, for the seed LMMs
and a few more with factors of several levels and interactions, lmerTest's Satterthwaite and
pbkrtest's Kenward-Roger coefficient tables, lmerTest's type III F tables with both methods, the
contrasts those tests use, lmerTest's covariance of (theta, sigma) and pbkrtest's adjusted
covariance of beta; for GLMMs lme4's z table.  Each is compared at lme4's estimates (our model
evaluated at lme4's theta, which gives its beta and sigma), so that the comparison measures the
methods and not the optimizers' last digits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import glmmcore
from conftest import lme4_name
from glmmcore.errors import ArgumentError
from glmmcore.fitting.glmm_fit import fit_glmm_at
from glmmcore.fitting.lmm_fit import fit_lmm_at
from glmmcore.inference.contrasts import type3_contrasts
from glmmcore.inference.kenward_roger import kenward_roger
from glmmcore.inference.satterthwaite import varpar_covariance

DATA = Path(__file__).parent / "data" / "lme4_inference.json"
with open(DATA) as fh:
    REFERENCE = json.load(fh)
MODELS = REFERENCE["models"]
LMMS = [key for key, ref in MODELS.items() if "satterthwaite" in ref["coef"]]
GLMMS = [key for key, ref in MODELS.items() if "asymptotic" in ref["coef"]]
KR_LMMS = [key for key in LMMS if "kenward-roger" in MODELS[key]["coef"]]

DF_RTOL = 1e-4     # the tolerance on degrees of freedom
STAT_RTOL = 1e-6   # ... and on t (and F) statistics
# lmerTest's covariance of (theta, sigma) is 2 H^-1 with H by numDeriv's Richardson differences:
# it carries their error (about 1e-6 relative here); ours is accurate to about 1e-9
VARPAR_RTOL = 1e-5
# GLMMs: our fit against lme4's (its standard errors come from a finite-difference Hessian of
# the deviance in (theta, beta); tests/test_glmm_reference.py's tolerance)
GLMM_RTOL = 1e-3


def parse_call(call: str) -> dict:
    m = re.fullmatch(r"(g?lmer)\((.*), data = (\w+)(?:, REML = (FALSE))?"
                     r"(?:, family = (\w+))?\)", call)
    assert m, call
    _, formula, data, ml, family = m.groups()
    return {"formula": formula, "data": data, "REML": ml is None,
            "family": family or "gaussian"}


@pytest.fixture(scope="module")
def fitted(datasets):
    """Our fit of each reference model."""
    cache = {}

    def get(key):
        if key not in cache:
            args = parse_call(MODELS[key]["call"])
            cache[key] = glmmcore.fit(args["formula"], datasets[args["data"]],
                                      family=args["family"], REML=args["REML"])
        return cache[key]
    return get


@pytest.fixture(scope="module")
def at_lme4(fitted):
    """Our fit of each reference model at lme4's estimates."""
    cache = {}

    def get(key):
        if key not in cache:
            ref, fit = MODELS[key], fitted(key)
            theta = np.atleast_1d(np.array(ref["theta"], dtype=float))
            if fit.is_lmm:
                cache[key] = fit_lmm_at(fit, theta)
            else:
                beta = np.array([ref["beta"][lme4_name(n)] for n in fit.fixef.index])
                cache[key] = fit_glmm_at(fit, theta, beta)
        return cache[key]
    return get


def column(ref_table: dict, name: str) -> list:
    """A column of a reference table (jsonlite writes a one-row table's cells as scalars)."""
    value = ref_table[name]
    return value if isinstance(value, list) else [value]


def rows_named(table, ref_table: dict, names: list[str]) -> list[int]:
    """Positions of our rows in the reference table's order."""
    ours = [lme4_name(n) for n in names]
    assert sorted(ours) == sorted(column(ref_table, "rows"))
    return [ours.index(r) for r in column(ref_table, "rows")]


def check_coef(table, ref: dict) -> None:
    order = rows_named(table, ref, list(table.index))
    got = table.iloc[order]
    np.testing.assert_allclose(got["Estimate"], ref["Estimate"], rtol=STAT_RTOL)
    np.testing.assert_allclose(got["Std. Error"], ref["Std. Error"], rtol=STAT_RTOL)
    np.testing.assert_allclose(got["df"], ref["df"], rtol=DF_RTOL)
    np.testing.assert_allclose(got["t value"], ref["t value"], rtol=STAT_RTOL)
    np.testing.assert_allclose(got["Pr(>|t|)"], ref["Pr(>|t|)"], rtol=1e-4, atol=1e-12)


def check_anova(table, ref: dict) -> None:
    assert list(table.index) == column(ref, "rows")
    np.testing.assert_array_equal(table["NumDF"], column(ref, "NumDF"))
    np.testing.assert_allclose(table["DenDF"], column(ref, "DenDF"), rtol=DF_RTOL)
    for col in ("F value", "Sum Sq", "Mean Sq"):
        np.testing.assert_allclose(table[col], column(ref, col), rtol=STAT_RTOL, err_msg=col)
    np.testing.assert_allclose(table["Pr(>F)"], column(ref, "Pr(>F)"), rtol=1e-4,
                               atol=1e-12)


@pytest.mark.parametrize("key", LMMS)
def test_satterthwaite_coefficients_match_lmertest(key, at_lme4):
    check_coef(at_lme4(key).coef_table(ddf="satterthwaite"), MODELS[key]["coef"]["satterthwaite"])


@pytest.mark.parametrize("key", KR_LMMS)
def test_kenward_roger_coefficients_match_pbkrtest(key, at_lme4):
    check_coef(at_lme4(key).coef_table(ddf="kenward-roger"), MODELS[key]["coef"]["kenward-roger"])


@pytest.mark.parametrize("key", LMMS)
def test_type3_anova_satterthwaite_matches_lmertest(key, at_lme4):
    check_anova(at_lme4(key).anova(), MODELS[key]["anova3"]["satterthwaite"])


@pytest.mark.parametrize("key", KR_LMMS)
def test_type3_anova_kenward_roger_matches_lmertest(key, at_lme4):
    check_anova(at_lme4(key).anova(ddf="kenward-roger"), MODELS[key]["anova3"]["kenward-roger"])


@pytest.mark.parametrize("key", LMMS)
def test_type3_contrasts_are_lmertests(key, at_lme4):
    fit = at_lme4(key)
    ours = type3_contrasts(fit.predictor.fixed)
    ref = MODELS[key]["contrasts3"]
    assert list(ours) == list(ref)
    for term, L in ours.items():
        want = np.array(column(ref[term], "L"), dtype=float).reshape(L.shape)
        assert [lme4_name(n) for n in fit.fixef.index] == ref[term]["columns"]
        np.testing.assert_allclose(L, want, atol=1e-12, err_msg=term)


@pytest.mark.parametrize("key", LMMS)
def test_varpar_covariance_matches_lmertest(key, at_lme4):
    """The asymptotic covariance of (theta, sigma): lmerTest's 2 H^-1."""
    parts = varpar_covariance(at_lme4(key))
    want = np.array(MODELS[key]["vcov_varpar"], dtype=float)
    scale = np.sqrt(np.outer(np.diag(want), np.diag(want)))
    np.testing.assert_allclose(parts.vcov_varpar / scale, want / scale, atol=VARPAR_RTOL)


@pytest.mark.parametrize("key", KR_LMMS)
def test_adjusted_covariance_matches_pbkrtest(key, at_lme4):
    kr = kenward_roger(at_lme4(key))
    want = np.array(MODELS[key]["vcov_adj"], dtype=float)
    np.testing.assert_allclose(kr.vcov_adjusted, want, rtol=STAT_RTOL,
                               atol=STAT_RTOL * np.max(np.abs(want)))


@pytest.mark.parametrize("key", GLMMS)
def test_asymptotic_z_table_matches_lme4(key, fitted):
    table = fitted(key).coef_table(ddf="asymptotic")
    ref = MODELS[key]["coef"]["asymptotic"]
    got = table.iloc[rows_named(table, ref, list(table.index))]
    assert list(got.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    for col in got.columns:
        np.testing.assert_allclose(got[col], ref[col], rtol=GLMM_RTOL, atol=GLMM_RTOL * 0.05,
                                   err_msg=col)


def test_glmm_has_only_asymptotic_tests(at_lme4):
    fit = at_lme4(GLMMS[0])
    for ddf in ("satterthwaite", "kenward-roger"):
        with pytest.raises(ArgumentError, match="asymptotic"):
            fit.coef_table(ddf=ddf)
        with pytest.raises(ArgumentError, match="asymptotic"):
            fit.anova(ddf=ddf)


def test_kenward_roger_needs_reml_as_in_lmertest(at_lme4):
    ml = [key for key in LMMS if key not in KR_LMMS]
    assert ml
    for key in ml:
        assert "REML" in MODELS[key]["kenward_roger_error"]
        with pytest.raises(ArgumentError, match="REML"):
            at_lme4(key).coef_table(ddf="kenward-roger")


def test_unknown_ddf_is_named(at_lme4):
    with pytest.raises(ArgumentError, match="'containment'"):
        at_lme4(LMMS[0]).coef_table(ddf="containment")


def test_default_coef_table_is_unchanged(at_lme4):
    """Without ddf, lme4's table: no df column, no p-values for an LMM."""
    table = at_lme4(LMMS[0]).coef_table()
    assert list(table.columns) == ["Estimate", "Std. Error", "t value"]


def test_summary_prints_lmertest_layout(at_lme4):
    """lmerTest's header and fixed-effects columns; the numbers are the table's, as
    printCoefmat rounds them (estimates, errors and df share one number of decimals)."""
    fit = at_lme4("pupils_ses_sex")
    table = fit.coef_table(ddf="kenward-roger")
    text = str(fit.summary(ddf="kenward-roger"))
    assert text.startswith("Linear mixed model fit by REML. t-tests use Kenward-Roger's method "
                           "['lmerModLmerTest']")
    lines = text.split("Fixed effects:\n")[1].splitlines()
    assert lines[0].split() == ["Estimate", "Std.", "Error", "df", "t", "value", "Pr(>|t|)"]
    first = lines[1].split()
    assert first[0] == "(Intercept)"
    decimals = len(first[1].split(".")[1])
    for cell, col in zip(first[1:4], ("Estimate", "Std. Error", "df")):
        assert len(cell.split(".")[1]) == decimals
        assert float(cell) == pytest.approx(round(table[col].iloc[0], decimals), abs=1e-12)
    assert float(first[4]) == pytest.approx(round(table["t value"].iloc[0], 3), abs=1e-12)
    ml = at_lme4("gpa_ri_ml")
    assert str(ml.summary(ddf="satterthwaite")).startswith(
        "Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's method")
    assert "df" not in str(ml.summary()).split("Fixed effects:\n")[1].splitlines()[0]


def test_asymptotic_anova_of_a_glmm_is_the_wald_test(fitted):
    """One-column terms: F(1, inf) is the square of the z statistic, and its p-value the
    z test's."""
    fit = fitted("patents_opp")
    table = fit.anova(ddf="asymptotic")
    z = fit.coef_table(ddf="asymptotic")
    assert list(table.index) == ["biopharm", "ustwin", "patus", "patgsgr", "ncountryc",
                                 "nclaimsc"]
    assert np.all(np.isinf(table["DenDF"])) and np.all(table["NumDF"] == 1)
    np.testing.assert_allclose(table["F value"], z["z value"].iloc[1:] ** 2, rtol=1e-12)
    np.testing.assert_allclose(table["Pr(>F)"], z["Pr(>|z|)"].iloc[1:], rtol=1e-10)


PRINTOUT = json.loads((Path(__file__).parent / "data" / "lmertest_printout.json").read_text())


def ascii_lines(lines: list[str]) -> list[str]:
    """R's lines with its typographic quotes as ASCII and no trailing blanks."""
    return [line.replace("\u2018", "'").replace("\u2019", "'").rstrip() for line in lines]


@pytest.mark.parametrize("key", ["pupils_ses_sex", "gpa_ri_ml"])
def test_printed_tables_match_lmertest(key, fitted):
    """summary(ddf=...)'s fixed effects (cell by cell: our coefficient names are longer) and
    format_anova's text (line by line) as lmerTest prints them, at lme4's estimates."""
    from glmmcore.inference.ddf import format_anova
    ref = PRINTOUT[key]
    fit = fit_lmm_at(fitted(key), np.atleast_1d(np.array(ref["theta"], dtype=float)))
    for method in ("Satterthwaite", "Kenward-Roger"):
        if method not in ref:
            continue
        ddf = method.lower()
        text = str(fit.summary(ddf=ddf))
        ours = text.split("Fixed effects:\n")[1].split("\n\n")[0].splitlines()
        want = ascii_lines(ref[method]["fixed"])
        assert len(ours) == len(want)
        for got_line, want_line in zip(ours, want):
            got, exp = got_line.split(), want_line.split()
            if got and got[0] in fit.fixef.index:
                got[0] = lme4_name(got[0])
            assert got == exp
        assert format_anova(fit.anova(ddf=ddf)).splitlines() == ascii_lines(
            ref[method]["anova"])
