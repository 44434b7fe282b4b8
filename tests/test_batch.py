"""fit_many: every feature's row equals its own fit; inputs, tables, errors, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import glmmcore
from glmmcore.batch.result import bh_adjust
from glmmcore.errors import ArgumentError, DataError, GlmmWarning, ModelSpecError

HERE = Path(__file__).parent
FORMULA = "count ~ cond + offset(lsf) + (1 | subject)"
REDUCED = "count ~ offset(lsf) + (1 | subject)"


def per_gene_design(n_subjects: int = 12, per_subject: int = 8, seed: int = 1) -> pd.DataFrame:
    """Samples nested in subjects, subjects in two conditions, a library-size offset."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), per_subject)
    return pd.DataFrame({"cond": (subject % 2).astype(float),
                         "lsf": np.log(rng.uniform(0.5, 2.0, subject.size)),
                         "subject": [f"s{s}" for s in subject]})


def counts(design: pd.DataFrame, n_features: int, seed: int = 2) -> np.ndarray:
    """Poisson counts per feature: its own intercept, condition effect and subject SD."""
    rng = np.random.default_rng(seed)
    codes = pd.factorize(design["subject"])[0]
    n_subj = codes.max() + 1
    out = np.empty((len(design), n_features))
    for j in range(n_features):
        b = rng.normal(0, rng.uniform(0.2, 0.8), n_subj)[codes]
        eta = rng.normal(1.0, 0.3) + rng.normal(0, 0.4) * design["cond"] + b + design["lsf"]
        out[:, j] = rng.poisson(np.exp(eta))
    return out


@pytest.fixture(scope="module")
def design() -> pd.DataFrame:
    return per_gene_design()


@pytest.fixture(scope="module")
def Y(design) -> np.ndarray:
    return counts(design, 12)


@pytest.fixture(scope="module")
def batch(design, Y) -> glmmcore.BatchResult:
    return glmmcore.fit_many(FORMULA, design, Y, family="poisson", reduced=REDUCED,
                             chunk_size=5, n_jobs=2)


def test_every_row_is_the_features_own_fit(design, Y, batch):
    assert batch.features == [f"feature_{j}" for j in range(12)]
    assert batch.failed.empty and len(batch) == 12
    for j in (0, 7, 11):
        own = glmmcore.fit(FORMULA, design.assign(count=Y[:, j]), family="poisson")
        small = glmmcore.fit(REDUCED, design.assign(count=Y[:, j]), family="poisson")
        row = batch.fits.iloc[j]
        assert row["loglik"] == own.loglik and row["deviance"] == own.deviance
        assert row["aic"] == pytest.approx(own.aic, rel=1e-14)
        assert row["sd__(Intercept)|subject"] == own.varcorr["sdcor"].iloc[0]
        assert row["converged"] == own.converged and row["singular"] == own.is_singular
        assert row["n_evaluations"] == own.extra["nevals"]
        assert row["loglik_reduced"] == small.loglik
        assert row["lrt_statistic"] == pytest.approx(2 * (own.loglik - small.loglik), rel=1e-12)
        assert row["lrt_df"] == 1
        coefs = batch.coefs[batch.coefs["feature"] == f"feature_{j}"].set_index("term")
        table = own.coef_table()
        np.testing.assert_array_equal(coefs["estimate"], table["Estimate"])
        np.testing.assert_allclose(coefs["std_error"], table["Std. Error"], rtol=1e-14)
        np.testing.assert_allclose(coefs["p_value"], table["Pr(>|z|)"], rtol=1e-12)
    from scipy import stats
    np.testing.assert_allclose(batch.fits["lrt_p_value"],
                               stats.chi2.sf(batch.fits["lrt_statistic"].clip(0), 1))


def test_columns_of_the_tables(batch):
    assert list(batch.fits.columns) == [
        "feature", "converged", "singular", "loglik", "deviance", "aic",
        "sd__(Intercept)|subject", "loglik_reduced", "lrt_statistic", "lrt_df", "lrt_p_value",
        "lrt_p_adjusted", "n_evaluations", "seconds", "error", "flags"]
    assert list(batch.coefs.columns) == ["feature", "term", "estimate", "std_error",
                                         "statistic", "p_value", "p_adjusted"]
    assert list(batch.coefs["term"][:2]) == ["(Intercept)", "cond"]
    for _, rows in batch.coefs.groupby("term"):
        np.testing.assert_array_equal(rows["p_adjusted"], bh_adjust(rows["p_value"].to_numpy()))
    np.testing.assert_array_equal(batch.fits["lrt_p_adjusted"],
                                  bh_adjust(batch.fits["lrt_p_value"].to_numpy()))


def test_lmm_rows_have_sigma_and_correlations():
    rng = np.random.default_rng(5)
    subject = np.repeat(np.arange(10), 8)
    days = np.tile(np.arange(8.0), 10)
    data = pd.DataFrame({"days": days, "subject": subject})
    ys = {f"g{j}": 5 + days * rng.normal(1, 0.3) + rng.normal(0, 1, 10)[subject]
          + rng.normal(0, 0.5, 10)[subject] * days + rng.normal(0, 1, 80) for j in range(3)}
    out = glmmcore.fit_many("y ~ days + (days | subject)", data, ys)
    assert out.features == ["g0", "g1", "g2"]
    own = glmmcore.fit("y ~ days + (days | subject)", data.assign(y=ys["g1"]))
    row = out.fits.iloc[1]
    vc = own.varcorr
    assert row["loglik"] == own.loglik and row["sigma"] == own.sigma
    assert row["sd__days|subject"] == pytest.approx(vc["sdcor"].iloc[1], rel=1e-14)
    assert row["cor__(Intercept).days|subject"] == pytest.approx(vc["sdcor"].iloc[2], rel=1e-13)
    assert "family_theta" not in out.fits


def test_negative_binomial_rows_have_its_theta(design, Y):
    out = glmmcore.fit_many(FORMULA, design, Y[:, :2], family="negative_binomial")
    own = glmmcore.fit(FORMULA, design.assign(count=Y[:, 1]), family="negative_binomial")
    assert out.fits["family_theta"].iloc[1] == own.extra["family_params"]["theta"]
    assert out.fits["loglik"].iloc[1] == own.loglik


def test_bh_matches_r_p_adjust():
    ref = json.loads((HERE / "data" / "p_adjust_bh.json").read_text())
    p = np.array([np.nan if v is None else v for v in ref["p"]])
    expected = np.array([np.nan if v is None else v for v in ref["bh"]])
    np.testing.assert_allclose(bh_adjust(p), expected, rtol=1e-15)
    assert np.all(np.isnan(bh_adjust(np.full(3, np.nan))))


def test_response_containers_give_the_same_tables(design, Y, batch):
    names = [f"gene{j}" for j in range(12)]
    frame = pd.DataFrame(Y, columns=names)
    kwargs = {"family": "poisson", "reduced": REDUCED, "chunk_size": 5, "n_jobs": 2}
    results = [glmmcore.fit_many(FORMULA, design, frame, **kwargs),
               glmmcore.fit_many(FORMULA, design, dict(zip(names, Y.T)), **kwargs),
               glmmcore.fit_many(FORMULA, design, sp.csr_matrix(Y), features=names, **kwargs),
               glmmcore.fit_many(FORMULA, design, sp.csc_matrix(Y), features=names, **kwargs),
               glmmcore.fit_many(FORMULA, design, Y.astype(int), features=names, **kwargs)]
    expected = batch.fits.assign(feature=names).drop(columns="seconds")
    for out in results:
        pd.testing.assert_frame_equal(out.fits.drop(columns="seconds"), expected)
        np.testing.assert_array_equal(out.coefs["estimate"], batch.coefs["estimate"])


def test_the_data_may_hold_the_response_column(design, Y):
    out = glmmcore.fit_many(FORMULA, design.assign(count=Y[:, 3]), Y[:, :2], family="poisson")
    assert out.fits["loglik"].iloc[1] == glmmcore.fit(
        FORMULA, design.assign(count=Y[:, 1]), family="poisson").loglik


def test_result_refits_a_feature(design, Y, batch):
    fit = batch.result("feature_4")
    assert isinstance(fit, glmmcore.MixedModelResult)
    assert fit.loglik == batch.fits["loglik"].iloc[4]
    with pytest.raises(DataError, match="no feature named 'nope'"):
        batch.result("nope")


def test_parquet_round_trip(tmp_path, batch, design, Y):
    pytest.importorskip("pyarrow")
    Y2 = Y[:, :4].copy()
    Y2[:, 1] = 0
    with pytest.warns(GlmmWarning, match="1 failed"):
        out = glmmcore.fit_many(FORMULA, design, Y2, family="poisson")
    for result in (batch, out):
        path = tmp_path / "r.parquet"
        result.to_parquet(path)
        back = glmmcore.BatchResult.read_parquet(path)
        pd.testing.assert_frame_equal(back.fits, result.fits)
        pd.testing.assert_frame_equal(back.coefs, result.coefs)
        with pytest.raises(DataError, match="read from a file"):
            back.result("feature_0")
    assert len(pd.read_parquet(path)) == 4 * 2      # a row per feature and term (NaN: failed)


def test_bad_arguments_are_typed_errors(design, Y):
    with pytest.raises(ArgumentError, match="backend must be one of"):
        glmmcore.fit_many(FORMULA, design, Y, backend="gpu")
    with pytest.raises(ArgumentError, match="on_error"):
        glmmcore.fit_many(FORMULA, design, Y, on_error="ignore")
    with pytest.raises(ArgumentError, match="n_jobs"):
        glmmcore.fit_many(FORMULA, design, Y, n_jobs=0)
    with pytest.raises(DataError, match="looks transposed"):
        glmmcore.fit_many(FORMULA, design, Y.T, family="poisson")
    with pytest.raises(ArgumentError, match="features must name each of the 12"):
        glmmcore.fit_many(FORMULA, design, Y, features=["a"])
    with pytest.raises(DataError, match="'a' is not unique"):
        glmmcore.fit_many(FORMULA, design, Y[:, :2], features=["a", "a"])
    with pytest.raises(ModelSpecError, match="not nested"):
        glmmcore.fit_many(FORMULA, design, Y, family="poisson",
                          reduced="count ~ lsf + (1 | subject)")
    with pytest.raises(ModelSpecError, match="fewer parameters"):
        glmmcore.fit_many(FORMULA, design, Y, family="poisson", reduced=FORMULA)
    with pytest.raises(ArgumentError, match="layer= applies to an AnnData"):
        glmmcore.fit_many(FORMULA, design, Y, layer="counts")


def test_anndata_obs_and_layers(design, Y, batch):
    anndata = pytest.importorskip("anndata")
    names = [f"g{j}" for j in range(12)]
    adata = anndata.AnnData(X=sp.csr_matrix(Y), obs=design.set_index(
        pd.Index([f"cell{i}" for i in range(len(design))])),
        var=pd.DataFrame(index=names))
    adata.layers["counts"] = Y.copy()
    kwargs = {"family": "poisson", "reduced": REDUCED, "chunk_size": 5}
    for out in (glmmcore.fit_many(FORMULA, adata, **kwargs),
                glmmcore.fit_many(FORMULA, adata, layer="counts", **kwargs)):
        assert out.features == names
        np.testing.assert_array_equal(out.fits["loglik"], batch.fits["loglik"])
    with pytest.raises(DataError, match="no layer 'raw'"):
        glmmcore.fit_many(FORMULA, adata, layer="raw", family="poisson")


def test_chunk_size_depends_on_the_number_of_features_only():
    from glmmcore.batch.engine import default_chunk_size
    sizes = {n: default_chunk_size(n) for n in (1, 7, 20, 300, 10_000, 20_000, 100_000)}
    assert sizes == {1: 1, 7: 1, 20: 3, 300: 16, 10_000: 100, 20_000: 200, 100_000: 200}


def test_dask_tasks_are_consecutive_chunks_a_few_per_worker():
    from glmmcore.batch.backends import TASK_VALUES_MAX, TASKS_PER_WORKER, task_groups
    chunks = [(k, 100 * k, min(100 * k + 100, 9_950)) for k in range(100)]
    groups = task_groups(chunks, workers=2, nrows=600)
    assert [c for g in groups for c in g] == chunks          # every chunk once, in order
    assert len(groups) == 2 * TASKS_PER_WORKER
    assert {len(g) for g in groups} == {6, 7}
    # a task's responses stay under the cap: tall data means fewer chunks a task
    tall = task_groups(chunks, workers=2, nrows=TASK_VALUES_MAX // 300)
    assert [c for g in tall for c in g] == chunks
    assert len(tall) == 34 and {len(g) for g in tall} == {2, 3}
    # a resumed run's chunks need not be contiguous; one chunk a task at least
    assert task_groups(chunks[::7], workers=64, nrows=600) == [[c] for c in chunks[::7]]
    assert task_groups([], workers=2, nrows=600) == []


def test_tables_of_10000_features_fit_in_300_megabytes(batch):
    """A BatchResult holds tables, whose size grows by the same bytes per feature."""
    per_feature = (batch.fits.memory_usage(deep=True).sum()
                   + batch.coefs.memory_usage(deep=True).sum()) / len(batch)
    assert per_feature * 10_000 < 300 * 2 ** 20


@pytest.mark.slow
def test_10000_features_held_at_once():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(8), 5)
    data = pd.DataFrame({"x": rng.normal(size=40), "g": g})
    Y = rng.normal(size=(40, 10_000)) + rng.normal(size=(8, 10_000))[g]
    out = glmmcore.fit_many("y ~ x + (1 | g)", data, Y, progress=False)
    assert len(out) == 10_000 and out.failed.empty
    size = out.fits.memory_usage(deep=True).sum() + out.coefs.memory_usage(deep=True).sum()
    assert size < 300 * 2 ** 20
    assert out.fits["loglik"].iloc[9_999] == glmmcore.fit(
        "y ~ x + (1 | g)", data.assign(y=Y[:, 9_999])).loglik


def test_features_the_fast_path_answers_are_not_fitted_one_by_one(design, Y, batch,
                                                                  monkeypatch):
    from glmmcore.batch import rows
    calls = []
    monkeypatch.setattr(rows, "fit_one", lambda model, y: calls.append(1) or model.fit(y))
    bad = Y.copy()
    bad[:, 3] = 0                   # refused: the regular path gives the error
    out = glmmcore.fit_many(FORMULA, design, bad, family="poisson", reduced=REDUCED,
                            chunk_size=5, n_jobs=1, control={"warn": False})
    assert len(calls) == 1          # the zero feature (its error stops its reduced fit)
    keep = out.fits["feature"] != "feature_3"
    pd.testing.assert_frame_equal(
        out.fits[keep].drop(columns=["seconds", "lrt_p_adjusted"]),
        batch.fits[keep].drop(columns=["seconds", "lrt_p_adjusted"]))


def test_progress_bar_counts_the_features(design, Y, capsys):
    pytest.importorskip("tqdm")
    glmmcore.fit_many(FORMULA, design, Y[:, :6], family="poisson", chunk_size=2,
                      progress=True)
    err = capsys.readouterr().err
    assert "fit_many" in err and "6/6" in err


def test_fit_model_is_each_columns_own_fit_and_records_failures(design, Y):
    from glmmcore.batch.engine import fit_model
    model = glmmcore.MixedModel(FORMULA, design.assign(count=Y[:, 0]), family="poisson")
    bad = Y[:, :4].astype(float)
    bad[3, 2] = np.nan                  # a missing response in a kept row: a typed error
    for jobs in (1, 2):
        entries = fit_model(model, bad, per_fit=lambda f: f.loglik, n_jobs=jobs,
                            chunk_size=1)
        assert [entries[j] for j in (0, 1, 3)] == [model.fit(bad[:, j]).loglik
                                                   for j in (0, 1, 3)]
        assert isinstance(entries[2], DataError)
    with pytest.raises(DataError):
        fit_model(model, bad, on_error="raise")
