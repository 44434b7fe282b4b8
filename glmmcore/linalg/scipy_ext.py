"""scipy's compiled modules without the packages around them.

glmmcore needs three compiled modules of scipy: ``scipy.linalg.cython_lapack``
(the addresses of LAPACK's ``dpotrf`` and ``dpotri``, called from numba code),
``scipy.linalg.cython_blas`` (numba's numpy support imports it when the first
compiled function is loaded) and ``scipy.optimize._lbfgsb`` (L-BFGS-B's
``setulb``).  Importing them the
usual way runs ``scipy.linalg``'s and ``scipy.optimize``'s ``__init__``, which
import most of scipy: 0.37 s and 0.8 s measured on this project's machine,
more than a small model's whole first fit.  The modules themselves import
nothing from scipy, so :func:`extension` loads the module file directly
(4-7 ms) and registers it under its own name, where a later ``import
scipy.linalg`` finds it.  When the file is not where scipy keeps it (another
layout, another version), the ordinary import runs instead.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

_LOADING = threading.Lock()


def extension(name: str) -> ModuleType:
    """The compiled module ``name`` (``"scipy.<package>.<module>"``), loaded on its own.

    Parameters
    ----------
    name
        Dotted name of a compiled module inside scipy.

    Returns
    -------
    module
        The module, also in ``sys.modules`` under ``name``.
    """
    with _LOADING:      # fits in threads may ask for L-BFGS-B's module at once
        if name in sys.modules:
            return sys.modules[name]
        return _load(name)


def _load(name: str) -> ModuleType:
    """Load ``name`` from its file (or by the ordinary import) and register it."""
    path = _module_file(name)
    if path is None:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:   # pragma: no cover - a file the loader refuses
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError:    # pragma: no cover - let the ordinary import say what is wrong
        del sys.modules[name]
        return importlib.import_module(name)
    return module


def _module_file(name: str) -> Path | None:
    """The compiled file of ``name`` in the installed scipy, or None.

    scipy's top package is imported (20 ms): it sets up the shared libraries
    its compiled modules link to where the platform needs that.
    """
    scipy = importlib.import_module("scipy")
    parts = name.split(".")[1:]
    folder = Path(scipy.__file__).parent.joinpath(*parts[:-1])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / (parts[-1] + suffix)
        if candidate.is_file():
            return candidate
    return None
