"""glmmcore.sklearn: scikit-learn's own estimator checks, and the estimators in real use."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import glmmcore

pytest.importorskip("sklearn")

import sklearn
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from glmmcore.sklearn import GLMMClassifier, GLMMRegressor

# a check that cannot apply to a mixed model, with the reason
EXPECTED_FAILURES = {
    GLMMClassifier: {
        "check_sample_weight_equivalence_on_dense_data":
            "30 columns, 15 rows: separated classes have no maximum likelihood (no penalty), "
            "so the weighted and the repeated fits stop at different points on the way to "
            "infinity",
    },
}


def _expected_failures(estimator):
    return EXPECTED_FAILURES.get(type(estimator), {})


# the checks give no groups: column mode then fits the fixed effects alone, and says so
@pytest.mark.filterwarnings("ignore:no groups given:glmmcore.GlmmWarning")
@parametrize_with_checks([GLMMRegressor(), GLMMClassifier()],
                         expected_failed_checks=_expected_failures)
def test_sklearn_checks(estimator, check):
    check(estimator)


# -- the estimators in real use: identities with glmmcore.fit on the same data ------------
SD_FORMULA = ("decision ~ sex + samerace + attractive_sc + sincere_sc + intelligent_sc"
              " + (1 | iid)")
SD_COLUMNS = ["decision", "sex", "samerace", "attractive_sc", "sincere_sc", "intelligent_sc",
              "iid"]


@pytest.fixture(scope="module")
def sd(datasets):
    """The speed-dating rows the seed model uses, with the raw Yes/No labels."""
    data = datasets["sd"][SD_COLUMNS].dropna().reset_index(drop=True)
    data["label"] = np.where(data["decision"] == 1, "Yes", "No")
    return data


@pytest.fixture(scope="module")
def sd_fit(sd):
    return glmmcore.fit(SD_FORMULA, sd, family="binomial")


@pytest.fixture(scope="module")
def gpa(datasets):
    return datasets["gpa"]


def test_formula_classifier_is_glmmcore_fit(sd, sd_fit):
    est = GLMMClassifier(SD_FORMULA).fit(sd.drop(columns="decision"), sd["label"])
    assert list(est.classes_) == ["No", "Yes"]
    np.testing.assert_allclose(est.intercept_, sd_fit.fixef.iloc[:1], rtol=1e-10)
    np.testing.assert_allclose(est.coef_[0], sd_fit.fixef.iloc[1:], rtol=1e-10)
    assert est.result_.loglik == pytest.approx(sd_fit.loglik, rel=1e-12)
    pd.testing.assert_frame_equal(est.ranef_["iid"], sd_fit.ranef["iid"])
    proba = est.predict_proba(sd)
    np.testing.assert_allclose(proba[:, 1], sd_fit.fitted(), rtol=1e-10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(est.decision_function(sd), sd_fit.linear_predictor(),
                               rtol=1e-10)
    expected = np.where(sd_fit.fitted() > 0.5, "Yes", "No")
    np.testing.assert_array_equal(est.predict(sd), expected)
    assert est.score(sd, sd["label"]) == pytest.approx(np.mean(expected == sd["label"]))
    assert est.n_features_in_ == sd.shape[1] - 1
    assert list(est.feature_names_in_) == [c for c in sd.columns if c != "decision"]


def test_formula_response_from_X_and_swapped_labels(sd, sd_fit):
    own = GLMMClassifier(SD_FORMULA).fit(sd)        # labels read from X's decision column
    np.testing.assert_allclose(own.coef_[0], sd_fit.fixef.iloc[1:], rtol=1e-10)
    assert own.score(sd) == pytest.approx(own.score(sd, sd["decision"]))
    # "No" the event: every fixed effect changes sign, probabilities swap columns
    labels = np.where(sd["decision"] == 1, "a-yes", "b-no")
    swapped = GLMMClassifier(SD_FORMULA).fit(sd, labels)
    np.testing.assert_allclose(swapped.coef_, -own.coef_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(swapped.predict_proba(sd)[:, ::-1], own.predict_proba(sd),
                               atol=1e-6)


def test_probit_decision_function_is_the_log_odds(sd):
    est = GLMMClassifier(SD_FORMULA, link="probit").fit(sd)
    p = est.predict_proba(sd)[:, 1]
    np.testing.assert_allclose(est.decision_function(sd), np.log(p / (1 - p)), rtol=1e-10)
    np.testing.assert_array_equal(est.predict(sd), (est.decision_function(sd) > 0) * 1.0)


def test_column_mode_is_glmmcore_fit(gpa):
    X = gpa[["occasion", "highgpa"]].to_numpy()
    reference = glmmcore.fit("gpa ~ occasion + highgpa + (1 | student)", gpa)
    est = GLMMRegressor().fit(X, gpa["gpa"].to_numpy(), groups=gpa["student"].to_numpy())
    np.testing.assert_allclose(est.intercept_, reference.fixef["(Intercept)"], rtol=1e-10)
    np.testing.assert_allclose(est.coef_, reference.fixef[["occasion", "highgpa"]],
                               rtol=1e-10)
    assert est.result_.loglik == pytest.approx(reference.loglik, rel=1e-12)
    np.testing.assert_allclose(est.ranef_["group"].to_numpy(),
                               reference.ranef["student"].to_numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(est.predict(X, groups=gpa["student"]), reference.fitted(),
                               rtol=1e-12)
    # without groups every row is of a new level: the population-level prediction
    np.testing.assert_allclose(est.predict(X), reference.predict(gpa, re_form="~0"),
                               rtol=1e-12)
    y = gpa["gpa"].to_numpy()
    r2 = 1 - np.sum((y - reference.fitted()) ** 2) / np.sum((y - y.mean()) ** 2)
    assert est.score(X, y, groups=gpa["student"]) == pytest.approx(r2, rel=1e-12)
    assert est.n_features_in_ == 2 and not hasattr(est, "feature_names_in_")
    named = GLMMRegressor().fit(gpa[["occasion", "highgpa"]], gpa["gpa"],
                                groups=gpa["student"])
    assert list(named.feature_names_in_) == ["occasion", "highgpa"]
    np.testing.assert_allclose(named.coef_, est.coef_, rtol=1e-12)


def test_new_groups_predict_at_the_population_level(gpa):
    train, test = gpa[gpa["student"] <= 150], gpa[gpa["student"] > 140]
    est = GLMMRegressor("gpa ~ occasion + job + (1 + occasion | student)").fit(train)
    np.testing.assert_allclose(est.predict(test),
                               est.result_.predict(test, new_levels="population"), rtol=1e-12)
    unseen = test["student"] > 150
    np.testing.assert_allclose(est.predict(test[unseen]),
                               est.result_.predict(test[unseen], re_form="~0"), rtol=1e-12)
    assert np.isnan(est.set_params(new_levels="nan").predict(test)[unseen.to_numpy()]).all()
    with pytest.raises(glmmcore.DataError, match="never saw"):
        est.set_params(new_levels="error").predict(test)
    cols = GLMMRegressor().fit(train[["occasion"]], train["gpa"], groups=train["student"])
    np.testing.assert_allclose(
        cols.predict(test[["occasion"]], groups=test["student"]),
        cols.result_.predict(test[["occasion"]].rename(columns={"occasion": "x0"}).assign(
            group=test["student"].to_numpy()), new_levels="population"), rtol=1e-12)


def test_sample_weight_and_offset_are_the_prior_weights_and_offset(gpa):
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, len(gpa))
    off = rng.normal(size=len(gpa))
    reference = glmmcore.fit("gpa ~ occasion + (1 | student)", gpa, weights=w, offset=off)
    est = GLMMRegressor().fit(gpa[["occasion"]], gpa["gpa"], groups=gpa["student"],
                              sample_weight=w, offset=off)
    np.testing.assert_allclose(est.coef_, reference.fixef[["occasion"]], rtol=1e-10)
    assert est.result_.loglik == pytest.approx(reference.loglik, rel=1e-12)
    np.testing.assert_allclose(est.predict(gpa[["occasion"]], groups=gpa["student"],
                                           offset=off), reference.fitted(), rtol=1e-12)
    formula = GLMMRegressor("gpa ~ occasion + (1 | student)").fit(gpa, sample_weight=w,
                                                                  offset=off)
    np.testing.assert_allclose(formula.coef_, est.coef_, rtol=1e-12)


def test_without_groups_the_fixed_effects_model_is_fitted(gpa):
    X, y = gpa[["occasion", "highgpa"]].to_numpy(), gpa["gpa"].to_numpy()
    with pytest.warns(glmmcore.GlmmWarning, match="no groups given"):
        est = GLMMRegressor().fit(X, y)
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[est.intercept_, est.coef_], ols, rtol=1e-10)
    assert est.result_ is None and est.ranef_ == {}
    # logistic regression: the score equations X'(y - mu) = 0 hold at the estimate
    yb = (y > np.median(y)).astype(int)
    with pytest.warns(glmmcore.GlmmWarning, match="no groups given"):
        clf = GLMMClassifier().fit(X, yb)
    mu = clf.predict_proba(X)[:, 1]
    np.testing.assert_allclose(np.column_stack([np.ones(len(y)), X]).T @ (yb - mu), 0,
                               atol=1e-8)


RAW = ["attractive", "sincere", "intelligent"]


@pytest.fixture(scope="module")
def sd_raw(datasets):
    """Speed-dating rows complete in the raw ratings, sex, samerace and iid."""
    columns = ["decision", "sex", "samerace", *RAW, "iid"]
    data = datasets["sd"][columns].dropna().reset_index(drop=True)
    return data


def _by_hand(data):
    """StandardScaler's and OneHotEncoder(drop='first')'s columns, computed directly."""
    out = data[["decision", "iid"]].copy()
    for name in RAW:
        x = data[name].to_numpy()
        out[name] = (x - x.mean()) / x.std()
    out["sex_Male"] = (data["sex"] == "Male").astype(float)
    out["samerace_Yes"] = (data["samerace"] == "Yes").astype(float)
    return out


def _preprocess():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    return ColumnTransformer([("num", StandardScaler(), RAW),
                              ("cat", OneHotEncoder(drop="first", sparse_output=False),
                               ["sex", "samerace"])])


HAND_FORMULA = ("decision ~ attractive + sincere + intelligent + sex_Male + samerace_Yes"
                " + (1 | iid)")


def test_pipeline_with_column_transformer_and_routed_groups(sd_raw):
    from sklearn.pipeline import make_pipeline
    reference = glmmcore.fit(HAND_FORMULA, _by_hand(sd_raw), family="binomial")
    X, y, g = sd_raw.drop(columns="decision"), sd_raw["decision"], sd_raw["iid"]
    pipe = make_pipeline(_preprocess(), GLMMClassifier())
    pipe.fit(X, y, glmmclassifier__groups=g)            # without routing: step__param
    est = pipe[-1]
    np.testing.assert_allclose(est.coef_[0], reference.fixef.iloc[1:], rtol=1e-8)
    assert est.result_.loglik == pytest.approx(reference.loglik, rel=1e-12)
    np.testing.assert_allclose(pipe.predict_proba(X, groups=g)[:, 1], reference.fitted(),
                               rtol=1e-8)
    # with routing: the request sends fit's groups to the classifier, and to predict
    with sklearn.config_context(enable_metadata_routing=True):
        routed = make_pipeline(_preprocess(), GLMMClassifier().set_fit_request(groups=True))
        routed.fit(X, y, groups=g)
        np.testing.assert_allclose(routed.predict_proba(X, groups=g)[:, 1],
                                   reference.fitted(), rtol=1e-8)
        np.testing.assert_allclose(routed[-1].coef_, est.coef_, rtol=1e-12)


def test_pipeline_into_a_formula_with_pandas_output(sd_raw):
    from sklearn.pipeline import make_pipeline
    reference = glmmcore.fit(HAND_FORMULA, _by_hand(sd_raw), family="binomial")
    pre = _preprocess().set_params(remainder="passthrough", verbose_feature_names_out=False)
    pipe = make_pipeline(pre.set_output(transform="pandas"),
                         GLMMClassifier(HAND_FORMULA))
    X = sd_raw.drop(columns="decision")
    pipe.fit(X, sd_raw["decision"])                 # iid passes through as a column
    assert "iid" in pipe[-1].feature_names_in_
    np.testing.assert_allclose(pipe[-1].coef_[0], reference.fixef.iloc[1:], rtol=1e-8)
    np.testing.assert_allclose(pipe.predict_proba(X)[:, 1], reference.fitted(), rtol=1e-8)


def test_grouped_cross_validation_with_routed_groups(sd_raw):
    from sklearn.model_selection import GroupKFold, cross_val_score
    data = _by_hand(sd_raw)
    X = data[["attractive", "sincere", "intelligent", "sex_Male", "samerace_Yes"]]
    y, g = data["decision"], data["iid"]
    cv = GroupKFold(3)
    # the fold by fold identity: fit on the training groups, accuracy on the others
    expected = []
    for train, test in cv.split(X, y, g):
        fit = glmmcore.fit(HAND_FORMULA, data.iloc[train], family="binomial")
        p = fit.predict(data.iloc[test], new_levels="population")
        expected.append(np.mean((p > 0.5) == (y.iloc[test] == 1)))
    scores = cross_val_score(GLMMClassifier(), X, y, groups=g, cv=cv, params={"groups": g})
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_val_score(GLMMClassifier().set_fit_request(groups=True), X, y, cv=cv,
                                 params={"groups": g})
    np.testing.assert_allclose(routed, expected, rtol=1e-12)


def test_grid_search_in_two_processes(sd, gpa):
    from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
    grid = {"link": ["logit", "probit"], "nAGQ": [0, 1]}
    cv = GroupKFold(3)
    search = GridSearchCV(GLMMClassifier(SD_FORMULA), grid, cv=cv, n_jobs=2)
    search.fit(sd, sd["label"], groups=sd["iid"])
    for k, params in enumerate(search.cv_results_["params"]):
        one = cross_val_score(GLMMClassifier(SD_FORMULA, **params), sd, sd["label"],
                              groups=sd["iid"], cv=cv)
        assert search.cv_results_["mean_test_score"][k] == pytest.approx(one.mean(),
                                                                         rel=1e-12)
    best = GLMMClassifier(SD_FORMULA, **search.best_params_).fit(sd, sd["label"])
    np.testing.assert_allclose(search.best_estimator_.coef_, best.coef_, rtol=1e-12)
    # the regressor over families and links, the gpa model
    formula = "gpa ~ occasion + (1 | student)"
    grid = {"family": ["gaussian", "gamma"], "link": ["identity", "log"]}
    search = GridSearchCV(GLMMRegressor(formula, REML=False), grid, cv=cv, n_jobs=2)
    search.fit(gpa, groups=gpa["student"])
    for k, params in enumerate(search.cv_results_["params"]):
        one = cross_val_score(GLMMRegressor(formula, REML=False, **params), gpa,
                              groups=gpa["student"], cv=cv)
        assert search.cv_results_["mean_test_score"][k] == pytest.approx(one.mean(),
                                                                         rel=1e-12)


def test_pickled_estimator_predicts_the_same(sd, gpa):
    est = GLMMClassifier(SD_FORMULA).fit(sd)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(sd), est.predict_proba(sd))
    assert again.get_params() == est.get_params()
    cols = GLMMRegressor().fit(gpa[["occasion"]], gpa["gpa"], groups=gpa["student"])
    again = pickle.loads(pickle.dumps(cols))
    np.testing.assert_array_equal(again.predict(gpa[["occasion"]], groups=gpa["student"]),
                                  cols.predict(gpa[["occasion"]], groups=gpa["student"]))
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "result_")


def test_polars_input(sd, gpa):
    pl = pytest.importorskip("polars")
    est = GLMMClassifier(SD_FORMULA).fit(pl.from_pandas(sd))
    reference = GLMMClassifier(SD_FORMULA).fit(sd)
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-12)
    np.testing.assert_allclose(est.predict_proba(pl.from_pandas(sd)),
                               reference.predict_proba(sd), rtol=1e-12)
    X = pl.from_pandas(gpa[["occasion", "highgpa"]])
    cols = GLMMRegressor().fit(X, pl.Series(gpa["gpa"]), groups=pl.Series(gpa["student"]))
    frame = GLMMRegressor().fit(gpa[["occasion", "highgpa"]], gpa["gpa"],
                                groups=gpa["student"])
    assert list(cols.feature_names_in_) == ["occasion", "highgpa"]
    np.testing.assert_allclose(cols.coef_, frame.coef_, rtol=1e-12)
    np.testing.assert_allclose(cols.predict(X, groups=pl.Series(gpa["student"])),
                               frame.predict(gpa[["occasion", "highgpa"]],
                                             groups=gpa["student"]), rtol=1e-12)


def test_bad_arguments_are_named():
    X, y, g = np.arange(20.0).reshape(10, 2), np.arange(10.0), np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="two-sided lme4 formula"):
        GLMMRegressor("x + (1 | g)").fit(pd.DataFrame(X))
    with pytest.raises(ValueError, match="new_levels must be one of"):
        GLMMRegressor(new_levels="zero").fit(X, y, groups=g)
    with pytest.raises(ValueError, match="groups must have one value per row"):
        GLMMRegressor().fit(X, y, groups=g[:5])
    with pytest.raises(ValueError, match="groups= is for formula=None"):
        GLMMRegressor("y ~ a + (1 | g)").fit(pd.DataFrame({"y": y, "a": X[:, 0], "g": g}),
                                             groups=g)
    with pytest.raises(ValueError, match="Only binary classification"):
        GLMMClassifier().fit(X, np.arange(10) % 3, groups=g)


def test_routed_offset_reaches_fit_and_score(gpa):
    from sklearn.model_selection import GroupKFold, cross_val_score
    rng = np.random.default_rng(2)
    off = rng.normal(size=len(gpa))
    X, y, g = gpa[["occasion"]], gpa["gpa"], gpa["student"]
    est = GLMMRegressor().fit(X, y, groups=g, offset=off)
    with pytest.raises(ValueError, match="give offset="):
        est.predict(X, groups=g)
    expected = []
    cv = GroupKFold(3)
    for train, test in cv.split(X, y, g):
        fit = glmmcore.fit("gpa ~ occasion + (1 | student)", gpa.iloc[train],
                           offset=off[train])
        pred = fit.predict(gpa.iloc[test], offset=off[test])
        resid = y.iloc[test] - pred
        expected.append(1 - np.sum(resid ** 2) / np.sum((y.iloc[test] - y.iloc[test].mean())
                                                        ** 2))
    with sklearn.config_context(enable_metadata_routing=True):
        routed = GLMMRegressor().set_fit_request(groups=True, offset=True)
        scores = cross_val_score(routed, X, y, cv=cv, params={"groups": g, "offset": off})
    np.testing.assert_allclose(scores, expected, rtol=1e-10)


def test_formula_regressor_y_replaces_the_response(gpa):
    y = np.random.default_rng(4).normal(3.0, 0.5, len(gpa))
    formula = "gpa ~ occasion + (1 | student)"
    before = gpa["gpa"].copy()
    est = GLMMRegressor(formula).fit(gpa, y)
    reference = glmmcore.fit(formula, gpa.assign(gpa=y))
    np.testing.assert_allclose(est.coef_, reference.fixef.iloc[1:], rtol=1e-10)
    assert est.result_.loglik == pytest.approx(reference.loglik, rel=1e-12)
    pd.testing.assert_series_equal(gpa["gpa"], before)     # the caller's X unchanged
