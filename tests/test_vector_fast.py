"""The vector-term fast path (glmmcore.fitting.vector_fast): the regular path's optimum.

Each response is fitted twice, by the compiled path and by the regular one
(``fast_path=False``): the compiled log-likelihood must be the regular one's to
1e-8 relative or higher, and the estimates and standard errors must agree to the
optimizers' accuracy, on sleepstudy-like draws (many of them singular: a slope
variance or a correlation on its boundary), on lme4's gpa fits and on models of
several columns.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

import glmmcore
from bench.refit_speed import sleepstudy_like
from glmmcore.fitting.vector_fast import applies, vector_fitter

SLEEP = "Reaction ~ Days + (Days | Subject)"
REGULAR = {"fast_path": False, "warn": False}
FAST = {"warn": False}


def _compare(fast, regular):
    assert fast.extra.get("fast_path"), fast.convergence.optimizer
    assert "fast_path" not in regular.extra
    assert fast.loglik >= regular.loglik - 1e-8 * abs(regular.loglik)
    assert fast.loglik == pytest.approx(regular.loglik, rel=1e-8)
    assert fast.deviance == pytest.approx(regular.deviance, rel=1e-8)
    scale = np.maximum(np.abs(regular.beta), 1.0)
    np.testing.assert_allclose(fast.beta / scale, regular.beta / scale, atol=1e-5)
    np.testing.assert_allclose(fast.theta, regular.theta, atol=2e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fast.vcov_beta)),
                               np.sqrt(np.diag(regular.vcov_beta)), rtol=1e-4)
    assert fast.sigma == pytest.approx(regular.sigma, rel=1e-5)
    assert fast.converged and regular.converged
    assert fast.is_singular == regular.is_singular
    assert (fast.method, fast.nparams) == (regular.method, regular.nparams)


@pytest.mark.parametrize("reml", [True, False])
def test_sleepstudy_draws_match_the_regular_path(reml):
    """Draws from a fit with a small slope variance: a third of them singular."""
    model = glmmcore.MixedModel(SLEEP, sleepstudy_like(slope_sd=2.0), REML=reml)
    assert applies(model)
    draws = model.fit(control=FAST).simulate(40, seed=5).to_numpy().T
    singular = 0
    for y in draws:
        fast, regular = model.fit(y, control=FAST), model.fit(y, control=REGULAR)
        _compare(fast, regular)
        singular += fast.is_singular
        np.testing.assert_allclose(fast.ranef["Subject"], regular.ranef["Subject"],
                                   rtol=1e-3, atol=1e-3 * regular.sigma)
        np.testing.assert_allclose(fast.fitted(), regular.fitted(), rtol=1e-6)
    assert singular >= 5        # boundary fits are among them


def test_a_variance_exactly_at_zero():
    """No slope variance in the data: the slope's diagonal of T on its bound 0."""
    data = sleepstudy_like(seed=8, slope_sd=0.0)
    model = glmmcore.MixedModel(SLEEP, data)
    fast, regular = model.fit(control=FAST), model.fit(control=REGULAR)
    _compare(fast, regular)
    assert fast.is_singular and fast.theta[2] == 0.0


@pytest.mark.parametrize("name", ["gpa_rs", "gpa_uncorr"])
def test_gpa_matches_lme4_and_the_regular_path(datasets, reference, name):
    formula = {"gpa_rs": "gpa ~ occasion + (1 + occasion | student)",
               "gpa_uncorr": "gpa ~ occasion + (1 + occasion || student)"}[name]
    ref = reference[name]
    model = glmmcore.MixedModel(formula, datasets["gpa"])
    assert applies(model)
    fast = model.fit(control=FAST)
    _compare(fast, model.fit(control=REGULAR))
    assert fast.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    np.testing.assert_allclose(fast.theta, ref["theta"], atol=1e-3)
    np.testing.assert_allclose(fast.beta, list(ref["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(fast.vcov_beta)), list(ref["se"].values()),
                               rtol=1e-4)


def test_three_columns_weights_and_an_offset():
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(25), 12)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0, 0], [[1, 0.3, 0], [0.3, 0.5, 0], [0, 0, 0.2]], 25)
    y = 1 + x1 - x2 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2 + rng.normal(size=g.size)
    data = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g.astype(str),
                         "w": rng.uniform(0.5, 2, g.size), "o": rng.normal(size=g.size)})
    for kw in [{}, {"weights": "w", "offset": "o"}]:
        model = glmmcore.MixedModel("y ~ x1 + x2 + (1 + x1 + x2 | g)", data, **kw)
        assert applies(model)
        _compare(model.fit(control=FAST), model.fit(control=REGULAR))


def test_threads_on_one_model_are_bit_identical_to_serial_fits():
    model = glmmcore.MixedModel(SLEEP, sleepstudy_like(slope_sd=2.0))
    draws = model.fit().simulate(24, seed=2).to_numpy().T
    serial = [model.fit(y, control=FAST) for y in draws]
    results = [None] * len(draws)

    def work(k):
        for j in range(k, len(draws), 3):
            results[j] = model.fit(draws[j], control=FAST)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        assert a.extra.get("fast_path") and a.loglik == b.loglik
        np.testing.assert_array_equal(a.theta, b.theta)
        np.testing.assert_array_equal(a.beta, b.beta)
        np.testing.assert_array_equal(a.vcov_beta, b.vcov_beta)
        np.testing.assert_array_equal(a.b, b.b)


def test_models_it_does_not_apply_to():
    data = sleepstudy_like().assign(h=lambda d: np.tile(["a", "b", "c"], 60))
    for formula in ["Reaction ~ Days + (1 | Subject)",
                    "Reaction ~ Days + (Days | Subject) + (1 | h)"]:
        model = glmmcore.MixedModel(formula, data)
        assert not applies(model) and vector_fitter(model) is None
        assert "fast_path" not in model.fit(control=REGULAR).extra
    model = glmmcore.MixedModel(SLEEP, data)
    assert "fast_path" not in model.fit(start=[1.0, 0.0, 1.0]).extra
