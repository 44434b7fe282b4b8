"""Likelihood-ratio tables, Wald and profile intervals against lme4 1.1-31
(tests/data/lme4_inference.json, made by tests/data/r/inference.R)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.inference.confint import profile_intervals
from tests.conftest import lme4_name

REFERENCE = Path(__file__).parent / "data" / "lme4_inference.json"
# the speed-dating GLMM's profile, apart (R took 22 min: tests/data/r/profile_speed.R)
SPEED_PROFILE = Path(__file__).parent / "data" / "lme4_profile_speed.json"
# lme4 optimizes the held profiles less tightly than we do: at its limits of gpa_rs's
# variance parameters zeta, optimized to convergence, is 1.957 instead of 1.960 (2e-4 in
# the value); where both optimizations are exact (an LMM's fixed effects, one variance
# parameter) the intervals agree to 1e-7
PROFILE_VARIANCE_REL = 1e-3
PROFILE_FIXED_REL = 1e-6


@pytest.fixture(scope="module")
def ref() -> dict:
    with open(REFERENCE) as fh:
        reference = json.load(fh)
    with open(SPEED_PROFILE) as fh:
        reference["confint"]["speed_laplace"].update(json.load(fh)["speed_laplace"])
    return reference


def fit_call(call: str, datasets: dict) -> glmmcore.MixedModelResult:
    """Fit an lme4 call: lmer(formula, data = d[, REML = FALSE]) or glmer(..., family = f
    [, nAGQ = k])."""
    m = re.fullmatch(r"(?:lme4::)?(g?lmer)\((.*?), data = (\w+)(.*)\)", call)
    assert m, call
    kind, formula, data, rest = m.groups()
    options: dict = {}
    if "REML = FALSE" in rest:
        options["REML"] = False
    family = re.search(r"family = (\w+)", rest)
    if kind == "glmer":
        options["family"] = family.group(1) if family else "gaussian"
    agq = re.search(r"nAGQ = (\d+)", rest)
    if agq:
        options["nAGQ"] = int(agq.group(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmmcore.fit(formula, datasets[data], **options)


def _renamed(index) -> list[str]:
    return [lme4_name(str(name)) for name in index]


def test_likelihood_ratio_tables_equal_lme4s(ref, reference, datasets):
    """Every row equals lme4's to 1e-6 where our fit's log-likelihood is lme4's; where it
    is higher (patents_pois_olre: lme4 stops 0.09 short and warns) the row is ours,
    and its tests are checked on our log-likelihoods."""
    calls = {key: entry["call"] for key, entry in reference.items() if "call" in entry}
    calls.update({key: entry["call"] for key, entry in ref["models"].items()})
    for name, entry in ref["lrt"].items():
        fits = [fit_call(calls[k], datasets) for k in entry["models"]]
        table = glmmcore.anova(*fits, refit=entry["refit"], names=entry["models"])
        expected = pd.DataFrame({c: v for c, v in entry["table"].items() if c != "rows"},
                                index=entry["table"]["rows"], dtype=float)
        assert list(table.index) == list(expected.index), name
        np.testing.assert_array_equal(table["npar"], expected["npar"], err_msg=name)
        loglik, want = table["logLik"].to_numpy(), expected["logLik"].to_numpy()
        assert np.all(loglik >= want - 1e-6 * np.abs(want)), name
        same = np.abs(loglik - want) <= 1e-6 * np.abs(want)
        for column in ("AIC", "BIC", "logLik", "deviance"):
            np.testing.assert_allclose(table[column][same], expected[column][same],
                                       rtol=1e-6, err_msg=f"{name} {column}")
        np.testing.assert_allclose(table["AIC"], -2 * loglik + 2 * table["npar"], rtol=1e-12)
        np.testing.assert_array_equal(table["Df"].fillna(-1), expected["Df"].fillna(-1),
                                      err_msg=name)
        # tests between rows that both equal lme4's: Chisq to 1e-6 of the deviances
        pair = np.concatenate([[False], same[1:] & same[:-1]])
        scale = 1e-6 * np.abs(table["deviance"].to_numpy())
        np.testing.assert_array_less(
            np.abs(table["Chisq"].to_numpy() - expected["Chisq"].to_numpy())[pair],
            scale[pair] + 1e-9)
        # LMMs' log-likelihoods are exact (lme4's to 1e-10): their tests to 1e-6; a GLMM's
        # differ by up to 2.4e-7 relative (speed: Chisq 2e-5, p 8e-4)
        exact = all(f.is_lmm for f in fits)
        if exact:
            np.testing.assert_allclose(table["Chisq"][pair], expected["Chisq"][pair],
                                       rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(table["Pr(>Chisq)"][pair], expected["Pr(>Chisq)"][pair],
                                   rtol=1e-6 if exact else 1e-3, err_msg=name)
        assert np.isnan(table["Chisq"].iloc[0]) and np.all(table["Chisq"].iloc[1:] >= 0)


@pytest.mark.parametrize("key", ["gpa_ri", "gpa_rs", "pupils_crossed", "patents_pois",
                                 "speed_laplace"])
def test_wald_intervals_equal_lme4s(ref, datasets, key):
    """An LMM's fixed effects and standard errors are exact, so its Wald intervals equal
    lme4's to 1e-6 (of the interval's scale); a GLMM's standard errors come from the
    finite-difference Hessian at each optimizer's optimum, which agree to 1e-3."""
    entry = ref["confint"][key]
    fit = fit_call(entry["call"], datasets)
    ci = fit.confint(method="wald")
    expected = pd.DataFrame({c: entry["wald_ci"][c] for c in ("2.5 %", "97.5 %")},
                            index=entry["wald_ci"]["rows"], dtype=float)
    ci.index = _renamed(ci.index)
    assert list(ci.index) == list(expected.index)
    fixed = ~expected.isna().any(axis=1)
    want = expected[fixed].to_numpy()
    if fit.is_lmm:
        np.testing.assert_allclose(ci[fixed].to_numpy(), want, rtol=0,
                                   atol=1e-6 * np.max(np.abs(want)))
    else:
        np.testing.assert_allclose(ci[fixed].to_numpy(), want, rtol=1e-3)
    assert ci[~fixed].isna().all().all()


@pytest.mark.parametrize("key", ["gpa_ri", "gpa_rs", "pupils_crossed", "patents_pois",
                                 pytest.param("speed_laplace", marks=pytest.mark.slow)])
def test_profile_intervals_equal_lme4s(ref, datasets, key):
    entry = ref["confint"][key]
    fit = fit_call(entry["call"], datasets)
    profile = fit.profile()
    for level, name in ((0.95, "profile_ci"), (0.90, "profile_ci_90")):
        ci = profile_intervals(profile, level)
        ci.index = _renamed(ci.index)
        expected = entry[name]
        variance = fit.theta.size + int(fit.has_scale)
        for i, row in enumerate(expected["rows"]):
            want = [expected[c] for c in expected if c != "rows"]
            want = np.array([w[i] for w in want], dtype=float)
            rel = PROFILE_VARIANCE_REL if (i < variance or not fit.is_lmm) \
                else PROFILE_FIXED_REL
            np.testing.assert_allclose(ci.loc[row].to_numpy(), want, rtol=rel,
                                       err_msg=f"{key} {row} {level}")


@pytest.mark.parametrize("key", ["gpa_ri", "gpa_rs", "pupils_crossed", "patents_pois",
                                 "speed_laplace"])
def test_spline_inversion_of_lme4s_profile_gives_lme4s_intervals(ref, key):
    """lme4's own profile points, inverted by our interpSpline/backSpline, give lme4's
    intervals: the interpolation is R's to round-off, whatever the optimizer did."""
    entry = ref["confint"][key]
    rows = pd.DataFrame(entry["profile"]["rows"])
    parts = []
    for name, part in rows.groupby(".par", sort=False):
        parts.append(pd.DataFrame({"parameter": name, "value": part[name].to_numpy(float),
                                   "zeta": part[".zeta"].to_numpy(float)}))
    table = pd.concat(parts, ignore_index=True)
    names = list(dict.fromkeys(table["parameter"]))
    table.attrs["bounds"] = {n: ((0.0 if n.startswith("sd_") or n == "sigma" else -1.0),
                                 (1.0 if n.startswith("cor_") else np.inf))
                             if n.startswith(("sd_", "cor_", "sigma")) else (-np.inf, np.inf)
                             for n in names}
    expected = entry["profile_ci"]
    ci = profile_intervals(table, 0.95)
    for i, row in enumerate(expected["rows"]):
        want = np.array([expected["2.5 %"][i], expected["97.5 %"][i]], dtype=float)
        np.testing.assert_allclose(ci.loc[row].to_numpy(), want, rtol=1e-8, err_msg=row)
