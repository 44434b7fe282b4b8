"""Likelihood-ratio tests, confidence intervals, profiles and the bootstrap: identities and
R's boot percentile intervals (tests/data/boot_percentile.json,
tests/data/r/boot_percentile.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmcore
from bench.refit_speed import sleepstudy_like
from glmmcore.inference.confint import percentile_interval, profile_intervals
from glmmcore.inference.parameters import sdcor_to_theta, theta_to_sdcor
from glmmcore.inference.profile import _held_zeta, _problem
from glmmcore.inference.spline import inverse_profile

HERE = Path(__file__).parent
Z975 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return sleepstudy_like()


@pytest.fixture(scope="module")
def slopes(sleep):
    return glmmcore.fit("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def intercepts(sleep):
    return glmmcore.fit("Reaction ~ Days + (1 | Subject)", sleep)


# -- anova -----------------------------------------------------------------------------
def test_anova_refits_reml_by_ml_and_tests_the_difference(sleep, slopes, intercepts):
    table = glmmcore.anova(slopes, intercepts, names=["slopes", "intercepts"])
    assert list(table.index) == ["intercepts", "slopes"]        # sorted by npar
    assert list(table["npar"]) == [4, 6]
    ml = [glmmcore.fit(f, sleep, REML=False) for f in
          ("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)")]
    np.testing.assert_allclose(table["logLik"], [m.loglik for m in ml], rtol=1e-9)
    np.testing.assert_allclose(table["AIC"], [m.aic for m in ml], rtol=1e-9)
    np.testing.assert_allclose(table["BIC"], [m.bic for m in ml], rtol=1e-9)
    np.testing.assert_allclose(table["deviance"], [-2 * m.loglik for m in ml], rtol=1e-9)
    chisq = 2 * (ml[1].loglik - ml[0].loglik)
    assert table["Chisq"].iloc[1] == pytest.approx(chisq, rel=1e-8)
    assert table["Df"].iloc[1] == 2
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(stats.chi2.sf(chisq, 2), rel=1e-6)
    assert np.isnan(table["Chisq"].iloc[0]) and table.attrs["refitted"]


def test_anova_refit_false_keeps_the_reml_criteria(slopes, intercepts):
    table = glmmcore.anova(intercepts, slopes, refit=False)
    np.testing.assert_allclose(table["logLik"], [intercepts.loglik, slopes.loglik],
                               rtol=1e-12)
    assert not table.attrs["refitted"]
    assert list(table.index) == ["model_1", "model_2"]


def test_anova_refuses_fits_of_other_data(sleep, slopes):
    fewer = glmmcore.fit("Reaction ~ Days + (1 | Subject)", sleep.iloc[:170])
    with pytest.raises(glmmcore.DataError, match="numbers of observations"):
        glmmcore.anova(slopes, fewer)
    other = glmmcore.fit("Days ~ Reaction + (1 | Subject)", sleep)
    with pytest.raises(glmmcore.DataError, match="different responses"):
        glmmcore.anova(slopes, other)
    with pytest.raises(glmmcore.ArgumentError, match="two or more"):
        glmmcore.anova(slopes)
    with pytest.raises(glmmcore.ArgumentError, match="names"):
        glmmcore.anova(slopes, other, names=["a"])
    with pytest.raises(glmmcore.ArgumentError, match="fitted models"):
        glmmcore.anova(slopes, "model")


def test_anova_of_equal_sizes_has_no_p_value(sleep):
    a = glmmcore.fit("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    b = glmmcore.fit("Reaction ~ I(Days ** 2) + (1 | Subject)", sleep, REML=False)
    table = glmmcore.anova(a, b)
    assert table["Df"].iloc[1] == 0 and np.isnan(table["Pr(>Chisq)"].iloc[1])


# -- parameters and Wald -----------------------------------------------------------
def test_sdcor_scale_round_trips_and_matches_varcorr(slopes):
    sizes = [2]
    sdcor = theta_to_sdcor(slopes.theta, sizes, slopes.sigma)
    vc = slopes.varcorr
    np.testing.assert_allclose(sdcor, vc["sdcor"].to_numpy()[[0, 2, 1]], rtol=1e-12)
    np.testing.assert_allclose(sdcor_to_theta(sdcor, sizes, slopes.sigma), slopes.theta,
                               rtol=1e-10, atol=1e-12)
    # a correlation of 1 is a valid (semi-definite) theta
    edge = sdcor_to_theta(np.array([2.0, 1.0, 3.0]), sizes)
    np.testing.assert_allclose(theta_to_sdcor(edge, sizes), [2.0, 1.0, 3.0], atol=1e-12)


def test_wald_intervals(slopes):
    ci = slopes.confint(method="wald")
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == ["sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject",
                              "sd_Days|Subject", "sigma", "(Intercept)", "Days"]
    se = slopes.stderr.to_numpy()
    np.testing.assert_allclose(ci.iloc[4:, 0], slopes.beta - Z975 * se, rtol=1e-12)
    np.testing.assert_allclose(ci.iloc[4:, 1], slopes.beta + Z975 * se, rtol=1e-12)
    assert ci.iloc[:4].isna().all().all()
    assert list(slopes.confint("beta_", method="wald", level=0.9).columns) == ["5 %", "95 %"]
    with pytest.raises(glmmcore.ArgumentError, match="unknown parameter"):
        slopes.confint("nope", method="wald")
    with pytest.raises(glmmcore.ArgumentError, match="method"):
        slopes.confint(method="bayes")


# -- profiles ----------------------------------------------------------------------
def test_profile_limits_are_where_zeta_reaches_the_normal_quantile(datasets):
    """The interval ends are points of the profile itself: there, with every other
    parameter optimized, zeta is -+z (to the spline's interpolation error)."""
    fit = glmmcore.fit("gpa ~ occasion + (1 + occasion | student)", datasets["gpa"])
    ci = fit.confint()
    problem = _problem(fit)
    for w, name in enumerate(problem.names):
        for side, z in ((0, -Z975), (1, Z975)):
            value = ci.loc[name].iloc[side]
            if w < problem.n_joint:
                start = np.delete(problem.estimate[:problem.n_joint], w)
                zeta = _held_zeta(problem, w, value, start)[0]
            else:
                zeta = problem.fixed_zeta(w - problem.n_joint, value, problem.fixed_start)[0]
            assert zeta == pytest.approx(z, abs=2e-4), name


def test_profile_table_and_lmm_fixed_effect_profile(sleep, slopes):
    table = slopes.profile("Days")
    assert list(table.columns) == ["parameter", "value", "zeta"]
    assert (table["parameter"] == "Days").all()
    assert np.all(np.diff(table["value"]) > 0) and np.all(np.diff(table["zeta"]) > 0)
    at_estimate = table.loc[table["zeta"] == 0, "value"]
    ml = glmmcore.fit(slopes.formula, sleep, REML=False)     # REML fits: the ML refit's
    assert at_estimate.iloc[0] == pytest.approx(ml.beta[1], rel=1e-8)
    # it runs past the cutoff of the chi-square with 6 degrees of freedom on both sides
    cutoff = np.sqrt(stats.chi2.ppf(0.99, 6))
    assert table["zeta"].min() < -cutoff and table["zeta"].max() > cutoff


def test_profile_of_a_variance_stops_at_its_bound(sleep):
    fit = glmmcore.fit("Reaction ~ Days + (1 | Subject)", sleep.assign(
        Reaction=np.random.default_rng(3).normal(size=180)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = fit.confint("sd_(Intercept)|Subject")
    # a variance estimated at (or near) 0: the lower limit is the bound
    assert ci.iloc[0, 0] == 0.0 and ci.iloc[0, 1] > 0


def test_back_spline_inverts_a_straight_line_exactly():
    values = np.linspace(-1, 3, 9)
    zetas = 2.0 * (values - 1.0)
    np.testing.assert_allclose(inverse_profile(values, zetas, np.array([-1.5, 0.3, 2.0])),
                               [0.25, 1.15, 2.0], rtol=1e-12)
    assert np.isnan(inverse_profile(values, zetas, np.array([5.0]))[0])
    with pytest.raises(ValueError, match="monotone"):
        inverse_profile(values, np.sin(values), np.array([0.0]))


def test_profile_intervals_fall_back_to_bounds():
    table = pd.DataFrame({"parameter": "sd", "value": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0],
                          "zeta": [-1.0, -0.5, 0.0, 0.8, 1.6, 2.4]})
    table.attrs["bounds"] = {"sd": (0.0, np.inf)}
    ci = profile_intervals(table, 0.95)
    assert ci.iloc[0, 0] == 0.0 and 1.5 < ci.iloc[0, 1] < 3.0


def test_profile_refuses_what_it_cannot_profile(datasets):
    gamma = glmmcore.fit("gpa ~ occasion + (1 | student)", datasets["gpa"],
                         family="gamma", link="log")
    with pytest.raises(glmmcore.ModelSpecError, match="family parameter"):
        gamma.profile()


# -- bootstrap --------------------------------------------------------------------------
def test_bootstrap_is_reproducible_across_threads(slopes):
    one = glmmcore.bootstrap(slopes, 24, seed=5)
    two = glmmcore.bootstrap(slopes, 24, seed=5, n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert one.shape == (24, 8) and one.index.name == "draw"
    assert list(one.columns[:6]) == list(slopes.confint(method="wald").index)
    # draw j is the same whatever the number of draws
    pd.testing.assert_frame_equal(glmmcore.bootstrap(slopes, 10, seed=5), one.iloc[:10])
    assert not one.equals(glmmcore.bootstrap(slopes, 24, seed=6))
    assert one.attrs["seed"] == 5 and one.attrs["original"]["Days"] == slopes.beta[1]


def test_bootstrap_draws_are_refits_of_lme4s_simulations(slopes):
    """Draw j is the fit of the response simulated from the j-th child seed."""
    draws = glmmcore.bootstrap(slopes, 3, seed=11, statistic=lambda f: f.beta)
    children = np.random.SeedSequence(11).spawn(3)
    for j, child in enumerate(children):
        y = slopes.simulate(1, seed=np.random.default_rng(child)).to_numpy()[:, 0]
        refit = glmmcore.refit(slopes, y)
        np.testing.assert_allclose(draws.iloc[j, :2].to_numpy(dtype=float), refit.beta,
                                   rtol=1e-8)
    assert list(draws.columns[:2]) == ["statistic_1", "statistic_2"]


def test_bootstrap_spread_matches_the_standard_errors(slopes):
    draws = glmmcore.bootstrap(slopes, 300, seed=1, n_jobs=2)
    assert draws["converged"].mean() > 0.9 and draws["error"].isna().all()
    sd = draws[["(Intercept)", "Days"]].std().to_numpy()
    np.testing.assert_allclose(sd, slopes.stderr.to_numpy(), rtol=0.15)
    ci = slopes.confint(method="boot", nsim=300, seed=1, n_jobs=2)
    expected = percentile_interval(draws["Days"].to_numpy(), np.array([0.025, 0.975]))
    np.testing.assert_allclose(ci.loc["Days"], expected, rtol=1e-12)


def test_bootstrap_arguments(slopes):
    with pytest.raises(glmmcore.ArgumentError, match="nsim"):
        glmmcore.bootstrap(slopes, 0)
    with pytest.raises(glmmcore.ArgumentError, match="seed"):
        glmmcore.bootstrap(slopes, 2, seed="x")
    with pytest.raises(glmmcore.ArgumentError, match="n_jobs"):
        glmmcore.bootstrap(slopes, 2, n_jobs=0)
    with pytest.raises(glmmcore.ArgumentError, match="statistic"):
        glmmcore.bootstrap(slopes, 2, statistic=3)


def test_percentile_intervals_equal_boots():
    with open(HERE / "data" / "boot_percentile.json") as fh:
        cases = json.load(fh)["cases"]
    for case in cases:
        level = case["level"]
        got = percentile_interval(np.array(case["t"]),
                                  np.array([(1 - level) / 2, (1 + level) / 2]))
        np.testing.assert_allclose(got, case["interval"], rtol=1e-12)


def test_bootstrap_runs_through_the_batch_engine_on_any_backend(slopes):
    """Threads and processes, one worker or two: the same table, bit for bit."""
    pytest.importorskip("joblib")
    one = glmmcore.bootstrap(slopes, 12, seed=3)
    for backend, jobs in [("threads", 2), ("processes", 2)]:
        pd.testing.assert_frame_equal(
            glmmcore.bootstrap(slopes, 12, seed=3, backend=backend, n_jobs=jobs), one)
    with pytest.raises(glmmcore.ArgumentError, match="backend"):
        glmmcore.bootstrap(slopes, 2, backend="mpi")
