"""Convergence as data and the warnings a fit emits: once, filterable, at the caller's line."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import (
    ConvergenceWarning,
    IgnoredArgumentWarning,
    RankDeficiencyWarning,
    SingularFitWarning,
)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 5)
    x = rng.normal(size=100)
    u = rng.normal(size=20)[g]
    y = 1 + 0.5 * x + u + rng.normal(scale=0.5, size=100)
    noise = 1 + 0.5 * x + rng.normal(size=100)            # no group effect: singular
    ones = rng.binomial(1, 1 / (1 + np.exp(-(0.3 * x + u))))
    return pd.DataFrame({"y": y, "x": x, "g": g, "noise": noise, "b": ones,
                         "x2": 2 * x, "c": np.cos(x), "s": np.sin(x)})


def record(call, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(*args, **kwargs)
    return out, [w for w in caught if issubclass(w.category, glmmcore.GlmmWarning)]


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize("model", ["lmm", "lmm_lbfgsb", "glmm", "glmm_nagq0"])
def test_an_optimizer_out_of_evaluations_has_not_converged(small, model, check):
    formula, kwargs = {
        "lmm": ("y ~ x + (1 | g)", {}),
        "lmm_lbfgsb": ("y ~ x + (1 + x | g)", {"optimizer": "lbfgsb"}),
        "glmm": ("b ~ x + (1 | g)", {"family": "binomial"}),
        "glmm_nagq0": ("b ~ x + (1 | g)", {"family": "binomial", "nAGQ": 0}),
    }[model]
    options = {k: v for k, v in kwargs.items() if k != "optimizer"}
    control = {"maxeval": 1, "check_convergence": check}
    if "optimizer" in kwargs:
        control["optimizer"] = kwargs["optimizer"]
    fit, caught = record(glmmcore.fit, formula, small, control=control, **options)
    assert not fit.converged
    assert "stopped at its limit of 1 evaluations" in fit.convergence.reason
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(convergence) == 1
    # the same fit with room to converge does
    full = glmmcore.fit(formula, small, control={**control, "maxeval": 100_000, "warn": False},
                        **options)
    assert full.converged, full.convergence.reason


def test_unchecked_fit_that_stops_on_its_tolerance_has_converged(small):
    fit = glmmcore.fit("y ~ x + (1 | g)", small, control={"check_convergence": False})
    assert fit.converged and "not run" in fit.convergence.reason


def test_every_warning_points_at_the_callers_line(small):
    cases = [
        (RankDeficiencyWarning, lambda: glmmcore.fit("y ~ x + x2 + (1 | g)", small)),
        (SingularFitWarning, lambda: glmmcore.fit("noise ~ x + (1 | g)", small)),
        (ConvergenceWarning, lambda: glmmcore.fit("y ~ x + (1 | g)", small,
                                                  control={"maxeval": 2})),
        (IgnoredArgumentWarning, lambda: glmmcore.fit("y ~ x + (1 | g)", small, nAGQ=5)),
        (glmmcore.IdentifiabilityWarning,
         lambda: glmmcore.fit("y ~ x + (1 | g)", small.assign(y=small["x"]))),
    ]
    for category, call in cases:
        _, caught = record(call)
        mine = [w for w in caught if w.category is category]
        assert len(mine) == 1, category
        assert mine[0].filename == __file__, (category, mine[0].filename)
    base = glmmcore.fit("y ~ x + (1 | g)", small)
    _, caught = record(glmmcore.refit, base, small["noise"].to_numpy())
    assert [w.category for w in caught] == [SingularFitWarning]
    assert caught[0].filename == __file__


def test_singular_warning_is_filterable_and_is_singular_stays(small):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=SingularFitWarning)
        fit = glmmcore.fit("noise ~ x + (1 | g)", small)
    assert fit.is_singular and fit.converged and not caught
    assert "boundary (singular) fit" in str(fit.summary())


def test_singular_correlated_slope_in_the_nurses_data(datasets):
    """The issue's case: (experience | hospital) on the nurses data is singular."""
    fit, caught = record(glmmcore.fit, "stress ~ experience + (experience | hospital)",
                         datasets["nurses"])
    assert fit.is_singular
    assert [w.category for w in caught] == [SingularFitWarning]


def test_options_that_do_not_apply_warn_once(small):
    _, caught = record(glmmcore.fit, "y ~ x + (1 | g)", small, nAGQ=5)
    assert [w.category for w in caught] == [IgnoredArgumentWarning]
    assert "nAGQ=5 does not apply to a linear mixed model" in str(caught[0].message)
    _, caught = record(glmmcore.fit, "b ~ x + (1 | g)", small, family="binomial", REML=False)
    assert [w.category for w in caught] == [IgnoredArgumentWarning]
    assert "REML=False does not apply to a binomial model" in str(caught[0].message)
    for kwargs in ({}, {"REML": False}, {"nAGQ": 1}):
        _, caught = record(glmmcore.fit, "y ~ x + (1 | g)", small, **kwargs)
        assert not caught, kwargs
    _, caught = record(glmmcore.fit, "b ~ x + (1 | g)", small, family="binomial", nAGQ=5)
    assert not caught


def test_numerical_warnings_do_not_leak(small):
    """A failed evaluation inside the finite differences is not a RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        glmmcore.fit("y ~ x + (1 | g)", small.assign(y=small["x"] + 1.0),
                     control={"warn": False})
