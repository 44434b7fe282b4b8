"""PIRLS: the compiled loop and the Python loop (used with CHOLMOD) agree; modes are modes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import glmmcore
from glmmcore.glmm import GlmmDeviance


@pytest.fixture(scope="module")
def crossed():
    sim = glmmcore.simulate("speed_dating", n_participants=120, n_partners=90,
                            dates_per_participant=12, seed=3)
    return sim.data, sim.formula


@pytest.mark.parametrize("link", ["logit", "probit"])   # probit: Newton steps
@pytest.mark.parametrize("nagq, stage", [(0, 1), (1, 2)])
def test_compiled_and_python_loops_agree(crossed, nagq, stage, link):
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", link=link, nAGQ=nagq)
    x = np.concatenate([fit.theta, fit.beta]) if stage == 2 else fit.theta
    outcomes = []
    for compiled in (True, False):
        dev = GlmmDeviance(fit.predictor, fit.response, nagq)
        workspace = dev.pirls1 if stage == 2 else dev.pirls0
        workspace.compiled = compiled
        outcomes.append(dev.evaluate(x * 1.01, stage))
    (d1, o1), (d2, o2) = outcomes
    assert d1 == pytest.approx(d2, rel=1e-12)
    np.testing.assert_allclose(o1.u, o2.u, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(o1.beta, o2.beta, rtol=1e-9)
    assert o1.iterations == o2.iterations


def test_sparse_and_blocked_glmm_fits_agree(crossed):
    data, formula = crossed
    blocked = glmmcore.fit(formula, data, family="binomial")
    sparse = glmmcore.fit(formula, data, family="binomial", control={"backend": "sparse"})
    assert sparse.predictor.backend == "sparse"
    assert sparse.loglik == pytest.approx(blocked.loglik, rel=1e-9)
    np.testing.assert_allclose(sparse.fixef, blocked.fixef, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(sparse.theta, blocked.theta, rtol=1e-4, atol=1e-6)


def test_the_mode_maximizes_the_penalized_likelihood(crossed):
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial")
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    dev.evaluate(np.concatenate([fit.theta, fit.beta]), 2)
    pirls = dev.pirls1
    u = pirls.u.copy()

    def penalized(v):
        pirls.u = v
        return pirls._evaluate(fit.theta, v, fit.beta, 1.0)

    best = penalized(u)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert penalized(u + 1e-3 * rng.normal(size=u.size)) > best


def test_newton_steps_converge_quadratically_with_a_non_canonical_link(crossed):
    """Probit: Newton steps (observed information) reach the mode Fisher scoring creeps to."""
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", link="probit")
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    assert dev.pirls1.kernels.newton and not dev.pirls1.kernels.laplace_observed
    x = np.concatenate([fit.theta, fit.beta])
    _, out = dev.evaluate(x, 2)                 # from u = 0
    assert out.iterations <= 7                  # Fisher scoring: 25 and a settled deviance
    assert not out.stopped_on_deviance
    # log|L|^2 is taken at Fisher's weights at the mode, as lme4's Laplace approximation
    pirls = dev.pirls1
    mu = norm.cdf(pirls.eta)
    w_fisher = pirls.wt * norm.pdf(pirls.eta) ** 2 / (mu * (1 - mu))
    np.testing.assert_allclose(pirls.w, w_fisher, rtol=1e-10)
    pirls.factor.crossprod(w_fisher, pirls.Y)
    assert pirls.factor.factor(fit.theta)
    assert out.ldL2 == pytest.approx(pirls.factor.logdet_re, rel=1e-12)
