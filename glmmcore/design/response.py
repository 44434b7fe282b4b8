"""The response side of a model: y, prior weights, offset and family.

Kept apart from the predictor side (:mod:`glmmcore.design.predictor`) as lme4 does:
the same predictor serves many responses.  The family checks and converts
the raw response (a binomial family, for instance, accepts 0/1, booleans,
two-level strings and ``cbind`` counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, show
from ..spec.expression import evaluate
from ..spec.formula import ParsedFormula
from ..spec.frame import ColumnTable, ModelFrame, as_pandas, check_magnitude, value_variables


@dataclass
class Response:
    """y, weights and offset, aligned with the model frame's rows.

    Attributes
    ----------
    name
        Label of the response (its expression).
    y
        Response as float64 (a proportion for binomial counts).
    weights
        Prior weights (ones when none were given; the number of trials for
        binomial counts).
    offset
        Offset on the linear-predictor scale (zeros when none).
    family
        The family object.
    info
        Facts about how the response was read (e.g. the success level).
    """

    name: str
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: Any
    info: dict = field(default_factory=dict)


def evaluate_expression(expr: str, data: pd.DataFrame | ColumnTable, formula: str) -> pd.Series:
    """Values of one expression: a column as it is, or a Python expression of columns.

    On a model frame's table the expression was evaluated already (see
    :mod:`glmmcore.spec.derived`), where rows it made NaN were dropped.
    """
    if expr in data.columns:
        return data.series(expr) if isinstance(data, ColumnTable) else data[expr]
    found = data.derived.get(("value", expr)) if isinstance(data, ColumnTable) else None
    if found is None:
        frame = as_pandas(data)
        columns = {n: frame[n] for n in value_variables(expr) if n in frame.columns}
        found = (evaluate(expr, columns, len(frame), None, formula), None)
    return pd.Series(found[0], name=expr, copy=False)


def build_response(parsed: ParsedFormula, frame: ModelFrame, family: Any) -> Response:
    """Read, check and convert the response for ``family``."""
    data = frame.table
    values = [evaluate_expression(e, data, parsed.text) for e in parsed.response]
    offset = np.zeros(frame.nobs)
    for expr in parsed.offsets:
        off = evaluate_expression(expr, data, parsed.text)
        offset += _numeric(off, f"offset({expr})")
    if frame.offset is not None:
        offset += _finite_offset(frame.offset, frame.row_labels)
    weights = np.ones(frame.nobs) if frame.weights is None else frame.weights.astype(float)
    name = parsed.response[0] if len(values) == 1 else f"cbind({', '.join(parsed.response)})"
    y, weights, info = family.prepare_response(values, weights, name, frame.row_labels)
    for vector, what in ((y, f"the response '{name}'"), (offset, "the offset"),
                         (weights, "the weights")):
        check_magnitude(np.asarray(vector, dtype=float), [what])
    return Response(name=name, y=np.ascontiguousarray(y, dtype=float),
                    weights=np.ascontiguousarray(weights, dtype=float),
                    offset=offset, family=family, info=info)


def _finite_offset(values: np.ndarray, rows: Any) -> np.ndarray:
    """The ``offset=`` argument must be finite (the formula's ``offset(...)`` terms are
    checked where they are evaluated, :mod:`glmmcore.spec.derived`)."""
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        hint = (": log(0) of a zero exposure? A row without exposure carries no information "
                "for a log-link model; drop it" if values[i] == -np.inf else "")
        raise DataError(f"the offset argument is {values[i]} in row {show(rows[i])} "
                        f"({bad.size} such row(s)){hint}")
    return values


def _numeric(series: pd.Series, label: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise DataError(f"{label} must be numeric, not {series.dtype}")
    return series.to_numpy(dtype=float)

