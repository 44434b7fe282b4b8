"""One BLAS thread during fits, the user's setting restored after."""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

from glmmcore.threads import single_threaded_blas


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
