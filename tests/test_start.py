"""Starting values of theta: the moment guess, the choice between starts, the control."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import ModelSpecError
from glmmcore.fitting.start import SMALLEST_GUESS, lower_start, moment_theta
from glmmcore.spec.formula import parse_formula
from glmmcore.spec.reterms import build_reterms


def one_way(n_groups: int, per_group: int, sd_group: float, sd_resid: float,
            seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    y = (rng.normal(0.0, sd_group, n_groups)[g]
         + rng.normal(0.0, sd_resid, g.size))
    return pd.DataFrame({"y": y, "g": g})


def reterms_of(formula: str, data: pd.DataFrame):
    return build_reterms(parse_formula(formula), data)


def test_moment_guess_recovers_a_one_way_variance_ratio():
    # 2,000 groups of 10: the ANOVA estimator's relative error is ~3%
    data = one_way(2000, 10, sd_group=0.5, sd_resid=2.0, seed=3)
    reterms = reterms_of("y ~ 1 + (1 | g)", data)
    resid = data["y"].to_numpy() - data["y"].mean()
    theta = moment_theta(reterms, resid, np.ones(len(data)))
    assert theta[0] == pytest.approx(0.25, rel=0.1)


def test_moment_guess_of_crossed_terms_is_near_the_truth():
    sim = glmmcore.simulate("pupils", seed=2, n_primary=300, n_secondary=200,
                            n_pupils=12000)
    fit = glmmcore.fit(sim.formula, sim.data, control={"check_convergence": False})
    y = fit.response.y
    X = fit.predictor.X
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    guess = moment_theta(fit.predictor.reterms, resid, np.ones(y.size))
    # a guess, not an estimate: each crossed factor's spread includes a share of the other's
    np.testing.assert_allclose(guess, fit.theta, rtol=0.15)


def test_a_variance_guessed_as_zero_starts_inside_its_bound():
    data = one_way(200, 5, sd_group=0.0, sd_resid=1.0, seed=4)
    data["y"] -= data.groupby("g")["y"].transform("mean")   # no spread between groups at all
    reterms = reterms_of("y ~ 1 + (1 | g)", data)
    theta = moment_theta(reterms, data["y"].to_numpy(), np.ones(len(data)))
    assert theta[0] == SMALLEST_GUESS


def test_guess_leaves_off_diagonals_at_zero():
    data = one_way(100, 6, sd_group=1.0, sd_resid=1.0, seed=5)
    data["x"] = np.tile(np.linspace(-1, 1, 6), 100)
    reterms = reterms_of("y ~ 1 + (1 + x | g)", data)
    theta = moment_theta(reterms, data["y"].to_numpy() - data["y"].mean(), np.ones(len(data)))
    assert theta[1] == 0.0 and theta[0] > SMALLEST_GUESS


def test_lower_start_takes_the_lowest_finite_objective():
    values = {0: 3.0, 1: np.inf, 2: 1.0}
    pick = lower_start(lambda x: values[int(x[0])], [np.array([0.0]), np.array([1.0]),
                                                     np.array([2.0])])
    assert pick[0] == 2.0
    none_finite = lower_start(lambda x: np.nan, [np.array([5.0]), np.array([6.0])])
    assert none_finite[0] == 5.0
    calls = []
    alone = lower_start(lambda x: calls.append(x) or 0.0, [np.array([7.0])])
    assert alone[0] == 7.0 and not calls       # nothing to choose: not evaluated


@pytest.mark.parametrize("key", ["gpa_rs", "pupils_crossed", "socio_m4"])
def test_both_starts_reach_the_same_optimum(key, reference, datasets):
    from test_lmm_reference import parse_call

    formula, data, reml = parse_call(reference[key]["call"])
    fits = [glmmcore.fit(formula, datasets[data], REML=reml, control={"start": rule})
            for rule in ("lme4", "auto")]
    assert fits[1].loglik == pytest.approx(fits[0].loglik, rel=1e-9)
    np.testing.assert_allclose(fits[1].theta, fits[0].theta, rtol=1e-3, atol=1e-4)


def test_glmm_starts_reach_the_same_optimum(datasets):
    fits = [glmmcore.fit("ncit ~ opposition + biopharm + (1 | yearf)", datasets["patents"],
                         family="poisson", control={"start": rule})
            for rule in ("lme4", "auto")]
    assert fits[1].loglik == pytest.approx(fits[0].loglik, rel=1e-9)
    np.testing.assert_allclose(fits[1].fixef, fits[0].fixef, rtol=1e-4)


def test_unknown_start_rule_is_a_typed_error():
    data = one_way(10, 3, 1.0, 1.0, seed=1)
    with pytest.raises(ModelSpecError, match="start='ones'"):
        glmmcore.fit("y ~ 1 + (1 | g)", data, control={"start": "ones"})


def test_guess_from_residuals_that_are_not_finite_keeps_lme4s_start():
    data = one_way(20, 5, 1.0, 1.0, seed=6)
    reterms = reterms_of("y ~ 1 + (1 | g)", data)
    resid = data["y"].to_numpy().copy()
    resid[3] = np.inf
    np.testing.assert_array_equal(moment_theta(reterms, resid, np.ones(len(data))), [1.0])
    resid[3] = np.nan
    np.testing.assert_array_equal(moment_theta(reterms, resid, np.ones(len(data)), scale=1.0),
                                  [1.0])


def test_glmm_start_stage_takes_the_chosen_start_from_the_last_evaluation(monkeypatch):
    """When the candidate evaluated last wins, BOBYQA's first call there runs no PIRLS:
    every run of the start stage is at a new theta, and the fit is the same.  (BOBYQA's
    joint stage: with the gradient's, the start stage is the chosen start alone.)"""
    from glmmcore.fitting import glmm_fit as glmm
    from glmmcore.objectives import pirls
    sim = glmmcore.simulate("patents", n_patents=1500, seed=4)
    formula = "ncit ~ opposition + biopharm + (1 | year)"
    thetas = []
    original = pirls.Pirls.run

    def run(self, theta, beta, phi=1.0, complete=True):
        if self.beta_in_pirls:
            thetas.append(np.array(theta, dtype=float))
        return original(self, theta, beta, phi, complete)

    monkeypatch.setattr(pirls.Pirls, "run", run)
    control = {"optimizer": "bobyqa"}
    fit = glmmcore.fit(formula, sim.data, family="poisson", control=control)
    # lme4's start, the guess, then BOBYQA's first new point (the GLM runs no PIRLS)
    assert len(thetas) > 3 and not np.array_equal(thetas[2], thetas[1])
    assert all(not np.array_equal(a, b) for a, b in pairwise(thetas[:-1]))
    monkeypatch.setattr(glmm, "_KnownValues", _Forgetful)
    again = glmmcore.fit(formula, sim.data, family="poisson", control=control)
    assert again.extra["nevals"] == fit.extra["nevals"] + 1
    assert fit.loglik == pytest.approx(again.loglik, rel=1e-10)


class _Forgetful:
    """The start stage's objective without the remembered value (the former behaviour)."""

    def __init__(self, f, pirls):
        self.f = f
        self.remember = f

    def __call__(self, x):
        return self.f(x)


class _Workspace:
    """A stand-in for a PIRLS workspace: its modes follow the last theta run."""

    def __init__(self):
        self.u, self.beta, self.started = np.zeros(2), np.zeros(1), []

    def start_from(self, u, beta):
        self.started.append((u.copy(), beta.copy()))


def test_a_start_evaluated_before_the_last_reruns_from_its_own_modes():
    """The chosen start evaluated first: the call at it runs again, from its modes; the
    one evaluated last: its value, no run."""
    from glmmcore.fitting.glmm_fit import _KnownValues
    work, calls = _Workspace(), []

    def f(x):
        calls.append(x.copy())
        work.u, work.beta = np.full(2, x[0]), np.full(1, 2 * x[0])
        return float((x[0] - 1.0) ** 2)

    first = _KnownValues(f, work)
    x = lower_start(first.remember, [np.array([1.0]), np.array([3.0])])
    assert x[0] == 1.0 and first(x) == 0.0 and len(calls) == 3
    np.testing.assert_array_equal(work.started[0][0], [1.0, 1.0])
    np.testing.assert_array_equal(work.started[0][1], [2.0])
    last = _KnownValues(f, work)
    x = lower_start(last.remember, [np.array([3.0]), np.array([1.0])])
    assert last(x) == 0.0 and len(calls) == 5 and len(work.started) == 1
    assert last(x) == 0.0 and len(calls) == 6           # remembered once only


def test_pirls_started_from_its_modes_converges_at_once():
    """``start_from`` the modes of a converged run: the next run at that theta confirms
    them in one iteration and gives the same deviance."""
    from glmmcore.objectives.glmm import GlmmDeviance
    sim = glmmcore.simulate("patents", n_patents=1500, seed=4)
    fit = glmmcore.fit("ncit ~ opposition + biopharm + (1 | year)", sim.data,
                       family="poisson")
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    theta = np.asarray(fit.theta)
    value, out = dev.evaluate(theta, 1)
    dev.evaluate(theta * 1.5, 1)
    dev.pirls0.start_from(out.u, out.beta)
    again, repeat = dev.evaluate(theta, 1)
    assert repeat.iterations == 1
    assert again == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("chosen_last", [True, False])
def test_a_start_stage_of_its_start_alone_leaves_the_workspace_at_it(chosen_last):
    """With the joint stage's gradient the start stage is the chosen start alone, and the
    modes and fixed effects it hands on are read off PIRLS's workspace: the ones a run
    at that start gives, whichever candidate was evaluated last."""
    from glmmcore.api import FitControl
    from glmmcore.fitting.glmm_fit import _KnownValues, _start_modes, _start_stage
    from glmmcore.objectives.glmm import GlmmDeviance
    sim = glmmcore.simulate("patents", n_patents=1500, seed=4)
    fit = glmmcore.fit("ncit ~ opposition + biopharm + (1 | year)", sim.data,
                       family="poisson")
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    theta = np.asarray(fit.theta)
    near, far = theta * 1.05, theta * 3.0
    objective1 = _KnownValues(dev.objective(1), dev.pirls0)
    x1 = lower_start(objective1.remember, [far, near] if chosen_last else [near, far])
    assert np.array_equal(x1, near)
    lower = fit.predictor.reterms.theta_lower
    opt, messages = _start_stage(dev, objective1, x1, lower, False, True, FitControl())
    assert "start only" in messages[0] and np.array_equal(opt.x, near)
    u1, beta1 = _start_modes(dev, opt, skipped=True)
    _, out = GlmmDeviance(fit.predictor, fit.response, 1).evaluate(near, 1)
    np.testing.assert_allclose(beta1, out.beta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(u1, out.u, rtol=1e-7, atol=1e-9)
