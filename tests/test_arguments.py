"""Every public argument is checked for type and range before any work, naming the argument."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import ArgumentError, DataError, FamilyError, FormulaError, ModelSpecError


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 4)
    x = rng.normal(size=40)
    return pd.DataFrame({"y": x + rng.normal(size=10)[g] + rng.normal(size=40),
                         "x": x, "g": g, "k": rng.poisson(2.0, 40)})


@pytest.mark.parametrize("kwargs, message", [
    ({"REML": "FALSE"}, r"REML must be True or False, not 'FALSE' \(str\)"),
    ({"REML": 0}, "REML must be True or False"),
    ({"REML": None}, "REML must be True or False"),
    ({"nAGQ": float("nan")}, "nAGQ must be a whole number, not nan"),
    ({"nAGQ": 2.5}, "nAGQ must be a whole number, not 2.5"),
    ({"nAGQ": -1}, "nAGQ must be at least 0, not -1"),
    ({"nAGQ": "9"}, "nAGQ must be a whole number"),
    ({"nAGQ": True}, "nAGQ must be a whole number"),
    ({"control": {"maxeval": "abc"}}, "control maxeval must be a whole number, not 'abc'"),
    ({"control": {"maxeval": 0}}, "control maxeval must be at least 1"),
    ({"control": {"maxeval": 2.5}}, "control maxeval must be a whole number"),
    ({"control": {"rel_tol": -1e-8}}, "control rel_tol must be at least 0"),
    ({"control": {"x_tol": float("inf")}}, "control x_tol must be a finite number"),
    ({"control": {"x_tol": "1e-9"}}, "control x_tol must be a finite number"),
    ({"control": {"warn": "no"}}, "control warn must be True or False"),
    ({"control": {"check_convergence": 1}}, "control check_convergence must be True or False"),
    ({"control": {"backend": "dense"}}, "control backend must be one of"),
    ({"control": {"optimizer": 3}}, "control optimizer must be one of"),
    ({"control": {"start": None}}, "control start must be a string"),
    ({"control": {1: 2}}, "unknown control setting"),
    ({"control": [("maxeval", 5)]}, "control must be a FitControl or a dict"),
    ({"data_label": 3}, "data_label must be a string"),
])
def test_bad_arguments_are_typed_errors_naming_them(small, kwargs, message):
    with pytest.raises(ArgumentError, match=message) as info:
        glmmcore.fit("y ~ x + (1 | g)", small, **kwargs)
    assert isinstance(info.value, (TypeError, ValueError, ModelSpecError))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"family": 3}, FamilyError, "family must be a name"),
    ({"family": "poisson", "link": ["log"]}, FamilyError, "link must be a link name"),
    ({"weights": np.ones(3)}, DataError, "weights has 3 values; the data have 40 rows"),
    ({"weights": np.ones((40, 2))}, DataError, r"weights must be one value per row.*\(40, 2\)"),
    ({"weights": {"a": 1}}, DataError, "weights must be a column name, an expression"),
    ({"weights": 2.0}, DataError, "weights must be a column name"),
    ({"offset": np.array(["a"] * 40)}, DataError, "offset must be numeric"),
    ({"offset": np.ones(40, dtype=bool)}, DataError, "offset must be numeric, not boolean"),
    ({"offset": "x +"}, FormulaError, "not a valid expression"),
    ({"offset": "1 / (x - x)"}, DataError, "gives infinite values"),
])
def test_bad_family_weights_and_offset(small, kwargs, error, message):
    with pytest.raises(error, match=message):
        glmmcore.fit("k ~ x + (1 | g)", small, **kwargs)


def test_accepted_forms(small):
    base = glmmcore.fit("y ~ x + (1 | g)", small, REML=False)
    same = glmmcore.fit("y ~ x + (1 | g)", small, REML=np.bool_(False),
                        control={"maxeval": 1e5, "rel_tol": 0.0 + 1e-12})
    assert same.loglik == pytest.approx(base.loglik, rel=1e-12)
    assert glmmcore.FitControl(maxeval=1e4).maxeval == 10_000
    assert isinstance(glmmcore.FitControl(maxeval=np.int64(7)).maxeval, int)
    pois = glmmcore.fit("k ~ x + (1 | g)", small, family="poisson", nAGQ=5.0)
    assert pois.nagq == 5


def test_mixed_model_arguments(small):
    with pytest.raises(ArgumentError, match="REML must be True or False"):
        glmmcore.MixedModel("y ~ x + (1 | g)", small, REML="no")
    model = glmmcore.MixedModel("y ~ x + (1 | g)", small)
    with pytest.raises(ArgumentError, match="start must be numbers"):
        model.fit(start=["a"])
    with pytest.raises(ArgumentError, match="control maxeval"):
        model.fit(control={"maxeval": -3})


def test_refit_arguments(small):
    fit = glmmcore.fit("y ~ x + (1 | g)", small)
    with pytest.raises(ArgumentError, match="refit takes a fitted model"):
        glmmcore.refit("fit", small.y)
    with pytest.raises(ArgumentError, match="control maxeval"):
        glmmcore.refit(fit, small.y, control={"maxeval": "x"})
    with pytest.raises(DataError, match="newresp must have one value per observation"):
        glmmcore.refit(fit, small.y[:5])
