"""Fits of one built model to a block of responses, each turned into a value.

:class:`ModelMapper` is the chunk fitter of :func:`glmmcore.batch.engine.fit_model`:
the backends of :mod:`glmmcore.batch.backends` run its :meth:`ModelMapper.fit_chunk`
on chunks of responses as they run :class:`~glmmcore.batch.rows.ChunkFitter`'s for
``fit_many``, in threads, processes or on a Dask cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GlmmError

# a fit that fails with one of these is the response's entry (on_error="record");
# anything else is a bug and propagates
FIT_ERRORS = (GlmmError, FloatingPointError, np.linalg.LinAlgError)


@dataclass
class ChunkValues:
    """One chunk's entries in column order: ``per_fit(fit)``, or a failed fit's exception."""

    index: int
    values: list


class ModelMapper:
    """Fits responses to one model and maps each fit by ``per_fit``.

    Parameters
    ----------
    model
        The :class:`~glmmcore.MixedModel`.
    per_fit
        A function of a fit (default: the fit itself); it runs where the fit
        ran, so only its value travels back from a worker process.
    control, start
        As :meth:`~glmmcore.MixedModel.fit`'s.
    used_rows
        True when a response has one value per observation the model used
        (``nobs``), False for one per row of the model's data.
    on_error
        ``"record"``: a failed fit's entry is its exception; ``"raise"``: it
        propagates.
    """

    def __init__(self, model: Any, per_fit: Callable[[Any], Any] | None = None, *,
                 control: Any = None, start: Any = None, used_rows: bool = False,
                 on_error: str = "record") -> None:
        self.model, self.per_fit = model, per_fit
        self.control, self.start = control, start
        self.used_rows, self.on_error = used_rows, on_error

    def fit_chunk(self, index: int, names: list[str], Y: np.ndarray) -> ChunkValues:
        """Fit every column of ``Y`` (dense, observations x responses)."""
        values = []
        for j in range(Y.shape[1]):
            try:
                fit = self.fit_one(Y[:, j])
            except FIT_ERRORS as error:
                if self.on_error == "raise":
                    raise
                values.append(error)
                continue
            values.append(fit if self.per_fit is None else self.per_fit(fit))
        return ChunkValues(index=index, values=values)

    def fit_one(self, y: np.ndarray) -> Any:
        """The fit of one response."""
        model = self.model
        response = model.response_from_used(y) if self.used_rows else model.response_from(y)
        return model.fit_response(response, control=self.control, start=self.start)
