"""The fast path (glmmcore.fitting.scalar_fast): the regular path's optimum, faster.

Each simulated feature is fitted twice, by the fast path and by the regular
one (``fast_path=False``): the log-likelihoods must agree to 1e-8 relative
and the estimates to the optimizers' accuracy, on easy features and hard ones
(a variance at or near 0, mostly zeros, a level with zero counts only).
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.fitting.scalar_fast import applies, fast_fitter

FORMULA = "y ~ cond + offset(lsf) + (1 | subject)"
REGULAR = {"fast_path": False, "warn": False}
FAST = {"warn": False}


@pytest.fixture(scope="module")
def design():
    """A per-gene design: 30 subjects in 2 conditions, 8 samples each, library sizes."""
    rng = np.random.default_rng(7)
    subject = np.repeat(np.arange(30), 8)
    return pd.DataFrame({"subject": [f"s{s}" for s in subject],
                         "cond": np.where(subject < 15, "A", "B"),
                         "lsf": rng.normal(0.0, 0.3, subject.size)})


def _counts(design, seed, sd, intercept):
    rng = np.random.default_rng(seed)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    b = rng.normal(0.0, sd, 30)[codes]
    eta = intercept + 0.4 * (design["cond"] == "B") + b + design["lsf"]
    return rng.poisson(np.exp(eta)).astype(float)


def _features(design):
    """Easy features, variances 0 and near 0, mostly zeros, a level of zeros only."""
    ys = [_counts(design, k, 0.6, 1.0) for k in range(6)]
    ys += [_counts(design, 10 + k, 0.0, 1.0) for k in range(4)]
    ys += [_counts(design, 20 + k, 0.05, 0.5) for k in range(3)]
    ys += [_counts(design, 30 + k, 0.8, -2.5) for k in range(4)]
    zero_level = _counts(design, 40, 0.5, 0.5)
    zero_level[design["subject"] == "s3"] = 0.0
    ys.append(zero_level)
    return ys


def _compare(fast, regular, beta_tol=1e-4):
    assert fast.extra.get("fast_path"), fast.convergence.optimizer
    assert "fast_path" not in regular.extra
    assert fast.loglik == pytest.approx(regular.loglik, rel=1e-8)
    assert fast.deviance == pytest.approx(regular.deviance, rel=1e-8)
    np.testing.assert_allclose(fast.beta, regular.beta, atol=beta_tol)
    np.testing.assert_allclose(fast.theta, regular.theta, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fast.vcov_beta)),
                               np.sqrt(np.diag(regular.vcov_beta)), rtol=1e-3)
    assert fast.converged == regular.converged
    assert fast.is_singular == regular.is_singular
    assert fast.method == regular.method
    assert fast.nparams == regular.nparams


@pytest.mark.parametrize("nagq", [1, 0])
def test_poisson_features_match_the_regular_path(design, nagq):
    data = design.assign(y=_counts(design, 0, 0.6, 1.0))
    model = glmmcore.MixedModel(FORMULA, data, family="poisson", nAGQ=nagq)
    assert applies(model)
    singular = 0
    for y in _features(design):
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular)
        singular += fast.is_singular
        np.testing.assert_allclose(fast.ranef["subject"], regular.ranef["subject"], atol=1e-3)
        np.testing.assert_allclose(fast.fitted(), regular.fitted(), rtol=1e-4)
    assert singular >= 3        # the hard features are there
    flagged = model.fit(_features(design)[-1], control=FAST)
    assert any(f.code == "zero_count_levels" for f in flagged.convergence.flags)


def test_binomial_features_match_the_regular_path(design):
    rng = np.random.default_rng(3)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    data = design.assign(y=0.0)
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", data.assign(
        y=rng.integers(0, 2, len(data)).astype(float)), family="binomial")
    assert applies(model)
    for sd in (1.0, 0.3, 0.0):
        eta = -0.5 + 0.8 * (design["cond"] == "B") + rng.normal(0.0, sd, 30)[codes]
        y = (rng.random(len(data)) < 1 / (1 + np.exp(-eta))).astype(float)
        _compare(model.fit(y, control=FAST), model.fit(y, control=REGULAR))


def test_negative_binomial_features_match_the_regular_path(design):
    """The size estimated with (theta, beta): log link (not canonical: Newton's PIRLS
    steps), the log-determinant at Fisher's weights."""
    codes = design["subject"].str[1:].astype(int).to_numpy()
    rng = np.random.default_rng(9)

    def draw(sd, intercept, size):
        eta = intercept + 0.4 * (design["cond"] == "B") + rng.normal(0.0, sd, 30)[codes]
        mu = np.exp(eta + design["lsf"])
        return rng.poisson(rng.gamma(size, mu / size)).astype(float)
    ys = [draw(0.5, 1.0, 3.0), draw(0.5, 1.0, 3.0), draw(0.0, 1.0, 3.0),
          draw(0.4, -1.5, 1.0)]
    model = glmmcore.MixedModel(FORMULA, design.assign(y=ys[0]), family="negative_binomial")
    assert applies(model)
    for y in ys:
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular)
        assert fast.extra["phi"] == pytest.approx(regular.extra["phi"], rel=1e-4)
        assert fast.extra["family_params"]["theta"] == fast.extra["phi"]


def test_a_non_canonical_link_matches_the_regular_path(design):
    rng = np.random.default_rng(4)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)",
                                design.assign(y=rng.integers(0, 2, len(design)).astype(float)),
                                family="binomial", link="probit")
    assert applies(model)
    for sd in (1.0, 0.0):
        eta = 0.3 * (design["cond"] == "B") + rng.normal(0.0, sd, 30)[codes]
        y = (rng.random(len(design)) < 1 / (1 + np.exp(-eta))).astype(float)
        _compare(model.fit(y, control=FAST), model.fit(y, control=REGULAR))


def _positive(design, seed, sd, shape):
    """Gamma responses with a log-linear mean and a subject effect of SD ``sd``."""
    rng = np.random.default_rng(seed)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    mu = np.exp(0.5 + 0.4 * (design["cond"] == "B") + rng.normal(0.0, sd, 30)[codes])
    return rng.gamma(shape, mu / shape)


@pytest.mark.parametrize("link", ["log", "inverse"])
def test_gamma_at_the_observed_information_matches_the_regular_path(design, link):
    """Gamma's Laplace approximation is at the observed information (glmmTMB's), its
    dispersion estimated with (theta, beta)."""
    ys = [_positive(design, 5, 0.5, 4.0), _positive(design, 6, 0.0, 2.0),
          _positive(design, 7, 0.3, 10.0)]
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", design.assign(y=ys[0]),
                                family="gamma", link=link)
    assert applies(model)
    for y in ys:
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular)
        assert fast.extra["phi"] == pytest.approx(regular.extra["phi"], rel=1e-4)


def test_the_beta_plugin_matches_the_regular_path():
    """A plugin family with an extra parameter and the observed information gets the
    fast path from its kernels alone."""
    if "beta" not in glmmcore.available_families():
        pytest.skip("needs the example plugin (docs/examples/glmmcore-beta)")
    from bench.plugin_speed import beta_data
    data = beta_data(40, 6)
    model = glmmcore.MixedModel("y ~ x + (1 | g)", data, family="beta")
    assert applies(model)
    rng = np.random.default_rng(1)
    for y in (data["y"].to_numpy(), np.clip(rng.beta(4.0, 6.0, len(data)), 1e-6, 1 - 1e-6)):
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular)
        assert fast.extra["phi"] == pytest.approx(regular.extra["phi"], rel=1e-4)


def _fast_parts(model, y, fused=True, distinct=True):
    """The fast path's fixed arguments ``P`` for response ``y`` and ``(n, G, p)``; with
    ``fused=False`` without the family's update_newton kernel (its laplace_weights
    kernel gives the gradient's terms), with ``distinct=False`` the family parameter's
    term summed over the rows, not over the distinct responses."""
    from glmmcore.objectives import scalar_glmm
    from glmmcore.objectives.family_kernels import family_kernels
    fitter, kernels = fast_fitter(model), family_kernels(model.family)
    n, p = fitter.X.shape
    has_phi = model.family.extra is not None
    y = np.ascontiguousarray(y, dtype=float)
    reps, mult = scalar_glmm.distinct_rows(y if distinct else y[:0], fitter.weights)
    P = (fitter.X, fitter.codes, fitter.z, y, fitter.weights, fitter.offset, kernels.update,
         kernels.dvariance_vec, kernels.observed_weights, kernels.logpdf_vec, has_phi,
         kernels.laplace_weights, kernels.weight_slope, kernels.dlogpdf_dphi_vec,
         kernels.laplace_observed, kernels.update_newton if fused else 0,
         kernels.devres_vec, reps, mult, kernels.linkinv_vec,
         kernels.newton_terms if fused else 0, kernels.phi_weights)
    return P, (n, fitter.G, p)


def _fast_objective(model, y, fused=True, workspace=None, distinct=True):
    """``x -> (objective, gradient)`` of the fast path for response ``y`` (Laplace), in a
    new workspace per call unless ``workspace`` is given (kept across calls); ``fused``
    and ``distinct`` as :func:`_fast_parts`."""
    from glmmcore.objectives import scalar_newton
    P, (n, G, p) = _fast_parts(model, y, fused, distinct)

    def objective(x):
        W = workspace if workspace is not None else scalar_newton.workspace(n, G, p)
        grad = np.empty(x.size)
        value = scalar_newton._objective(x, True, P, np.zeros(G), np.zeros(p), W,
                                         grad)
        return value, grad
    return objective


def _central_differences(objective, x: np.ndarray) -> np.ndarray:
    """Central differences of ``objective(x)[0]`` in each coordinate, steps 1e-5 (relative
    above 1)."""
    numeric = np.empty_like(x)
    for c in range(x.size):
        h = 1e-5 * max(1.0, abs(x[c]))
        up, down = x.copy(), x.copy()
        up[c] += h
        down[c] -= h
        numeric[c] = (objective(up)[0] - objective(down)[0]) / (2 * h)
    return numeric


@pytest.mark.parametrize("family, link", [("negative_binomial", "log"),
                                          ("negative_binomial", "sqrt"),
                                          ("gamma", "log"), ("gamma", "inverse"),
                                          ("binomial", "probit"),
                                          ("binomial", "cloglog"), ("poisson", "sqrt")])
def test_fast_gradients_match_central_differences(design, family, link):
    """The fast path's analytic gradient (its terms from PIRLS's update_newton kernel
    where the family has one, and from its laplace_weights kernel) is the derivative
    of its objective, off the optimum, for every built-in family and link it takes
    beyond the canonical ones."""
    rng = np.random.default_rng(11)
    counts = _counts(design, 3, 0.5, 1.0)
    y = {"negative_binomial": counts, "poisson": counts,
         "gamma": _positive(design, 3, 0.5, 4.0),
         "binomial": (rng.random(len(design)) < 0.4).astype(float)}[family]
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", design.assign(y=y),
                                family=family, link=link)
    assert applies(model)
    fit = model.fit(control=REGULAR)
    x = np.concatenate([fit.theta, fit.beta]) + np.concatenate([[0.2], np.full(2, 0.05)])
    if model.family.extra is not None:
        x = np.append(x, np.log(fit.extra["phi"]) + 0.1)
    from glmmcore.objectives.family_kernels import family_kernels
    kernels = family_kernels(model.family)
    # the Gamma's log link: the observed information's (W = H, dW / d eta differenced)
    assert (kernels.update_newton != 0) == (link in ("probit", "cloglog", "sqrt")
                                            or family == "negative_binomial"
                                            or (family, link) == ("gamma", "log"))
    objective = _fast_objective(model, y)
    value, grad = objective(x)
    assert np.isfinite(value)
    numeric = _central_differences(objective, x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * (1 + abs(value)) * 1e-3)
    if kernels.update_newton:       # the same terms by the family's laplace_weights kernel
        value2, grad2 = _fast_objective(model, y, fused=False)(x)
        assert value2 == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(grad2, grad, rtol=1e-9, atol=1e-9)



@pytest.mark.parametrize("family", ["poisson", "binomial"])
@pytest.mark.parametrize("theta", [0.0, 0.3, 1.5])
def test_nagq0_slopes_of_the_modes_match_central_differences(design, family, theta):
    """nAGQ=0's prediction of ``(u, beta)`` at a new theta (Newton's points and the
    Hessian's columns start PIRLS there): its slopes in theta are the derivatives of
    PIRLS's solution, at theta = 0 too."""
    from glmmcore.objectives import scalar_newton
    rng = np.random.default_rng(5)
    y = (_counts(design, 4, 0.6, 1.0) if family == "poisson"
         else (rng.random(len(design)) < 0.4).astype(float))
    model = glmmcore.MixedModel(FORMULA if family == "poisson" else "y ~ cond + (1 | subject)",
                                design.assign(y=y), family=family, nAGQ=0)
    assert applies(model)
    P, (n, G, p) = _fast_parts(model, y)

    def modes(t):
        W, u, beta = scalar_newton.workspace(n, G, p), np.zeros(G), np.zeros(p)
        value = scalar_newton._evaluate(t, np.array([t]), False, P, u, beta, W)
        assert np.isfinite(value)
        return u, beta, W

    u, _, W = modes(theta)
    dU, dB = np.zeros((G, 1)), np.zeros((p, 1))
    scalar_newton._profiled_slopes(theta, P, u, W, dU, dB)
    h = 1e-5
    (u_up, b_up, _), (u_down, b_down, _) = modes(theta + h), modes(abs(theta - h))
    if theta == 0.0:        # u is free at 0 (PIRLS leaves 0): the one-sided slope
        np.testing.assert_allclose(dU[:, 0], u_up / h, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(dB[:, 0], 0.0, atol=1e-12)
        return
    np.testing.assert_allclose(dU[:, 0], (u_up - u_down) / (2 * h), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dB[:, 0], (b_up - b_down) / (2 * h), rtol=1e-5, atol=1e-7)

def test_the_beta_plugins_gradient_matches_central_differences():
    """At the observed information (the Beta plugin) the gradient takes the score and
    the information from the mode PIRLS left and ``dW / d eta`` from a central
    difference of the observed-information kernel: the derivative of the objective,
    off the optimum, in every coordinate (log phi's included)."""
    if "beta" not in glmmcore.available_families():
        pytest.skip("needs the example plugin (docs/examples/glmmcore-beta)")
    from bench.plugin_speed import beta_data
    data = beta_data(40, 6)
    model = glmmcore.MixedModel("y ~ x + (1 | g)", data, family="beta")
    fit = model.fit(control=REGULAR)
    x = np.concatenate([fit.theta, fit.beta, [np.log(fit.extra["phi"])]])
    x += np.array([0.2, 0.05, -0.05, 0.1])
    y = data["y"].to_numpy()
    objective = _fast_objective(model, y)
    value, grad = objective(x)
    assert np.isfinite(value)
    numeric = _central_differences(objective, x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * (1 + abs(value)) * 1e-3)


def test_newton_steps_per_level_where_an_observations_information_is_negative():
    """A Beta response far in a tail has negative observed information at the mode;
    PIRLS still takes Newton's steps on the levels (whose sums are positive), so a
    fit takes about two iterations per evaluation, at the regular path's optimum."""
    if "beta" not in glmmcore.available_families():
        pytest.skip("needs the example plugin (docs/examples/glmmcore-beta)")
    from bench.plugin_speed import beta_data
    from glmmcore.objectives import family_kernels as fk
    data = beta_data(100, 10)
    model = glmmcore.MixedModel("y ~ x + (1 | g)", data, family="beta")
    fast, regular = model.fit(control=FAST), model.fit(control=REGULAR)
    _compare(fast, regular)
    assert fast.loglik >= regular.loglik - 1e-9 * abs(regular.loglik)
    fitter = fast_fitter(model)
    y = np.ascontiguousarray(data["y"].to_numpy(), dtype=float)
    fits = fitter.fit_columns(y[:, None])
    eta = fitter.X @ fits.beta[0] + fits.theta[0, 0] * fits.u[0][fitter.codes]
    kernels = fk.family_kernels(model.family)
    mu, info = np.empty_like(y), np.empty_like(y)
    fk.call_map(kernels.linkinv_vec, eta, mu)
    fk.call_observed(kernels.observed_weights, eta, y, np.ones_like(y), fits.phi[0], mu, info)
    assert np.sum(info < 0) >= 1
    assert fits.pirls_iterations[0] <= 2.5 * fits.nevals[0]


def _extra_parameter_models(design):
    """The built-in families with an extra parameter, and the Beta plugin if installed."""
    out = [("negative_binomial", "log", _counts(design, 3, 0.5, 1.0)),
           ("gamma", "log", _positive(design, 3, 0.5, 4.0))]
    if "beta" in glmmcore.available_families():
        rng = np.random.default_rng(5)
        out.append(("beta", "logit", np.clip(rng.beta(4.0, 6.0, len(design)), 1e-6, 1 - 1e-6)))
    return [(glmmcore.MixedModel("y ~ cond + (1 | subject)", design.assign(y=y),
                                 family=family, link=link), y) for family, link, y in out]


def test_kept_phi_terms_give_the_direct_objective(design):
    """The complete deviance's term of phi alone, kept from the first mode at a phi,
    gives the same objective at other theta and beta as logpdf at the mode does."""
    from glmmcore.objectives import scalar_newton
    for model, y in _extra_parameter_models(design):
        fit = model.fit(control=REGULAR)
        x = np.concatenate([fit.theta, fit.beta, [np.log(fit.extra["phi"])]])
        _, (n, G, p) = _fast_parts(model, y)
        kept = _fast_objective(model, y, workspace=scalar_newton.workspace(n, G, p))
        fresh = _fast_objective(model, y)
        for shift in ([0.0, 0.0, 0.0], [0.1, -0.05, 0.02], [-0.2, 0.1, 0.0]):
            moved = x.copy()
            moved[:3] += shift
            assert kept(moved)[0] == pytest.approx(fresh(moved)[0], rel=1e-12)



@pytest.mark.parametrize("family", ["poisson", "binomial", "negative_binomial"])
def test_the_log_likelihood_over_distinct_responses_equals_the_rows_sum(design, family):
    """A fit's log-likelihood from the update kernel's deviance terms plus the part free
    of eta at a row of each distinct (y, wt) pair is logpdf summed over the rows."""
    from glmmcore.objectives import scalar_glmm, scalar_newton
    rng = np.random.default_rng(9)
    y = (_counts(design, 6, 0.6, 1.0) if family != "binomial"
         else (rng.random(len(design)) < 0.4).astype(float))
    model = glmmcore.MixedModel(FORMULA if family != "binomial" else "y ~ cond + (1 | subject)",
                                design.assign(y=y), family=family)
    P, (n, G, p) = _fast_parts(model, y)
    reps, mult = P[17], P[18]
    assert reps.size > 0
    x = np.array([0.5, 0.8, 0.3] + ([0.7] if model.family.extra is not None else []))
    W, u, beta = scalar_newton.workspace(n, G, p), np.zeros(G), np.zeros(p)
    assert np.isfinite(scalar_newton._evaluate(x[0], x, True, P, u, beta, W))
    obs = W[0]
    phi = np.exp(x[-1]) if model.family.extra is not None else 1.0
    rows = float(np.sum(model.family.logpdf_array(y, obs[1], np.ones(n), phi)))
    assert scalar_glmm._loglik(phi, P, obs, reps, mult) == pytest.approx(rows, rel=1e-13)
    none = reps[:0]
    assert scalar_glmm._loglik(phi, P, obs, none, mult[:0]) == pytest.approx(rows, rel=1e-13)

def test_phi_terms_over_distinct_responses_equal_the_rows_sum(design):
    """The family parameter's term summed once per distinct (y, wt) pair, times its
    multiplicity, gives the objective and gradient of the sum over the rows (to
    round-off), for counts and for rounded continuous responses."""
    from glmmcore.objectives import scalar_glmm
    rng = np.random.default_rng(3)
    models = _extra_parameter_models(design)
    gamma_rounded = np.ceil(4.0 * _positive(design, 4, 0.5, 4.0)) / 4.0
    models.append((glmmcore.MixedModel("y ~ cond + (1 | subject)",
                                       design.assign(y=gamma_rounded), family="gamma",
                                       link="log"), gamma_rounded))
    used = 0
    for model, y in models:
        fit = model.fit(control=REGULAR)
        x = np.concatenate([fit.theta, fit.beta, [np.log(fit.extra["phi"])]])
        reps, mult = scalar_glmm.distinct_rows(np.ascontiguousarray(y, dtype=float),
                                               np.ones(y.size))
        if reps.size:
            used += 1
            assert mult.sum() == y.size
            assert np.unique(y[reps]).size == reps.size == np.unique(y).size
            np.testing.assert_array_equal(mult, [np.sum(y == v) for v in y[reps]])
        for shift in ([0.0, 0.0, 0.0, 0.0], [0.1, -0.05, 0.02, 0.3]):
            moved = x + shift
            by_rows, g_rows = _fast_objective(model, y, distinct=False)(moved)
            by_values, g_values = _fast_objective(model, y)(moved)
            assert by_values == pytest.approx(by_rows, rel=1e-13)
            np.testing.assert_allclose(g_values, g_rows, rtol=1e-12, atol=1e-9)
    assert used >= 2        # the counts and the rounded Gamma responses
    y = rng.normal(size=300)
    assert scalar_glmm.distinct_rows(y, np.ones(300))[0].size == 0    # all distinct
    y = np.repeat(np.arange(65.0), 3)
    assert scalar_glmm.distinct_rows(y, np.ones(y.size))[0].size == 0    # beyond the most
    y = np.repeat(np.arange(64.0), 4)
    weights = np.tile([1.0, 2.0], 128)
    assert scalar_glmm.distinct_rows(y, weights)[0].size == 0     # 128 pairs of (y, wt)
    reps, mult = scalar_glmm.distinct_rows(y[:128], weights[:128])
    assert reps.size == 64 and np.all(mult == 2.0)


@pytest.mark.parametrize("family, link", [("negative_binomial", "log"),
                                          ("negative_binomial", "sqrt"),
                                          ("binomial", "probit"), ("binomial", "cloglog"),
                                          ("poisson", "sqrt")])
def test_newton_terms_are_update_newtons_without_the_deviance(design, family, link):
    """The newton_terms kernel gives update_newton's mu, w, r, H and dW / d eta to the bit,
    without the deviance; an evaluation whose value is not wanted (a Hessian column)
    skips the deviance where PIRLS ends at its first update and gives the same
    gradient, and PIRLS past its first update the same modes and deviance."""
    from glmmcore.objectives import scalar_newton, scalar_pirls
    from glmmcore.objectives.family_kernels import call_update_newton, family_kernels
    rng = np.random.default_rng(2)
    y = (_counts(design, 3, 0.5, 1.0) if family != "binomial"
         else (rng.random(len(design)) < 0.4).astype(float))
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", design.assign(y=y),
                                family=family, link=link)
    kernels = family_kernels(model.family)
    assert kernels.newton_terms != 0
    n = y.size
    eta = np.log(y + 0.5) if link == "log" else np.sqrt(y + 0.5) if link == "sqrt" else (
        rng.normal(-0.3, 0.5, n))
    wt, phi = np.ones(n), 1.3
    full, terms = np.full((6, n), -1.0), np.full((6, n), -1.0)
    total = call_update_newton(kernels.update_newton, eta, y, wt, phi, *full)
    assert call_update_newton(kernels.newton_terms, eta, y, wt, phi, *terms) == 0.0
    assert np.isfinite(total) and np.all(terms[3] == -1.0)      # no deviance written
    for a in (0, 1, 2, 4, 5):
        np.testing.assert_array_equal(terms[a], full[a])

    fit = model.fit(control=REGULAR)
    P, (n, G, p) = _fast_parts(model, y)
    x = np.concatenate([fit.theta, fit.beta]) + np.concatenate([[0.1], np.full(p, 0.02)])
    if model.family.extra is not None:
        x = np.append(x, np.log(fit.extra["phi"]) + 0.1)
    u0 = np.zeros(G)
    first = np.empty(x.size)
    assert np.isfinite(scalar_newton._objective(x, True, P, u0, np.zeros(p),
                                                scalar_newton.workspace(n, G, p), first))
    # from the mode at x, with and without the value: the same modes and gradient
    grads, modes_at = [], []
    for value in (True, False):
        g, u = np.empty(x.size), u0.copy()
        f = scalar_newton._objective(x, True, P, u, np.zeros(p),
                                     scalar_newton.workspace(n, G, p), g, True, value)
        assert np.isfinite(f) and (value or f == 0.0)
        grads.append(g)
        modes_at.append(u)
    np.testing.assert_array_equal(grads[1], grads[0])
    np.testing.assert_array_equal(modes_at[1], modes_at[0])
    # from the modes at x, at beta moved: PIRLS takes its first step whole (as the halving
    # would) and its updates without the deviance until it steps again; then the deviance
    # at u, and the next steps as ever: the same modes, and the same deviance where PIRLS
    # took it (a move of 1e-6, as a Hessian column's, ends by the second update; 1e-3
    # takes more)
    args = (x[0], np.exp(x[-1]) if model.family.extra is not None else 1.0, P[1], P[2],
            P[3], P[4], P[6], P[8], P[15])
    iterations = []
    for move in (1e-6, 1e-3):
        base = fast_fitter(model).X @ (x[1:1 + p] + move)
        runs = []
        for kernel in (0, P[20]):
            ws = scalar_newton.workspace(n, G, p)
            u = u0.copy()
            runs.append((scalar_pirls.modes(*args, base, u, ws[0], ws[1], kernel), u))
        (ok, pdev, its, _), u_full = runs[0]
        (ok_t, pdev_t, its_t, _), u_terms = runs[1]
        assert ok and ok_t and its == its_t > 1
        assert pdev_t == pdev if its > 2 else np.isnan(pdev_t)
        np.testing.assert_array_equal(u_terms, u_full)
        iterations.append(its)
    assert iterations[0] == 2 and iterations[1] > 2


@pytest.mark.parametrize("family, link", [("negative_binomial", "log"),
                                          ("negative_binomial", "sqrt"),
                                          ("gamma", "log"), ("gamma", "inverse"),
                                          ("beta", "logit")])
def test_phi_weights_are_differences_of_laplace_weights(design, family, link):
    """The phi_weights kernel's one pass gives laplace_weights' score and weights at one
    phi less those at another, to the bit (the gradient's log phi entry is the same)."""
    if family not in glmmcore.available_families():
        pytest.skip("needs the example plugin (docs/examples/glmmcore-beta)")
    from glmmcore.objectives.family_kernels import (
        call_laplace_weights,
        call_phi_weights,
        family_kernels,
    )
    rng = np.random.default_rng(8)
    y = {"negative_binomial": _counts(design, 3, 0.5, 1.0),
         "gamma": _positive(design, 3, 0.5, 4.0),
         "beta": np.clip(rng.beta(4.0, 6.0, len(design)), 1e-6, 1 - 1e-6)}[family]
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", design.assign(y=y),
                                family=family, link=link)
    kernels = family_kernels(model.family)
    assert kernels.phi_weights != 0
    n = y.size
    eta = {"log": np.log(y + 0.5), "sqrt": np.sqrt(y + 0.5), "inverse": 1.0 / (y + 0.5),
           "logit": rng.normal(-0.3, 0.5, n)}[link]
    wt = np.where(np.arange(n) % 7 == 0, 0.0, 1.0)      # some rows of weight 0
    up, down = 2.1 * np.exp(1e-5), 2.1 * np.exp(-1e-5)
    at_up, at_down = np.empty((4, n)), np.empty((4, n))
    call_laplace_weights(kernels.laplace_weights, eta, y, wt, up, *at_up)
    call_laplace_weights(kernels.laplace_weights, eta, y, wt, down, *at_down)
    ds, dw = np.empty(n), np.empty(n)
    call_phi_weights(kernels.phi_weights, eta, y, wt, up, down, ds, dw)
    np.testing.assert_array_equal(ds, at_up[0] - at_down[0])
    np.testing.assert_array_equal(dw, at_up[1] - at_down[1])
    assert np.all(ds[wt == 0.0] == 0.0) and np.any(dw != 0.0)


def test_the_start_of_phi_maximizes_the_conditional_likelihood(design):
    """conditional_phi's log phi zeroes the conditional log-likelihood's slope at the
    start's modes (the family's dlogpdf_dphi and a difference of logpdf agree)."""
    from glmmcore.objectives import scalar_glmm, scalar_newton
    for model, y in _extra_parameter_models(design):
        P, (n, G, p) = _fast_parts(model, y)
        fit = model.fit(control=REGULAR)
        x = np.concatenate([fit.theta, fit.beta, [np.log(fit.extra["phi"]) + 0.7]])
        W = scalar_newton.workspace(n, G, p)
        u, beta = np.zeros(G), fit.beta.copy()
        lp = scalar_glmm.conditional_phi(x, P, u, beta, W)
        assert abs(lp - x[-1]) > 0.1
        obs, h = W[0], 1e-4
        slope = scalar_glmm._loglik_slope(lp, P, obs)
        logpdf = model.family.logpdf_array
        up, down = (np.sum(logpdf(P[3], obs[1], P[4], np.exp(lp + d))) for d in (h, -h))
        assert slope == pytest.approx((up - down) / (2 * h), abs=1e-5 * (1 + abs(up)))
        curvature = (scalar_glmm._loglik_slope(lp + h, P, obs) - slope) / h
        assert curvature < 0
        assert abs(slope) <= 1e-4 * abs(curvature)     # lp within 1e-4 of the maximizer


@pytest.mark.parametrize("reml", [True, False])
def test_lmm_features_match_the_regular_path(design, reml):
    rng = np.random.default_rng(11)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    data = design.assign(y=rng.normal(size=len(design)))
    model = glmmcore.MixedModel("y ~ cond + lsf + (1 | subject)", data, REML=reml)
    assert applies(model)
    for sd in (2.0, 0.5, 0.1, 0.0):
        y = 1.0 + 0.3 * design["lsf"] + rng.normal(0.0, sd, 30)[codes] + rng.normal(
            size=len(design))
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular, beta_tol=1e-6)
        assert fast.sigma == pytest.approx(regular.sigma, rel=1e-5)
        np.testing.assert_allclose(fast.ranef["subject"], regular.ranef["subject"], atol=1e-4)


def test_weighted_lmm_and_a_random_slope_alone(design):
    rng = np.random.default_rng(5)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    y = 0.5 * design["lsf"] + rng.normal(0.0, 1.0, 30)[codes] * design["lsf"] + rng.normal(
        size=len(design))
    data = design.assign(y=y, w=rng.uniform(0.5, 2.0, len(design)))
    model = glmmcore.MixedModel("y ~ lsf + (0 + lsf | subject)", data, weights="w")
    assert applies(model)
    _compare(model.fit(control=FAST), model.fit(control=REGULAR), beta_tol=1e-6)


def test_columns_match_single_fits_and_threads_are_bit_identical(design):
    data = design.assign(y=_counts(design, 0, 0.6, 1.0))
    model = glmmcore.MixedModel(FORMULA, data, family="poisson")
    fitter = fast_fitter(model)
    Y = np.column_stack(_features(design) * 3)
    serial = fitter.fit_columns(Y)
    assert np.all(serial.status == 0)
    single = model.fit(Y[:, 4], control=FAST)
    assert serial.loglik[4] == single.loglik
    np.testing.assert_array_equal(serial.beta[4], single.beta)
    halves = [None, None]

    def work(k):
        halves[k] = fitter.fit_columns(Y[:, k::2])
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        np.testing.assert_array_equal(halves[k].loglik, serial.loglik[k::2])
        np.testing.assert_array_equal(halves[k].beta, serial.beta[k::2])
        np.testing.assert_array_equal(halves[k].vcov, serial.vcov[k::2])


def test_models_it_does_not_apply_to_and_controls_that_opt_out(design):
    rng = np.random.default_rng(2)
    data = design.assign(y=_counts(design, 0, 0.6, 1.0), x=rng.normal(size=len(design)),
                         h=np.tile(["a", "b", "c", "d"], len(design) // 4))
    for formula, kw in [("y ~ cond + (1 + x | subject)", {}),
                        ("y ~ cond + (1 | subject) + (1 | h)", {}),
                        ("y ~ cond + (1 | subject)", {"nAGQ": 5}),
                        ("y ~ cond + (1 | subject)", {"family": "negative_binomial",
                                                      "nAGQ": 0})]:
        model = glmmcore.MixedModel(formula, data, **{"family": "poisson", **kw})
        assert not applies(model) and fast_fitter(model) is None
        assert "fast_path" not in model.fit(control=FAST).extra
    model = glmmcore.MixedModel(FORMULA, data, family="poisson")
    for control in ({"optimizer": "bobyqa"}, {"start": "lme4"}, {"fast_path": False},
                    {"check_convergence": False}):
        assert "fast_path" not in model.fit(control={**FAST, **control}).extra
    assert "fast_path" not in model.fit(start=[0.5], control=FAST).extra


def test_flagged_responses_take_the_regular_path(design):
    codes = design["subject"].str[1:].astype(int).to_numpy()
    data = design.assign(y=np.random.default_rng(1).normal(size=len(design)))
    model = glmmcore.MixedModel("y ~ cond + (1 | subject)", data)
    constant_within = np.arange(30.0)[codes]
    fit = model.fit(constant_within, control=FAST)
    assert "fast_path" not in fit.extra
    assert any(f.code == "constant_within_groups" for f in fit.convergence.flags)
    binomial = glmmcore.MixedModel("y ~ cond + (1 | subject)",
                                   data.assign(y=(codes % 2).astype(float)), family="binomial")
    fit = binomial.fit(control=FAST)       # every subject all 0 or all 1
    assert "fast_path" not in fit.extra
    with pytest.raises(glmmcore.errors.ResponseError):
        binomial.fit(np.ones(len(data)), control=FAST)


def test_models_with_a_fast_fitter_pickle(design):
    data = design.assign(y=_counts(design, 0, 0.6, 1.0))
    model = glmmcore.MixedModel(FORMULA, data, family="poisson")
    before = model.fit(control=FAST)
    again = pickle.loads(pickle.dumps(model))
    after = again.fit(control=FAST)
    assert after.extra["fast_path"] and after.loglik == before.loglik
    np.testing.assert_array_equal(after.beta, before.beta)


@pytest.mark.parametrize("family", ["poisson", "gaussian"])
def test_blocks_agree_with_single_fits(design, family):
    from glmmcore.fitting.scalar_block import fit_block
    features = _features(design)
    if family == "gaussian":
        features = [np.log1p(y) for y in features]
        codes = design["subject"].str[1:].astype(int).to_numpy()
        features.append(np.arange(30.0)[codes] + design["lsf"].to_numpy())   # less the offset:
        # constant within subjects
    features.append(np.full(len(design), 2.0))          # constant: an error (GLMM)
    Y = np.column_stack(features)
    data = design.assign(y=Y[:, 0])
    model = glmmcore.MixedModel(FORMULA, data, family=family,
                                control={"warn": False})
    block = fit_block(model, Y)
    assert block.regular[-2 if family == "gaussian" else -1] and block.regular.sum() <= 2
    for j in range(Y.shape[1]):
        if block.regular[j]:
            continue
        fit = model.fit(Y[:, j])
        assert fit.extra["fast_path"]
        assert block.fits.loglik[j] == fit.loglik
        assert block.converged[j] == fit.converged
        assert block.singular[j] == fit.is_singular
        np.testing.assert_array_equal(block.std_error[j], np.sqrt(np.diag(fit.vcov_beta)))
        assert block.flags[j] == [f.code for f in fit.convergence.flags]
