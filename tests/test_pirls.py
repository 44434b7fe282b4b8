"""PIRLS: the compiled loop and the Python loop (used with CHOLMOD) agree; modes are modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from test_linalg import dense_Z_Lambda

import glmmcore
from glmmcore.objectives.glmm import GlmmDeviance
from glmmcore.objectives.pirls import SLOW_ITER


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


@pytest.mark.parametrize("link", ["logit", "probit"])
@pytest.mark.parametrize("move", [1e-4, 0.3])      # a derivative's step; a long move
def test_predicted_start_reaches_the_same_mode(crossed, link, move):
    """After a converged run, PIRLS starts from the modes predicted for the new parameters:
    the mode and deviance are a fresh start's, in fewer iterations when the move is small."""
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", link=link)
    x = np.concatenate([fit.theta, fit.beta])
    shift = move * np.where(np.arange(x.size) % 2 == 0, 1.0, -1.0) * np.maximum(np.abs(x), 0.1)
    warm = GlmmDeviance(fit.predictor, fit.response, 1)
    _, at_x = warm.evaluate(x, 2)
    assert warm.pirls1._start[0][0] == 1             # a converged run leaves a prediction
    d_warm, o_warm = warm.evaluate(x + shift, 2)
    fresh = GlmmDeviance(fit.predictor, fit.response, 1)
    fresh.pirls1.u = at_x.u.copy()                   # as before: start at the last modes
    d_fresh, o_fresh = fresh.evaluate(x + shift, 2)
    assert d_warm == pytest.approx(d_fresh, rel=1e-11)
    np.testing.assert_allclose(o_warm.u, o_fresh.u, rtol=1e-8, atol=1e-10)
    assert o_warm.iterations <= o_fresh.iterations
    if move < 1e-3 and link == "logit":
        # canonical link: the kept factor is the Hessian, so the prediction is Newton's step
        # (probit keeps Fisher's information for the Laplace approximation: a chord step)
        assert o_warm.iterations == 2 < o_fresh.iterations


@pytest.mark.parametrize("link", ["logit", "probit"])
@pytest.mark.parametrize("move", [1e-4, 0.3])
def test_estimating_workspace_predicts_modes_and_beta(crossed, link, move):
    """nAGQ=0: the prediction covers (u, beta); the outcome is a fresh start's."""
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", link=link, nAGQ=0)
    theta = fit.theta * (1.0 + move)
    warm = GlmmDeviance(fit.predictor, fit.response, 0)
    warm.evaluate(fit.theta, 1)
    assert warm.pirls0._start[0][0] == 1
    d_warm, o_warm = warm.evaluate(theta, 1)
    fresh = GlmmDeviance(fit.predictor, fit.response, 0)
    fresh.evaluate(fit.theta, 1)
    fresh.pirls0._start[0][0] = -1                   # never predict: the last modes
    d_fresh, o_fresh = fresh.evaluate(theta, 1)
    assert d_warm == pytest.approx(d_fresh, rel=1e-11)
    np.testing.assert_allclose(o_warm.beta, o_fresh.beta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(o_warm.u, o_fresh.u, rtol=1e-8, atol=1e-10)
    assert o_warm.iterations <= o_fresh.iterations
    if move < 1e-3 and link == "logit":
        assert o_warm.iterations == 2 < o_fresh.iterations


def test_glm_start_leaves_nothing_to_predict_from(crossed):
    """The GLM's fit (theta = 0) is no point to predict the first real theta from."""
    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", nAGQ=0)
    dev = GlmmDeviance(fit.predictor, fit.response, 0)
    dev.pirls0.start_glm(fit.response.family.start_mu(fit.response.y, fit.response.weights))
    assert dev.pirls0._start[0][0] == 0


@pytest.mark.parametrize("family, link", [("binomial", "logit"), ("binomial", "probit"),
                                          ("poisson", "log"), ("poisson", "sqrt")])
def test_glm_start_is_pirls_at_theta_zero(crossed, family, link):
    """The compiled GLM (:mod:`glmmcore.objectives.glm_irls`) leaves what PIRLS at theta = 0 leaves:
    beta, and the working weights and residuals the moment start reads (Newton's steps
    with a non-canonical link, Fisher's weights at the end)."""
    data, formula = crossed
    data = data.assign(count=np.round(np.exp(0.3 * data["attractive_sc"].clip(-3, 3) + 0.2)))
    formula = formula.replace("decision", "count") if family == "poisson" else formula
    fit = glmmcore.fit(formula, data, family=family, link=link, nAGQ=0)
    dev = GlmmDeviance(fit.predictor, fit.response, 0)
    start_mu = fit.response.family.start_mu(fit.response.y, fit.response.weights)
    beta = dev.pirls0.start_glm(start_mu)
    w, r = dev.pirls0.w.copy(), dev.pirls0.r.copy()
    again = GlmmDeviance(fit.predictor, fit.response, 0).pirls0
    again.start_glm(start_mu)           # for its least-squares start, then PIRLS itself
    out = again.run(np.zeros(fit.predictor.reterms.ntheta), None)
    np.testing.assert_allclose(beta, out.beta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w, again.w, rtol=1e-8)
    np.testing.assert_allclose(r, again.r, rtol=1e-7, atol=1e-10)
    assert np.all(out.u == 0.0)


def test_glm_start_with_separation_falls_back_to_pirls():
    """Complete separation: the GLM's beta diverges; PIRLS at theta = 0 stops on the
    deviance, as before, and the fit completes with the problem flagged."""
    g = np.repeat(np.arange(20), 6)
    x = np.tile(np.linspace(-1.0, 1.0, 6), 20)
    data = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "g": g})
    with pytest.warns(glmmcore.ConvergenceWarning):
        fit = glmmcore.fit("y ~ x + (1 | g)", data, family="binomial")
    assert any("separation" in f for f in fit.convergence.extra["flags"])


def test_prediction_of_modes_and_beta_is_newtons_step(crossed):
    """With beta estimated, the prediction solves the system of [Z Lambda, X] (dense algebra)."""
    from glmmcore.objectives.pirls_kernel import predict_modes

    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial", nAGQ=0)
    dev = GlmmDeviance(fit.predictor, fit.response, 0)
    dev.evaluate(fit.theta, 1)
    ws, pred = dev.pirls0, fit.predictor
    beta0, u0 = ws._start[2].copy(), ws._start[3].copy()
    w0, s0 = ws._start[4].copy(), ws._start[5].copy()
    theta1 = fit.theta * 1.05
    Z, lam0 = dense_Z_Lambda(pred, fit.theta)
    d_lam = dense_Z_Lambda(pred, theta1)[1] - lam0
    e = Z @ (d_lam @ u0)
    ZL = Z @ lam0
    A = np.hstack([ZL, pred.X])
    H = A.T @ (w0[:, None] * A)
    H[:u0.size, :u0.size] += np.eye(u0.size)
    rhs = np.concatenate([(Z @ d_lam).T @ s0 - ZL.T @ (w0 * e), -pred.X.T @ (w0 * e)])
    step = np.linalg.solve(H, rhs)
    u, beta = u0.copy(), beta0.copy()
    assert predict_modes(theta1, beta, pred.X, ws._zargs, ws._sargs, ws._start, u, True)
    np.testing.assert_allclose(u, u0 + step[:u0.size], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(beta, beta0 + step[u0.size:], rtol=1e-9, atol=1e-12)
    # a prediction beyond its reach is not taken, and leaves u and beta alone
    u, beta = u0.copy(), beta0.copy()
    assert not predict_modes(theta1, beta, pred.X, ws._zargs, ws._sargs, ws._start, u, True,
                             0.0)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(beta, beta0)


def test_prediction_is_newtons_step_from_the_last_mode(crossed):
    """The predicted modes equal one Newton step of the mode equation, from dense algebra."""
    from glmmcore.objectives.pirls_kernel import predict_modes

    data, formula = crossed
    fit = glmmcore.fit(formula, data, family="binomial")
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    x0 = np.concatenate([fit.theta, fit.beta])
    dev.evaluate(x0, 2)
    ws, pred = dev.pirls1, fit.predictor
    u0, w0, s0 = ws._start[3].copy(), ws._start[4].copy(), ws._start[5].copy()
    theta1, beta1 = fit.theta * 1.05, fit.beta + 0.02
    Z, lam0 = dense_Z_Lambda(pred, fit.theta)
    d_lam = dense_Z_Lambda(pred, theta1)[1] - lam0
    d_eta = pred.X @ (beta1 - fit.beta) + Z @ (d_lam @ u0)
    ZL = Z @ lam0
    H = ZL.T @ (w0[:, None] * ZL) + np.eye(u0.size)
    expected = u0 + np.linalg.solve(H, (Z @ d_lam).T @ s0 - ZL.T @ (w0 * d_eta))
    u = u0.copy()
    assert predict_modes(theta1, beta1, pred.X, ws._zargs, ws._sargs, ws._start, u, False)
    np.testing.assert_allclose(u, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family, link", [("binomial", "logit"), ("binomial", "probit"),
                                          ("poisson", "log"), ("poisson", "sqrt")])
def test_penalized_deviance_is_the_sum_of_deviance_residuals(family, link):
    """With the cumulant the update kernel's deviance differs from dev_resid's by a term of
    the data alone (``deviance_offset``); with it the penalized deviance is theirs."""
    sim = glmmcore.simulate("patents", n_patents=600, seed=4)
    response = "ncit" if family == "poisson" else "opposition"
    fit = glmmcore.fit(f"{response} ~ biopharm + (1 | year)", sim.data, family=family,
                       link=link)
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    for scale in (0.5, 1.0, 2.0):
        _, out = dev.evaluate(np.concatenate([fit.theta * scale, fit.beta]), 2)
        mu = dev.pirls1.mu
        dev_resid = fit.response.family.dev_resid_array(fit.response.y, mu,
                                                        fit.response.weights, 1.0)
        assert out.pdev == pytest.approx(np.sum(dev_resid) + out.u @ out.u, rel=1e-12)
    assert (dev.pirls1.dev_offset != 0.0) == (link == "log")


def test_round_off_floor_ends_the_iterations(datasets):
    """patents_pois_olre's nAGQ=0 stage: Newton steps settle at 2-7e-12, above STEP_TOL;
    PIRLS ends there, at the mode, instead of running on to SLOW_ITER (it took 25
    iterations at theta = (1, 0.9) before FLOOR_TOL, 4 with it).  Whether successive
    round-off steps grow or shrink depends on the machine's summation order (a rule
    that stopped only on a step no smaller than the last took 5 from the mode on some
    machines): the stop must not depend on it."""
    fit = glmmcore.fit("ncit ~ opposition + biopharm + (1 | yearf) + (1 | subject)",
                       datasets["patents"], family="poisson", nAGQ=0)
    dev = GlmmDeviance(fit.predictor, fit.response, 0)
    iterations = []
    for theta in ([1.0, 1.0], [1.0, 0.9], [1.0, 1.1], [1.05, 0.44]):
        _, out = dev.evaluate(np.array(theta), 1)
        iterations.append(out.iterations)
        assert not out.stopped_on_deviance
        _, again = dev.evaluate(np.array(theta), 1)     # from the mode: at most two
        assert again.iterations <= 2                    # round-off steps, no move
        np.testing.assert_allclose(again.u, out.u, rtol=1e-9, atol=1e-10)
    assert max(iterations) < SLOW_ITER // 2
