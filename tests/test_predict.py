"""``predict`` and ``simulate``: identities, new levels, missing values, moments.

Agreement with lme4's ``predict`` on the seed models is in test_predict_reference.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import DataError, MissingColumnError, MissingValueWarning, ModelSpecError


@pytest.fixture(scope="module")
def crossed():
    """An LMM with two crossed scalar terms and a slope."""
    rng = np.random.default_rng(3)
    n = 600
    a, b = rng.integers(0, 25, n), rng.integers(0, 12, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(0, 0.7, 25)[a] + rng.normal(0, 0.2, 25)[a] * x
         + rng.normal(0, 0.5, 12)[b] + rng.normal(0, 0.4, n))
    data = pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": b})
    return glmmcore.fit("y ~ x + (1 + x | a) + (1 | b)", data), data


@pytest.fixture(scope="module")
def poisson():
    rng = np.random.default_rng(5)
    n = 800
    g = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    t = rng.uniform(0.5, 2.0, n)
    mu = t * np.exp(0.3 + 0.4 * x + rng.normal(0, 0.5, 40)[g])
    data = pd.DataFrame({"c": rng.poisson(mu), "x": x, "t": t, "g": g})
    return glmmcore.fit("c ~ x + offset(np.log(t)) + (1 | g)", data, family="poisson"), data


def test_prediction_on_the_fitted_rows_is_the_fitted_values(crossed, poisson):
    for fit, data in (crossed, poisson):
        np.testing.assert_array_equal(fit.predict(), fit.fitted())
        np.testing.assert_allclose(fit.predict(data), fit.fitted(), rtol=1e-12)
        pd.testing.assert_index_equal(fit.predict(data).index, data.index)


def test_population_level_is_the_fixed_part(crossed, poisson):
    fit, data = crossed
    np.testing.assert_allclose(fit.predict(data, re_form="~0"),
                               fit.predictor.X @ fit.beta, rtol=1e-12)
    np.testing.assert_array_equal(fit.predict(re_form="NA"), fit.predict(re_form="~0"))
    pfit, pdata = poisson
    eta = fit_eta = pfit.predictor.X @ pfit.beta + np.log(pdata["t"].to_numpy())
    np.testing.assert_allclose(pfit.predict(pdata, re_form="~0", type="link"), eta,
                               rtol=1e-12)
    np.testing.assert_allclose(pfit.predict(pdata, re_form="~0"), np.exp(fit_eta),
                               rtol=1e-12)


def test_terms_add_up(crossed):
    """Each term's part of the linear predictor adds to the whole."""
    fit, data = crossed
    none = fit.predict(data, re_form="~0").to_numpy()
    a = fit.predict(data, re_form="~(1 + x | a)").to_numpy() - none
    b = fit.predict(data, re_form="~ (1|b)").to_numpy() - none
    np.testing.assert_allclose(none + a + b, fit.fitted(), rtol=1e-12)
    both = fit.predict(data, re_form="~(1 + x | a) + (1 | b)")
    np.testing.assert_allclose(both, fit.fitted(), rtol=1e-12)
    with pytest.raises(ModelSpecError, match=r"'\(1 \| c\)' is not a term of the model"):
        fit.predict(data, re_form="~(1 | c)")


def test_new_levels(crossed):
    fit, data = crossed
    new = data.head(4).copy()
    new.loc[[0, 1], "a"] = ["zz", "yy"]
    population = fit.predict(new, re_form="~(1 | b)")
    got = fit.predict(new)
    np.testing.assert_allclose(got[[0, 1]], population[[0, 1]], rtol=1e-12)
    np.testing.assert_allclose(got[[2, 3]], fit.fitted()[[2, 3]], rtol=1e-12)
    nan = fit.predict(new, new_levels="nan")
    assert nan[[0, 1]].isna().all() and nan[[2, 3]].notna().all()
    with pytest.raises(DataError, match=r"2 level\(s\) of 'a' the fit never saw \('zz', 'yy'\)"):
        fit.predict(new, new_levels="error")
    with pytest.raises(ModelSpecError, match="new_levels must be one of"):
        fit.predict(new, new_levels="zero")


def test_bad_newdata_is_a_typed_error_naming_the_column(crossed):
    fit, data = crossed
    with pytest.raises(MissingColumnError, match="newdata lacks the column"):
        fit.predict(data.drop(columns="x"))
    sim = glmmcore.simulate("gpa", seed=2)
    gfit = glmmcore.fit(sim.formula, sim.data)
    new = sim.data.head(3).copy()
    new["sex"] = new["sex"].astype(object)
    new.loc[new.index[0], "sex"] = "other"
    with pytest.raises(DataError, match="column 'sex' of newdata has level"):
        gfit.predict(new)


def test_rows_with_missing_predictors_predict_nan_with_a_warning(crossed):
    fit, data = crossed
    new = data.head(5).copy()
    new.loc[[1, 3], "x"] = np.nan
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = fit.predict(new)
    assert got[[1, 3]].isna().all() and got[[0, 2, 4]].notna().all()
    assert len(got) == 5
    warning = [w for w in seen if issubclass(w.category, MissingValueWarning)]
    assert len(warning) == 1 and "2 row(s)" in str(warning[0].message)
    assert warning[0].filename == __file__


def test_formula_offsets_are_evaluated_on_newdata(poisson):
    fit, data = poisson
    new = data.head(5).assign(t=data["t"].head(5) * 3.0)
    shift = fit.predict(new, type="link") - fit.predict(data.head(5), type="link")
    np.testing.assert_allclose(shift, np.log(3.0), rtol=1e-12)
    shift = fit.predict(data.head(5), type="link", offset=np.ones(5)) \
        - fit.predict(data.head(5), type="link")
    np.testing.assert_allclose(shift, 1.0, rtol=1e-12)


def test_simulation_is_seeded(poisson):
    fit, _ = poisson
    a, b = fit.simulate(3, seed=11), fit.simulate(3, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    assert not a.equals(fit.simulate(3, seed=12))


def test_lmm_simulation_moments(crossed):
    """Unconditional draws: mean X beta, variance from the random effects and sigma."""
    fit, data = crossed
    sims = fit.simulate(4000, seed=1).to_numpy()
    X = fit.predictor.X
    vc = fit.varcorr
    var_of = {(r.grp, r.var1): r.vcov for r in vc[vc["var2"].isna()].itertuples()}
    cov = vc.dropna(subset=["var2"])["vcov"].iloc[0]
    x = data["x"].to_numpy()
    var = (var_of[("a", "(Intercept)")] + 2 * cov * x + var_of[("a", "x")] * x ** 2
           + var_of[("b", "(Intercept)")] + fit.sigma ** 2)
    se_mean = np.sqrt(var / sims.shape[1])
    z = (sims.mean(axis=1) - X @ fit.beta) / se_mean
    assert np.mean(np.abs(z) < 3) > 0.98
    ratio = sims.var(axis=1) / var
    assert abs(np.median(ratio) - 1) < 0.05


def test_poisson_conditional_simulation_moments(poisson):
    """With the conditional modes kept, draws have mean and variance mu."""
    fit, _ = poisson
    sims = fit.simulate(3000, seed=2, re_form=None).to_numpy()
    mu = fit.fitted().to_numpy()
    z = (sims.mean(axis=1) - mu) / np.sqrt(mu / sims.shape[1])
    assert np.mean(np.abs(z) < 3) > 0.98
    assert abs(np.median(sims.var(axis=1) / mu) - 1) < 0.05


def test_poisson_unconditional_mean_is_lognormal(poisson):
    """New random intercepts: E[y] = exp(X beta + offset + var / 2)."""
    fit, data = poisson
    sims = fit.simulate(3000, seed=3).to_numpy()
    var = fit.varcorr["vcov"].iloc[0]
    eta = fit.predict(data, re_form="~0", type="link").to_numpy()
    expected = np.exp(eta + var / 2)
    assert abs(np.median(sims.mean(axis=1) / expected) - 1) < 0.05


def test_simulation_on_new_data_draws_new_levels(crossed):
    fit, data = crossed
    new = data.head(6).copy()
    new["a"] = ["n1", "n1", "n2", "n2", "n3", "n3"]
    sims = fit.simulate(2000, seed=4, newdata=new, re_form=None)
    assert sims.shape == (6, 2000)
    # rows sharing a new level share its draw: their difference has no random-effect part
    d_same = (sims.iloc[0] - sims.iloc[1]).var()
    d_other = (sims.iloc[0] - sims.iloc[2]).var()
    assert d_other > d_same
