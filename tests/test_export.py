"""result.to_dict() / to_json(): the whole fit as data, in the documented JSON schema."""

from __future__ import annotations

import json
import warnings

import jsonschema
import numpy as np
import pytest
from scipy import stats

import glmmcore
from glmmcore.results.export import SCHEMA_VERSION, schema


def _fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return glmmcore.fit(formula, data, **kw)


def _valid(result: dict) -> dict:
    jsonschema.validate(result, schema(), cls=jsonschema.Draft202012Validator)
    return result


@pytest.fixture(scope="module")
def poisson(datasets):
    return _fit("ncit ~ opposition + biopharm + (1 | yearf)", datasets["patents"],
                family="poisson", data_label="patents")


@pytest.fixture(scope="module")
def slopes(datasets):
    return _fit("gpa ~ occasion + (1 + occasion | student)", datasets["gpa"])


def test_a_glmm_as_data(poisson, reference):
    out = _valid(json.loads(poisson.to_json(condvar=True)))
    assert out["schema_version"] == SCHEMA_VERSION and out["glmmcore_version"] == \
        glmmcore.__version__
    assert (out["family"], out["link"], out["method"], out["nagq"]) == \
        ("poisson", "log", "Laplace", 1)
    rows = out["coefficients"]["rows"]
    assert out["coefficients"]["statistic"] == "z"
    assert [r["term"] for r in rows] == list(poisson.fixef.index)
    est, se = np.array([r["estimate"] for r in rows]), np.array([r["std_error"] for r in rows])
    np.testing.assert_array_equal(est, poisson.fixef.to_numpy())
    np.testing.assert_array_equal(se, poisson.stderr.to_numpy())
    np.testing.assert_allclose([r["p_value"] for r in rows],
                               2 * stats.norm.sf(np.abs(est / se)), rtol=1e-12)
    np.testing.assert_allclose(est, [reference["patents_pois"]["fixef"][t]
                                     for t in poisson.fixef.index], rtol=1e-3)
    np.testing.assert_array_equal(out["vcov"]["matrix"], poisson.vcov.to_numpy())
    assert out["fit_statistics"]["loglik"] >= reference["patents_pois"]["logLik"] * (1 + 1e-6)
    assert out["fit_statistics"]["reml_criterion"] is None
    assert out["theta"]["names"] == ["yearf.(Intercept)"]
    ranef = out["ranef"]["yearf"]
    assert len(ranef["levels"]) == out["ngroups"]["yearf"] == 18
    np.testing.assert_array_equal(ranef["values"], poisson.ranef["yearf"].to_numpy())
    np.testing.assert_array_equal(out["condvar"]["yearf"]["values"], poisson.condvar["yearf"])
    assert out["data"] == "patents" and out["diagnostics"]["converged"] is True


def test_an_lmm_as_data(slopes, reference):
    out = _valid(slopes.to_dict())
    assert out["coefficients"]["statistic"] == "t"
    assert all(r["p_value"] is None for r in out["coefficients"]["rows"])   # as lme4
    assert out["fit_statistics"]["reml_criterion"] == pytest.approx(
        reference["gpa_rs"]["REMLcrit"], rel=1e-7)
    corr = [r for r in out["varcorr"] if r["var2"] is not None]
    assert len(corr) == 1 and -1 <= corr[0]["sdcor"] <= 1
    assert out["varcorr"][-1] == {"grp": "Residual", "var1": None, "var2": None,
                                  "vcov": slopes.sigma ** 2, "sdcor": slopes.sigma}
    assert out["condvar"] is None
    assert np.shape(out["ranef"]["student"]["values"]) == (200, 2)
    assert out["theta"]["values"] == pytest.approx(list(slopes.theta))
    assert out["scaled_residuals"]["median"] == pytest.approx(
        np.median(slopes.residuals("pearson") / slopes.sigma))


def test_json_has_no_nan_and_the_schema_rejects_a_wrong_layout(slopes):
    text = slopes.to_json(indent=None)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    broken = slopes.to_dict()
    broken["coefficients"]["rows"][0]["p_value"] = "small"
    with pytest.raises(jsonschema.ValidationError):
        _valid(broken)
    del broken["coefficients"]
    with pytest.raises(jsonschema.ValidationError):
        _valid(broken)
