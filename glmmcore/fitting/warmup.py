"""Compile glmmcore's kernels ahead of the first fit, and say when a fit must compile.

Numba compiles each kernel on its first call and caches the machine code on
disk (beside the source, or in the user's cache directory where the install
is read-only), so only the first process of a new install, image or CI run
pays for it.  :func:`warmup` pays it up front: it fits small simulated models
that take every compiled path (linear mixed models of each covariance layout
and backend, the GLMM loops with Fisher and Newton steps, an extra parameter,
quadrature, the gradients, prediction and simulation) and compiles the array
kernels of every family and link, with a progress bar on stderr.

:func:`announce_compilation` prints, once per process and kind of model, that
a fit is about to compile and how long that takes, so that a first fit's wait
is explained rather than mysterious.

Where the compiled code is cached when the package is not writable:
:mod:`glmmcore._numba_cache`.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

# CPU seconds of a cold compile on the machine bench/cold_start.py ran on (bench/README.md)
EXPECTED_SECONDS = {("lmm", "regular"): 42, ("lmm", "fast"): 12, ("lmm", "vector"): 69,
                    ("glmm", "regular"): 76, ("glmm", "fast"): 25, ("lmm", "cold"): 7,
                    ("glmm", "cold"): 10}
PATHS = ("regular", "fast", "vector")
_announced: set[tuple[str, str]] = set()
_announce_lock = threading.Lock()


@functools.cache     # looked up on every fit: the imports below cost ~10 us a call
def _representative(kind: str, path: str) -> Any:
    """A compiled function every fit of this kind (``"lmm"``, ``"glmm"``) on this path
    calls and no other path does: ``"regular"`` (the blocked factorization), ``"fast"``
    (one scalar term, :mod:`glmmcore.fitting.scalar_fast`) or ``"vector"`` (an LMM's one
    vector term, :mod:`glmmcore.fitting.vector_fast`); its cache shows whether the
    path's kernels were compiled before."""
    if path == "vector":
        from ..objectives.vector_lmm import fit_columns
        return fit_columns
    if path == "fast":
        if kind == "lmm":
            from ..objectives.scalar_lmm import fit_columns
            return fit_columns
        from ..objectives.scalar_glmm import fit_columns
        return fit_columns
    if kind == "lmm":
        from ..linalg.blocked import _factor
        return _factor
    from ..objectives.pirls_kernel import pirls_loop
    return pirls_loop


def must_compile(kind: str, path: str = "regular") -> bool:
    """Whether a fit of this kind on this path will compile rather than load its
    kernels: none is loaded in this process and numba's cache holds none."""
    dispatcher = _representative(kind, path)
    if dispatcher.overloads:
        return False
    try:
        return not dispatcher._cache._cache_file._load_index()
    except (AttributeError, OSError, EOFError):   # caching off, another numba: cannot tell
        return False


def announce_compilation(kind: str, path: str = "regular",
                         stream: TextIO | None = None) -> None:
    """Say once per process, on stderr, that a fit is about to compile its kernels
    (``path`` one of :data:`PATHS`), or (``path="cold"``) that it takes the sparse
    factorization while a background process compiles them
    (:mod:`glmmcore.fitting.cold_path`)."""
    with _announce_lock:
        if (kind, path) in _announced:
            return
        _announced.add((kind, path))
    what = "linear mixed model" if kind == "lmm" else "GLMM"
    if path == "cold":
        message = (f"glmmcore: the {what} kernels are not compiled yet; this fit takes the "
                   f"CHOLMOD path (about {EXPECTED_SECONDS[kind, path]} s of CPU the first "
                   "time) while a background process compiles them for later fits and "
                   "processes ('glmm warmup' compiles ahead; GLMMCORE_COLD_START=0 compiles "
                   "here instead)")
    elif must_compile(kind, path):
        message = (f"glmmcore: compiling the {what} kernels on first use (about "
                   f"{EXPECTED_SECONDS[kind, path]} s of CPU, once: later processes load "
                   "them from the cache; 'glmm warmup' compiles everything ahead)")
    else:
        return
    print(message, file=stream or sys.stderr, flush=True)


def _simulated(design: str, **size: Any) -> Any:
    from ..simulation import simulate
    return simulate(design, seed=1, **size)


def _fit(formula: str, data: Any, **kwargs: Any) -> Any:
    from ..api import fit
    control = {"cold_start": False, **(kwargs.pop("control", None) or {})}
    return fit(formula, data, control=control, **kwargs)


def _lmm_steps() -> list[tuple[str, Callable[[], Any]]]:
    gpa = _simulated("gpa", n_students=40)
    pupils = _simulated("pupils", n_pupils=300, n_primary=15, n_secondary=10)
    nurses = _simulated("nurses", n_hospitals=8)

    def slopes() -> None:
        fit = _fit(gpa.formula, gpa.data)
        fit.predict(gpa.data.head(20))
        fit.simulate(2, seed=1)
        _ = fit.condvar
        _fit(gpa.formula, gpa.data, REML=False)

    def sparse() -> None:
        if importlib.util.find_spec("sksparse") is not None:     # CHOLMOD is optional
            _fit(gpa.formula, gpa.data, control={"backend": "sparse"})

    return [
        ("LMM, random intercept", lambda: _fit("gpa ~ occasion + (1 | student)", gpa.data)),
        ("LMM, correlated slopes, prediction", slopes),
        ("LMM, crossed factors", lambda: _fit(pupils.formula, pupils.data)),
        ("LMM, nested factors", lambda: _fit(nurses.formula, nurses.data)),
        ("LMM, sparse backend", sparse),
    ]


def _glmm_steps() -> list[tuple[str, Callable[[], Any]]]:
    speed = _simulated("speed_dating", n_participants=40, n_partners=20,
                       dates_per_participant=6)
    patents = _simulated("patents", n_patents=400, n_years=8)
    one_term = "decision ~ attractive_sc + (1 | iid)"
    data = speed.data

    def binomial() -> None:
        fit = _fit(speed.formula, data, family="binomial")
        fit.predict(data.head(20))
        fit.simulate(2, seed=1)

    def positive(family: str) -> Callable[[], Any]:
        def run() -> None:
            frame = patents.data.assign(y=patents.data["ncit"] + 1.0)
            _fit("y ~ opposition + biopharm + (1 | year)", frame, family=family)
        return run

    return [
        ("binomial GLMM (Laplace), prediction", binomial),
        ("binomial GLMM, one scalar term", lambda: _fit(one_term, data, family="binomial")),
        ("binomial GLMM, nAGQ = 0", lambda: _fit(speed.formula, data, family="binomial",
                                                 nAGQ=0)),
        ("binomial GLMM, quadrature", lambda: _fit(one_term, data, family="binomial",
                                                   nAGQ=5)),
        ("binomial GLMM, probit (Newton steps)",
         lambda: _fit(speed.formula, data, family="binomial", link="probit")),
        ("Poisson GLMM", lambda: _fit(patents.formula, patents.data, family="poisson")),
        ("negative binomial GLMM", positive("negative_binomial")),
        ("gamma GLMM", positive("gamma")),
    ]


def _family_kernel_steps() -> list[tuple[str, Callable[[], Any]]]:
    from ..objectives.family_kernels import family_kernels
    from ..registry import available_families, get_family

    steps = []
    for name in available_families():
        family = get_family(name)
        for link in type(family).links:
            steps.append((f"{name} family kernels, {link} link",
                          lambda name=name, link=link: family_kernels(get_family(name, link))))
    return steps


def warmup(progress: bool = True, stream: TextIO | None = None) -> float:
    """Compile every kernel ahead, so that no later fit waits for the compiler.

    For images and clusters: run it once where the package (or the user's
    cache directory) is written, e.g. ``RUN glmm warmup`` in a Dockerfile; every
    later process loads the compiled code from the cache in milliseconds.

    Parameters
    ----------
    progress
        Show a progress bar (on ``stream``, stderr by default).
    stream
        Where the progress goes.

    Returns
    -------
    float
        Seconds taken.
    """
    out = stream or sys.stderr
    start = time.perf_counter()
    _announced.update((kind, path) for kind in ("lmm", "glmm")   # the wait is announced here
                      for path in (*PATHS, "cold"))
    steps = _lmm_steps() + _glmm_steps() + _family_kernel_steps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # small simulated fits may be singular
        for i, (label, step) in enumerate(steps):
            if progress:
                _bar(out, i, len(steps), label, time.perf_counter() - start)
            step()
    seconds = time.perf_counter() - start
    if progress:
        _bar(out, len(steps), len(steps), "done", seconds)
        out.write("\n")
        out.flush()
    return seconds


def _bar(out: TextIO, done: int, total: int, label: str, seconds: float) -> None:
    width = 24
    filled = width * done // total
    line = (f"\rglmmcore warmup [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{seconds:5.0f} s  {label}")
    out.write(f"{line:<100.100}")
    out.flush()
