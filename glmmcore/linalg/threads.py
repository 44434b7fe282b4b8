"""One BLAS thread while a model is fitted.

OpenBLAS's threads wait for each other by spinning; when another process keeps
a core busy, a multi-threaded factorization of a few hundred to a few thousand
rows runs tens of times slower than a single-threaded one (measured here: 1.5 s
against 0.09 s for 2,000 rows on 2 cores, one of them busy).  A mixed-model fit
makes hundreds of such factorizations, and batch fits run several at once, so
glmmcore factors with one BLAS thread.  The same holds for numpy's products
over the observations (``X @ beta``) once OpenBLAS threads them: a GLMM on
``speed_laplace``'s 7,366 rows took 36-100 ms a fit with two
threads, its fastest 39, and 33 ms every time with one.  And scipy's
L-BFGS-B calls BLAS on vectors of a few elements at every iteration: with
two threads and the other core busy, a 180-row LMM's 15 iterations took
30-60 ms instead of 1 ms.  So every fit runs with one BLAS thread.  The limit
is set on the first of any overlapping fits (in any thread) and the user's
setting is restored when the last one ends.

threadpoolctl finds the loaded BLAS libraries by inspecting the process, which
costs ~0.7 ms per call, a tenth of a small model's fit; the libraries are found
once (on the first fit, when numpy's and scipy's are loaded) and their
controllers are kept (found again after :func:`rescan_blas`: CHOLMOD's BLAS is
loaded with the sparse factorization, later).  Their thread counts are then read, set and restored
directly (threadpoolctl's limiter also builds its ``info`` dictionaries twice, ~9 us
a fit, a hundredth of a small LMM's refit).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_state: dict = {"depth": 0, "blas": None, "original": [], "stale": False}


def rescan_blas() -> None:
    """Find the loaded BLAS libraries again when the next fit starts (after one more was
    loaded: the system BLAS that CHOLMOD calls)."""
    with _lock:
        _state["stale"] = True


@contextmanager
def single_threaded_blas(active: bool = True) -> Iterator[None]:
    """Limit BLAS to one thread inside the block (no-op when ``active`` is False)."""
    if not active:
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            if _state["blas"] is None or _state["stale"]:
                _state["stale"] = False
                from threadpoolctl import ThreadpoolController  # not needed on the fast path
                _state["blas"] = [lib for lib in ThreadpoolController().lib_controllers
                                  if lib.user_api == "blas"]
            _state["original"] = [lib.get_num_threads() for lib in _state["blas"]]
            for lib in _state["blas"]:
                lib.set_num_threads(1)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                for lib, threads in zip(_state["blas"], _state["original"]):
                    lib.set_num_threads(threads)
