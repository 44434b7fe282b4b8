"""One BLAS thread during fits, the user's setting restored after."""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

from glmmcore.linalg.threads import single_threaded_blas


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_limit_nests_and_restores_the_users_setting():
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with single_threaded_blas():
            assert set(blas_threads()) == {1}
            with single_threaded_blas():
                assert set(blas_threads()) == {1}
            assert set(blas_threads()) == {1}      # the outer fit is still running
        assert blas_threads() == before
        with single_threaded_blas(active=False):
            assert blas_threads() == before


def test_every_fit_runs_with_one_blas_thread(monkeypatch):
    """GLMM and LMM fits, small or long, run with one BLAS thread (L-BFGS-B calls BLAS
    at every iteration), and the user's setting is back after them."""
    import numpy as np
    import pandas as pd

    import glmmcore
    from glmmcore.fitting import glmm_fit as glmm
    from glmmcore.fitting import lmm_fit as lmm

    seen = {}
    for module, name in ((glmm, "fit_glmm"), (lmm, "fit_lmm")):
        original = getattr(module, name)

        def recording(*args, _original=original, _name=name, **kwargs):
            seen.setdefault(_name, []).append(set(blas_threads()))
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, recording)
    rng = np.random.default_rng(2)

    def data(n):
        g = rng.integers(0, 8, n)
        x = rng.normal(size=n)
        return pd.DataFrame({"y": x + rng.normal(size=8)[g] + rng.normal(size=n),
                             "c": rng.poisson(np.exp(0.3 * x)), "x": x, "g": g})
    small, long = data(200), data(5000)
    regular = {"fast_path": False}      # the compiled fast path calls no BLAS routine
    with threadpool_limits(limits=2, user_api="blas"):
        glmmcore.fit("c ~ x + (1 | g)", small, family="poisson", control=regular)
        glmmcore.fit("y ~ x + (1 | g)", small, control=regular)
        glmmcore.fit("y ~ x + (1 | g)", long, control=regular)
        assert set(blas_threads()) == {2}
    assert seen["fit_glmm"] == [{1}]
    assert seen["fit_lmm"] == [{1}, {1}]
