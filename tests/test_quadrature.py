"""Adaptive Gauss-Hermite quadrature: identities, convergence, and brute-force integration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logsumexp

import glmmcore
from glmmcore.errors import ModelSpecError
from glmmcore.objectives.glmm import GlmmDeviance
from glmmcore.objectives.quadrature import Quadrature


def binomial_groups(p: int, seed: int = 5, groups: int = 6, per_group: int = 12):
    """Small binomial data with p correlated random effects per group."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    X = rng.normal(size=(len(g), 2))
    b = rng.normal(scale=0.8, size=(groups, 3))
    eta = -0.3 + 0.8 * X[:, 0] + b[g, 0] + b[g, 1] * X[:, 0] + b[g, 2] * X[:, 1]
    y = rng.binomial(1, expit(eta))
    data = pd.DataFrame({"y": y, "x": X[:, 0], "z": X[:, 1], "g": g})
    lhs = {1: "1", 2: "1 + x", 3: "1 + x + z"}[p]
    return data, f"y ~ x + ({lhs} | g)"


def deviance_at(fit, nagq: int, theta, beta) -> float:
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    dev.evaluate(np.concatenate([theta, beta]), 2)     # PIRLS to the mode
    return Quadrature(dev.pirls1, nagq).deviance(np.asarray(theta, float), 1.0, dev.kernels)


def brute_force_deviance(data: pd.DataFrame, p: int, theta, beta) -> float:
    """-2 log of the marginal likelihood, integrating each group on a dense grid."""
    T = np.zeros((p, p))
    pairs = [(r, c) for c in range(p) for r in range(c, p)]   # lme4's column-major order
    for k, (r, c) in enumerate(pairs):
        T[r, c] = theta[k]
    Z = np.column_stack([np.ones(len(data)), data["x"], data["z"]])[:, :p]
    grid = np.linspace(-8, 8, 161 if p < 3 else 61)
    mesh = np.stack(np.meshgrid(*[grid] * p, indexing="ij"), -1).reshape(-1, p)
    log_prior = -0.5 * np.sum(mesh ** 2, axis=1) - 0.5 * p * np.log(2 * np.pi)
    log_cell = p * np.log(grid[1] - grid[0])
    fixed = beta[0] + beta[1] * data["x"].to_numpy()
    y = data["y"].to_numpy()
    total = 0.0
    for _, rows in data.groupby("g").indices.items():
        eta = fixed[rows, None] + Z[rows] @ T @ mesh.T
        loglik = np.sum(y[rows, None] * eta - np.logaddexp(0, eta), axis=0)
        total += logsumexp(loglik + log_prior) + log_cell
    return -2 * total


THETAS = {1: [1.2], 2: [1.0, 0.3, 0.6], 3: [1.0, 0.3, -0.2, 0.6, 0.1, 0.5]}


@pytest.mark.parametrize("p", [1, 2, 3])
def test_quadrature_matches_brute_force_integration(p):
    data, formula = binomial_groups(p)
    fit = glmmcore.fit(formula, data, family="binomial", control={"warn": False})
    theta, beta = np.array(THETAS[p]), np.array([-0.2, 0.6])
    exact = brute_force_deviance(data, p, theta, beta)
    # 12 Bernoulli observations per group leave the integrands far from Gaussian:
    # enough nodes for quadrature error well below 1e-6 relative
    assert deviance_at(fit, 21, theta, beta) == pytest.approx(exact, rel=1e-7)
    # and a few nodes are already much closer than the Laplace approximation
    few = abs(deviance_at(fit, 5, theta, beta) - exact)
    assert few < 0.2 * abs(deviance_at(fit, 1, theta, beta) - exact)


def test_one_node_is_the_laplace_approximation():
    data, formula = binomial_groups(2)
    fit = glmmcore.fit(formula, data, family="binomial", control={"warn": False})
    dev = GlmmDeviance(fit.predictor, fit.response, 1)
    laplace, _ = dev.evaluate(np.concatenate([fit.theta, fit.beta]), 2)
    assert deviance_at(fit, 1, fit.theta, fit.beta) == pytest.approx(laplace, rel=1e-12)
    assert fit.loglik == pytest.approx(-0.5 * laplace, rel=1e-12)


def test_more_nodes_converge(datasets):
    fit = glmmcore.fit("decision ~ attractive_sc + sincere_sc + (1 | iid)", datasets["sd"],
                       family="binomial")
    values = [deviance_at(fit, k, fit.theta, fit.beta) for k in (1, 3, 5, 9, 15, 25)]
    steps = np.abs(np.diff(values))
    assert steps[-1] < 1e-9 * abs(values[-1])
    assert np.all(steps[2:] < steps[0])


def test_vector_quadrature_fit_is_close_to_laplace():
    data, formula = binomial_groups(2, groups=40, per_group=15)
    laplace = glmmcore.fit(formula, data, family="binomial", control={"warn": False})
    agq = glmmcore.fit(formula, data, family="binomial", nAGQ=7, control={"warn": False})
    assert agq.method == "AGQ"
    assert abs(agq.loglik - laplace.loglik) < 2.0
    np.testing.assert_allclose(agq.fixef, laplace.fixef, atol=0.1)


def test_quadrature_refuses_what_it_cannot_integrate(datasets):
    sd = datasets["sd"]
    with pytest.raises(ModelSpecError, match=r"single grouping factor.*Use nAGQ = 1"):
        glmmcore.fit("decision ~ attractive_sc + (1 | iid) + (1 | partner_id)", sd,
                     family="binomial", nAGQ=5)
    with pytest.raises(ModelSpecError, match="at most 3 random effects per group"):
        glmmcore.fit("decision ~ attractive_sc + (1 + attractive_sc + sincere_sc + fun_sc | iid)",
                     sd, family="binomial", nAGQ=3)
