"""Degenerate data: each case is a flagged result or a typed error naming the cause.

What lme4 1.1-31 does on the same cases (run once with R, not needed here) is
noted per test; docs/usage.md lists them all.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import (
    ConvergenceWarning,
    DataError,
    IdentifiabilityWarning,
    ModelSpecError,
    ResponseError,
    SingularFitWarning,
)
from glmmcore.fitting.diagnostics import FLAG_CODES, Flag


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 5)
    x = rng.normal(size=100)
    u = rng.normal(size=20)[g]
    y = 1 + 0.5 * x + u + rng.normal(scale=0.5, size=100)
    counts = rng.poisson(np.exp(0.5 + 0.3 * x + 0.5 * u))
    ones = rng.binomial(1, 1 / (1 + np.exp(-(0.3 * x + u))))
    return pd.DataFrame({"y": y, "x": x, "g": g, "n": counts, "b": ones})


def fit_recording(*args, **kwargs):
    """The fit and the glmmcore warnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmmcore.fit(*args, **kwargs)
    return fit, [w for w in caught if issubclass(w.category, glmmcore.GlmmWarning)]


def codes(fit) -> list[str]:
    return [f.code for f in fit.convergence.flags]


def only(caught, category):
    return [w for w in caught if w.category is category]


# -- linear mixed models: the response fitted exactly (lme4: a fit with "Model failed to
# converge" and "Model is nearly unidentifiable: very large eigenvalue") --------------------

def test_response_fitted_exactly_by_the_fixed_effects(small):
    exact = small.assign(y=1 + 2 * small["x"])
    fit, caught = fit_recording("y ~ x + (1 | g)", exact)
    assert codes(fit) == ["perfect_fit"]
    assert not fit.converged and "no maximum" in fit.convergence.reason
    np.testing.assert_allclose(fit.fixef, [1.0, 2.0], rtol=1e-12)
    assert fit.sigma < 1e-12 and fit.loglik == np.inf
    assert np.all(np.isnan(fit.stderr)) and np.all(fit.theta == 0)
    assert len(only(caught, IdentifiabilityWarning)) == 1
    assert "fit the response exactly" in str(only(caught, IdentifiabilityWarning)[0].message)
    assert fit.convergence.as_dict()["flags"][0]["code"] == "perfect_fit"
    diagnostics = fit.to_dict()["diagnostics"]
    assert diagnostics["flag_codes"] == ["perfect_fit"]
    assert diagnostics["flags"] == [str(fit.convergence.flags[0])]


def test_constant_response_in_an_lmm_is_an_exact_fit(small):
    fit, caught = fit_recording("y ~ x + (1 | g)", small.assign(y=3.0))
    assert "perfect_fit" in codes(fit) and not fit.converged
    assert fit.fixef["(Intercept)"] == pytest.approx(3.0, rel=1e-14)
    assert len(only(caught, IdentifiabilityWarning)) == 1


def test_as_many_fixed_effects_as_observations():
    rng = np.random.default_rng(3)
    n = 12
    data = pd.DataFrame({"y": rng.normal(size=n), "g": np.repeat(np.arange(4), 3)})
    for j in range(n - 1):
        data[f"x{j}"] = rng.normal(size=n)
    formula = "y ~ " + " + ".join(f"x{j}" for j in range(n - 1)) + " + (1 | g)"
    fit, caught = fit_recording(formula, data, REML=False)       # lme4: loglik +369, warns
    assert set(codes(fit)) == {"perfect_fit", "saturated"} and not fit.converged
    assert "12 fixed effects for 12 observations" in str(caught[0].message)
    with pytest.raises(ModelSpecError, match="no residual degrees of freedom"):
        glmmcore.fit(formula, data)                              # lme4: "returns NA"


def test_response_constant_within_every_group(small):
    fit, caught = fit_recording("y ~ x + (1 | g)", small.assign(y=small["g"] * 1.0))
    assert codes(fit) == ["constant_within_groups"] and not fit.converged
    assert "no maximum (constant_within_groups" in fit.convergence.reason
    assert "constant within every level of 'g'" in fit.convergence.flags[0]
    assert len(only(caught, IdentifiabilityWarning)) == 1


def test_fixed_and_random_effects_fit_exactly():
    # y = x + a group effect, without noise: not constant within groups, not an exact fit
    # of the fixed effects alone; the residual SD goes to 0
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(10), 6)
    x = rng.normal(size=60)
    data = pd.DataFrame({"y": x + rng.normal(size=10)[g], "x": x, "g": g})
    fit, caught = fit_recording("y ~ x + (1 | g)", data)
    assert "zero_residual_variance" in codes(fit) and not fit.converged
    assert fit.sigma < 1e-6 * data["y"].std()
    assert len(only(caught, IdentifiabilityWarning)) == 1


def test_three_rows_in_two_groups_is_an_ordinary_fit_unless_exact():
    # lme4: no warning for y ~ 1; for y ~ x the line fits the three rows exactly
    three = pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 3.0], "g": [0, 0, 1]})
    fit, caught = fit_recording("y ~ 1 + (1 | g)", three)
    assert fit.converged and not codes(fit) and not caught
    assert fit.loglik == pytest.approx(-3.754168, abs=1e-5)          # lme4's
    exact, caught = fit_recording("y ~ x + (1 | g)", three)
    assert codes(exact) == ["perfect_fit"] and not exact.converged


def test_random_term_confounded_with_fixed_effects(small):
    fit, caught = fit_recording("y ~ x + C(g) + (1 | g)", small)
    assert codes(fit) == ["confounded_term"]
    assert "random effects on 'g'" in str(only(caught, IdentifiabilityWarning)[0].message)
    glm_fit, _ = fit_recording("b ~ x + C(g) + (1 | g)", small, family="binomial")
    assert "confounded_term" in codes(glm_fit)
    fine, caught = fit_recording("y ~ x + (1 | g)", small)
    assert not codes(fine) and not caught


def test_levels_of_grouping_factors(small):
    with pytest.raises(ModelSpecError, match="single level"):           # lme4: stop
        glmmcore.fit("y ~ x + (1 | g)", small.assign(g=1))
    with pytest.raises(ModelSpecError, match="100 levels for 100 observations"):
        glmmcore.fit("y ~ x + (1 | g)", small.assign(g=np.arange(100)))
    # a GLMM may have one level per observation (lme4 allows it); Poisson: overdispersion
    fit, _ = fit_recording("n ~ x + (1 | g)", small.assign(g=np.arange(100)),
                           family="poisson")
    assert "unidentifiable_term" not in codes(fit)
    # with 0/1 responses such a variance cannot be told from the binomial's
    fit, caught = fit_recording("b ~ x + (1 | g)", small.assign(g=np.arange(100)),
                                family="binomial")
    assert "unidentifiable_term" in codes(fit)
    assert len(only(caught, IdentifiabilityWarning)) == 1


# -- generalized linear mixed models ----------------------------------------------------

@pytest.mark.parametrize("family, value", [("binomial", 0.0), ("binomial", 1.0),
                                           ("poisson", 0.0), ("poisson", 3.0)])
def test_constant_glmm_response_is_refused(small, family, value):
    # lme4: "Response is constant"
    with pytest.raises(ResponseError, match=f"response 'b' is constant.*{value}"):
        glmmcore.fit("b ~ x + (1 | g)", small.assign(b=value), family=family)


def test_zero_exposure_names_the_offset_term(small):
    z = np.linspace(0.5, 2.0, 100)
    z[5] = 0.0
    with np.errstate(divide="ignore"), pytest.raises(
            DataError, match=r"offset\(np.log\(z\)\) is infinite in row 5"):
        glmmcore.fit("n ~ x + offset(np.log(z)) + (1 | g)", small.assign(z=z),
                     family="poisson")
    with np.errstate(divide="ignore"), pytest.raises(
            DataError, match=r"offset argument is -inf in row 5 \(1 such row\(s\)\): log\(0\)"):
        glmmcore.fit("n ~ x + (1 | g)", small, family="poisson", offset=np.log(z))
    off = np.log(np.where(z > 0, z, 1.0))
    off[7] = np.inf
    with pytest.raises(DataError, match="offset argument is inf in row 7"):
        glmmcore.fit("n ~ x + (1 | g)", small, family="poisson", offset=off)


def test_negative_responses_with_the_gaussian_log_link(small):
    # lme4: "cannot find valid starting values"; the model itself is valid
    y = np.exp(0.3 + 0.3 * small["x"] + 0.2 * (small["g"] % 3)) + np.random.default_rng(
        2).normal(scale=1.0, size=100)
    assert (y <= 0).sum() >= 5
    fit, caught = fit_recording("y ~ x + (1 | g)", small.assign(y=y), family="gaussian",
                                link="log")
    assert fit.converged and not caught
    assert fit.fixef["x"] == pytest.approx(0.3, abs=0.1)


def test_complete_separation_is_flagged(small):
    # lme4: "pwrssUpdate did not converge in (maxit) iterations"
    fit, caught = fit_recording("y ~ x + (1 | g)", small.assign(y=(small["x"] > 0) * 1.0),
                                family="binomial")
    assert "separation" in codes(fit)
    assert len([w for w in caught if issubclass(w.category, ConvergenceWarning)]) == 1
    assert issubclass(only(caught, IdentifiabilityWarning)[0].category, ConvergenceWarning)


def test_binomial_groups_all_failures_or_all_successes(small):
    # lme4: theta 61 and "Model failed to converge"
    fit, caught = fit_recording("b ~ x + (1 | g)", small.assign(b=small["g"] % 2),
                                family="binomial")
    assert "separated_groups" in codes(fit) and not fit.converged
    assert "every level of 'g' has only failures or only successes" in str(
        only(caught, IdentifiabilityWarning)[0].message)
    # one group with both outcomes is enough to bound the variance
    mixed = small.assign(b=np.where(np.arange(100) == 0, 1, small["g"] % 2))
    fit, _ = fit_recording("b ~ x + (1 | g)", mixed, family="binomial")
    assert "separated_groups" not in codes(fit)


def test_groups_with_all_zero_counts_are_noted_not_warned(small):
    zero = small.assign(n=np.where(small["g"] < 10, 0, small["n"]))
    fit, caught = fit_recording("n ~ x + (1 | g)", zero, family="poisson")
    assert fit.converged and codes(fit) == ["zero_count_levels"] and not caught
    assert "10 level(s) of 'g'" in fit.convergence.flags[0]


def test_saturated_glmm_is_refused():
    rng = np.random.default_rng(3)
    n = 12
    data = pd.DataFrame({"y": rng.poisson(3.0, size=n) + 1, "g": np.repeat(np.arange(4), 3)})
    for j in range(n - 1):
        data[f"x{j}"] = rng.normal(size=n)
    formula = "y ~ " + " + ".join(f"x{j}" for j in range(n - 1)) + " + (1 | g)"
    with pytest.raises(ModelSpecError, match="12 fixed effects for 12 observations"):
        glmmcore.fit(formula, data, family="poisson")      # lme4: "Downdated VtV is not PD"


@pytest.mark.parametrize("family, column", [("poisson", "n"), ("binomial", "b")])
@pytest.mark.parametrize("factor", [1e8, 1e-8])
def test_extreme_predictor_scales_give_the_same_fit(small, family, column, factor):
    # lme4: "Some predictor variables are on very different scales", then a PIRLS error
    base = glmmcore.fit(f"{column} ~ x + (1 | g)", small, family=family)
    fit, caught = fit_recording(f"{column} ~ x + (1 | g)", small.assign(x=small["x"] * factor),
                                family=family)
    assert fit.converged and not caught
    assert fit.loglik == pytest.approx(base.loglik, rel=1e-9)
    assert fit.fixef["x"] * factor == pytest.approx(base.fixef["x"], rel=1e-5)
    assert fit.stderr["x"] * factor == pytest.approx(base.stderr["x"], rel=1e-3)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-5)


def test_extreme_response_scale_in_an_lmm(small):
    base = glmmcore.fit("y ~ x + (1 | g)", small)
    fit, caught = fit_recording("y ~ x + (1 | g)", small.assign(y=small["y"] * 1e-8))
    assert fit.converged and not caught
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-6)
    assert fit.sigma == pytest.approx(1e-8 * base.sigma, rel=1e-6)
    # the REML criterion shifts by (n - p) log(1e-8)
    assert fit.loglik == pytest.approx(base.loglik - 98 * np.log(1e-8), rel=1e-9)


# -- flags are data -----------------------------------------------------------------------

def test_flags_are_strings_with_codes_and_pickle():
    flag = Flag("separation", "fitted probabilities numerically 0 or 1")
    assert flag.startswith("fitted") and flag.code in FLAG_CODES
    again = pickle.loads(pickle.dumps(flag))
    assert again == flag and again.code == "separation"


def test_singular_fit_warns_once(small):
    noise = small.assign(y=1 + 0.5 * small["x"] + np.random.default_rng(9).normal(size=100))
    fit, caught = fit_recording("y ~ x + (1 | g)", noise)
    assert fit.is_singular and fit.converged
    assert [w.category for w in caught] == [SingularFitWarning]
    assert "boundary (singular) fit" in str(caught[0].message)
    _, quiet = fit_recording("y ~ x + (1 | g)", noise, control={"warn": False})
    assert not quiet
