"""A first fit without the long compile: the CHOLMOD path while the kernels compile.

The compiled kernels of the blocked factorization and of the fast paths take
about a minute of CPU to compile in a process whose numba cache is empty (a new
install, virtualenv, image or CI run; bench/cold_start.py).  The sparse
factorization (:mod:`glmmcore.linalg.sparse`: CHOLMOD, PIRLS in Python, BOBYQA)
needs a handful of small kernels instead, compiled in seconds, and reaches the
same optimum.  So a fit whose own path must compile (:func:`takes_cold_path`)
is fitted on the sparse factorization of the same model, and a background
process (``glmm warmup --background``, niced) compiles every kernel into the
cache meanwhile; later fits, in this process once the cache is filled and in
every later process, take the compiled path.

What differs from the compiled path: the time of this fit (seconds, not
milliseconds) and round-off (the log-likelihood agrees to the optimizer's
tolerance, about 1e-12 relative on the demo's models); the result says
``result.extra["cold_path"]`` is True.  Fits that would not gain are left alone:
a model too large for the sparse path to be quick (:data:`COLD_MAX_ROWS`), an
explicit ``control`` backend or start, quadrature (``nAGQ > 1``), batch fits
(:func:`glmmcore.fit_many` and the bootstrap compile: thousands of fits repay it;
``control={"cold_start": False}`` does the same for any fit).

``GLMMCORE_COLD_START=0`` turns the cold path off (a fit then compiles in
process, as before); ``GLMMCORE_BACKGROUND_COMPILE=0`` keeps the cold path but
starts no background process (the kernels then compile when a fit cannot take
the cold path, or by ``glmm warmup``).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Any

from .warmup import must_compile

COLD_MAX_ROWS = 100_000    # more rows: the compile is a smaller part of the fit, which the
                           # sparse path in Python may take longer than the compile
_spawned: dict[str, Any] = {}     # the background compile's Popen, once started
_spawn_lock = threading.Lock()


def enabled(variable: str) -> bool:
    """Whether an on-by-default switch of the environment is on (not 0/false/no/off)."""
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


def compiled_path(model: Any) -> str:
    """The compiled path a fit of the model takes (:func:`glmmcore.fitting.warmup.must_compile`'s
    names): ``"fast"``, ``"vector"`` or ``"regular"``."""
    from .scalar_fast import applies as scalar_applies
    if scalar_applies(model):
        return "fast"
    from .vector_fast import applies as vector_applies
    if vector_applies(model):
        return "vector"
    return "regular"


def takes_cold_path(model: Any, control: Any, start: Any) -> bool:
    """Whether this fit takes the sparse factorization while the kernels compile
    (the cheap tests first: a warm process pays a few microseconds a fit)."""
    if (not control.cold_start or start is not None or control.backend != "auto"
            or model.predictor.backend != "blocked" or model.nobs > COLD_MAX_ROWS
            or (not model.is_lmm and model.nagq > 1)):
        return False
    kind = "lmm" if model.is_lmm else "glmm"
    path = model.once("compiled_path", lambda: compiled_path(model)) if control.fast_path \
        else "regular"
    return (must_compile(kind, path) and enabled("GLMMCORE_COLD_START")
            and importlib.util.find_spec("sksparse") is not None)


def fit_cold(model: Any, response: Any, control: Any) -> Any:
    """Fit on the sparse factorization of ``model`` (kept on the model) and start the
    background compile; the result belongs to ``model``."""
    from ..linalg.threads import single_threaded_blas
    start_background_compile()
    # built before the BLAS limit: it loads CHOLMOD and the BLAS that the limit must find
    twin = model.once("cold_twin", lambda: _sparse_twin(model))
    with single_threaded_blas():
        if model.is_lmm:
            from .lmm_fit import fit_lmm
            result = fit_lmm(twin, response, control)
        else:
            from .glmm_fit import fit_glmm
            result = fit_glmm(twin, response, control)
    result.model = model
    result.extra["cold_path"] = True
    return result


def _sparse_twin(model: Any) -> Any:
    """The model with the sparse factorization's predictor and its own kept parts."""
    from ..design.predictor import build_predictor
    twin = copy.copy(model)
    predictor = model.predictor
    twin.predictor = build_predictor(predictor.fixed, predictor.reterms, "sparse")
    twin.predictor.linear_predictor_args()
    twin._free_factors, twin._kept = {}, {}
    return twin


def start_background_compile() -> Any:
    """Start ``glmm warmup --background`` once per process (None if switched off).

    The child fills the same numba and kernel caches; it takes a lock, so that
    several processes starting at once compile once.  Returns the ``subprocess.Popen``.
    """
    if not enabled("GLMMCORE_BACKGROUND_COMPILE"):
        return None
    # imported here: a fit that starts no background compile does not import subprocess
    import subprocess
    with _spawn_lock:
        if "warmup" in _spawned:
            return _spawned["warmup"]
        import numba
        env = dict(os.environ)
        if numba.config.CACHE_DIR:                 # a fallback chosen in this process
            env.setdefault("NUMBA_CACHE_DIR", numba.config.CACHE_DIR)
        package = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package, env.get("PYTHONPATH")) if p)
        child = subprocess.Popen(
            [sys.executable, "-m", "glmmcore", "warmup", "--quiet", "--background"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        _spawned["warmup"] = child
        return child


def background_lock_path() -> Path:
    """The lock a background compile holds: one per cache location and package."""
    import hashlib
    import tempfile

    import numba
    where = f"{numba.config.CACHE_DIR}|{Path(__file__).resolve().parents[1]}"
    digest = hashlib.sha1(where.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"glmmcore-warmup-{digest}.lock"


def hold_background_lock() -> Any:
    """The open lock file if this process got the background-compile lock, else None
    (another process compiles).  Where file locks do not exist, always the file."""
    handle = open(background_lock_path(), "a")
    try:
        import fcntl
    except ImportError:                             # Windows: no lock, compile anyway
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
