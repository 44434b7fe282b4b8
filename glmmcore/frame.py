"""The model frame: the rows and columns a model uses, checked and cleaned.

Like lme4's ``model.frame`` with ``na.action = na.omit``: rows with a missing
value in any variable the model uses are dropped and counted.  Every check
here runs before any matrix is built, and every error names the column (and
the first bad row) at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, MissingColumnError, show
from .formula import ParsedFormula
from .model_matrix import simple_variables


@dataclass
class ModelFrame:
    """Rows kept for fitting and what was dropped.

    Attributes
    ----------
    data
        The used columns of the complete rows, with a fresh ``RangeIndex``.
    row_labels
        Index labels of the kept rows in the data as given.
    n_dropped
        Rows dropped because a used variable was missing.
    weights, offset
        Prior weights and offset passed as arguments (``None`` if not given),
        aligned with ``data``.
    """

    data: pd.DataFrame
    row_labels: pd.Index
    n_dropped: int
    weights: np.ndarray | None
    offset: np.ndarray | None

    @property
    def nobs(self) -> int:
        """Number of rows kept."""
        return len(self.data)


def as_dataframe(data: Any) -> pd.DataFrame:
    """Convert a data frame of any common kind to pandas.

    Accepts pandas, polars and pyarrow tables, anything exposing the Arrow
    C stream interface or ``__dataframe__``, and mappings of columns.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):  # polars, pyarrow
        return data.to_pandas()
    if hasattr(data, "__arrow_c_stream__"):
        import pyarrow as pa
        return pa.table(data).to_pandas()
    if hasattr(data, "__dataframe__"):
        return pd.api.interchange.from_dataframe(data)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise DataError(f"data must be a data frame (pandas, polars, pyarrow) or a dict of "
                    f"columns, not {type(data).__name__}")


def formula_variables(parsed: ParsedFormula) -> list[str]:
    """Names of the data columns a parsed formula uses, in first-use order."""
    names: list[str] = []
    exprs = [*parsed.response, parsed.fixed, *parsed.offsets,
             *(term.expr for term in parsed.random)]
    for expr in exprs:
        found = simple_variables(expr)
        if found is None:
            from formulaic import Formula  # lazy: see formula._check_formulaic
            found = sorted(Formula(expr).required_variables)
        for name in found:
            if name not in names:
                names.append(name)
    for term in parsed.random:
        for name in term.group:
            if name not in names:
                names.append(name)
    return names


def model_frame(parsed: ParsedFormula, data: Any, *, weights: Any = None,
                offset: Any = None) -> ModelFrame:
    """Select, check and clean the rows and columns a model uses.

    Parameters
    ----------
    parsed
        The parsed formula.
    data
        The data (see :func:`as_dataframe`).
    weights, offset
        A column name or an array of one value per row of ``data``.

    Raises
    ------
    MissingColumnError
        A formula variable or a named weights/offset column is not in ``data``.
    DataError
        Empty data, every row missing, infinite values, bad weights.
    """
    frame = as_dataframe(data)
    if frame.shape[0] == 0:
        raise DataError("the data frame is empty (no rows)")
    names = formula_variables(parsed)
    _check_columns(names, frame, parsed.text)
    w = _argument_column(weights, frame, "weights")
    off = _argument_column(offset, frame, "offset")
    used = frame[names]
    keep = ~used.isna().any(axis=1).to_numpy()
    if off is not None:
        keep &= ~np.isnan(off)
    if w is not None:
        _check_weights(w, frame.index, keep)
    n_kept = int(keep.sum())
    if n_kept == 0:
        worst = used.isna().sum().idxmax()
        raise DataError(f"every row has a missing value in a variable the model uses "
                        f"(column '{worst}' alone is missing in {used[worst].isna().sum()} rows)")
    kept = used.loc[keep].reset_index(drop=True)
    _check_finite(kept, frame.index[keep])
    return ModelFrame(data=kept, row_labels=frame.index[keep], n_dropped=len(frame) - n_kept,
                      weights=None if w is None else w[keep],
                      offset=None if off is None else off[keep])


def _check_columns(names: list[str], frame: pd.DataFrame, formula: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        cols = ", ".join(map(str, list(frame.columns)[:20]))
        more = " ..." if frame.shape[1] > 20 else ""
        raise MissingColumnError(f"variable '{missing[0]}' in formula '{formula}' is not a "
                                 f"column of the data (columns: {cols}{more})")


def _argument_column(value: Any, frame: pd.DataFrame, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in frame.columns:
            raise MissingColumnError(f"{what} column '{value}' is not a column of the data")
        series = frame[value]
        label = f"{what} column '{value}'"
    else:
        series = pd.Series(np.asarray(value).ravel() if np.ndim(value) else value)
        label = what
    if len(series) != len(frame):
        raise DataError(f"{label} has {len(series)} values; the data have {len(frame)} rows")
    try:
        out = pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataError(f"{label} must be numeric") from None
    return out


def _check_weights(w: np.ndarray, labels: pd.Index, keep: np.ndarray) -> None:
    bad = np.flatnonzero(keep & ~(w > 0) | keep & ~np.isfinite(w))
    if bad.size:
        i = bad[0]
        what = "missing" if np.isnan(w[i]) else show(w[i])
        raise DataError(f"weights must be finite and positive; row {show(labels[i])} has "
                        f"{what} ({bad.size} bad rows)")


def _check_finite(frame: pd.DataFrame, labels: pd.Index) -> None:
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(f"column '{name}' has an infinite value in row "
                                f"{show(labels[bad[0]])} ({bad.size} such rows)")
