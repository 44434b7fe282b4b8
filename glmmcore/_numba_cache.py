"""numba's set-up for glmmcore: where it caches compiled code, and scipy's BLAS module.

Imported first by ``glmmcore/__init__``, before any ``cache=True`` function is
defined.  numba caches beside the source, or in the user's cache directory
(``~/.cache/numba``) when the package is not writable (a system or container
install).  Where neither is writable, numba would refuse to define a
``cache=True`` function at all, so glmmcore points numba's cache at a folder of
the temporary directory instead.  ``NUMBA_CACHE_DIR``, when set, always wins.

numba imports ``scipy.linalg.cython_blas`` when a process loads its first compiled
function; the ordinary import runs ``scipy.linalg``'s ``__init__`` (0.3-0.5 s, more than a
small fit).  :func:`preload_blas` registers the compiled module on its own first
(:mod:`glmmcore.linalg.scipy_ext`), whichever path's kernels load first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ensure_writable_cache() -> str | None:
    """Give numba a writable cache directory when neither the package's folders nor the
    user's cache directory is writable; the directory chosen, or None if numba's own
    choice stands (``NUMBA_CACHE_DIR`` set, or a writable place found)."""
    import numba
    from numba.misc.appdirs import AppDirs

    if numba.config.CACHE_DIR:
        return None
    if _writable(Path(__file__).resolve().parent):
        return None
    if _writable(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)):
        return None
    fallback = Path(tempfile.gettempdir()) / f"glmmcore-numba-{_user_tag()}"
    if not _writable(fallback):
        return None                            # nothing writable at all: numba says so
    numba.config.CACHE_DIR = str(fallback)
    return str(fallback)


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def _user_tag() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid else os.environ.get("USERNAME", "user")


def preload_blas() -> None:
    """Load ``scipy.linalg.cython_blas`` without ``scipy.linalg`` (see the module doc)."""
    from .linalg.scipy_ext import extension
    extension("scipy.linalg.cython_blas")


ensure_writable_cache()
preload_blas()
