"""A fitted model's design on new data: X, each block's columns and level codes, offsets.

The fixed effects and every random-effects term are rebuilt from the specs the
model kept (their coding, their levels, stateful transforms' training state),
so new data get the columns the fit had.  Levels of a grouping factor that the
fit never saw are coded -1; prediction then applies its ``new_levels`` rule.
Rows with a missing value in a variable the design needs are left out and
reported by position (prediction gives them NaN).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, MissingColumnError
from ..spec.expression import evaluate, known_name
from ..spec.fixed import matrix_from_spec
from ..spec.frame import as_dataframe, formula_variables, value_variables
from ..spec.model_matrix import SimpleSpec
from ..spec.reterms import ReBlock, level_label

__all__ = ["NewDesign", "level_codes", "level_keys", "new_design", "spec_matrix"]


@dataclass
class NewDesign:
    """The model's design evaluated on the complete rows of new data.

    Attributes
    ----------
    complete
        Mask over the rows of the new data: True where every needed variable is present.
    rows
        The complete rows (a fresh ``RangeIndex``).
    X
        Fixed-effects model matrix of the complete rows.
    block_X
        Each block's columns on the complete rows.
    block_keys
        Each block's level labels on the complete rows (``a:b`` for interactions).
    block_codes
        Each block's level codes on the complete rows (-1 for unseen levels).
    offset
        Offset of the complete rows (formula offsets plus the offset argument).
    """

    complete: np.ndarray
    rows: pd.DataFrame
    X: np.ndarray
    block_X: list[np.ndarray]
    block_keys: list[np.ndarray]
    block_codes: list[np.ndarray]
    offset: np.ndarray

    def unseen_levels(self, block: int) -> list[str]:
        """The distinct labels of a block's levels that the fit never saw."""
        keys, codes = self.block_keys[block], self.block_codes[block]
        return list(pd.unique(keys[codes < 0]))


def spec_matrix(spec: Any, data: pd.DataFrame) -> np.ndarray:
    """The model matrix of a spec (glmmcore's simple spec or formulaic's) on new data."""
    if isinstance(spec, SimpleSpec):
        _check_levels(spec, data)
        return spec.build(data)[0]
    from formulaic.errors import DataMismatchWarning
    try:
        with warnings.catch_warnings():
            # a level the fit never saw: formulaic warns and codes it as zeros
            warnings.simplefilter("error", DataMismatchWarning)
            return matrix_from_spec(spec, data)
    except Exception as exc:  # noqa: BLE001 - formulaic raises many kinds; all mean bad data
        raise DataError(f"cannot build the model's columns on the new data: "
                        f"{str(exc).splitlines()[0]}") from None


def new_design(model: Any, newdata: Any, offset: Any = None) -> NewDesign:
    """Evaluate ``model``'s design on ``newdata``.

    Parameters
    ----------
    model
        A :class:`~glmmcore.design.model.MixedModel`.
    newdata
        A data frame with every variable of the formula's right-hand side.
    offset
        A column name or an array for the new rows, added to the formula's offsets;
        needed when the model was fitted with an offset array.
    """
    data = as_dataframe(newdata)
    needed = [name for name in _rhs_variables(model)
              if name in data.columns or not known_name(name)]
    missing_cols = [name for name in needed if name not in data.columns]
    if missing_cols:
        raise MissingColumnError(f"newdata lacks the column(s) {', '.join(missing_cols)} "
                                 f"that '{model.formula}' uses")
    complete = np.ones(len(data), dtype=bool)
    for name in needed:
        complete &= ~pd.isna(data[name]).to_numpy()
    extra = _offset_argument(model, data, offset)
    if extra is not None:
        complete &= ~np.isnan(extra)
    rows = data if complete.all() else data.loc[complete]
    rows = rows.reset_index(drop=True)
    fixed = model.predictor.fixed
    X = spec_matrix(fixed.spec, rows)
    X = np.ascontiguousarray(X if fixed.keep is None else X[:, fixed.keep])
    blocks = model.predictor.reterms.blocks
    block_X = [_block_columns(block, rows) for block in blocks]
    block_keys = [level_keys(block, rows, model) for block in blocks]
    block_codes = [level_codes(block, keys) for block, keys in zip(blocks, block_keys)]
    off = np.zeros(len(rows))
    for expr in model.parsed.offsets:
        off += np.asarray(_value(expr, rows, model), dtype=float)
    if extra is not None:
        off += extra[complete]
    return NewDesign(complete=complete, rows=rows, X=X, block_X=block_X, block_keys=block_keys,
                     block_codes=block_codes, offset=off)


def level_keys(block: ReBlock, data: pd.DataFrame, model: Any = None) -> np.ndarray:
    """The labels of a block's grouping factor in data (``a:b`` for interactions).

    A grouping variable written as a call (``C(g)``) is evaluated on ``data``
    with the state ``model`` kept.
    """
    columns = [_group_column(name, data, model) for name in block.factor.variables]
    keys = _labels(columns[0])
    for column in columns[1:]:
        keys = keys + ":" + _labels(column)
    return keys


def _group_column(name: str, data: pd.DataFrame, model: Any) -> pd.Series:
    if name in data.columns or model is None:
        return data[name]
    return pd.Series(_value(name, data, model))


def _value(expr: str, data: pd.DataFrame, model: Any) -> Any:
    """A Python expression of the formula on new data, with the state the fit kept."""
    columns = {n: data[n] for n in value_variables(expr) if n in data.columns}
    state = dict(getattr(model, "formula_state", {}).get(expr) or {})
    return evaluate(expr, columns, len(data), state, model.formula)


def level_codes(block: ReBlock, keys: np.ndarray) -> np.ndarray:
    """Codes of level labels: the fit's level numbers, -1 for levels it never saw."""
    factor = block.factor
    known = pd.Index(_labels(pd.Series(factor.levels)) if len(factor.variables) == 1
                     else factor.levels.astype(str))
    return known.get_indexer(keys).astype(np.int64)


def _labels(column: pd.Series) -> np.ndarray:
    return np.array([level_label(v) for v in column.to_numpy()], dtype=object)


def _block_columns(block: ReBlock, data: pd.DataFrame) -> np.ndarray:
    parts = [spec_matrix(spec, data)[:, cols] for spec, cols in block.column_specs]
    return np.ascontiguousarray(np.column_stack(parts), dtype=float)


def _rhs_variables(model: Any) -> list[str]:
    """Variables of the right-hand side (the response's own are not needed)."""
    return formula_variables(replace(model.parsed, response=()))


def _offset_argument(model: Any, data: pd.DataFrame, offset: Any) -> np.ndarray | None:
    if offset is None:
        argument = model.offset_argument
        if argument is None:
            return None
        if not isinstance(argument, str):
            raise DataError("the model was fitted with an offset array; give the new rows' "
                            "offset with offset=")
        offset = argument
    if isinstance(offset, str):
        if offset not in data.columns:
            raise MissingColumnError(f"newdata lacks the offset column '{offset}'")
        values = data[offset].to_numpy(dtype=float)
    else:
        values = np.asarray(offset, dtype=float)
        if values.shape != (len(data),):
            raise DataError(f"offset must have one value per row of newdata ({len(data)}), "
                            f"not shape {values.shape}")
    return values


def _check_levels(spec: SimpleSpec, data: pd.DataFrame) -> None:
    """New levels of a categorical fixed-effect variable are an error naming them."""
    for var, levels in spec.levels.items():
        values = data[var].to_numpy()
        present = pd.unique(values[~pd.isna(values)])
        unseen = [v for v in present if v not in set(levels)]
        if unseen:
            shown = ", ".join(repr(v) for v in unseen[:10])
            raise DataError(f"column '{var}' of newdata has level(s) the fit never saw "
                            f"({shown}); a fixed effect cannot be predicted for them")
