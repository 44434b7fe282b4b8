"""Bad input is caught before any fitting, with a typed error naming the culprit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import (
    DataError,
    FormulaError,
    MissingColumnError,
    ModelSpecError,
    RankDeficiencyWarning,
)


@pytest.fixture()
def small() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 5)
    x = rng.normal(size=100)
    y = 1 + 0.5 * x + rng.normal(size=20)[g] + rng.normal(scale=0.5, size=100)
    return pd.DataFrame({"y": y, "x": x, "g": g, "s": np.where(x > 0, "b", "a")})


def test_unknown_column_is_named(small):
    with pytest.raises(MissingColumnError, match="'zz'"):
        glmmcore.fit("y ~ zz + (1 | g)", small)
    with pytest.raises(MissingColumnError, match="'grp'"):
        glmmcore.fit("y ~ x + (1 | grp)", small)


def test_empty_data(small):
    with pytest.raises(DataError, match="empty"):
        glmmcore.fit("y ~ x + (1 | g)", small.iloc[:0])


def test_non_numeric_response_is_named(small):
    with pytest.raises(DataError, match="response 's' must be numeric"):
        glmmcore.fit("s ~ x + (1 | g)", small)


def test_infinite_value_names_column_and_row(small):
    bad = small.copy()
    bad.loc[7, "x"] = np.inf
    with pytest.raises(DataError, match="column 'x' has an infinite value in row 7"):
        glmmcore.fit("y ~ x + (1 | g)", bad)


@pytest.mark.parametrize("value, what", [(-1.0, "-1.0"), (0.0, "0.0"), (np.nan, "missing")])
def test_bad_weights_name_the_row(small, value, what):
    w = np.ones(len(small))
    w[3] = value
    with pytest.raises(DataError, match=f"row 3 has {what}"):
        glmmcore.fit("y ~ x + (1 | g)", small, weights=w)


def test_weights_column_must_exist(small):
    with pytest.raises(MissingColumnError, match="weights column 'w'"):
        glmmcore.fit("y ~ x + (1 | g)", small, weights="w")


def test_missing_values_are_dropped_and_counted(small):
    holes = small.copy()
    holes.loc[[2, 5, 9], "x"] = np.nan
    holes.loc[11, "g"] = np.nan
    holes.loc[12, "s"] = None  # not used by the model: kept
    fit = glmmcore.fit("y ~ x + (1 | g)", holes)
    assert fit.n_dropped == 4
    assert fit.nobs == 96
    assert "(4 observations deleted due to missingness)" in str(fit.summary())
    complete = glmmcore.fit("y ~ x + (1 | g)", holes.dropna(subset=["x", "g"]))
    assert fit.loglik == pytest.approx(complete.loglik, rel=1e-12)


def test_every_row_missing(small):
    holes = small.copy()
    holes["x"] = np.nan
    with pytest.raises(DataError, match="every row has a missing value"):
        glmmcore.fit("y ~ x + (1 | g)", holes)


def test_single_level_grouping_factor_names_the_term(small):
    one = small.assign(g=1)
    with pytest.raises(ModelSpecError, match=r"'g' of term '\(1 \| g\)' has a single level"):
        glmmcore.fit("y ~ x + (1 | g)", one)


def test_as_many_levels_as_observations_in_an_lmm(small):
    obs = small.assign(id=np.arange(len(small)))
    with pytest.raises(ModelSpecError, match="'id' has 100 levels for 100 observations"):
        glmmcore.fit("y ~ x + (1 | g) + (1 | id)", obs)


def test_aliased_columns_are_dropped_with_their_names(small):
    twin = small.assign(x2=2 * small["x"])
    with pytest.warns(RankDeficiencyWarning, match="dropping 1 column.*x2"):
        fit = glmmcore.fit("y ~ x + x2 + (1 | g)", twin)
    assert list(fit.fixef.index) == ["(Intercept)", "x"]
    assert fit.predictor.fixed.dropped == ["x2"]
    plain = glmmcore.fit("y ~ x + (1 | g)", small)
    assert fit.loglik == pytest.approx(plain.loglik, rel=1e-12)


def test_formula_errors_come_before_data_checks(small):
    with pytest.raises(FormulaError):
        glmmcore.fit("y ~ x + (1 | )", small.iloc[:0])


def test_arrow_and_polars_frames_give_the_same_fit(small):
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    base = glmmcore.fit("y ~ x + s + (1 | g)", small)
    for frame in (pa.Table.from_pandas(small), pl.from_pandas(small),
                  {c: small[c].to_numpy() for c in small.columns}):
        other = glmmcore.fit("y ~ x + s + (1 | g)", frame)
        assert other.loglik == pytest.approx(base.loglik, rel=1e-12)
        assert list(other.fixef.index) == list(base.fixef.index)


def test_unknown_control_setting(small):
    with pytest.raises(ModelSpecError, match="unknown control setting"):
        glmmcore.fit("y ~ x + (1 | g)", small, control={"tolerance": 1})
