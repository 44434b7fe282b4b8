"""The fast path's Poisson fits by the levels' totals (glmmcore.fitting.level_totals)
and its cross sums over columns constant within levels (scalar_pirls.design_columns):
the same fits as over the observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.fitting.scalar_fast import fast_fitter


@pytest.fixture(scope="module")
def design():
    """30 subjects in 2 conditions, 8 samples each, library sizes, a sample covariate."""
    rng = np.random.default_rng(11)
    subject = np.repeat(np.arange(30), 8)
    return pd.DataFrame({"subject": [f"s{s}" for s in subject],
                         "cond": np.where(subject % 2 == 0, "A", "B"),
                         "lsf": rng.normal(0.0, 0.3, subject.size),
                         "x": rng.normal(0.0, 1.0, subject.size)})


def _counts(design, seed, sd=0.6, intercept=1.0):
    rng = np.random.default_rng(seed)
    codes = design["subject"].str[1:].astype(int).to_numpy()
    eta = (intercept + 0.4 * (design["cond"] == "B") + rng.normal(0.0, sd, 30)[codes]
           + design["lsf"])
    return rng.poisson(np.exp(eta)).astype(float)


@pytest.mark.parametrize("nagq", [0, 1])
def test_fits_by_the_levels_totals_equal_the_fits_over_the_observations(design, nagq):
    """The totals' model has the observations' likelihood up to a term free of the
    parameters: the same optimum and log-likelihood (to the optimizer's accuracy), the
    same modes and covariance, and the fresh fit (fast_path=False) agrees."""
    Y = np.column_stack([_counts(design, k) for k in range(5)]
                        + [_counts(design, 20, 0.0), _counts(design, 21, 0.8, -2.5)])
    model = glmmcore.MixedModel("y ~ cond + offset(lsf) + (1 | subject)",
                                design.assign(y=Y[:, 0]), family="poisson", nAGQ=nagq)
    fitter = fast_fitter(model)
    assert fitter.totals is not None and fitter.totals.X.shape == (30, 2)
    by_totals = fitter.fit_columns(Y)
    totals, fitter.totals = fitter.totals, None
    try:
        by_rows = fitter.fit_columns(Y)
    finally:
        fitter.totals = totals
    assert np.all(by_totals.status == 0) and np.all(by_rows.status == 0)
    np.testing.assert_allclose(by_totals.loglik, by_rows.loglik, rtol=1e-11)
    np.testing.assert_allclose(by_totals.deviance, by_rows.deviance, rtol=1e-11)
    np.testing.assert_allclose(by_totals.theta, by_rows.theta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_totals.beta, by_rows.beta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(by_totals.vcov, by_rows.vcov, rtol=1e-3)
    for j in (0, 6):
        regular = model.fit(Y[:, j], control={"fast_path": False, "warn": False})
        assert by_totals.loglik[j] == pytest.approx(regular.loglik, rel=1e-8)


def test_totals_only_where_the_likelihood_factors(design):
    """A covariate that varies within subjects, the binomial, prior weights other than
    1 or a random slope: the fits stay over the observations."""
    y = _counts(design, 1)
    kinds = [("y ~ cond + x + offset(lsf) + (1 | subject)", "poisson", None),
             ("y ~ cond + (1 | subject)", "binomial", None),
             ("y ~ cond + offset(lsf) + (1 | subject)", "poisson", np.full(y.size, 2.0)),
             ("y ~ cond + offset(lsf) + (0 + lsf | subject)", "poisson", None)]
    for formula, family, weights in kinds:
        response = (y > 2).astype(float) if family == "binomial" else y
        model = glmmcore.MixedModel(formula, design.assign(y=response), family=family,
                                    weights=weights)
        fitter = fast_fitter(model)
        assert fitter is None or fitter.totals is None, formula


def test_cross_sums_by_level_equal_the_sums_over_the_observations(design):
    """PIRLS's X'WX, X'W work and the levels' sum w z x: over the levels for the
    columns constant within them, over the observations for the others."""
    from glmmcore.objectives import scalar_pirls
    X = np.column_stack([np.ones(len(design)), (design["cond"] == "B").to_numpy(float),
                         design["x"].to_numpy()])
    codes = design["subject"].str[1:].astype(np.int64).to_numpy()
    rng = np.random.default_rng(3)
    w, work = rng.uniform(0.5, 2.0, len(design)), rng.normal(size=len(design))
    z = np.ones(len(design))
    cols = scalar_pirls.design_columns(X, codes, z, 30)
    assert list(cols[2]) == [True, True, False]
    assert not scalar_pirls.design_columns(X, codes, z * 2.0, 30)[2].any()
    wz2, rz = np.zeros(30), np.zeros(30)
    scalar_pirls.level_sums(codes, w, z, wz2)
    scalar_pirls.level_sums(codes, w * z, work, rz)
    results = []
    for by_level in (cols[2], np.zeros(3, dtype=bool)):
        cx, rhs, S = np.zeros((30, 3)), np.zeros(3), np.zeros((3, 3))
        scalar_pirls._cross_sums(cols[0], codes, w, w * z, work, wz2, rz, cols[1], by_level,
                                 cx, rhs, S)
        results.append((cx, rhs, np.tril(S)))
    for by_levels, by_rows in zip(*results):
        np.testing.assert_allclose(by_levels, by_rows, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(results[1][2], np.tril(X.T @ (w[:, None] * X)), rtol=1e-13)
