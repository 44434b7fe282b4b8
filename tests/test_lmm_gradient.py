"""The analytic gradient of the profiled deviance, the inverse blocks it needs, its optimizer."""

from __future__ import annotations

import numpy as np
import pytest
from test_linalg import FORMULAS, THETA, dense_Z_Lambda, parts, simulate_frame

import glmmcore
from glmmcore.errors import ModelSpecError
from glmmcore.fitting.lmm_fit import uses_gradient
from glmmcore.objectives.lmm import LmmDeviance
from glmmcore.objectives.lmm_gradient import profiled_gradient

FORMULA_MIXED = FORMULAS["mixed"]


def deviance(frame, formula, backend, reml, weighted=True):
    pred = parts(frame, backend, formula)
    rng = np.random.default_rng(5)
    w = rng.uniform(0.5, 2.0, pred.n) if weighted else np.ones(pred.n)
    offset = rng.normal(scale=0.1, size=pred.n)
    return LmmDeviance(pred, frame["y"].to_numpy(), w, offset, reml)


def central_differences(dev, theta, h=1e-5):
    out = np.empty(theta.size)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = h
        out[i] = (dev(theta + e) - dev(theta - e)) / (2 * h)
    return out


@pytest.mark.parametrize("size", ["small", "large", "waves"])
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
@pytest.mark.parametrize("backend", ["blocked", "sparse"])
@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_gradient_matches_differences_of_the_deviance(size, formula, backend, reml):
    """Every kind of block, both factorizations and both inverse routes, weights and offset."""
    dev = deviance(simulate_frame(size), formula, backend, reml)
    theta = THETA[:dev.predictor.reterms.ntheta]
    value, grad = dev.value_and_gradient(theta)
    assert value == dev(theta)
    fd = central_differences(dev, theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("size", ["small", "large", "waves"])
def test_reml_inverse_blocks_include_the_fixed_effects(size):
    """``inverse_diag_blocks(p)``: blocks of the inverse of the system with X, summed or not."""
    frame = simulate_frame(size)
    for backend in ("blocked", "sparse"):
        pred = parts(frame, backend)
        theta = THETA[:pred.reterms.ntheta]
        fac = pred.new_factor(pred.p + 1)
        fac.crossprod(np.ones(pred.n), np.column_stack([pred.X, frame["y"].to_numpy()]))
        assert fac.factor(theta)
        Z, Lam = dense_Z_Lambda(pred, theta)
        ZL = Z @ Lam
        M = np.block([[ZL.T @ ZL + np.eye(ZL.shape[1]), ZL.T @ pred.X],
                      [pred.X.T @ ZL, pred.X.T @ pred.X]])
        Minv = np.linalg.inv(M)
        start = 0
        blocks = fac.inverse_diag_blocks(pred.p)
        sums = fac.inverse_diag_blocks(pred.p, summed=True)
        for block, V, S in zip(pred.reterms.blocks, blocks, sums):
            for level in range(block.nlevels):
                sl = slice(start + level * block.p, start + (level + 1) * block.p)
                np.testing.assert_allclose(V[level], Minv[sl, sl], rtol=1e-9, atol=1e-14)
            np.testing.assert_allclose(S[0], V.sum(axis=0), rtol=1e-12)
            start += block.q


@pytest.mark.parametrize("formula, theta, singular", [
    (FORMULAS["scalars"], [0.9, 0.0, 0.4], [False, True, False]),
    ("y ~ x + (1 + x | g) + (1 | h)", [0.9, 0.3, 0.0, 0.5], [True, True, True, False]),
    ("y ~ x + (1 + x | g) + (1 | h)", [0.9, 0.3, 5e-7, 0.5], [True, True, True, False]),
], ids=["scalar at 0", "slope at 0", "slope near 0"])
def test_a_nearly_singular_block_takes_its_gradient_at_the_raised_point(formula, theta,
                                                                       singular):
    """Its elements are the analytic gradient with the small diagonals raised to 1e-4."""
    dev = deviance(simulate_frame("small"), formula, "blocked", True)
    theta = np.array(theta)
    dev(theta)
    grad, missing = profiled_gradient(dev, theta)
    np.testing.assert_array_equal(missing, singular)
    assert np.isnan(grad[missing]).all()
    value, filled = dev.value_and_gradient(theta)
    assert value == dev(theta)
    np.testing.assert_array_equal(filled[~missing], grad[~missing])
    raised = theta.copy()
    raised[(theta < 1e-4) & dev.predictor.reterms.is_diagonal()] = 1e-4
    np.testing.assert_allclose(filled[missing], dev.value_and_gradient(raised)[1][missing],
                               rtol=1e-12)


def test_a_variance_at_zero_shows_its_curvature():
    """At theta = 0 an even deviance has derivative 0; the raised point gives f'' 1e-4."""
    dev = deviance(simulate_frame("small"), FORMULAS["scalars"], "blocked", True)
    theta = np.array([0.9, 0.0, 0.4])
    value, grad = dev.value_and_gradient(theta)
    step = np.array([0.0, 1e-4, 0.0])
    curvature = (dev(theta + step) - 2 * value + dev(theta - step)) / 1e-8
    assert grad[1] == pytest.approx(curvature * 1e-4, rel=1e-3)


def test_lbfgsb_and_bobyqa_reach_the_same_optimum():
    """A crossed design with a random slope (5 parameters), REML: same criterion and theta."""
    frame = simulate_frame("large")
    fits = {opt: glmmcore.fit(FORMULAS["mixed"], frame, control={"optimizer": opt})
            for opt in ("bobyqa", "lbfgsb")}
    a, b = fits["lbfgsb"], fits["bobyqa"]
    assert a.converged and b.converged
    assert a.loglik >= b.loglik - 1e-9 * abs(b.loglik)
    np.testing.assert_allclose(a.theta, b.theta, rtol=2e-4, atol=2e-5)
    assert a.convergence.optimizer[0].startswith("L-BFGS-B")
    assert a.extra["nevals"] < b.extra["nevals"]


def test_bobyqa_takes_over_when_lbfgsb_fails_the_checks():
    """L-BFGS-B cut short (maxeval): the checks fail and BOBYQA continues from its point."""
    frame = simulate_frame("small")
    limits = {"optimizer": "lbfgsb", "maxeval": 3, "start": "lme4"}
    short = glmmcore.fit(FORMULAS["scalars"], frame, control={**limits, "warn": False})
    messages = short.convergence.optimizer
    assert messages[0].startswith("L-BFGS-B") and "exceeds limit" in messages[0]
    assert "bobyqa from there" in messages[1]
    full = glmmcore.fit(FORMULAS["scalars"], frame, control={"optimizer": "lbfgsb"})
    assert full.converged and len(full.convergence.optimizer) == 1
    stopped = glmmcore.fit(FORMULAS["scalars"], frame,
                           control={**limits, "check_convergence": False})
    assert short.loglik > stopped.loglik


def test_auto_takes_the_gradient_where_it_pays():
    """2 parameters: BOBYQA; 3 with a small D: L-BFGS-B, with a large one: BOBYQA; 4+: L-BFGS-B."""
    small, large = simulate_frame("small"), simulate_frame("large")
    two = deviance(small, "y ~ x + (1 | g) + (1 | h)", "blocked", True)
    assert not uses_gradient(two, "auto")
    assert uses_gradient(two, "lbfgsb")
    three = deviance(small, FORMULAS["scalars"], "blocked", True)
    assert three.predictor.layout.q_r + three.p + 1 <= 200
    assert uses_gradient(three, "auto")
    assert not uses_gradient(three, "bobyqa")
    sim = glmmcore.simulate("insteval", seed=1, n_instructors=300, n_students=800,
                            n_obs=20_000)
    pred = parts(sim.data, "blocked", sim.formula)
    dense = LmmDeviance(pred, sim.data["y"].to_numpy(), np.ones(pred.n), np.zeros(pred.n), True)
    assert pred.reterms.ntheta == 3 and pred.layout.q_r > 200
    assert not uses_gradient(dense, "auto")
    assert uses_gradient(deviance(large, FORMULAS["mixed"], "blocked", True), "auto")
    assert not uses_gradient(deviance(small, FORMULAS["mixed"], "sparse", True), "auto")


def test_optimizer_setting_is_checked():
    frame = simulate_frame("small")
    with pytest.raises(ModelSpecError, match="optimizer must be one of"):
        glmmcore.fit("y ~ x + (1 | g)", frame, control={"optimizer": "newton"})
    frame = frame.assign(z=(frame["y"] > 1).astype(int))
    with pytest.raises(ModelSpecError, match="needs the analytic gradient"):
        glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial", nAGQ=5,
                     control={"optimizer": "lbfgsb"})


STRESS = [
    ("gpa", "gpa ~ occasion + (1 + occasion + sex | student)"),
    ("nurses", "stress ~ age + experience + treatment + (1 + treatment + age | hospital)"
               " + (1 | wardid)"),
    ("nurses", "stress ~ age + treatment + (1 + experience | hospital) + (1 + treatment | wardid)"),
    ("sociometric", "rating ~ sexsend + sexrec + (1 + sexrec | group:sender)"
                    " + (1 | group:receiver) + (1 | group)"),
    ("pupils", "achievement ~ ses + (1 + sex | primary_school_id)"
               " + (1 + sex | secondary_school_id)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("design, formula", STRESS, ids=[f"{d}-{i}" for i, (d, _) in
                                                         enumerate(STRESS)])
def test_lbfgsb_is_as_good_as_bobyqa_on_simulated_designs(design, formula, seed):
    """5-7 covariance parameters, singular fits among them: L-BFGS-B's optimum is BOBYQA's."""
    data = glmmcore.simulate(design, seed=seed).data
    for reml in (True, False):
        a, b = (glmmcore.fit(formula, data, REML=reml,
                             control={"optimizer": opt, "warn": False})
                for opt in ("lbfgsb", "bobyqa"))
        assert a.converged, a.convergence.reason
        assert a.loglik >= b.loglik - 1e-9 * abs(b.loglik)


def test_a_call_at_the_last_factored_theta_reuses_the_factor():
    """The optimizer's start was just evaluated when it won: no second factorization, the
    same value and a gradient from that factor; any other factorization in between
    (``refactor``) makes the call factor again."""
    dev = deviance(simulate_frame("small"), FORMULA_MIXED, "blocked", True)
    theta = THETA[:dev.predictor.reterms.ntheta]
    value = dev(theta)
    assert dev.nevals == 1
    again, grad = dev.value_and_gradient(theta.copy())
    assert dev.nevals == 1 and again == value
    fresh = deviance(simulate_frame("small"), FORMULA_MIXED, "blocked", True)
    np.testing.assert_array_equal(grad, fresh.value_and_gradient(theta)[1])
    assert dev.refactor(theta + 0.1)
    assert dev(theta) == value and dev.nevals == 2
