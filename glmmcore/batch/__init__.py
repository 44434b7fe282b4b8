"""Many responses fitted to one model: :func:`fit_many` and its :class:`BatchResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .engine import fit_many
    from .result import BatchResult

__all__ = ["BatchResult", "fit_many"]

# imported on first use: ``glmm fit`` reads the ``batch`` subcommand's options
# (glmmcore.batch.cli) and needs none of the engine
__getattr__, __dir__ = lazy_exports(globals(), {"fit_many": "engine", "BatchResult": "result"})
