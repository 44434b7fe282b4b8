"""The Laplace gradient of every built-in family and link (and the Beta plugin's), the
kernels it is made of, the negative binomial with a fixed theta, and family_info()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from scipy import special
from test_laplace_gradient import laplace_deviance, with_responses

import glmmcore
from glmmcore.errors import FamilyError
from glmmcore.families.links import CLOGLOG, IDENTITY, INVERSE, LOG, LOGIT, PROBIT, SQRT
from glmmcore.families.special import digamma, vdigamma
from glmmcore.objectives.family_kernels import (
    call_update,
    call_var,
    family_kernels,
    gradient_route,
)
from glmmcore.objectives.laplace_gradient import has_laplace_gradient
from glmmcore.registry import get_family
from glmmcore.testing import check_gradient_kernels, check_link

DATA = Path(__file__).parent / "data"
SCALAR = " ~ x + (1 | g)"
SLOPES = " ~ x + (1 + x | g) + (1 | h)"

# family, link, response column (frame() adds the positive and shifted ones)
BUILT_IN = [("binomial", "logit", "z"), ("binomial", "probit", "z"),
            ("binomial", "cloglog", "z"), ("poisson", "log", "count"),
            ("poisson", "sqrt", "count"), ("poisson", "identity", "count5"),
            ("negative_binomial", "log", "count"), ("negative_binomial", "sqrt", "count"),
            ("gamma", "inverse", "pos"), ("gamma", "log", "pos"), ("gamma", "identity", "pos"),
            ("gaussian", "log", "shifted"), ("gaussian", "inverse", "shifted")]


def frame():
    data = with_responses("small")
    rng = np.random.default_rng(5)
    data["pos"] = np.exp(0.2 * data["y"] / data["y"].std()) * rng.gamma(5, 0.2, len(data))
    data["shifted"] = data["y"] + 5 - data["y"].min()
    data["count5"] = data["count"] + 5
    data["prop01"] = np.clip(special.expit(0.2 * data["y"] / data["y"].std())
                             + 0.1 * rng.normal(size=len(data)), 0.02, 0.98)
    return data


def start_point(dev, phi: float) -> np.ndarray:
    """theta 0.3, beta of the GLM, and log phi (if estimated)."""
    beta = dev.pirls0.start_glm(dev.family.start_mu(dev.response.y, dev.response.weights))
    parts = [np.full(dev.ntheta, 0.3), beta] + ([[np.log(phi)]] if dev.has_phi else [])
    return np.concatenate(parts)


def differences(dev, x, stage, h=1e-5):
    out = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h * max(1.0, abs(x[i]))
        out[i] = (dev.evaluate(x + e, stage, False)[0]
                  - dev.evaluate(x - e, stage, False)[0]) / (2 * e[i])
    return out


def assert_gradient(dev, x, stage):
    value, grad = dev.value_and_gradient(x, stage)
    # PIRLS from another start stops at the same mode up to round-off
    assert value == pytest.approx(dev.evaluate(x, stage, False)[0], rel=1e-12)
    fd = differences(dev, x, stage)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))


# the general blocks' route (SLOPES) in the default suite for one model of each kind, the
# others marked slow.  Not the negative binomial's sqrt link on SLOPES: at this point its
# observed information is negative for some observations, PIRLS falls back to Fisher
# scoring and stops on the deviance after SLOW_ITER iterations, its mode only within 1e-6
# of the deviance (too rough for differences at 1e-5)
SLOPES_DEFAULT = {("binomial", "probit"), ("negative_binomial", "log"), ("gamma", "log")}
CASES = [pytest.param(f, k, c, SCALAR, id=f"{f}-{k}-scalar") for f, k, c in BUILT_IN] + [
    pytest.param(f, k, c, SLOPES, id=f"{f}-{k}-slopes",
                 marks=() if (f, k) in SLOPES_DEFAULT else pytest.mark.slow)
    for f, k, c in BUILT_IN if (f, k) != ("negative_binomial", "sqrt")]


@pytest.mark.parametrize("family, link, column, formula", CASES)
def test_laplace_gradient_of_every_family_and_link(family, link, column, formula):
    """Over (theta, beta[, log phi]) against central differences of the deviance."""
    dev = laplace_deviance(frame(), column + formula, get_family(family, link))
    assert sorted(dev.gradients) == [1, 2]
    assert_gradient(dev, start_point(dev, 2.0), 2)


@pytest.mark.parametrize("family, link, column",
                         [("binomial", "probit", "z"), ("negative_binomial", "log", "count"),
                          ("gamma", "log", "pos"), ("poisson", "sqrt", "count")])
def test_nagq0_gradient_of_other_links_and_extra_parameters(family, link, column):
    """beta estimated inside PIRLS: over (theta[, log phi])."""
    dev = laplace_deviance(frame(), column + SLOPES, get_family(family, link), nagq=0)
    x = start_point(dev, 2.0)
    x = np.concatenate([x[:dev.ntheta], x[dev.ntheta + dev.predictor.p:]])
    assert_gradient(dev, x, 1)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_laplace_gradient_of_the_beta_plugin(link):
    """The example plugin gets the gradient from its kernels (precision included)."""
    if "beta" not in glmmcore.available_families():
        pytest.fail("the example plugin is not installed: python3 -m pip install "
                    "./docs/examples/glmmcore-beta", pytrace=False)
    dev = laplace_deviance(frame(), "prop01" + SLOPES, get_family("beta", link))
    assert dev.has_phi and sorted(dev.gradients) == [1, 2]
    assert_gradient(dev, start_point(dev, 15.0), 2)


def test_a_family_without_the_kernels_keeps_bobyqa():
    """A non-canonical link without the score's kernels or V' has no gradient route."""
    class Bare(type(get_family("binomial"))):
        name = "binomial_bare"
        dlogpdf_dmu = None
        d2logpdf_dmu2 = None
        dvariance_dmu = None

    fam = Bare("probit")
    assert gradient_route(fam) is None and gradient_route(Bare("logit")) == "canonical"
    dev = laplace_deviance(frame(), "z" + SCALAR, fam)
    assert not has_laplace_gradient(dev.predictor, dev.kernels, dev.has_phi)
    fit = glmmcore.fit("z" + SCALAR, frame(), family=fam)
    assert "bobyqa" in fit.convergence.optimizer[-1]


@pytest.mark.parametrize("link", [IDENTITY, LOG, INVERSE, LOGIT, PROBIT, CLOGLOG, SQRT],
                         ids=lambda link: link.name)
def test_every_built_in_link_has_its_derivatives(link):
    etas = {"log": [-3.0, 0.0, 2.5], "inverse": [0.3, 1.0, 4.0], "sqrt": [0.5, 2.0, 7.0],
            "identity": [0.5, 3.0], "cloglog": [-4.0, -0.5, 0.0, 1.2]}.get(
                link.name, [-4.0, -0.5, 0.0, 1.2, 3.0])
    check_link(link, etas)


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson", "gamma",
                                    "negative_binomial"])
def test_variance_and_phi_derivatives_of_every_built_in_family(family):
    fam = get_family(family)
    ys = {"binomial": [0.0, 0.4, 1.0], "gaussian": [-1.0, 0.5, 3.0],
          "gamma": [0.1, 1.0, 6.0]}.get(family, [0.0, 1.0, 7.0, 40.0])
    mus = [0.2, 0.5, 0.9] if family == "binomial" else [0.3, 1.0, 5.0]
    for phi in (0.4, 1.0, 12.0):
        check_gradient_kernels(fam, ys, mus, phi=phi, weight=2.0 if family != "binomial"
                               else 1.0)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_canonical_weight_slope_from_the_variance_kernel(family):
    """On the canonical route ``dW / d eta = W V'(mu)`` (the dvariance_vec kernel) equals
    a central difference of the update kernel's weights."""
    kernels = family_kernels(get_family(family))
    assert kernels.dvariance_vec
    rng = np.random.default_rng(2)
    n, h = 50, 1e-5
    eta = rng.normal(scale=1.5, size=n)
    y = rng.integers(0, 2, n) if family == "binomial" else rng.poisson(3.0, n)
    y, wt = y.astype(float), rng.uniform(0.5, 3.0, n)
    mu, w, r, dev, up, down = (np.empty(n) for _ in range(6))
    call_update(kernels.update, eta + h, y, wt, 1.0, mu, up, r, dev)
    call_update(kernels.update, eta - h, y, wt, 1.0, mu, down, r, dev)
    call_update(kernels.update, eta, y, wt, 1.0, mu, w, r, dev)
    slope = np.empty(n)
    call_var(kernels.dvariance_vec, mu, 1.0, slope)
    np.testing.assert_allclose(slope * w, (up - down) / (2 * h), rtol=1e-8, atol=1e-12)


def test_digamma_matches_scipy():
    xs = np.concatenate([np.geomspace(1e-8, 1e14, 3001), np.linspace(0.2, 12.0, 1001)])
    psi = np.array([digamma(x) for x in xs])
    np.testing.assert_allclose(psi, special.digamma(xs), rtol=2e-13, atol=1e-14)
    assert np.isnan(digamma(0.0)) and np.isnan(digamma(-1.0))


@njit(error_model="numpy")
def _vdigamma_all(x, out):
    for i in range(x.size):
        out[i] = vdigamma(x[i])


def test_vectorizable_digamma_matches_scipy():
    """vdigamma (fixed recurrence steps, branch-free) to digamma's accuracy, in a loop."""
    xs = np.concatenate([np.geomspace(1e-8, 1e14, 3001), np.linspace(0.2, 12.0, 1001),
                         np.geomspace(1e14, 1e300, 101), [0.0, -1.0, np.nan]])
    out = np.empty_like(xs)
    _vdigamma_all(xs, out)
    np.testing.assert_allclose(out[:-3], special.digamma(xs[:-3]), rtol=2e-13, atol=1e-14)
    assert np.all(np.isnan(out[-3:]))


@pytest.fixture(scope="module")
def nb_reference():
    with open(DATA / "lme4_nb_fixed_theta.json") as fh:
        return json.load(fh)


@pytest.mark.parametrize("key", ["nb1", "nb2_5", "nb1_sqrt"])
def test_negative_binomial_with_a_fixed_theta_matches_lme4(key, nb_reference, datasets):
    """glmer(..., family = MASS::negative.binomial(theta)) (tests/data/r/nb_fixed_theta.R)."""
    ref = nb_reference[key]
    fam = get_family("negative_binomial", link=ref["link"], theta=ref["theta_fixed"])
    assert fam.fixed_phi == ref["theta_fixed"] and not fam.estimates_phi
    fit = glmmcore.fit(ref["formula"], datasets["patents"], family=fam)
    assert fit.converged, fit.convergence.reason
    assert "L-BFGS-B" in fit.convergence.optimizer[-1]
    assert fit.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    assert fit.nobs == ref["nobs"]
    # our log-likelihood is 5e-6 (nb1) to 2e-5 (nb1_sqrt) above lme4's, whose optimizer
    # stopped that short: estimates within a hundredth of a standard error, standard errors
    # (lme4's from its finite-difference Hessian) within 2e-3
    for name, value in fit.fixef.items():
        assert abs(value - ref["fixef"][name]) <= 0.01 * ref["se"][name], name
        assert fit.stderr[name] == pytest.approx(ref["se"][name], rel=2e-3), name
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-3)
    assert fit.extra["phi"] == ref["theta_fixed"]
    assert fit.extra["family_params"] == {"theta": ref["theta_fixed"]}
    # lme4 counts the fixed theta as a parameter; glmmcore counts only the estimated ones
    assert fit.nparams == ref["df"] - 1
    assert fit.aic == pytest.approx(ref["AIC"] - 2.0, abs=2e-3)


def test_fixed_theta_arguments_are_checked():
    for bad in (0, -1.0, float("inf"), float("nan"), "1", True):
        with pytest.raises(FamilyError, match="theta must be a positive finite number"):
            get_family("negative_binomial", theta=bad)
    with pytest.raises(FamilyError, match="does not take the parameters theta"):
        get_family("poisson", theta=1)
    fixed = get_family("negative_binomial", theta=1)
    assert repr(fixed) == "NegativeBinomial(link='log', theta=1.0)"
    assert fixed != get_family("negative_binomial")
    assert get_family(fixed, "sqrt").fixed_phi == 1.0
    with pytest.raises(FamilyError, match="not an instance"):
        get_family(fixed, theta=2)


def test_family_info_names_where_each_family_comes_from():
    info = {f["name"]: f for f in glmmcore.family_info()}
    for name in ("gaussian", "binomial", "poisson", "gamma", "negative_binomial"):
        assert info[name]["package"] == "glmmcore"
        assert info[name]["version"] == glmmcore.__version__
        assert info[name]["entry_point"].startswith(f"{name} = glmmcore.families.")
        assert info[name]["gradient"] == info[name]["links"]
    assert info["negative_binomial"]["extra"] == "theta"
    assert info["poisson"]["extra"] is None
    assert info["binomial"]["links"] == ["logit", "probit", "cloglog"]
    if "beta" in info:
        assert info["beta"]["package"] == "glmmcore-beta"
        assert info["beta"]["entry_point"] == "beta = glmmcore_beta.beta:Beta"
