"""GLMM responses, offsets, bad input, numerical trouble and warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import glmmcore
import glmmcore.objectives.pirls
from glmmcore.errors import ConvergenceError, ConvergenceWarning, DataError, ResponseError


@pytest.fixture(scope="module")
def counts() -> pd.DataFrame:
    """Binomial counts out of 1..6 trials and Poisson counts with exposure, 30 groups."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=len(g))
    u = rng.normal(scale=0.7, size=30)[g]
    trials = rng.integers(1, 7, size=len(g))
    succ = rng.binomial(trials, expit(-0.2 + 0.7 * x + u))
    exposure = rng.uniform(0.5, 3.0, size=len(g))
    n = rng.poisson(exposure * np.exp(0.3 + 0.4 * x + u))
    return pd.DataFrame({"g": g, "x": x, "s": succ, "f": trials - succ, "n": trials,
                         "prop": succ / trials, "count": n, "exposure": exposure})


def test_cbind_equals_proportions_with_trials_as_weights(counts):
    a = glmmcore.fit("cbind(s, f) ~ x + (1 | g)", counts, family="binomial")
    b = glmmcore.fit("prop ~ x + (1 | g)", counts, family="binomial", weights="n")
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-7)


def test_bernoulli_responses_of_every_kind(counts):
    y = (counts["s"] > counts["f"]).to_numpy()
    base = glmmcore.fit("y ~ x + (1 | g)", counts.assign(y=y.astype(float)), family="binomial")
    kinds = {"bool": y, "strings": np.where(y, "yes", "no"),
             "categorical": pd.Categorical(np.where(y, "win", "loss"))}
    for name, column in kinds.items():
        fit = glmmcore.fit("y ~ x + (1 | g)", counts.assign(y=column), family="binomial")
        assert fit.loglik == pytest.approx(base.loglik, rel=1e-12), name
    fit = glmmcore.fit("y ~ x + (1 | g)", counts.assign(y=kinds["strings"]), family="binomial")
    assert fit.response.info["success"] == "yes"      # second level in sorted order
    assert "success = 'yes'" in str(fit.summary())


def test_offset_in_formula_equals_offset_argument(counts):
    a = glmmcore.fit("count ~ x + offset(np.log(exposure)) + (1 | g)", counts, family="poisson")
    b = glmmcore.fit("count ~ x + (1 | g)", counts, family="poisson",
                     offset=np.log(counts["exposure"]))
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    assert a.fixef["x"] == pytest.approx(0.4, abs=0.15)


@pytest.mark.parametrize("column, values, message", [
    ("prop", [1.5], r"must be in \[0, 1\].*row 0 has 1.5"),
    ("prop", [-0.1], r"must be in \[0, 1\].*row 0 has -0.1"),
    ("count", [2.5], r"non-negative whole numbers; row 0 has 2.5"),
    ("count", [-1.0], r"non-negative whole numbers; row 0 has -1.0"),
])
def test_responses_outside_the_support(counts, column, values, message):
    bad = counts.astype({column: float})
    bad.loc[0, column] = values[0]
    family = "binomial" if column == "prop" else "poisson"
    with pytest.raises(ResponseError, match=message):
        glmmcore.fit(f"{column} ~ x + (1 | g)", bad, family=family)


def test_binomial_count_errors(counts):
    with pytest.raises(ResponseError, match="whole numbers of successes; row 3"):
        glmmcore.fit("prop ~ x + (1 | g)", counts.assign(prop=counts["prop"].where(
            counts.index != 3, 0.3)), family="binomial", weights="n")
    with pytest.raises(ResponseError, match=r"failures in 'cbind.*row 2 has -1\.0"):
        glmmcore.fit("cbind(s, f) ~ x + (1 | g)", counts.assign(f=counts["f"].where(
            counts.index != 2, -1)), family="binomial")
    with pytest.raises(ResponseError, match=r"successes .*row 5 has 1\.5"):
        glmmcore.fit("cbind(s, f) ~ x + (1 | g)", counts.assign(s=counts["s"].where(
            counts.index != 5, 1.5)), family="binomial")
    with pytest.raises(ResponseError, match="3 levels"):
        glmmcore.fit("y ~ x + (1 | g)", counts.assign(y=np.resize(["a", "b", "c"],
                                                                  len(counts))),
                     family="binomial")


def test_weights_must_be_positive(counts):
    with pytest.raises(DataError, match=r"row 4 has 0\.0"):
        glmmcore.fit("prop ~ x + (1 | g)", counts, family="binomial",
                     weights=np.where(counts.index == 4, 0.0, 1.0))


def test_separation_completes_and_is_flagged_once():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    y = (x > 0).astype(float)              # x separates y completely
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmmcore.fit("y ~ x + (1 | g)", data, family="binomial")
    flags = fit.convergence.extra["flags"]
    assert any("fitted probabilities numerically 0 or 1" in f for f in flags)
    assert len([w for w in caught if issubclass(w.category, ConvergenceWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glmmcore.fit("y ~ x + (1 | g)", data, family="binomial", control={"warn": False})


def test_a_group_with_all_zero_counts_is_flagged(counts):
    zero = counts.copy()
    zero.loc[zero["g"] == 3, "count"] = 0
    fit = glmmcore.fit("count ~ x + (1 | g)", zero, family="poisson")
    assert fit.converged
    assert "1 level(s) of 'g' have zero counts only: only the random-effects distribution " \
        "keeps their conditional modes finite" in fit.convergence.extra["flags"]
    assert fit.ranef["g"].loc[3, "(Intercept)"] < fit.ranef["g"]["(Intercept)"].median()


def test_pirls_failure_raises_with_diagnostics(counts, monkeypatch):
    monkeypatch.setattr(glmmcore.objectives.pirls, "MAX_ITER", 1)
    with pytest.raises(ConvergenceError) as info:       # the regular path's PIRLS
        glmmcore.fit("count ~ x + (1 | g)", counts, family="poisson",
                     control={"fast_path": False})
    assert "PIRLS did not converge" in str(info.value)
    assert {"theta", "beta", "penalized_deviance"} <= set(info.value.diagnostics)


def test_diagnostics_are_data(counts):
    fit = glmmcore.fit("count ~ x + (1 | g)", counts, family="poisson")
    conv = fit.convergence.as_dict()
    assert conv["converged"] and not conv["is_singular"]
    assert len(conv["gradient"]) == 1 + 2
    assert conv["min_eigenvalue"] > 0
    assert conv["pirls_iterations"] >= 1
    assert conv["reason"]


def test_not_converged_warns_once(counts):
    # one evaluation per optimizer (the joint stage's scaled start reaches this optimum to
    # 3e-7 of the log-likelihood in three, and the checks pass there)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmmcore.fit("count ~ x + (1 | g)", counts, family="poisson",
                           control={"maxeval": 1})
    assert not fit.converged
    assert len([w for w in caught if issubclass(w.category, ConvergenceWarning)]) == 1
