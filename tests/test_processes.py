"""Fits, models and results cross process boundaries (joblib, multiprocessing, Dask).

A family's generated kernel module exists only in the process that made it; what
holds the kernels must pickle as the family and rebuild them wherever it lands.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import glmmcore
from conftest import load_data
from glmmcore.families.binomial import Binomial
from glmmcore.objectives.family_kernels import family_kernels
from glmmcore.objectives.glmm import GlmmDeviance

joblib = pytest.importorskip("joblib")
cloudpickle = pytest.importorskip("cloudpickle")   # what joblib and Dask pickle with

FORMULA = ("opposition ~ biopharm + ustwin + patus + patgsgr + ncountryc + nclaimsc"
           " + (1 | yearf)")
CHECKOUT = Path(glmmcore.__file__).resolve().parents[1]


def _fit_opposition(seed: int) -> float:
    """A binomial GLMM in a worker: lme4's model, or a permuted response (seed > 0)."""
    data = load_data("patents")
    if seed:
        rng = np.random.default_rng(seed)
        data["opposition"] = rng.permutation(data["opposition"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # a permuted response's fit may be singular
        return glmmcore.fit(FORMULA, data, family="binomial").loglik


def _refit(args: tuple) -> float:
    model, y = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(y).loglik


def _evaluate(deviance: GlmmDeviance, x: np.ndarray) -> float:
    return deviance.evaluate(x, 2)[0]


def _fresh_python(code: str, kernel_dir: Path) -> str:
    """Run code in a fresh interpreter with an empty kernel directory; its stdout."""
    env = dict(os.environ, GLMMCORE_KERNEL_DIR=str(kernel_dir),
               PYTHONPATH=os.pathsep.join([str(CHECKOUT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def opposition():
    return glmmcore.fit(FORMULA, load_data("patents"), family="binomial")


def test_kernels_pickle_as_their_family():
    kernels = family_kernels(Binomial(link="probit"))
    for dumps in (pickle.dumps, cloudpickle.dumps):
        data = dumps(kernels)
        assert b"glmmcore_kernels" not in data
        assert pickle.loads(data) is kernels      # this process: the loaded kernels


def test_result_and_workspace_in_a_fresh_process_with_an_empty_kernel_dir(
        opposition, reference, tmp_path):
    assert opposition.loglik >= reference["patents_opp"]["logLik"] * (1 + 1e-6)
    # the PIRLS workspaces hold the kernels' addresses: rebuilt there, not copied
    deviance = GlmmDeviance(opposition.model.predictor, opposition.model.response, 1)
    x = np.concatenate([opposition.theta, opposition.fixef.to_numpy()])
    expected = _evaluate(deviance, x)
    assert expected == pytest.approx(-2 * opposition.loglik, rel=1e-8)
    path = tmp_path / "objects.pkl"
    path.write_bytes(cloudpickle.dumps((opposition, deviance, x)))
    out = _fresh_python(f"import pickle; r, d, x = pickle.load(open({str(path)!r}, 'rb'));"
                        "print(repr(float(r.loglik)), repr(float(r.model.fit().loglik)),"
                        "      repr(float(d.evaluate(x, 2)[0])))", tmp_path / "kernels")
    stored, refitted, evaluated = map(float, out.split())
    assert stored == opposition.loglik
    assert refitted == pytest.approx(opposition.loglik, rel=1e-10)
    assert evaluated == pytest.approx(expected, rel=1e-12)
    assert list((tmp_path / "kernels").glob("glmmcore_kernels_binomial_*.py"))


def test_joblib_loky_over_fits_models_and_workspaces(opposition):
    parallel = joblib.Parallel(n_jobs=2, backend="loky")
    fits = parallel(joblib.delayed(_fit_opposition)(seed) for seed in (0, 1))
    assert fits[0] == pytest.approx(opposition.loglik, rel=1e-10)
    model, y = opposition.model, opposition.model.response.y
    permuted = np.random.default_rng(1).permutation(y)
    assert parallel(joblib.delayed(_refit)((model, permuted)) for _ in range(1)) == [
        pytest.approx(fits[1], rel=1e-10)]
    # results and deviance workspaces go out to the workers and come back
    back = parallel(joblib.delayed(lambda r: r)(opposition) for _ in range(2))
    assert [r.loglik for r in back] == [opposition.loglik] * 2
    deviance = GlmmDeviance(model.predictor, model.response, 1)
    x = np.concatenate([opposition.theta, opposition.fixef.to_numpy()])
    expected = _evaluate(deviance, x)
    assert parallel(joblib.delayed(_evaluate)(deviance, x) for _ in range(2)) == [
        pytest.approx(expected, rel=1e-12)] * 2


def test_spawned_pool_refits_the_model(opposition):
    model, y = opposition.model, opposition.model.response.y
    responses = [y, np.random.default_rng(1).permutation(y)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        logliks = pool.map(_refit, [(model, r) for r in responses])
    assert logliks[0] == pytest.approx(opposition.loglik, rel=1e-10)
    assert logliks[1] == pytest.approx(_refit((model, responses[1])), rel=1e-10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_pool_fits():
    with multiprocessing.get_context("fork").Pool(2) as pool:
        logliks = pool.map(_fit_opposition, [0, 1])
    assert logliks == [pytest.approx(_fit_opposition(0), rel=1e-10),
                       pytest.approx(_fit_opposition(1), rel=1e-10)]
