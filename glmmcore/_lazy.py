"""Public names of a package imported from its submodules on first use.

``import glmmcore`` then costs numba's import and little else: pandas, the
fitting machinery, inference and batch work load when a name that needs them is
first used (a small fit from the command line loads only what it runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(namespace: dict[str, Any], attributes: dict[str, str],
                 submodules: tuple[str, ...] = ()) -> tuple[Callable[[str], Any],
                                                            Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__``.

    Parameters
    ----------
    namespace
        The package's ``globals()``; a name once imported is stored there.
    attributes
        Public name -> the submodule (relative to the package) that defines it.
    submodules
        Submodules that are public names themselves.
    """
    package = namespace["__name__"]

    def get_attribute(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        source = attributes.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{source}", package), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *attributes, *submodules})

    return get_attribute, names
