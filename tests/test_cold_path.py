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
    import tempfile
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
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
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
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


@pytest.mark.parametrize("family, link", [("binomial", "logit"), ("binomial", "probit"),
                                          ("poisson", "log"), ("poisson", "sqrt")])
def test_the_numpy_glm_start_takes_the_compiled_iterations(family, link, speed):
    """The sparse factorization's GLM start (numpy) against the compiled loop."""
    from glmmcore.objectives import pirls
    from glmmcore.objectives.family_kernels import call_map, family_kernels
    from glmmcore.objectives.glm_irls import CONVERGED, glm_irls, glm_irls_numpy
    if family == "binomial":
        model = glmmcore.MixedModel("decision ~ attractive_sc + sincere_sc + (1 | iid)",
                                    speed.data, family=family, link=link)
    else:
        sim = glmmcore.simulate("patents", seed=3, n_patents=300, n_years=6)
        model = glmmcore.MixedModel(sim.formula, sim.data, family=family, link=link)
    k = family_kernels(model.family)
    X, resp = model.predictor.X, model.response
    limits = (pirls.STEP_TOL, pirls.FLOOR_TOL, float(pirls.MAX_ITER), float(pirls.MAX_HALVINGS))
    eta0 = np.empty(model.nobs)            # Pirls.start_glm's start
    call_map(k.linkfun_vec, np.ascontiguousarray(model.family.start_mu(resp.y, resp.weights)),
             eta0)
    sw = np.sqrt(resp.weights)
    start = np.linalg.lstsq(X * sw[:, None], (eta0 - resp.offset) * sw, rcond=None)[0]
    out = []
    for irls in (glm_irls, glm_irls_numpy):
        beta = start.copy()
        work = [np.empty(model.nobs) for _ in range(5)]
        status = irls(k.update, k.observed_weights, k.newton, k.canonical, X, resp.y,
                      resp.weights, resp.offset, 1.0, beta, limits, *work)
        out.append((status, beta, work))
    (s1, b1, w1), (s2, b2, w2) = out
    assert s1 == s2 == CONVERGED
    np.testing.assert_allclose(b2, b1, rtol=1e-9, atol=1e-12)
    for compiled, numpy_twin in zip(w1, w2):     # eta, mu, weights, residuals, deviances
        np.testing.assert_allclose(numpy_twin, compiled, rtol=1e-8, atol=1e-12)


def test_the_sparse_factor_keeps_the_rows_before_a_failing_one():
    """A zero response column (beta's covariance alone) fails only its own row of the
    dense Schur complement's factor, as a factorization in place leaves it."""
    from glmmcore.linalg.sparse import _leading_cholesky
    rng = np.random.default_rng(1)
    G = rng.normal(size=(6, 4))
    A = np.zeros((5, 5))
    A[:4, :4] = G.T @ G
    out = _leading_cholesky(A)
    np.testing.assert_allclose(out[:4, :4], np.linalg.cholesky(A[:4, :4]))
    assert not out[4].any() and not out[:, 4].any()


def test_blas_libraries_loaded_later_are_limited_too(monkeypatch):
    from glmmcore.linalg import threads
    found = []

    class Lib:
        user_api = "blas"

        def __init__(self):
            self.threads = 4

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.threads = n

    libs = [Lib()]

    class Controller:
        @property
        def lib_controllers(self):
            found.append(len(libs))
            return list(libs)

    import threadpoolctl
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Controller)
    monkeypatch.setattr(threads, "_state", {"depth": 0, "blas": None, "original": [],
                                            "stale": False})
    with threads.single_threaded_blas():
        assert libs[0].threads == 1
    libs.append(Lib())                          # CHOLMOD's BLAS, loaded since
    with threads.single_threaded_blas():
        assert libs[1].threads == 4             # not found again without a rescan
    threads.rescan_blas()
    with threads.single_threaded_blas():
        assert [lib.threads for lib in libs] == [1, 1]
    assert [lib.threads for lib in libs] == [4, 4] and found == [1, 2]


@pytest.mark.slow
def test_every_seed_model_reaches_the_compiled_optimum_on_the_cold_path(monkeypatch):
    """Each of bench's seed workloads (lme4's reference calls) on the cold path: the
    compiled path's log-likelihood to 1e-9 relative, and converged where it is."""
    import warnings

    from bench.workloads import all_workloads
    monkeypatch.setenv("GLMMCORE_COLD_START", "1")
    monkeypatch.setenv("GLMMCORE_BACKGROUND_COMPILE", "0")
    families = glmmcore.available_families()
    taken = 0
    for work in all_workloads():
        if work.size != "seed" or not work.family_available(families):
            continue
        kwargs = work.fit_kwargs()
        if not work.is_lmm:
            kwargs["family"] = work.glmmcore_family(families)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = glmmcore.MixedModel(work.formula, work.source.load(), **kwargs)
            with monkeypatch.context() as patch:
                patch.setattr(cold_path, "must_compile", lambda kind, path: True)
                cold_fit = model.fit()
            compiled = model.fit(control={"cold_start": False})
        if not cold_fit.extra.get("cold_path"):
            assert model.nagq > 1, work.name          # quadrature: compiled
            continue
        taken += 1
        assert abs(cold_fit.loglik - compiled.loglik) <= 1e-9 * abs(compiled.loglik), work.name
        assert cold_fit.converged == compiled.converged, work.name
    assert taken >= 20
