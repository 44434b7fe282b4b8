"""fit_many under faults: failing features, killed runs resumed, other backends, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_batch import FORMULA, REDUCED, counts, per_gene_design

import glmmcore
from glmmcore.errors import CheckpointError, DataError, GlmmWarning, ResponseError
from glmmcore.families.poisson import Poisson

REPO = Path(__file__).resolve().parents[1]


class BuggyPoisson(Poisson):
    """A plugin family with a bug: it raises on any response holding the count 777."""

    name = "poisson"

    def prepare_response(self, values, weights, name, labels):
        if any((np.asarray(v) == 777).any() for v in values):
            raise ZeroDivisionError("plugin bug")
        return super().prepare_response(values, weights, name, labels)


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Tables equal except the timings."""
    pd.testing.assert_frame_equal(a.drop(columns="seconds", errors="ignore").reset_index(drop=True),
                                  b.drop(columns="seconds", errors="ignore").reset_index(drop=True))


@pytest.fixture(scope="module")
def design() -> pd.DataFrame:
    return per_gene_design()


@pytest.fixture(scope="module")
def Y(design) -> np.ndarray:
    return counts(design, 16, seed=9)


@pytest.fixture(scope="module")
def clean(design, Y) -> glmmcore.BatchResult:
    return glmmcore.fit_many(FORMULA, design, Y, family=BuggyPoisson(), reduced=REDUCED,
                             chunk_size=3)


def test_failing_features_are_recorded_and_the_others_unchanged(design, Y, clean):
    bad = Y.copy()
    bad[:, 2] = 0                   # all zeros
    bad[[4, 30], 5] = np.nan        # missing values
    bad[:, 9] = 3                   # a constant
    bad[17, 12] = 777               # the plugin family raises
    with pytest.warns(GlmmWarning, match="4 failed"):
        out = glmmcore.fit_many(FORMULA, design, bad, family=BuggyPoisson(), reduced=REDUCED,
                                chunk_size=3, n_jobs=2)
    errors = out.failed.set_index("feature")["error"]
    assert list(errors.index) == ["feature_2", "feature_5", "feature_9", "feature_12"]
    assert errors["feature_2"].startswith("ResponseError: response 'count' is constant")
    assert errors["feature_5"].startswith("DataError: y has a missing value in row 4")
    assert errors["feature_9"].startswith("ResponseError: response 'count' is constant")
    assert errors["feature_12"].startswith("ZeroDivisionError: plugin bug (at ")
    failed = out.fits["error"].notna().to_numpy()
    assert not out.fits.loc[failed, "converged"].any()
    assert out.fits.loc[failed, ["loglik", "lrt_statistic"]].isna().all().all()
    same_rows(out.fits.loc[~failed, :].drop(columns="lrt_p_adjusted"),
              clean.fits.loc[~failed, :].drop(columns="lrt_p_adjusted"))
    ok = ~out.coefs["feature"].isin(errors.index)
    same_rows(out.coefs.loc[ok].drop(columns="p_adjusted"),
              clean.coefs.loc[ok].drop(columns="p_adjusted"))
    assert out.coefs.loc[~ok, "estimate"].isna().all()


def test_on_error_raise_stops_with_the_features_error(design, Y):
    bad = Y.copy()
    bad[:, 7] = 0
    for jobs in (1, 2):
        with pytest.raises(ResponseError, match="constant"):
            glmmcore.fit_many(FORMULA, design, bad, family="poisson", on_error="raise",
                              chunk_size=2, n_jobs=jobs)


def test_checkpoint_resumes_and_refuses_other_arguments(tmp_path, design, Y, clean):
    pytest.importorskip("pyarrow")
    folder = tmp_path / "ckpt"
    kwargs = {"family": BuggyPoisson(), "reduced": REDUCED, "chunk_size": 3,
              "checkpoint": folder}
    first = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    chunks = sorted(p.name for p in folder.glob("chunk-*.fits.parquet"))
    assert len(chunks) == 6 and (folder / "manifest.json").exists()
    same_rows(first.fits, clean.fits)
    # a run interrupted after some chunks: the others are fitted, the result is the same
    for name in chunks[1::2]:
        (folder / name).unlink()
    again = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    pd.testing.assert_frame_equal(again.coefs, first.coefs)
    same_rows(again.fits, first.fits)
    # everything finished: nothing is fitted, and the timings are the stored ones
    resumed = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    pd.testing.assert_frame_equal(resumed.fits, again.fits)
    other = Y.copy()
    other[0, 0] += 1
    with pytest.raises(CheckpointError, match="responses differ"):
        glmmcore.fit_many(FORMULA, design, other, **kwargs)
    with pytest.raises(CheckpointError, match="nAGQ differ"):
        glmmcore.fit_many(FORMULA, design, Y, **{**kwargs, "nAGQ": 0})
    with pytest.raises(CheckpointError, match="chunk_size, reduced differ"):
        glmmcore.fit_many(FORMULA, design, Y, **{**kwargs, "reduced": None, "chunk_size": 4})
    with pytest.raises(CheckpointError, match="data differ"):
        glmmcore.fit_many(FORMULA, design.assign(lsf=design["lsf"] * 2), Y, **kwargs)


KILLED_RUN = """
import sys, numpy as np, pandas as pd, glmmcore
design = pd.read_parquet(sys.argv[1])
Y = np.load(sys.argv[2])
glmmcore.fit_many({formula!r}, design, Y, family="poisson", chunk_size=2, n_jobs=1,
                  checkpoint=sys.argv[3])
"""


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    pytest.importorskip("pyarrow")
    design = per_gene_design(seed=4)
    Y = counts(design, 120, seed=5)
    design.to_parquet(tmp_path / "design.parquet")
    np.save(tmp_path / "Y.npy", Y)
    folder = tmp_path / "ckpt"
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(formula=FORMULA))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "design.parquet"),
                                str(tmp_path / "Y.npy"), str(folder)], env=env)
    deadline = time.monotonic() + 600
    while len(list(folder.glob("chunk-*.fits.parquet"))) < 5:
        assert process.poll() is None, "the batch ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(folder.glob("chunk-*.fits.parquet")))
    assert 5 <= done < 60, "the kill came after the last chunk"
    resumed = glmmcore.fit_many(FORMULA, design, Y, family="poisson", chunk_size=2,
                                checkpoint=folder)
    whole = glmmcore.fit_many(FORMULA, design, Y, family="poisson", chunk_size=2)
    same_rows(resumed.fits, whole.fits)
    pd.testing.assert_frame_equal(resumed.coefs, whole.coefs)


def test_processes_backend_equals_threads(design, Y):
    pytest.importorskip("joblib")
    kwargs = {"family": "poisson", "reduced": REDUCED, "chunk_size": 4}
    threads = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    processes = glmmcore.fit_many(FORMULA, design, Y, backend="processes", n_jobs=2, **kwargs)
    same_rows(processes.fits, threads.fits)
    pd.testing.assert_frame_equal(processes.coefs, threads.coefs)


def test_dask_without_a_client_is_a_clear_error(design, Y):
    pytest.importorskip("distributed")
    from distributed import default_client
    try:
        default_client()
        pytest.skip("a Dask client is running")
    except ValueError:
        pass
    with pytest.raises(glmmcore.ArgumentError, match=r"needs a dask\.distributed Client"):
        glmmcore.fit_many(FORMULA, design, Y, backend="dask")
    with pytest.raises(DataError):
        glmmcore.fit_many(FORMULA, design, Y[:-1], backend="threads")


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_dask_backend_equals_threads(design, Y, dask_client):
    kwargs = {"family": "poisson", "reduced": REDUCED, "chunk_size": 3}
    threads = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    dask = glmmcore.fit_many(FORMULA, design, Y, backend="dask", client=dask_client, **kwargs)
    same_rows(dask.fits, threads.fits)
    pd.testing.assert_frame_equal(dask.coefs, threads.coefs)
    current = glmmcore.fit_many(FORMULA, design, Y, backend="dask", **kwargs)   # get_client()
    same_rows(current.fits, threads.fits)


@pytest.mark.slow
def test_dask_worker_killed_mid_run_still_completes(dask_client):
    design = per_gene_design(n_subjects=20, per_subject=10, seed=6)
    Y = counts(design, 300, seed=7)
    kwargs = {"family": "poisson", "chunk_size": 5}
    pids = dask_client.run(os.getpid)
    victim = sorted(pids.values())[0]
    done: list[int] = []

    def kill_after_some(tables_seen: int) -> None:
        if tables_seen == 4 and not done:
            os.kill(victim, signal.SIGKILL)
            done.append(victim)

    from glmmcore.batch import backends
    original = backends._run_dask

    def watched(*args):
        for k, tables in enumerate(original(*args)):
            kill_after_some(k)
            yield tables

    backends._run_dask = watched
    try:
        dask = glmmcore.fit_many(FORMULA, design, Y, backend="dask", client=dask_client,
                                 **kwargs)
    finally:
        backends._run_dask = original
    assert done == [victim]
    threads = glmmcore.fit_many(FORMULA, design, Y, **kwargs)
    same_rows(dask.fits, threads.fits)
    pd.testing.assert_frame_equal(dask.coefs, threads.coefs)


def test_cli_batch_writes_the_results(tmp_path, design, Y, capsys):
    pytest.importorskip("pyarrow")
    from glmmcore.cli import main
    design.to_csv(tmp_path / "samples.csv", index=False)
    names = [f"gene{j}" for j in range(Y.shape[1])]
    table = pd.DataFrame(Y[:, :5].T, index=names[:5],
                         columns=[f"sample{i}" for i in range(len(design))])
    table.rename_axis("gene").reset_index().to_parquet(tmp_path / "counts.parquet")
    out = tmp_path / "results.parquet"
    assert main(["batch", str(tmp_path / "samples.csv"), str(tmp_path / "counts.parquet"),
                 FORMULA, "--family", "poisson", "--reduced", REDUCED, "--transpose",
                 "--jobs", "2", "--checkpoint", str(tmp_path / "ck"), "--out", str(out)]) == 0
    assert "5 features fitted" in capsys.readouterr().err
    back = glmmcore.BatchResult.read_parquet(out)
    expected = glmmcore.fit_many(FORMULA, design, Y[:, :5], family="poisson", reduced=REDUCED,
                                 features=names[:5])
    same_rows(back.fits, expected.fits)
    pd.testing.assert_frame_equal(back.coefs, expected.coefs)
    assert main(["batch", str(tmp_path / "samples.csv"), str(tmp_path / "counts.parquet"),
                 FORMULA, "--out", str(tmp_path / "r.csv")]) == 2
    assert "name the file .parquet" in capsys.readouterr().err


@pytest.mark.slow
def test_glmm_batch_runs_as_a_command(tmp_path, design, Y):
    pytest.importorskip("pyarrow")
    design.to_csv(tmp_path / "samples.csv", index=False)
    pd.DataFrame(Y[:, :2], columns=["a", "b"]).to_csv(tmp_path / "y.csv", index=False)
    run = subprocess.run([sys.executable, "-m", "glmmcore", "batch", str(tmp_path / "samples.csv"),
                          str(tmp_path / "y.csv"), FORMULA, "--family", "poisson", "--out",
                          str(tmp_path / "r.parquet")], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    back = glmmcore.BatchResult.read_parquet(tmp_path / "r.parquet")
    assert back.features == ["a", "b"]
    # the CSV round trip of the offset may change its last bit
    assert back.fits["loglik"].iloc[1] == pytest.approx(glmmcore.fit(
        FORMULA, design.assign(count=Y[:, 1]), family="poisson").loglik, rel=1e-12)
