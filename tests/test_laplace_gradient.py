"""The Laplace deviance's analytic gradient, the inverse entries it needs, and its optimizer."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from test_linalg import FORMULAS, SIZES, THETA, dense_Z_Lambda, simulate_frame

import glmmcore
from glmmcore.design.predictor import build_predictor
from glmmcore.design.response import build_response
from glmmcore.errors import ModelSpecError
from glmmcore.fitting.checks import FD_STEP
from glmmcore.linalg.inverse import coupled_products, first_block_products
from glmmcore.objectives.glmm import GlmmDeviance
from glmmcore.objectives.laplace_gradient import has_laplace_gradient
from glmmcore.registry import get_family
from glmmcore.spec.fixed import fixed_design
from glmmcore.spec.formula import parse_formula
from glmmcore.spec.frame import model_frame
from glmmcore.spec.reterms import build_reterms


def with_responses(size: str) -> object:
    """The linalg tests' designs with a binomial and a Poisson response beside ``y``."""
    frame = simulate_frame(size)
    rng = np.random.default_rng(11)
    eta = 0.3 * (frame["y"] - frame["y"].mean())
    frame["z"] = (rng.uniform(size=len(frame)) < 1 / (1 + np.exp(-eta))).astype(float)
    frame["trials"] = rng.integers(1, 6, len(frame)).astype(float)
    frame["prop"] = rng.binomial(frame["trials"].astype(int), 1 / (1 + np.exp(-eta))) \
        / frame["trials"]
    frame["count"] = rng.poisson(np.exp(0.5 + eta)).astype(float)
    frame["exposure"] = rng.uniform(0.5, 2.0, len(frame))
    return frame


def laplace_deviance(frame, formula, family, nagq=1, **kwargs) -> GlmmDeviance:
    parsed = parse_formula(formula)
    mf = model_frame(parsed, frame, **kwargs)
    response = build_response(parsed, mf, get_family(family, None))
    fixed = fixed_design(parsed.fixed, mf.data, formula)
    predictor = build_predictor(fixed, build_reterms(parsed, mf.data), "blocked")
    return GlmmDeviance(predictor, response, nagq)


def central_differences(dev, x, h=1e-5):
    out = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        out[i] = (dev.evaluate(x + e, 2, False)[0] - dev.evaluate(x - e, 2, False)[0]) / (2 * e[i])
    return out


RESPONSES = {"binomial": ("z", {}), "proportions": ("prop", {"weights": "trials"}),
             "poisson": ("count", {"offset": "np.log(exposure)"})}


def response_deviance(size: str, formula: str, kind: str, nagq: int = 1) -> GlmmDeviance:
    """The linalg tests' design and random effects with one of the :data:`RESPONSES`."""
    column, extra = RESPONSES[kind]
    frame = with_responses(size)
    family = "poisson" if kind == "poisson" else "binomial"
    kwargs = {"weights": frame[extra["weights"]].to_numpy()} if "weights" in extra else {}
    rhs = formula.split("~", 1)[1]
    if "offset" in extra:
        rhs += f" + offset({extra['offset']})"
    return laplace_deviance(frame, f"{column} ~{rhs}", family, nagq, **kwargs)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
@pytest.mark.parametrize("kind", list(RESPONSES))
def test_gradient_matches_differences_of_the_laplace_deviance(size, formula, kind):
    """Every kind of block, both inverse routes of D, trials as weights, an offset."""
    dev = response_deviance(size, formula, kind)
    nt, p = dev.ntheta, dev.predictor.p
    x = np.concatenate([0.6 * THETA[:nt], np.linspace(-0.3, 0.3, p)])
    value, grad = dev.value_and_gradient(x)
    assert value == dev.evaluate(x, 2, False)[0]
    fd = central_differences(dev, x)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
@pytest.mark.parametrize("kind", list(RESPONSES))
def test_nagq0_gradient_matches_differences_of_its_deviance(size, formula, kind):
    """beta estimated inside PIRLS (profiled out): the gradient over theta alone.  As a
    fit with nAGQ=0 has it: with nAGQ >= 1 this stage only starts the joint one, its PIRLS
    tolerance is looser and its deviance too rough for differences at 1e-5."""
    dev = response_deviance(size, formula, kind, nagq=0)
    theta = 0.6 * THETA[:dev.ntheta]
    dev.pirls0.start_glm(np.full(dev.predictor.n, 1.0 if kind == "poisson" else 0.5))
    value, grad = dev.value_and_gradient(theta, 1)
    assert grad.shape == theta.shape
    assert value == dev.evaluate(theta, 1, False)[0]
    fd = np.empty(theta.size)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = 1e-5
        fd[i] = (dev.evaluate(theta + e, 1, False)[0]
                 - dev.evaluate(theta - e, 1, False)[0]) / 2e-5
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
def test_leverages_match_the_dense_inverse(size, formula):
    """``h_i = z_i' Lambda M^{-1} Lambda' z_i`` and ``M^{-1} Lambda' z_i`` on i's effects
    (scalar terms only take their own compiled route)."""
    frame = with_responses(size)
    dev = laplace_deviance(frame, "z" + formula[1:], "binomial")
    nt, p = dev.ntheta, dev.predictor.p
    theta = 0.6 * THETA[:nt]
    dev.evaluate(np.concatenate([theta, np.zeros(p)]), 2)
    G, h = dev.gradients[2].leverages(theta)
    Z, Lam = dense_Z_Lambda(dev.predictor, theta)
    ZL = Z @ Lam
    S = np.linalg.inv(ZL.T @ (dev.pirls1.w[:, None] * ZL) + np.eye(ZL.shape[1]))
    np.testing.assert_allclose(h, np.einsum("ij,jk,ik->i", ZL, S, ZL), rtol=1e-9, atol=1e-12)
    SZ = ZL @ S                  # row i: (M^{-1} Lambda' z_i)'
    predictor = dev.predictor
    codes, _, widths, _, boff = predictor._z
    col = 0
    for k, pk in enumerate(widths):
        for c in range(pk):
            index = boff[k] + codes[:, k] * pk + c
            np.testing.assert_allclose(G[:, col + c], SZ[np.arange(predictor.n), index],
                                       rtol=1e-9, atol=1e-12)
        col += pk


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
def test_coupled_products_in_blocks_of_rows_agree(size, formula):
    """``P_j = S22[R_j, R_j] W_j`` (or its lower triangle's part) whatever the block of rows."""
    frame = with_responses(size)
    dev = laplace_deviance(frame, "z" + formula[1:], "binomial")
    nt, p = dev.ntheta, dev.predictor.p
    dev.evaluate(np.concatenate([0.6 * THETA[:nt], np.zeros(p)]), 2)
    factor, s = dev.pirls1.factor, dev.predictor.layout
    S, ptr, W, P = first_block_products(factor, 0)
    rows, ptr2 = factor.coupled_rows(0)
    assert np.array_equal(ptr, ptr2)
    expected = np.concatenate([S[np.ix_(rows[a:b], rows[a:b])] @ W[a:b]
                               for a, b in pairwise(ptr)])
    lower = np.concatenate([(np.tril(S[np.ix_(rows[a:b], rows[a:b])], -1)
                             + 0.5 * np.diag(np.diag(S)[rows[a:b]])) @ W[a:b]
                            for a, b in pairwise(ptr)])
    for block in (1, 7, 64, s.q_r + 1):
        for half, want in ((False, expected), (True, lower)):
            Pb = np.empty_like(W)
            coupled_products(S, rows, ptr, W, block, half, Pb)
            np.testing.assert_allclose(Pb, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P, expected, rtol=1e-12, atol=1e-15)


def test_a_variance_at_zero_takes_its_derivative_at_the_raised_point():
    """At 0 the deviance is even in the variance parameter; FD_STEP shows its curvature.

    The other derivatives are the analytic gradient's at 0, compared on a second
    deviance whose PIRLS takes the same path to the mode (from a run elsewhere it
    would reach it only to PIRLS's tolerance)."""
    frame = with_responses("small")
    dev = laplace_deviance(frame, "z ~ x + (1 | g) + (1 | h)", "binomial")
    x = np.array([0.0, 0.5, 0.1, 0.2])
    _, grad = dev.value_and_gradient(x)
    _, raised = dev.value_and_gradient(np.array([FD_STEP, 0.5, 0.1, 0.2]))
    assert grad[0] == raised[0] and grad[0] != 0.0
    same_path = laplace_deviance(frame, "z ~ x + (1 | g) + (1 | h)", "binomial")
    same_path.evaluate(x, 2, False)
    at_zero = same_path.gradients[2](x[:2])
    assert at_zero[0] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(grad[1:], at_zero[1:], rtol=1e-12)


def test_where_the_gradient_applies():
    frame = with_responses("small")
    cases = [("binomial", None, True), ("poisson", None, True), ("binomial", "probit", True),
             ("poisson", "sqrt", True), ("negative_binomial", None, True),
             ("negative_binomial", "sqrt", True)]
    for family, link, applies in cases:
        fam = get_family(family, link)
        dev = laplace_deviance(frame, "count ~ x + (1 | g)" if family != "binomial"
                               else "z ~ x + (1 | g)", fam)
        assert has_laplace_gradient(dev.predictor, dev.kernels, dev.has_phi) is applies
        assert sorted(dev.gradients) == ([1, 2] if applies else [])


def test_lbfgsb_is_refused_where_there_is_no_gradient():
    frame = with_responses("small")
    ok = glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial",
                      control={"optimizer": "lbfgsb"})
    assert "start only" in ok.convergence.optimizer[0]
    assert "L-BFGS-B" in ok.convergence.optimizer[1]
    ok0 = glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial", nAGQ=0,
                       control={"optimizer": "lbfgsb"})
    assert "L-BFGS-B" in ok0.convergence.optimizer[0]
    with pytest.raises(ModelSpecError, match="needs the analytic gradient"):
        glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial", nAGQ=5,
                     control={"optimizer": "lbfgsb"})
    probit = glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial", link="probit",
                          control={"optimizer": "lbfgsb"})
    assert "L-BFGS-B" in probit.convergence.optimizer[1]
    with pytest.raises(ModelSpecError, match="needs the analytic gradient"):
        glmmcore.fit("z ~ x + (1 | g)", frame, family="binomial",
                     control={"optimizer": "lbfgsb", "backend": "sparse"})


def test_nagq0_takes_lbfgsb_from_two_covariance_parameters():
    sim = glmmcore.simulate("speed_dating", seed=4, n_participants=200, n_partners=40,
                            dates_per_participant=20)
    one = glmmcore.fit(sim.formula.replace(" + (1 | partner_id)", ""), sim.data,
                       family="binomial", nAGQ=0, control={"fast_path": False})
    two = {opt: glmmcore.fit(sim.formula, sim.data, family="binomial", nAGQ=0,
                             control={"optimizer": opt}) for opt in ("auto", "bobyqa")}
    assert "bobyqa" in one.convergence.optimizer[0]
    assert "L-BFGS-B" in two["auto"].convergence.optimizer[0]
    assert two["auto"].converged and two["bobyqa"].converged
    assert two["auto"].loglik >= two["bobyqa"].loglik - 1e-9 * abs(two["bobyqa"].loglik)
    np.testing.assert_allclose(two["auto"].theta, two["bobyqa"].theta, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(two["auto"].fixef, two["bobyqa"].fixef, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two["auto"].stderr, two["bobyqa"].stderr, rtol=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lbfgsb_and_bobyqa_reach_the_same_optimum(seed):
    """Simulated crossed binomial data: the two optimizers agree to their tolerance."""
    sim = glmmcore.simulate("speed_dating", seed=seed, n_participants=200, n_partners=40,
                            dates_per_participant=20)
    fits = [glmmcore.fit(sim.formula, sim.data, family="binomial", control={"optimizer": opt})
            for opt in ("bobyqa", "auto")]
    assert "L-BFGS-B" in fits[1].convergence.optimizer[1]
    assert all(f.converged for f in fits)
    assert fits[1].loglik >= fits[0].loglik - 1e-8 * abs(fits[0].loglik)
    np.testing.assert_allclose(fits[1].fixef, fits[0].fixef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fits[1].theta, fits[0].theta, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(fits[1].stderr, fits[0].stderr, rtol=1e-3)


SPEED = "decision ~ attractive_sc + sincere_sc + samerace"
STRESS = [
    ("speed_dating", {}, "binomial", SPEED + " + (1 + attractive_sc | iid)"),
    ("speed_dating", {}, "binomial", SPEED + " + (1 + attractive_sc | iid) + (1 | partner_id)"),
    ("speed_dating", {"sd_partner": 0.0}, "binomial", SPEED + " + (1 | iid) + (1 | partner_id)"),
    ("speed_dating", {}, "binomial", SPEED + " + (attractive_sc || iid) + (1 | partner_id)"),
    ("patents", {}, "poisson", "ncit ~ opposition + biopharm + (1 + opposition | year)"),
    ("patents", {"sd_year": 0.0}, "poisson", "ncit ~ opposition + biopharm + (1 | year)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("design, sizes, family, formula", STRESS,
                         ids=[f"{d}-{i}" for i, (d, *_) in enumerate(STRESS)])
def test_lbfgsb_is_as_good_as_bobyqa_on_simulated_glmms(design, sizes, family, formula, seed):
    """Vector terms, crossed terms, variances at 0: L-BFGS-B's optimum is BOBYQA's or better."""
    if design == "speed_dating":
        sizes = {"n_participants": 300, "n_partners": 60, "dates_per_participant": 12, **sizes}
    data = glmmcore.simulate(design, seed=seed, **sizes).data
    a, b = (glmmcore.fit(formula, data, family=family, control={"optimizer": opt, "warn": False})
            for opt in ("lbfgsb", "bobyqa"))
    assert a.loglik >= b.loglik - 1e-8 * abs(b.loglik)
    if b.converged:
        assert a.converged, a.convergence.reason
        np.testing.assert_allclose(a.fixef, b.fixef, rtol=2e-3, atol=2e-4)
