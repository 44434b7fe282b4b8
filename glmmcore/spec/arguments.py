"""Checks of the public arguments' types and ranges, before any work.

A wrong type must not slip through as a truthy value (``REML="FALSE"`` is a
non-empty string, hence true) or fail deep inside as Python's own
``TypeError``: each check raises :class:`~glmmcore.errors.ArgumentError`
naming the argument, the value and what is accepted.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from ..errors import ArgumentError, FamilyError


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; only ``True``/``False`` (numpy's too) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentError(f"{name} must be True or False, not {value!r} "
                        f"({type(value).__name__})")


def check_int(value: Any, name: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an int: an integer, or a float with a whole value (``1e5``)."""
    ok = isinstance(value, Integral) or (isinstance(value, Real) and math.isfinite(value)
                                         and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not ok:
        raise ArgumentError(f"{name} must be a whole number, not {value!r} "
                            f"({type(value).__name__})")
    out = int(value)
    _check_range(out, name, minimum, maximum)
    return out


def check_real(value: Any, name: str, minimum: float | None = None,
               maximum: float | None = None) -> float:
    """``value`` as a finite float within the given bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real) \
            or not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number, not {value!r} "
                            f"({type(value).__name__})")
    out = float(value)
    _check_range(out, name, minimum, maximum)
    return out


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` as one of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                            f"not {value!r}")
    return value


def check_str(value: Any, name: str) -> str:
    """``value`` as a string."""
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be a string, not {type(value).__name__}")
    return value


def check_link(link: Any) -> Any:
    """``link``: None or a link name."""
    if link is not None and not isinstance(link, str):
        raise FamilyError(f"link must be a link name (a string) or None, not "
                          f"{type(link).__name__}")
    return link


def check_nagq(value: Any) -> int:
    """nAGQ: 0, 1 or a number of quadrature nodes (a whole number, at least 0)."""
    return check_int(value, "nAGQ", minimum=0)


def _check_range(value: float, name: str, minimum: float | None,
                 maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ArgumentError(f"{name} must be at most {maximum}, not {value}")
