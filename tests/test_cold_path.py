"""The cold path: a fit whose kernels are not compiled takes the sparse factorization.

The suite runs with the cold path off (conftest.py); these tests turn it on and tell
it that the kernels must be compiled, so that they do not depend on the cache.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import glmmcore
from glmmcore.fitting import cold_path, warmup


@pytest.fixture
def cold(monkeypatch):
    """A process whose kernels must all be compiled, without the background compile."""
    monkeypatch.setenv("GLMMCORE_COLD_START", "1")
    monkeypatch.setenv("GLMMCORE_BACKGROUND_COMPILE", "0")
    monkeypatch.setattr(cold_path, "must_compile", lambda kind, path: True)
    monkeypatch.setattr(warmup, "_announced", set())


@pytest.fixture(scope="module")
def gpa():
    return glmmcore.simulate("gpa", seed=5, n_students=60)


@pytest.fixture(scope="module")
def speed():
    return glmmcore.simulate("speed_dating", seed=5, n_participants=60, n_partners=30,
                             dates_per_participant=8)


def _same_fit(cold_fit, compiled):
    assert cold_fit.extra["cold_path"] and not compiled.extra.get("cold_path")
    assert cold_fit.loglik >= compiled.loglik - 1e-10 * abs(compiled.loglik)
    assert abs(cold_fit.loglik - compiled.loglik) <= 1e-8 * abs(compiled.loglik)
    np.testing.assert_allclose(cold_fit.fixef, compiled.fixef, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cold_fit.stderr, compiled.stderr, rtol=1e-4)
    np.testing.assert_allclose(cold_fit.varcorr["sdcor"], compiled.varcorr["sdcor"],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cold_fit.b, compiled.b, rtol=1e-4, atol=1e-5)
    assert cold_fit.converged == compiled.converged


def test_a_cold_lmm_fit_takes_the_sparse_path_to_the_same_optimum(cold, gpa, capsys):
    model = glmmcore.MixedModel(gpa.formula, gpa.data)
    assert model.predictor.built_layout is None        # the blocked ordering not built
    first = model.fit()
    assert first.model is model and first.predictor is model.predictor
    assert "this fit takes the CHOLMOD path" in capsys.readouterr().err
    compiled = model.fit(control={"cold_start": False})
    _same_fit(first, compiled)
    # what the result computes later runs on the model's own (blocked) predictor
    np.testing.assert_allclose(first.fitted(), compiled.fitted(), rtol=1e-6)
    assert len(first.ranef) == len(compiled.ranef)


@pytest.mark.parametrize("formula", [
    "decision ~ attractive_sc + sincere_sc + samerace + (1 | iid) + (1 | partner_id)",
    "decision ~ attractive_sc + (1 | iid)"])
def test_a_cold_glmm_fit_takes_the_sparse_path_to_the_same_optimum(cold, speed, formula):
    model = glmmcore.MixedModel(formula, speed.data, family="binomial")
    first = model.fit()
    compiled = model.fit(control={"cold_start": False})
    _same_fit(first, compiled)


def test_the_cold_path_is_left_where_it_does_not_apply(cold, gpa, speed):
    fit = glmmcore.fit
    assert fit(gpa.formula, gpa.data).extra["cold_path"]
    for result in (fit(gpa.formula, gpa.data, control={"backend": "blocked"}),
                   fit(gpa.formula, gpa.data, control={"cold_start": False}),
                   glmmcore.MixedModel(gpa.formula, gpa.data).fit(start=[0.5, 0.1, 0.2]),
                   fit("decision ~ attractive_sc + (1 | iid)", speed.data, family="binomial",
                       nAGQ=3)):
        assert not result.extra.get("cold_path")


def test_the_environment_switches_the_cold_path_off(cold, gpa, monkeypatch):
    monkeypatch.setenv("GLMMCORE_COLD_START", "off")
    assert not glmmcore.fit(gpa.formula, gpa.data).extra.get("cold_path")


def test_fit_many_compiles_instead(cold, gpa, monkeypatch):
    taken = []
    monkeypatch.setattr(cold_path, "fit_cold", lambda *a: taken.append(a))
    y = np.column_stack([gpa.data["gpa"].to_numpy()] * 3)
    out = glmmcore.fit_many("y ~ occasion + (1 | student)", gpa.data, y, progress=False)
    assert not taken and out.fits["converged"].all()


def test_one_background_compile_per_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cold_path.tempfile, "gettempdir", lambda: str(tmp_path))
    held = cold_path.hold_background_lock()
    assert held is not None
    assert cold_path.hold_background_lock() is None     # another holder: no second compile
    env = dict(os.environ, GLMMCORE_COLD_START="1")
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "glmmcore", "warmup", "--background"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "compiled and cached" not in done.stdout
    held.close()
    again = cold_path.hold_background_lock()
    assert again is not None
    again.close()


def test_start_background_compile_starts_one_warmup(monkeypatch):
    started = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            started.append((args, kwargs))

    monkeypatch.setenv("GLMMCORE_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(cold_path.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(cold_path, "_spawned", {})
    first = cold_path.start_background_compile()
    assert cold_path.start_background_compile() is first
    (args, kwargs), = started
    assert args[1:] == ["-m", "glmmcore", "warmup", "--quiet", "--background"]
    assert kwargs["start_new_session"] and kwargs["stdout"] == subprocess.DEVNULL
    monkeypatch.setenv("GLMMCORE_BACKGROUND_COMPILE", "0")
    monkeypatch.setattr(cold_path, "_spawned", {})
    assert cold_path.start_background_compile() is None


@pytest.mark.slow
def test_a_fresh_process_fits_cold_and_the_background_fills_the_cache(tmp_path):
    """Empty caches: the first fit takes the cold path and starts the background
    compile; once it is done, every path loads from the cache and a fit takes it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLMMCORE_COLD_START", "GLMMCORE_BACKGROUND_COMPILE")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               GLMMCORE_KERNEL_DIR=str(tmp_path / "kernels"), TMPDIR=str(tmp_path))
    code = (
        "import glmmcore\n"
        "from glmmcore.fitting import cold_path, warmup\n"
        "sim = glmmcore.simulate('gpa', seed=1, n_students=60)\n"
        "first = glmmcore.fit(sim.formula, sim.data)\n"
        "print('first', first.extra.get('cold_path'))\n"
        "print('child', cold_path._spawned['warmup'].wait())\n"
        "print('left', [(k, p) for k in ('lmm', 'glmm') for p in warmup.PATHS\n"
        "               if (k, p) != ('glmm', 'vector') and warmup.must_compile(k, p)])\n"
        "second = glmmcore.fit(sim.formula, sim.data)\n"
        "print('second', second.extra.get('cold_path'), second.extra.get('fast_path'))\n"
        "print('same', abs(first.loglik - second.loglik) <= 1e-8 * abs(second.loglik))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=3600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["first True", "child 0", "left []", "second None True", "same True"]
