"""The model frame: the rows and columns a model uses, checked and cleaned.

Like lme4's ``model.frame`` with ``na.action = na.omit``: rows with a missing
value in any variable the model uses are dropped and counted.  Every check
here runs before any matrix is built, and every error names the column (and
the first bad row) at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from ..errors import DataError, MissingColumnError, show
from .expression import evaluate, free_names, is_plain_name, known_name, parse_python
from .formula import ParsedFormula
from .model_matrix import column_values, simple_variables


class ColumnTable:
    """Columns of equal length by name, as arrays: what the design builders read.

    Reading a column is a dictionary lookup, where a DataFrame's costs 15-25
    us (pandas 3), and no DataFrame is built unless formulaic evaluates an
    expression or a caller asks for one (:attr:`frame`).

    Parameters
    ----------
    values
        Numpy or pandas extension arrays by column name.
    nrows
        Their length.
    """

    def __init__(self, values: dict[str, np.ndarray | ExtensionArray], nrows: int) -> None:
        self.values = values
        self.nrows = nrows
        self._frame: pd.DataFrame | None = None
        # the formula's evaluated expressions by (kind, text) (see glmmcore.spec.derived)
        self.derived: dict[tuple[str, str], Any] = {}

    @property
    def columns(self) -> Any:
        """The column names (a view of the keys)."""
        return self.values.keys()

    def __getitem__(self, name: str) -> np.ndarray | ExtensionArray:
        return self.values[name]

    def __len__(self) -> int:
        return self.nrows

    def series(self, name: str) -> pd.Series:
        """One column as a Series (index ``0..nrows-1``), object columns kept object."""
        values = self.values[name]
        if isinstance(values, np.ndarray) and values.dtype == object:
            return pd.Series(values, dtype=object, copy=False, name=name)
        return pd.Series(values, copy=False, name=name)

    def take(self, keep: np.ndarray) -> ColumnTable:
        """The rows where ``keep`` is true, in a new table (without derived values)."""
        return ColumnTable({name: values[keep] for name, values in self.values.items()},
                           int(keep.sum()))

    @property
    def frame(self) -> pd.DataFrame:
        """The columns as a DataFrame with a fresh ``RangeIndex`` (built once)."""
        if self._frame is None:
            self._frame = _as_frame(self.values, self.nrows)
        return self._frame


def as_pandas(data: pd.DataFrame | ColumnTable) -> pd.DataFrame:
    """``data`` as a DataFrame (a :class:`ColumnTable`'s is built on first use)."""
    return data.frame if isinstance(data, ColumnTable) else data


@dataclass
class ModelFrame:
    """Rows kept for fitting and what was dropped.

    Attributes
    ----------
    table
        The used columns of the complete rows (:class:`ColumnTable`).
    row_labels
        Index labels of the kept rows in the data as given.
    n_dropped
        Rows dropped because a used variable was missing (or a transformation
        of it NaN).
    weights, offset
        Prior weights and offset passed as arguments (``None`` if not given),
        aligned with the kept rows.
    kept_rows
        Positions of the kept rows in the data as given (``None`` when every
        row is kept).
    nan_terms
        Rows dropped because a transformation gave NaN, by term.
    """

    table: ColumnTable
    row_labels: pd.Index
    n_dropped: int
    weights: np.ndarray | None
    offset: np.ndarray | None
    kept_rows: np.ndarray | None = None
    nan_terms: dict[str, int] = field(default_factory=dict)

    @property
    def data(self) -> pd.DataFrame:
        """The used columns of the complete rows as a DataFrame, with a fresh ``RangeIndex``."""
        return self.table.frame

    @property
    def nobs(self) -> int:
        """Number of rows kept."""
        return self.table.nrows

    def drop(self, rows: np.ndarray) -> ModelFrame:
        """The frame without the rows where ``rows`` is true (counted as dropped)."""
        keep = ~rows
        kept = np.flatnonzero(keep) if self.kept_rows is None else self.kept_rows[keep]
        return ModelFrame(table=self.table.take(keep), row_labels=self.row_labels[keep],
                          n_dropped=self.n_dropped + int(rows.sum()),
                          weights=None if self.weights is None else self.weights[keep],
                          offset=None if self.offset is None else self.offset[keep],
                          kept_rows=kept)


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
    """Names of the data columns a parsed formula may use, in first-use order.

    Every name an expression refers to, whatever function wraps it
    (``scale(age)`` uses ``age``), except names called as functions and the
    modules ``np``/``numpy``.  A name that is not a column may still be a
    function of the namespace (:func:`glmmcore.spec.expression.known_name`).
    """
    found = [value_variables(e) for e in parsed.response]
    found.append(rhs_variables(parsed.fixed))
    found.extend(value_variables(e) for e in parsed.offsets)
    found.extend(rhs_variables(term.expr) for term in parsed.random)
    for term in parsed.random:
        found.extend(value_variables(atom) if atom in term.calls else [atom]
                     for atom in term.group)
    names: list[str] = []
    for group in found:
        names.extend(name for name in group if name not in names)
    return names


def value_variables(expr: str) -> list[str]:
    """Names a Python expression (response, offset, cbind argument) may take from the data."""
    return [expr] if is_plain_name(expr) else free_names(expr)


def rhs_variables(expr: str) -> list[str]:
    """Names a model-formula right-hand side may take from the data."""
    found = simple_variables(expr)
    if found is not None:
        return found
    from formulaic import Formula  # lazy: see formula._check_formulaic
    names: list[str] = []
    for term in Formula(expr):
        for factor in term.factors:
            method = factor.eval_method.value
            if method == "lookup":
                names.append(factor.expr)
            elif method == "python":
                names.extend(free_names(factor.expr))
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
        Empty data, every row missing, infinite values, bad weights, a
        variable naming more than one column.
    """
    frame = as_dataframe(data)
    if frame.shape[0] == 0:
        raise DataError("the data frame is empty (no rows)")
    names = _columns_used(formula_variables(parsed), frame, f"formula '{parsed.text}'")
    w = _argument_column(weights, frame, "weights")
    off = _argument_column(offset, frame, "offset")
    # column by column on arrays: DataFrame-wide selection, isna and .loc cost ~10x more
    columns = {name: _column(frame, name) for name in names}
    missing = {name: missing_mask(values) for name, values in columns.items()}
    keep = np.ones(len(frame), dtype=bool)
    for mask in missing.values():
        if mask is not None:
            keep &= ~mask
    if off is not None:
        keep &= ~np.isnan(off)
    if w is not None:
        _check_weights(w, frame.index, keep)
    n_kept = int(keep.sum())
    if n_kept == 0:
        _raise_all_missing(missing)
    everything = n_kept == len(frame)
    labels = frame.index if everything else frame.index[keep]
    kept = {name: _take(values, keep, everything) for name, values in columns.items()}
    _check_finite(kept, labels)
    return ModelFrame(table=ColumnTable(kept, n_kept), row_labels=labels,
                      n_dropped=len(frame) - n_kept,
                      weights=None if w is None else w[keep],
                      offset=None if off is None else off[keep],
                      kept_rows=None if everything else np.flatnonzero(keep))


def _column(frame: pd.DataFrame, name: str) -> np.ndarray | ExtensionArray:
    """The values of one column: a numpy array or a pandas extension array."""
    series = frame[name]
    if isinstance(series, pd.DataFrame):  # a repeated column label
        raise DataError(f"variable '{name}' names {series.shape[1]} columns of the data; "
                        "column names must be unique")
    return column_values(series)


def missing_mask(values: np.ndarray | ExtensionArray) -> np.ndarray | None:
    """Mask of the missing values of a column, or None when it cannot have any.

    The same test as ``DataFrame.isna`` makes, per column.
    """
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iub":  # integers and booleans have no missing value
            return None
        if values.dtype.kind == "f":
            return np.isnan(values)
        return pd.isna(values)
    return np.asarray(values.isna(), dtype=bool)


def _raise_all_missing(missing: dict[str, np.ndarray | None]) -> None:
    counts = {name: 0 if mask is None else int(mask.sum()) for name, mask in missing.items()}
    worst = max(counts, key=counts.__getitem__)  # the first of the most missing, as idxmax
    raise DataError(f"every row has a missing value in a variable the model uses "
                    f"(column '{worst}' alone is missing in {counts[worst]} rows)")


def _take(values: np.ndarray | ExtensionArray, keep: np.ndarray,
          everything: bool) -> np.ndarray | ExtensionArray:
    # a copy either way, so that the model never shares memory with the caller's data
    return values.copy() if everything else values[keep]


def _as_frame(columns: dict[str, np.ndarray | ExtensionArray], n: int) -> pd.DataFrame:
    """A data frame of the kept columns with a fresh ``RangeIndex``.

    Built from arrays, which skips index alignment; object columns go in as
    Series, or pandas would infer a string dtype for them.  The columns are
    keyed by position, then labelled with an object Index: string keys make
    pandas 3 infer an arrow-string Index, slower to build and to look names
    up in (building the frame and reading five columns took 0.63 ms that way,
    0.36 ms this way, measured warm; about 1.4 and 1.0 ms in a fit).
    """
    parts = {i: pd.Series(values, dtype=object, copy=False)
             if isinstance(values, np.ndarray) and values.dtype == object else values
             for i, values in enumerate(columns.values())}
    frame = pd.DataFrame(parts, index=pd.RangeIndex(n), copy=False)
    frame.columns = pd.Index(list(columns), dtype=object)
    return frame


def _columns_used(names: list[str], frame: pd.DataFrame, where: str) -> list[str]:
    """The names that are columns; a name neither a column nor a known function is an error."""
    columns = frame.columns
    missing = [n for n in names if n not in columns]
    if not missing:
        return names
    unknown = [n for n in missing if not known_name(n)]
    if unknown:
        cols = ", ".join(map(str, list(columns)[:20]))
        more = " ..." if frame.shape[1] > 20 else ""
        raise MissingColumnError(f"variable '{unknown[0]}' in {where} is not a "
                                 f"column of the data (columns: {cols}{more})")
    return [n for n in names if n in columns]


def _argument_column(value: Any, frame: pd.DataFrame, what: str) -> np.ndarray | None:
    """``weights=``/``offset=`` as floats: a column name, an expression of columns or values."""
    if value is None:
        return None
    if isinstance(value, str):
        series, label = _argument_expression(value, frame, what)
    elif isinstance(value, (np.ndarray, pd.Series, pd.api.extensions.ExtensionArray,
                            list, tuple)):
        array = value.to_numpy() if isinstance(value, pd.Series) else np.asarray(value)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise DataError(f"{what} must be one value per row of the data, not an array "
                            f"of shape {array.shape}")
        series, label = pd.Series(array), what
    else:
        raise DataError(f"{what} must be a column name, an expression of columns or one "
                        f"value per row of the data, not {type(value).__name__}")
    if len(series) != len(frame):
        raise DataError(f"{label} has {len(series)} values; the data have {len(frame)} rows")
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError(f"{label} must be numeric, not boolean")
    try:
        out = pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise DataError(f"{label} must be numeric, not {series.dtype}") from None
    return out


def _argument_expression(text: str, frame: pd.DataFrame, what: str) -> tuple[pd.Series, str]:
    """A column, or a Python expression of columns (``"1 / v"``), as lme4 evaluates it."""
    if text in frame.columns:
        return frame[text], f"{what} column '{text}'"
    if is_plain_name(text):
        raise MissingColumnError(f"{what} column '{text}' is not a column of the data")
    parse_python(text)
    names = _columns_used(free_names(text), frame, f"{what}={text!r}")
    values = evaluate(text, {n: frame[n].reset_index(drop=True) for n in names}, len(frame))
    if np.any(_infinite(values)):
        raise DataError(f"{what} expression '{text}' gives infinite values; it must be "
                        "finite")
    return pd.Series(values), f"{what} expression '{text}'"


def _infinite(values: Any) -> np.ndarray:
    finite = finite_mask(values)
    return np.zeros(len(values), dtype=bool) if finite is None else ~finite & ~_nan(values)


def _nan(values: Any) -> np.ndarray:
    mask = missing_mask(values)
    return np.zeros(len(values), dtype=bool) if mask is None else mask


def _check_weights(w: np.ndarray, labels: pd.Index, keep: np.ndarray) -> None:
    bad = np.flatnonzero(keep & ~(w > 0) | keep & ~np.isfinite(w))
    if bad.size:
        i = bad[0]
        what = "missing" if np.isnan(w[i]) else show(w[i])
        raise DataError(f"weights must be finite and positive; row {show(labels[i])} has "
                        f"{what} ({bad.size} bad rows)")


def _check_finite(columns: dict[str, np.ndarray | ExtensionArray], labels: pd.Index) -> None:
    for name, values in columns.items():
        finite = finite_mask(values)
        if finite is not None:
            bad = np.flatnonzero(~finite)
            if bad.size:
                raise DataError(f"column '{name}' has an infinite value in row "
                                f"{show(labels[bad[0]])} ({bad.size} such rows)")


# beyond these magnitudes the squares and cross-products of a column over- or underflow
# float64 (1e200**2 is inf, 1e-200**2 is 0): the column would be dropped as aliased
MAX_MAGNITUDE = 1e100
MIN_MAGNITUDE = 1e-100


def check_magnitude(values: np.ndarray, labels: list[str]) -> None:
    """Refuse columns whose cross-products would over- or underflow, naming the first.

    Parameters
    ----------
    values
        A vector or an ``n x p`` matrix.
    labels
        What each column is, for the message (``"column 'x' of the fixed effects"``).

    Raises
    ------
    DataError
        A column has a value beyond 1e100 in magnitude, or is nonzero with every
        value below 1e-100.
    """
    if values.size == 0:
        return
    matrix = values.reshape(len(values), -1)
    largest = np.maximum(matrix.max(axis=0), -matrix.min(axis=0))   # no n x p temporary
    bad = (largest > MAX_MAGNITUDE) | ((largest > 0) & (largest < MIN_MAGNITUDE))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise DataError(f"{labels[j]} reaches {largest[j]:.3g} in magnitude: "
                        f"its squares {'over' if largest[j] > 1 else 'under'}flow float64; "
                        "rescale it (change its unit, or use scale())")


def finite_mask(values: np.ndarray | ExtensionArray) -> np.ndarray | None:
    """Mask of the finite values of a numeric column (None: not numeric, or bool/int)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return None  # cannot hold an infinite value
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return np.isfinite(values)
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    floats = np.asarray(values, dtype=float) if isinstance(values, np.ndarray) else \
        values.to_numpy(dtype=float)
    return np.isfinite(floats)
