"""``refit``: another response through the same predictor equals a fresh fit."""

from __future__ import annotations

import numpy as np
import pytest

import glmmcore
from glmmcore.errors import DataError, ResponseError


def _same_fit(a, b):
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)
    np.testing.assert_allclose(a.fixef, b.fixef, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6, atol=1e-8)


def test_lmm_refit_equals_a_fresh_fit_and_shares_the_predictor():
    sim = glmmcore.simulate("gpa", seed=4)
    first = glmmcore.fit(sim.formula, sim.data)
    other = glmmcore.simulate("gpa", seed=5).data["gpa"].to_numpy()
    again = glmmcore.refit(first, other)
    data = sim.data.assign(gpa=other)
    _same_fit(again, glmmcore.fit(sim.formula, data))
    assert again.predictor is first.predictor
    assert again.reml == first.reml


def test_glmm_refit_keeps_family_and_nagq():
    sim = glmmcore.simulate("speed_dating", seed=2, n_participants=60, n_partners=12,
                            dates_per_participant=8)
    formula = "decision ~ attractive_sc + (1 | iid)"
    first = glmmcore.fit(formula, sim.data, family="binomial", nAGQ=5)
    rng = np.random.default_rng(9)
    flipped = np.where(rng.random(first.nobs) < 0.1, 1 - sim.data["decision"],
                       sim.data["decision"])
    again = glmmcore.refit(first, flipped)
    _same_fit(again, glmmcore.fit(formula, sim.data.assign(decision=flipped),
                                  family="binomial", nAGQ=5))
    assert again.nagq == 5


def test_refit_checks_the_new_response():
    sim = glmmcore.simulate("gpa", seed=4)
    fit = glmmcore.fit(sim.formula, sim.data)
    with pytest.raises(DataError, match=rf"one value per observation .* \({fit.nobs}\)"):
        glmmcore.refit(fit, np.zeros(fit.nobs - 1))
    bad = np.zeros(fit.nobs)
    bad[3] = np.nan
    with pytest.raises(DataError, match="missing value in row 3"):
        glmmcore.refit(fit, bad)
    pois = glmmcore.simulate("patents", seed=1, n_patents=300)
    pfit = glmmcore.fit(pois.formula, pois.data, family=pois.family)
    with pytest.raises(ResponseError, match="poisson"):
        glmmcore.refit(pfit, -np.ones(pfit.nobs))
