"""Exceptions and warnings raised by glmmcore.

Every error a user can cause derives from :class:`GlmmError` and from the
built-in class that describes it best (``ValueError`` for bad input), so that
callers can catch either.  Messages name the formula term, column, row or value
at fault.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any


class GlmmError(Exception):
    """Base class of every error raised by glmmcore."""


class FormulaError(GlmmError, ValueError):
    """A model formula that cannot be parsed or does not fit the data.

    Parameters
    ----------
    message
        What is wrong.
    formula
        The whole formula text, quoted in the message.
    span
        ``(start, end)`` character positions of the offending part of
        ``formula``; the message underlines it.
    """

    def __init__(self, message: str, formula: str | None = None,
                 span: tuple[int, int] | None = None) -> None:
        self.formula = formula
        self.span = span
        self.reason = message
        text = message
        if formula is not None:
            text = f"{message}\n    {formula}"
            if span is not None:
                start, end = span
                text += "\n    " + " " * start + "^" * max(1, end - start)
        super().__init__(text)


class DataError(GlmmError, ValueError):
    """Data that cannot be used as given (empty, wrong type, bad values)."""


class MissingColumnError(DataError, KeyError):
    """A variable named in the formula or in an argument is not a column."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ResponseError(DataError):
    """A response outside the support of the chosen family.

    Attributes
    ----------
    suggested_family
        The family that would take this response (e.g. ``"binomial"`` for a
        two-level column), or None.
    """

    def __init__(self, message: str, suggested_family: str | None = None) -> None:
        self.suggested_family = suggested_family
        super().__init__(message)


class FamilyError(GlmmError, ValueError):
    """An unknown family or link, or a family that does not meet the interface."""


class CommandLineError(GlmmError, ValueError):
    """A command-line argument of ``glmm`` that cannot be used (e.g. an unwritable ``--json``)."""


class CheckpointError(GlmmError, ValueError):
    """A batch checkpoint directory that belongs to another batch (other arguments or data)
    or cannot be read."""


class ModelSpecError(GlmmError, ValueError):
    """A model that cannot be estimated as specified (e.g. no residual variance left)."""


class ArgumentError(ModelSpecError, TypeError):
    """An argument of the wrong type or out of range (``REML="FALSE"``, ``nAGQ=2.5``)."""


class ConvergenceError(GlmmError, RuntimeError):
    """A numerical procedure that did not converge.

    Attributes
    ----------
    diagnostics
        What was known when it stopped (iterations, last change, ...).
    """

    def __init__(self, message: str, diagnostics: dict[str, Any] | None = None) -> None:
        self.diagnostics = dict(diagnostics or {})
        super().__init__(message)


class GlmmWarning(UserWarning):
    """Base class of glmmcore's warnings."""


class ConvergenceWarning(GlmmWarning):
    """The fit finished, but the convergence checks flagged a problem."""


class IdentifiabilityWarning(ConvergenceWarning):
    """The data cannot identify part of the model: a perfect fit, separation, a
    residual variance of zero, more parameters than observations (the codes in
    ``fit.convergence.flags`` say which)."""


class SingularFitWarning(GlmmWarning):
    """A boundary (singular) fit: a variance component is estimated as 0, or a
    correlation as +-1 (``fit.is_singular``)."""


class IgnoredArgumentWarning(GlmmWarning):
    """An argument that does not apply to the model was given and is ignored
    (lme4's "extra argument(s) disregarded")."""


class RankDeficiencyWarning(GlmmWarning):
    """Fixed-effects columns were dropped because they are aliased."""


class MissingValueWarning(GlmmWarning):
    """Rows with missing values were left out: rows a transformation in the formula made
    NaN (dropped from the fit and counted), or rows of new data (their predictions are NaN)."""


class FamilyPluginWarning(GlmmWarning):
    """A family plugin could not be loaded, or two plugins share a name."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside glmmcore."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning]) -> None:
    """Emit a warning attributed to the first caller outside glmmcore
    (:func:`user_stacklevel`), whichever public function led here."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


def show(value: Any) -> str:
    """A value as an error message quotes it (numpy scalars as plain Python)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    return repr(value)
