"""Many responses fitted to one model: :func:`fit_many` and its :class:`BatchResult`."""

from .engine import fit_many
from .result import BatchResult

__all__ = ["BatchResult", "fit_many"]
