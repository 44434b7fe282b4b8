"""Families: kernels against calculus and probability, the registry, and the reference fits."""

from __future__ import annotations

import math
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numba import njit
from scipy import integrate

import glmmcore
import glmmcore.objectives.family_kernels as kernels_mod
import glmmcore.registry as registry
from glmmcore.errors import FamilyError, FamilyPluginWarning, ResponseError
from glmmcore.families.base import Family
from glmmcore.families.gaussian import Gaussian
from glmmcore.families.links import CLOGLOG, IDENTITY, INVERSE, LOG, LOGIT, PROBIT, SQRT
from glmmcore.families.vecmath import vexp, vlog
from glmmcore.objectives.family_kernels import call_yms, family_kernels, uses_cumulant
from glmmcore.testing import check_link

LINKS = [IDENTITY, LOG, INVERSE, LOGIT, PROBIT, CLOGLOG, SQRT]
ETAS = {"identity": [-1.3, 0.4, 2.2], "log": [-1.3, 0.4, 2.2], "inverse": [0.3, 1.1, 2.5],
        "logit": [-2.5, 0.1, 3.0], "probit": [-2.0, 0.2, 1.7], "cloglog": [-2.0, 0.1, 1.2],
        "sqrt": [0.5, 1.3, 3.0]}


@pytest.mark.parametrize("link", LINKS, ids=lambda link: link.name)
def test_link_derivatives_and_inverse(link):
    check_link(link, ETAS[link.name])


@njit
def _vexp_all(x, out):
    for i in range(x.size):
        out[i] = vexp(x[i])


def test_vectorizable_exp_is_within_two_ulp_with_exp_limits():
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-708.0, 709.78, 400_001), rng.normal(0, 3, 100_000),
                        [0.0, -0.0, 1e-300, -1e-300, 0.5 * math.log(2), math.log(2)]])
    out = np.empty_like(x)
    _vexp_all(x, out)
    ulps = np.abs(out - np.exp(x)) / np.spacing(np.exp(x))
    assert ulps.max() <= 2.0
    special = np.array([-800.0, -708.5, 709.9, 1000.0, np.inf, -np.inf, np.nan])
    out = np.empty_like(special)
    _vexp_all(special, out)
    np.testing.assert_array_equal(out[:-1], [0.0, 0.0, np.inf, np.inf, np.inf, 0.0])
    assert np.isnan(out[-1])


@njit(error_model="numpy")
def _vlog_all(x, out):
    for i in range(x.size):
        out[i] = vlog(x[i])


def test_vectorizable_log_is_within_one_ulp_with_log_limits():
    rng = np.random.default_rng(6)
    x = np.concatenate([np.exp(rng.uniform(-745.0, 709.7, 400_000)),
                        rng.uniform(0.5, 2.0, 100_000), 1.0 + rng.normal(0, 1e-8, 10_000),
                        [1.0, 2.0, 0.5, math.sqrt(2.0), math.sqrt(0.5), 5e-324, 1e-310,
                         2.2250738585072014e-308, 1.7976931348623157e308]])
    out = np.empty_like(x)
    _vlog_all(x, out)
    ref = np.log(x)
    assert np.all(np.abs(out - ref) <= np.spacing(np.abs(ref)))
    assert out[-9] == 0.0
    special = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan])
    out = np.empty_like(special)
    _vlog_all(special, out)
    np.testing.assert_array_equal(out[:2], [-np.inf, -np.inf])
    assert np.isnan(out[2]) and np.isnan(out[3]) and out[4] == np.inf and np.isnan(out[5])


def test_check_link_catches_a_wrong_derivative():
    class HalfSlope:   # logit's inverse with half its derivative
        name = "half"
        linkinv = staticmethod(LOGIT.linkinv)
        linkfun = staticmethod(LOGIT.linkfun)
        mu_eta2 = staticmethod(LOGIT.mu_eta2)

        @staticmethod
        def mu_eta(eta, mu):
            return 0.5 * LOGIT.mu_eta(eta, mu)

    with pytest.raises(AssertionError, match="half: mu_eta"):
        check_link(HalfSlope, [0.3])


def test_builtin_families_are_registered_through_entry_points():
    names = glmmcore.available_families()
    assert {"gaussian", "binomial", "poisson", "gamma", "negative_binomial"} <= set(names)
    entries = registry.FamilyRegistry().entries()
    assert entries["gamma"].source.startswith("glmmcore:")


def test_builtin_names_are_the_entry_points_and_need_no_scan(monkeypatch):
    """The registry's table of built-in families is pyproject's entry-point table, and a
    built-in name is found without scanning the installed distributions."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                              .read_text())
    assert registry.BUILTIN_FAMILIES == pyproject["project"]["entry-points"][registry.GROUP]

    def no_scan(group):
        raise AssertionError(f"entry points of {group} scanned")

    monkeypatch.setattr(registry, "entry_points", no_scan)
    reg = registry.FamilyRegistry()
    for name, value in registry.BUILTIN_FAMILIES.items():
        cls = type(reg.get(name.upper()))
        assert f"{cls.__module__}:{cls.__qualname__}" == value
    assert reg.get("poisson", link="sqrt").link.name == "sqrt"
    with pytest.raises(AssertionError, match="scanned"):
        reg.get("beta")


CASES = [  # family, link, phi, response values, weights
    ("gaussian", "identity", 0.7, [-1.0, 0.3, 2.0], 1.0),
    ("gaussian", "log", 0.7, [0.2, 1.3, 2.0], 2.0),
    ("binomial", "logit", 1.0, [0.0, 1.0], 1.0),
    ("binomial", "probit", 1.0, [0.0, 0.25, 0.75, 1.0], 4.0),
    ("binomial", "cloglog", 1.0, [0.0, 1.0], 1.0),
    ("poisson", "log", 1.0, [0.0, 1.0, 4.0], 1.0),
    ("poisson", "sqrt", 1.0, [0.0, 3.0], 1.0),
    ("gamma", "log", 0.3, [0.2, 1.0, 3.0], 1.0),
    ("gamma", "inverse", 0.3, [0.2, 1.0, 3.0], 1.5),
    ("negative_binomial", "log", 2.5, [0.0, 1.0, 7.0], 1.0),
]


@pytest.mark.parametrize("name, link, phi, ys, wt", CASES)
def test_deviance_residual_is_minus_twice_the_log_density_up_to_a_constant(name, link, phi,
                                                                            ys, wt):
    fam = glmmcore.get_family(name, link)
    for y in ys:
        diff = [-2 * type(fam).logpdf(y, mu, wt, phi) - type(fam).dev_resid(y, mu, wt, phi)
                for mu in (0.35, 0.6, 0.8)]
        assert np.ptp(diff) < 1e-10 * (1 + abs(diff[0]))
        if 0 < y < 1 or (name != "binomial" and y > 0):
            assert type(fam).dev_resid(y, y, wt, phi) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name, link, phi, ys, wt", CASES)
def test_quadrature_kernel_is_the_log_density_up_to_a_term_free_of_eta(name, link, phi, ys,
                                                                        wt):
    """``loglik_eta_vec`` (from the cumulant or from dev_resid) differs from the complete
    log-density by the same amount at every linear predictor."""
    fam = glmmcore.get_family(name, link)
    kernels = family_kernels(fam)
    etas = kernels_mod.linkfun(fam, np.array([0.35, 0.6, 0.8]))
    for y in ys:
        yv, wv = np.full(3, y), np.full(3, wt)
        mu = kernels_mod.linkinv(fam, etas)
        out = np.empty(3)
        assert call_yms(kernels.loglik_eta_vec, yv, etas, wv, phi, out) == 0.0
        diff = kernels_mod.logpdf(fam, yv, mu, wv, phi) - out
        assert np.ptp(diff) < 1e-12 * (1 + abs(diff[0]))
    assert uses_cumulant(fam) == ((name, link) == ("poisson", "log"))


@pytest.mark.parametrize("name, phi", [("poisson", 1.0), ("negative_binomial", 1.7)])
def test_count_densities_sum_to_one(name, phi):
    fam = glmmcore.get_family(name)
    ys = np.arange(0, 400.0)
    for mu in (0.3, 4.0, 25.0):
        total = np.exp(fam.logpdf_array(ys, np.full_like(ys, mu), np.ones_like(ys), phi)).sum()
        assert total == pytest.approx(1.0, abs=1e-10)


def test_binomial_density_sums_to_one_over_successes():
    fam = glmmcore.get_family("binomial")
    n = 7.0
    k = np.arange(0, 8.0)
    for mu in (0.1, 0.5, 0.93):
        probs = np.exp(fam.logpdf_array(k / n, np.full(8, mu), np.full(8, n)))
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name, link, phi", [("gaussian", "identity", 0.6),
                                             ("gamma", "log", 0.4)])
def test_continuous_densities_integrate_to_one(name, link, phi):
    fam = glmmcore.get_family(name, link)
    lo = -np.inf if name == "gaussian" else 0.0
    for mu in (0.5, 2.0):
        total, _ = integrate.quad(lambda y, m=mu: math.exp(type(fam).logpdf(y, m, 1.0, phi)),
                                  lo, np.inf)
        assert total == pytest.approx(1.0, abs=1e-8)


# the families with score kernels (observed information, Newton steps), at a response value
# and prior weight in their support; phi is the dispersion, theta or unused
OBSERVED = [("gamma", "log", 1.7, 1.3, 0.25, (-0.5, 0.4, 1.1)),
            ("binomial", "probit", 0.4, 5.0, 1.0, (-0.8, 0.2, 1.1)),
            ("binomial", "cloglog", 1.0, 1.0, 1.0, (-1.5, 0.1, 0.6)),
            ("poisson", "sqrt", 3.0, 1.0, 1.0, (0.7, 1.5, 2.4)),
            ("negative_binomial", "log", 4.0, 1.0, 2.5, (-0.3, 0.8, 2.0)),
            ("negative_binomial", "sqrt", 0.0, 2.0, 0.7, (0.5, 1.2, 2.0))]


@pytest.mark.parametrize("name, link, y, wt, phi, etas", OBSERVED,
                         ids=[f"{o[0]}-{o[1]}" for o in OBSERVED])
def test_observed_information_is_the_second_derivative(name, link, y, wt, phi, etas):
    fam = glmmcore.get_family(name, link)
    h = 1e-4
    for eta in etas:
        def loglik(e):
            return type(fam).logpdf(y, fam.link.linkinv(e), wt, phi)
        numeric = -(loglik(eta + h) - 2 * loglik(eta) + loglik(eta - h)) / h ** 2
        mu = fam.link.linkinv(eta)
        me = fam.link.mu_eta(eta, mu)
        analytic = -(type(fam).d2logpdf_dmu2(y, mu, wt, phi) * me * me
                     + type(fam).dlogpdf_dmu(y, mu, wt, phi) * fam.link.mu_eta2(eta, mu))
        assert analytic == pytest.approx(numeric, rel=1e-6)


def test_lookup_by_name_class_and_instance():
    assert glmmcore.get_family("binomial", "probit").link.name == "probit"
    assert isinstance(glmmcore.get_family(Gaussian), Gaussian)
    fam = Gaussian("log")
    assert glmmcore.get_family(fam) is fam
    assert glmmcore.get_family(fam, "identity").link.name == "identity"
    assert glmmcore.get_family("Poisson").name == "poisson"


def test_unknown_family_and_link_errors_name_them():
    with pytest.raises(FamilyError, match=r"unknown family 'tweedie'; available: .*binomial"):
        glmmcore.get_family("tweedie")
    with pytest.raises(FamilyError, match="family 'poisson' does not support link 'logit'"):
        glmmcore.get_family("poisson", "logit")
    with pytest.raises(FamilyError, match="not int"):
        glmmcore.get_family(3)


class _NoKernels(Family):
    name = "broken"
    links = {"log": LOG}
    default_link = "log"


def _entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.GROUP)


def test_plugin_problems_are_warnings_and_everything_else_keeps_working(monkeypatch):
    fake = [
        _entry("gaussian", "glmmcore.families.gaussian:Gaussian"),
        _entry("binomial", "glmmcore.families.binomial:Binomial"),
        _entry("missing", "no_such_module_xyz:Family"),
        _entry("broken", f"{__name__}:_NoKernels"),
        _entry("binomial", "glmmcore.families.poisson:Poisson"),   # a second 'binomial'
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: fake)
    reg = registry.FamilyRegistry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = reg.names()
    messages = [str(w.message) for w in caught if issubclass(w.category, FamilyPluginWarning)]
    assert any("'missing'" in m and "failed to import" in m for m in messages)
    assert any("'broken'" in m and "no numba.njit kernel 'variance'" in m for m in messages)
    assert any("two families are named 'binomial'" in m for m in messages)
    assert names == ["binomial", "gaussian"]
    # the winner of a duplicate is deterministic: the entry point sorting first
    assert reg.get("binomial").name == "binomial"
    assert reg.get("gaussian").name == "gaussian"


def test_response_outside_the_support_names_family_and_column(datasets):
    gpa = datasets["gpa"].assign(y=datasets["gpa"]["gpa"] - 3.0)
    with pytest.raises(ResponseError, match=r"response 'y'.*support of the gamma family"):
        glmmcore.fit("y ~ occasion + (1 | student)", gpa, family="gamma", link="log")
    patents = datasets["patents"].assign(n=-datasets["patents"]["ncit"])
    with pytest.raises(ResponseError, match="'n' must be non-negative whole numbers"):
        glmmcore.fit("n ~ opposition + (1 | yearf)", patents, family="negative_binomial")


def test_negative_binomial_matches_glmer_nb(reference, datasets):
    ref = reference["patents_nb"]
    fit = glmmcore.fit("ncit ~ opposition + biopharm + (1 | yearf)", datasets["patents"],
                       family="negative_binomial")
    assert fit.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    assert fit.extra["phi"] == pytest.approx(ref["nb_theta"], rel=1e-3)
    np.testing.assert_allclose(fit.fixef, list(ref["fixef"].values()), rtol=1e-3)
    assert fit.theta[0] == pytest.approx(ref["theta"][0], rel=1e-3)
    assert "theta: 0.7403" in str(fit.summary())


def test_gamma_matches_glmmtmb(reference, datasets):
    ref = reference["gpa_gamma"]
    fit = glmmcore.fit("gpa ~ occasion + (1 | student)", datasets["gpa"], family="gamma",
                       link="log")
    assert fit.loglik >= ref["glmmTMB_logLik"] - 1e-6 * abs(ref["glmmTMB_logLik"])
    np.testing.assert_allclose(fit.fixef, list(ref["glmmTMB_fixef"].values()), rtol=1e-4)
    shape = fit.extra["family_params"]["shape"]
    assert shape == pytest.approx(1 / ref["glmmTMB_sigma"] ** 2, rel=1e-3)
    assert fit.sigma == pytest.approx(ref["glmmTMB_sigma"], rel=1e-4)
    sd = fit.varcorr.set_index("grp").loc["student", "sdcor"]
    assert sd == pytest.approx(ref["glmmTMB_sd_student"], rel=1e-3)


def test_gaussian_identity_through_the_glmm_machinery_is_the_ml_lmm(datasets):
    from glmmcore.api import FitControl
    from glmmcore.fitting.glmm_fit import fit_glmm
    lmm = glmmcore.fit("gpa ~ occasion + (1 + occasion | student)", datasets["gpa"],
                       REML=False)
    # the Laplace approximation is exact for a Gaussian response with identity link
    glmm = fit_glmm(lmm.model, lmm.response, FitControl())
    assert glmm.loglik == pytest.approx(lmm.loglik, rel=1e-8)
    np.testing.assert_allclose(glmm.fixef, lmm.fixef, rtol=1e-5)
    assert glmm.sigma == pytest.approx(lmm.sigma, rel=1e-4)


def test_gaussian_log_link_recovers_a_simulated_truth():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(60), 10)
    x = rng.uniform(-1, 1, size=g.size)
    mu = np.exp(1.0 + 0.5 * x + rng.normal(scale=0.3, size=60)[g])
    data = pd.DataFrame({"y": mu + rng.normal(scale=0.4, size=g.size), "x": x, "g": g})
    fit = glmmcore.fit("y ~ x + (1 | g)", data, family="gaussian", link="log")
    assert abs(fit.fixef["x"] - 0.5) < 3 * fit.stderr["x"]
    assert fit.sigma == pytest.approx(0.4, rel=0.15)
    assert fit.varcorr.set_index("grp").loc["g", "sdcor"] == pytest.approx(0.3, rel=0.35)
