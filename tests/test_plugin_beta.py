"""The example family plugin in docs/examples/glmmcore-beta, through its entry points.

The plugin is installed with pip (``python3 -m pip install ./docs/examples/glmmcore-beta``)
and used by name, as a third party would use it: the families are never imported from
``glmmcore_beta`` here; only its special functions are, to test them against scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import glmmcore
import glmmcore.registry as registry
from glmmcore.errors import FamilyError, ResponseError
from glmmcore.testing import check_link

INSTALL = "python3 -m pip install ./docs/examples/glmmcore-beta"
PLUGIN_FAMILIES = {"beta", "poisson_plugin"}


@pytest.fixture(autouse=True, scope="module")
def _plugin_installed() -> None:
    missing = PLUGIN_FAMILIES - set(glmmcore.available_families())
    if missing:
        pytest.fail(f"the example plugin is not installed (no {', '.join(sorted(missing))} "
                    f"family); install it from the repository root with: {INSTALL}",
                    pytrace=False)


def beta_class() -> type:
    """The Beta family class, as the registry loaded it from the entry point."""
    return type(glmmcore.get_family("beta"))


def test_plugin_families_are_discovered_through_their_entry_points():
    entries = registry.FamilyRegistry().entries()
    for name in PLUGIN_FAMILIES:
        assert entries[name].source.startswith("glmmcore-beta:glmmcore_beta.")
    fam = glmmcore.get_family("beta")
    assert fam.link.name == "logit"
    assert set(type(fam).links) == {"logit", "probit", "cloglog"}
    assert type(fam).extra.name == "precision"
    assert glmmcore.get_family("beta", "probit").link.name == "probit"
    with pytest.raises(FamilyError, match="family 'beta' does not support link 'log'"):
        glmmcore.get_family("beta", "log")


def test_digamma_and_trigamma_match_scipy():
    from glmmcore_beta.special import digamma, trigamma
    root = 1.4616321449683622
    xs = np.concatenate([np.geomspace(1e-10, 1e8, 4001), np.linspace(0.5, 12.0, 2301),
                         root + np.linspace(-0.05, 0.05, 1001)])
    psi = np.array([digamma(x) for x in xs])
    psi1 = np.array([trigamma(x) for x in xs])
    np.testing.assert_allclose(psi, special.digamma(xs), rtol=1e-12, atol=0)
    np.testing.assert_allclose(psi1, special.polygamma(1, xs), rtol=1e-12, atol=0)
    assert math.isnan(digamma(0.0)) and math.isnan(trigamma(-1.0))


ETAS = {"logit": [-2.5, 0.1, 3.0], "probit": [-2.0, 0.2, 1.7], "cloglog": [-2.0, 0.1, 1.2]}


@pytest.mark.parametrize("link", sorted(ETAS))
def test_link_derivatives(link):
    check_link(glmmcore.get_family("beta", link).link, ETAS[link])


@pytest.mark.parametrize("phi, wt", [(20.0, 1.0), (2.5, 1.7), (0.8, 1.0)])
def test_log_density_is_scipys_and_the_deviance_residual_differs_by_a_constant(phi, wt):
    cls = beta_class()
    for y in (0.03, 0.4, 0.97):
        for mu in (0.1, 0.5, 0.85):
            expected = wt * stats.beta.logpdf(y, mu * phi, (1 - mu) * phi)
            assert cls.logpdf(y, mu, wt, phi) == pytest.approx(expected, rel=1e-12)
        diff = [-2 * cls.logpdf(y, mu, wt, phi) - cls.dev_resid(y, mu, wt, phi)
                for mu in (0.2, 0.35, 0.6, 0.8)]
        assert np.ptp(diff) < 1e-10 * (1 + abs(diff[0]))
        assert cls.dev_resid(y, y, wt, phi) == pytest.approx(0.0, abs=1e-12)


def test_score_and_curvature_are_the_derivatives_of_the_log_density():
    cls, h = beta_class(), 1e-5
    for y, wt, phi in [(0.2, 1.0, 20.0), (0.7, 2.0, 3.0), (0.95, 1.0, 0.9)]:
        for mu in (0.15, 0.5, 0.8):
            d1 = (cls.logpdf(y, mu + h, wt, phi) - cls.logpdf(y, mu - h, wt, phi)) / (2 * h)
            d2 = (cls.dlogpdf_dmu(y, mu + h, wt, phi)
                  - cls.dlogpdf_dmu(y, mu - h, wt, phi)) / (2 * h)
            assert cls.dlogpdf_dmu(y, mu, wt, phi) == pytest.approx(d1, rel=1e-7, abs=1e-9)
            assert cls.d2logpdf_dmu2(y, mu, wt, phi) == pytest.approx(d2, rel=1e-7)


@pytest.mark.parametrize("mu, phi", [(0.3, 20.0), (0.5, 4.0), (0.85, 8.0), (0.1, 5.0),
                                     (0.05, 60.0)])
def test_density_integrates_to_one_with_mean_mu_and_variance_the_inverse_information(mu, phi):
    cls = beta_class()

    def moment(f):
        return integrate.quad(lambda y: f(y) * math.exp(cls.logpdf(y, mu, 1.0, phi)), 0, 1,
                              points=[mu], limit=200, epsabs=1e-12, epsrel=1e-10)[0]

    assert moment(lambda y: 1.0) == pytest.approx(1.0, abs=1e-9)
    assert moment(lambda y: y) == pytest.approx(mu, rel=1e-8)
    assert moment(lambda y: (y - mu) ** 2) == pytest.approx(mu * (1 - mu) / (1 + phi),
                                                            rel=1e-7)
    # the variance kernel is 1 / E[score^2], the inverse Fisher information of mu
    fisher = moment(lambda y: cls.dlogpdf_dmu(y, mu, 1.0, phi) ** 2)
    assert 1.0 / cls.variance(mu, phi) == pytest.approx(fisher, rel=1e-7)
    assert moment(lambda y: cls.dlogpdf_dmu(y, mu, 1.0, phi)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("link", sorted(ETAS))
def test_observed_information_is_the_second_derivative_in_eta(link):
    fam = glmmcore.get_family("beta", link)
    cls, lk, h = type(fam), fam.link, 1e-4
    for y, wt, phi in [(0.3, 1.0, 15.0), (0.8, 1.5, 2.0)]:
        for eta in ETAS[link]:
            def loglik(e, y=y, wt=wt, phi=phi):
                return cls.logpdf(y, lk.linkinv(e), wt, phi)
            numeric = -(loglik(eta + h) - 2 * loglik(eta) + loglik(eta - h)) / h ** 2
            mu = lk.linkinv(eta)
            me = lk.mu_eta(eta, mu)
            analytic = -(cls.d2logpdf_dmu2(y, mu, wt, phi) * me * me
                         + cls.dlogpdf_dmu(y, mu, wt, phi) * lk.mu_eta2(eta, mu))
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("link", sorted(ETAS))
def test_fused_kernels_give_the_separate_kernels_bits(link):
    """The generated update_newton kernel (PIRLS's update with the observed information,
    the score once per observation) gives update's mu, w, r and deviance and
    observed_weights' information to the bit, newton_terms the same without the
    deviance; laplace_weights' weights are the observed information, its score the
    score kernel's times mu_eta, and phi_weights the differences of laplace_weights'
    score and weights at two precisions, to the bit; a zero weight gives zeros."""
    from glmmcore.objectives import family_kernels as fk
    fam = glmmcore.get_family("beta", link)
    cls, lk = type(fam), fam.link
    kern = fk.family_kernels(fam)
    assert kern.update_newton and kern.newton_terms and kern.phi_weights
    rng = np.random.default_rng(7)
    n, phi = 64, 12.0
    eta = rng.normal(-0.3, 0.8, n)
    mu0 = fam.linkinv_array(eta)
    y = np.clip(rng.beta(mu0 * phi, (1 - mu0) * phi), 1e-6, 1 - 1e-6)
    wt = rng.uniform(0.5, 2.0, n)
    wt[5] = 0.0
    sep = np.full((6, n), -1.0)
    total = fk.call_update(kern.update, eta, y, wt, phi, *sep[:4])
    fk.call_observed(kern.observed_weights, eta, y, wt, phi, sep[0], sep[4])
    fused, terms = np.full((6, n), -1.0), np.full((6, n), -1.0)
    assert fk.call_update_newton(kern.update_newton, eta, y, wt, phi, *fused) == total
    assert fk.call_update_newton(kern.newton_terms, eta, y, wt, phi, *terms) == 0.0
    for a in range(4):
        np.testing.assert_array_equal(fused[a], sep[a])
    np.testing.assert_array_equal(fused[4], sep[4])
    np.testing.assert_array_equal(terms[[0, 1, 2, 4, 5]], fused[[0, 1, 2, 4, 5]])
    assert np.all(terms[3] == -1.0)     # no deviance written
    lw = np.empty((4, n))
    fk.call_laplace_weights(kern.laplace_weights, eta, y, wt, phi, *lw)
    np.testing.assert_array_equal(lw[1], sep[4])
    np.testing.assert_array_equal(lw[2], sep[4])
    mu = fused[0]       # the kernels' inverse link (fam.linkinv_array's may differ in bits)
    score = np.array([0.0 if wt[i] == 0 else cls.dlogpdf_dmu(y[i], mu[i], wt[i], phi)
                      * lk.mu_eta(eta[i], mu[i]) for i in range(n)])
    # the score cancels near its zero (logit(y) against psi(a) - psi(b)): 1e-13 of its scale
    np.testing.assert_allclose(lw[0], score, rtol=1e-13, atol=1e-13 * np.max(np.abs(score)))
    up, down = phi * 1.01, phi / 1.01
    at_up, at_down, diff = np.empty((4, n)), np.empty((4, n)), np.empty((2, n))
    fk.call_laplace_weights(kern.laplace_weights, eta, y, wt, up, *at_up)
    fk.call_laplace_weights(kern.laplace_weights, eta, y, wt, down, *at_down)
    fk.call_phi_weights(kern.phi_weights, eta, y, wt, up, down, *diff)
    np.testing.assert_array_equal(diff, at_up[:2] - at_down[:2])
    assert np.all(fused[1:6, 5] == 0.0) and np.all(lw[:, 5] == 0.0) and np.all(diff[:, 5] == 0)


TRUTH = {"(Intercept)": -0.4, "x": 0.6, "z": -0.5}
SD, PRECISION, GROUPS, PER_GROUP = 0.5, 20.0, 80, 10


def simulate_beta(seed: int = 20240) -> pd.DataFrame:
    """80 groups of 10, random intercept SD 0.5, precision 20, through the registry."""
    fam = glmmcore.get_family("beta")
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=g.size)
    z = (np.arange(GROUPS) % 2)[g].astype(float)       # a group-level covariate
    eta = (TRUTH["(Intercept)"] + TRUTH["x"] * x + TRUTH["z"] * z
           + rng.normal(scale=SD, size=GROUPS)[g])
    y = fam.simulate(fam.linkinv_array(eta), np.ones(g.size), PRECISION, rng)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str)})


@pytest.fixture(scope="module")
def beta_fit():
    data = simulate_beta()
    return data, glmmcore.fit("y ~ x + z + (1 | g)", data, family="beta")


def _sampling_sd(data: pd.DataFrame) -> tuple[float, float]:
    """Large-sample SDs of the precision and of the random-effect SD at the truth.

    The precision's from its Fisher information
    ``sum(mu^2 psi1(a) + (1 - mu)^2 psi1(b) - psi1(phi))``; the SD's from a group
    mean's variance ``SD^2 + 1 / (m * info_eta)`` over ``GROUPS`` groups, where
    ``info_eta = phi^2 (psi1(a) + psi1(b)) mu_eta^2`` is one observation's information.
    """
    eta = TRUTH["(Intercept)"] + TRUTH["x"] * data["x"] + TRUTH["z"] * data["z"]
    mu = special.expit(eta.to_numpy())
    a, b, psi1 = mu * PRECISION, (1 - mu) * PRECISION, lambda v: special.polygamma(1, v)
    info_phi = np.sum(mu ** 2 * psi1(a) + (1 - mu) ** 2 * psi1(b) - psi1(PRECISION))
    info_eta = np.mean(PRECISION ** 2 * (psi1(a) + psi1(b)) * (mu * (1 - mu)) ** 2)
    group_var = SD ** 2 + 1.0 / (PER_GROUP * info_eta)
    return 1.0 / math.sqrt(info_phi), group_var * math.sqrt(2.0 / GROUPS) / (2 * SD)


def test_fit_recovers_the_simulated_truth(beta_fit):
    data, fit = beta_fit
    flags = fit.convergence.extra["flags"]
    assert not flags, (f"PIRLS did not find the conditional modes: {flags}; glmmcore's "
                       "update kernel must use the score as working residual for "
                       "families with laplace='observed' (see docs/family-plugins.md)")
    assert fit.converged
    for name, value in TRUTH.items():
        assert abs(fit.fixef[name] - value) < 3 * fit.stderr[name], name
    # a GLMM's SEs: the intercept's is dominated by SD / sqrt(GROUPS / 2) = 0.079
    assert 0.06 < fit.stderr["(Intercept)"] < 0.11
    se_phi, se_sd = _sampling_sd(data)        # about 0.97 and 0.042
    assert abs(fit.extra["family_params"]["precision"] - PRECISION) < 3 * se_phi
    sd = fit.varcorr.set_index("grp").loc["g", "sdcor"]
    assert abs(sd - SD) < 3 * se_sd
    assert "precision:" in str(fit.summary())


# glmmTMB 1.1.5, glmmTMB(y ~ x + z + (1 | g), family = beta_family()) on simulate_beta()
GLMMTMB = {"sum_y": 261.6835949461499, "logLik": 719.8556671533,
           "fixef": [-0.56082159, 0.60290109, -0.46658399],
           "se": [0.08427079, 0.01858027, 0.11949561], "precision": 22.03903613,
           "sd": 0.51289226}


def test_fit_matches_glmmtmb(beta_fit):
    data, fit = beta_fit
    if abs(data["y"].sum() - GLMMTMB["sum_y"]) > 1e-9:
        pytest.skip("numpy's beta generator gives other draws than when the glmmTMB "
                    "reference was computed")
    assert fit.loglik >= GLMMTMB["logLik"] - 1e-7 * abs(GLMMTMB["logLik"])
    np.testing.assert_allclose(fit.fixef, GLMMTMB["fixef"], rtol=1e-4)
    np.testing.assert_allclose(fit.stderr, GLMMTMB["se"], rtol=2e-3)
    assert fit.extra["phi"] == pytest.approx(GLMMTMB["precision"], rel=1e-4)
    assert fit.varcorr.set_index("grp").loc["g", "sdcor"] == pytest.approx(GLMMTMB["sd"],
                                                                           rel=1e-3)


def test_quadrature_loglik_is_the_integral_computed_by_scipy(beta_fit):
    """nAGQ > 1 integrates with dev_resid at the nodes plus c(y) = logpdf + dev_resid / 2."""
    data = beta_fit[0].iloc[:200]                       # 20 groups
    fit = glmmcore.fit("y ~ x + z + (1 | g)", data, family="beta", nAGQ=15)
    beta, phi = fit.fixef, fit.extra["phi"]
    sd = fit.varcorr.set_index("grp").loc["g", "sdcor"]
    total = 0.0
    for _, grp in data.groupby("g"):
        eta = (beta["(Intercept)"] + beta["x"] * grp["x"] + beta["z"] * grp["z"]).to_numpy()
        y = grp["y"].to_numpy()

        def integrand(b, eta=eta, y=y):
            mu = special.expit(eta + b)
            return math.exp(np.sum(stats.beta.logpdf(y, mu * phi, (1 - mu) * phi))
                            + stats.norm.logpdf(b, scale=sd))

        total += math.log(integrate.quad(integrand, -8 * sd, 8 * sd, epsabs=0,
                                         epsrel=1e-11, limit=200)[0])
    assert fit.loglik == pytest.approx(total, abs=1e-6)


@pytest.fixture(scope="module")
def patents() -> glmmcore.Simulation:
    return glmmcore.simulate("patents", n_patents=6000, seed=3)


def test_poisson_plugin_fits_as_the_builtin_poisson(patents):
    builtin = glmmcore.fit(patents.formula, patents.data, family="poisson")
    plugin = glmmcore.fit(patents.formula, patents.data, family="poisson_plugin")
    assert type(plugin.family).__module__ == "glmmcore_beta.poisson_copy"
    assert plugin.loglik == pytest.approx(builtin.loglik, rel=1e-10)
    np.testing.assert_allclose(plugin.fixef, builtin.fixef, rtol=1e-8)
    np.testing.assert_allclose(plugin.theta, builtin.theta, rtol=1e-8)


def test_poisson_plugin_runs_in_the_same_compiled_machinery(patents):
    """Speed is measured by ``python -m bench.plugin_speed`` (CI prints it), not asserted.

    Here: the plugin's kernels are compiled into the same kind of generated module as
    the built-in's, and the fits take the same path (same iterations and evaluations).
    """
    from glmmcore.objectives.family_kernels import family_kernels
    builtin = glmmcore.fit(patents.formula, patents.data, family="poisson")
    plugin = glmmcore.fit(patents.formula, patents.data, family="poisson_plugin")
    module = family_kernels(plugin.family).module
    assert module.__name__.startswith("glmmcore_kernels_poisson_plugin_")
    assert getattr(module, "__file__", None)        # cached on disk, like the built-in's
    assert family_kernels(plugin.family).by_cumulant    # the built-in's vectorized route
    assert family_kernels(builtin.family).by_cumulant
    assert family_kernels(plugin.family).dvariance_vec     # the exact weight slope
    assert plugin.extra["nevals"] == builtin.extra["nevals"]
    assert (plugin.convergence.extra["pirls_iterations"]
            == builtin.convergence.extra["pirls_iterations"])


@pytest.mark.parametrize("bad, row", [(0.0, 103), (1.0, 105), (-0.2, 101), (1.5, 102)])
def test_response_outside_zero_one_names_family_link_column_and_row(bad, row):
    data = simulate_beta().iloc[:40].set_axis(np.arange(100, 140))
    data.loc[row, "y"] = bad
    with pytest.raises(ResponseError) as info:
        glmmcore.fit("y ~ x + (1 | g)", data, family="beta", link="probit")
    message = str(info.value)
    for part in ("response 'y'", "(0, 1)", "beta family", "link 'probit'", f"row {row}"):
        assert part in message, message


def test_pearson_residuals_use_the_response_variance(beta_fit):
    data, fit = beta_fit
    phi = fit.extra["phi"]
    mu = fit.fitted().to_numpy()
    expected = (data["y"].to_numpy() - mu) / np.sqrt(mu * (1 - mu) / (1 + phi))
    np.testing.assert_allclose(fit.residuals("pearson").to_numpy(), expected, rtol=1e-12)
    assert fit.sigma == 1.0          # a precision is not a residual scale
    assert "Residual" not in set(fit.varcorr["grp"])
