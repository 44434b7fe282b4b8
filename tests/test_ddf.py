"""Denominator degrees of freedom: identities and edge cases (the R references are in
test_ddf_reference.py).

Kenward-Roger is checked against pbkrtest's formulas written out with the ``n x n`` marginal
covariance (what our Woodbury-reduced version avoids), on a small design with a correlated
slope, a crossed factor and prior weights (the residual part of the covariance is
``sigma^2 W^-1``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import ModelSpecError
from glmmcore.inference.kenward_roger import (
    kenward_roger,
    kr_test,
    random_effects_matrix,
    relative_factor,
    variance_parameters,
)


@pytest.fixture(scope="module")
def weighted_data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 10)
    h = rng.integers(0, 5, g.size)
    x = rng.normal(size=g.size)
    f = rng.choice(["a", "b", "c"], g.size)
    w = rng.uniform(0.5, 2.0, g.size)
    y = (1.0 + 0.5 * x + (f == "b") * 0.3 + rng.normal(0, 0.7, 12)[g]
         + rng.normal(0, 0.3, 12)[g] * x + rng.normal(0, 0.5, 5)[h]
         + rng.normal(size=g.size) / np.sqrt(w))
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g.astype(str), "h": h.astype(str),
                         "w": w})


@pytest.fixture(scope="module")
def weighted_fit(weighted_data):
    return glmmcore.fit("y ~ x * f + (1 + x | g) + (1 | h)", weighted_data, weights="w")


def dense_kenward_roger(fit):
    """pbkrtest's vcovAdj with n x n matrices; the residual G is W^-1."""
    pr = fit.predictor
    X = pr.X
    Z = random_effects_matrix(pr).toarray()
    Lam = relative_factor(pr, fit.theta).toarray()
    s2 = fit.sigma ** 2
    Winv = np.diag(1.0 / fit.response.weights)
    Sigma = s2 * (Winv + Z @ Lam @ Lam.T @ Z.T)
    Si = np.linalg.inv(Sigma)
    G = []
    for a, b in variance_parameters(pr):
        D = np.zeros((Z.shape[1], Z.shape[1]))
        D[a, b] = 1.0
        G.append(Z @ D @ Z.T)
    G.append(Winv)
    Phi = np.linalg.inv(X.T @ Si @ X)
    P = [-X.T @ Si @ Gi @ Si @ X for Gi in G]
    m = len(G)
    Q = [[X.T @ Si @ G[i] @ Si @ G[j] @ Si @ X for j in range(m)] for i in range(m)]
    info = np.array([[np.trace(Si @ G[i] @ Si @ G[j]) - 2 * np.trace(Phi @ Q[i][j])
                      + np.trace(P[i] @ Phi @ P[j] @ Phi) for j in range(m)] for i in range(m)])
    W = 2 * np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(m) for j in range(m))
    return Phi, Phi + 2 * Phi @ U @ Phi, W


def test_kenward_roger_equals_the_dense_formulas(weighted_fit):
    kr = kenward_roger(weighted_fit)
    Phi, adjusted, W = dense_kenward_roger(weighted_fit)
    assert len(variance_parameters(weighted_fit.predictor)) == 4   # 2 variances, 1 cov, 1
    np.testing.assert_allclose(kr.vcov_beta, Phi, rtol=1e-9)
    np.testing.assert_allclose(kr.W, W, rtol=1e-8, atol=1e-12 * np.abs(W).max())
    np.testing.assert_allclose(kr.vcov_adjusted, adjusted, rtol=1e-9,
                               atol=1e-12 * np.abs(adjusted).max())
    # the fit's own covariance of beta is the unadjusted one
    np.testing.assert_allclose(kr.vcov_beta, weighted_fit.vcov_beta, rtol=1e-8)


def test_kr_f_test_of_one_row_is_the_t_test(weighted_fit):
    table = weighted_fit.coef_table(ddf="kenward-roger")
    kr = kenward_roger(weighted_fit)
    for i, name in enumerate(table.index):
        L = np.zeros((1, len(table)))
        L[0, i] = 1.0
        res = kr_test(kr, L, weighted_fit.beta)
        assert res["ddf"] == pytest.approx(table.loc[name, "df"], rel=1e-12)
        assert res["F_unscaled"] == pytest.approx(table.loc[name, "t value"] ** 2, rel=1e-10)


def test_type3_tests_of_main_effects_are_the_coefficients_tests(weighted_data):
    """Without interactions a one-column term's hypothesis is its coefficient: F = t^2 with
    the same df; a factor's F is the Wald test of its dummies."""
    fit = glmmcore.fit("y ~ x + f + (1 + x | g) + (1 | h)", weighted_data, weights="w")
    for ddf in ("satterthwaite", "kenward-roger"):
        table, anova = fit.coef_table(ddf=ddf), fit.anova(ddf=ddf)
        assert list(anova.index) == ["x", "f"] and list(anova["NumDF"]) == [1, 2]
        assert anova.loc["x", "DenDF"] == pytest.approx(table.loc["x", "df"], rel=1e-10)
        if ddf == "satterthwaite":
            assert anova.loc["x", "F value"] == pytest.approx(table.loc["x", "t value"] ** 2,
                                                              rel=1e-10)
        dummies = [n for n in table.index if n.startswith("f[")]
        idx = [list(table.index).index(n) for n in dummies]
        V = fit.vcov_beta[np.ix_(idx, idx)] if ddf == "satterthwaite" else \
            kenward_roger(fit).vcov_adjusted[np.ix_(idx, idx)]
        b = fit.beta[idx]
        wald = b @ np.linalg.solve(V, b) / 2
        F = anova.loc["f", "F value"]
        if ddf == "kenward-roger":
            F = F / kr_test(kenward_roger(fit), np.eye(len(fit.beta))[idx], fit.beta)["scaling"]
        assert F == pytest.approx(wald, rel=1e-9)


def test_type3_errors_are_typed():
    rng = np.random.default_rng(3)
    n = 60
    g = np.repeat(np.arange(10), 6)
    data = pd.DataFrame({"y": rng.normal(size=n) + rng.normal(size=10)[g],
                         "a": rng.choice(["p", "q"], n),
                         "b": rng.choice(["r", "s", "t"], n),
                         "g": g.astype(str)})
    fit = glmmcore.fit("y ~ a + a:b + (1 | g)", data)
    with pytest.raises(ModelSpecError, match="hierarchical"):
        fit.anova()
    only_intercept = glmmcore.fit("y ~ 1 + (1 | g)", data)
    with pytest.raises(ModelSpecError, match="no fixed-effects terms"):
        only_intercept.anova()


def test_singular_fit_matches_lmertest():
    """A random intercept estimated as 0: Satterthwaite's df are n - p (theta's derivatives
    vanish at the boundary), Kenward-Roger's are not (its variance parametrization is
    linear); both as lmerTest and pbkrtest give them."""
    ref = json.loads((Path(__file__).parent / "data" / "lmertest_singular.json").read_text())
    data = pd.DataFrame({"y": ref["data"]["y"], "x": ref["data"]["x"],
                         "g": [str(v) for v in ref["data"]["g"]]})
    with pytest.warns(glmmcore.errors.SingularFitWarning):
        fit = glmmcore.fit("y ~ x + (1 | g)", data)
    assert fit.theta[0] == ref["theta"] == 0
    for ddf in ("satterthwaite", "kenward-roger"):
        table, want = fit.coef_table(ddf=ddf), ref[ddf]
        np.testing.assert_allclose(table["df"], want["df"], rtol=1e-6)
        np.testing.assert_allclose(table["t value"], want["t value"], rtol=1e-6)
        np.testing.assert_allclose(table["Std. Error"], want["Std. Error"], rtol=1e-6)
