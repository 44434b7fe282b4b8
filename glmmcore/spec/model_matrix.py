"""Model matrices of simple formulas without formulaic, identical to formulaic's.

formulaic builds a model matrix in milliseconds, which is most of the time a
small linear mixed model takes.  Formulas made only of column names, ``1``,
``0``/``-1``, ``+``, and two-way ``:``/``*`` interactions whose main effects
are in the model (with an intercept when a categorical variable is involved)
are built here directly, with formulaic's column order and names and
treatment coding.  Anything else returns ``None`` and goes to formulaic.
The tests compare both on generated formulas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray
from pandas.arrays import ArrowExtensionArray, NumpyExtensionArray

if TYPE_CHECKING:
    from .frame import ColumnTable

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)|([01])|([+\-*:]))")


@dataclass(frozen=True)
class SimpleSpec:
    """How to rebuild a simple model matrix on new data.

    Attributes
    ----------
    intercept
        Whether the matrix has an intercept column.
    terms
        Terms in column order, each a tuple of one or two variable names.
    levels
        Levels of each categorical variable (numeric variables are absent).
    """

    intercept: bool
    terms: tuple[tuple[str, ...], ...]
    levels: dict[str, tuple]

    def build(self, data: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The model matrix and its column names for ``data``."""
        columns = {var: column_values(data[var]) for var in _variables(self.terms)}
        return self._assemble(columns, {}, len(data))

    def _assemble(self, columns: dict[str, np.ndarray | ExtensionArray],
                  codes: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, list[str]]:
        """The model matrix from the variables' values (and level codes, if known)."""
        parts = {var: _encode(var, values, self.levels.get(var), codes.get(var))
                 for var, values in columns.items()}
        columns_out: list[np.ndarray] = []
        names: list[str] = []
        if self.intercept:
            columns_out.append(np.ones(n))
            names.append("Intercept")
        for term in self.terms:
            vals, labels = parts[term[0]]
            for var in term[1:]:
                right, right_labels = parts[var]
                vals = [a * b for b in right for a in vals]     # first factor varies fastest
                labels = [f"{la}:{lb}" for lb in right_labels for la in labels]
            columns_out.extend(vals)
            names.extend(labels)
        X = np.column_stack(columns_out) if columns_out else np.zeros((n, 0))
        return np.ascontiguousarray(X, dtype=float), names


def simple_model_matrix(rhs: str, data: pd.DataFrame | ColumnTable
                        ) -> tuple[SimpleSpec, np.ndarray, list[str]] | None:
    """Spec, model matrix and column names of a simple right-hand side, or None.

    Reads each column and codes each categorical variable once;
    ``spec.build`` makes the same matrix for new data.

    Parameters
    ----------
    rhs
        A right-hand side in formulaic syntax.
    data
        The data.

    Returns
    -------
    tuple or None
        ``(spec, X, names)``, or None when ``rhs`` is not simple (formulaic
        builds it then).
    """
    found = _simple(rhs, data)
    if found is None:
        return None
    spec, columns, codes = found
    X, names = spec._assemble(columns, codes, len(data))
    return spec, X, names


def _simple(rhs: str, data: pd.DataFrame | ColumnTable):
    """(spec, values of each variable, level codes of the categorical ones), or None."""
    parsed = parse_simple(rhs)
    if parsed is None:
        return None
    intercept, terms = parsed
    variables = _variables(terms)
    if any(var not in data.columns for var in variables):
        return None
    columns = {var: column_values(data[var]) for var in variables}
    levels: dict[str, tuple] = {}
    codes: dict[str, np.ndarray] = {}
    for var, values in columns.items():
        kind = _kind(values.dtype)
        if kind is None:
            return None
        if kind == "categorical":
            found = _levels(values)
            if found is None:
                return None
            levels[var], codes[var] = found
    mains = {term[0] for term in terms if len(term) == 1}
    for term in terms:
        # formulaic (like R) codes a factor in full unless the rest of its term is present
        if len(term) == 2 and not (intercept and set(term) <= mains):
            return None
    if not intercept and levels:
        return None
    return SimpleSpec(intercept=intercept, terms=terms, levels=levels), columns, codes


def column_values(series: pd.Series | np.ndarray | ExtensionArray) -> np.ndarray | ExtensionArray:
    """The values of a column: a numpy array, or the extension array pandas keeps.

    Arrays are much cheaper to work on than Series (no index, no dispatch).

    Parameters
    ----------
    series
        A column (an array is returned as it is).

    Returns
    -------
    numpy.ndarray or ExtensionArray
        Not a copy.
    """
    if isinstance(series, (np.ndarray, ExtensionArray)):    # a model frame's column
        return series
    values = series.array
    # exactly the numpy wrapper: its subclasses (python-backed strings) keep their dtype
    return values.to_numpy() if type(values) is NumpyExtensionArray else values


def _variables(terms: tuple[tuple[str, ...], ...]) -> list[str]:
    """The variables of the terms, in first-use order."""
    names: list[str] = []
    for term in terms:
        names.extend(v for v in term if v not in names)
    return names


def simple_variables(expr: str) -> list[str] | None:
    """Variable names of a simple expression (None if it is not simple)."""
    parsed = parse_simple(expr)
    if parsed is None:
        return None
    return _variables(parsed[1])


def parse_simple(rhs: str) -> tuple[bool, tuple[tuple[str, ...], ...]] | None:
    """(intercept, terms in formulaic's order) of a simple right-hand side, else None."""
    tokens = _tokens(rhs)
    if tokens is None:
        return None
    intercept = True
    terms: list[tuple[str, ...]] = []
    sign = "+"
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "op" and value in "+-" and (i == 0 or tokens[i - 1][0] == "op"):
            if i != 0:
                return None
            sign = value
            i += 1
            continue
        group, i = _product(tokens, i)
        if group is None:
            return None
        if group in ("0", "1"):
            intercept = (group == "1") == (sign == "+")
        elif sign == "-":
            return None
        else:
            for term in group:
                if term in terms:
                    continue
                if tuple(reversed(term)) in terms:
                    return None
                terms.append(term)
        if i < len(tokens):
            kind, value = tokens[i]
            if kind != "op" or value not in "+-":
                return None
            sign = value
            i += 1
            if i == len(tokens):
                return None
    terms.sort(key=len)   # formulaic orders terms by degree, stably
    return intercept, tuple(terms)


def _product(tokens: list, i: int):
    """A name, a 0/1, or a two-way product ``a:b`` / ``a*b`` starting at token i."""
    kind, value = tokens[i]
    if kind == "num":
        return value, i + 1
    if kind != "name":
        return None, i
    if i + 2 < len(tokens) and tokens[i + 1][0] == "op" and tokens[i + 1][1] in ":*":
        op, (kind2, other) = tokens[i + 1][1], tokens[i + 2]
        if kind2 != "name" or other == value:
            return None, i
        if i + 3 < len(tokens) and tokens[i + 3][1] in ":*":
            return None, i     # three-way products go to formulaic
        pair = (value, other)
        return ([(value,), (other,), pair] if op == "*" else [pair]), i + 3
    return [(value,)], i + 1


def _tokens(text: str) -> list[tuple[str, str]] | None:
    out = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return None
        name, num, op = m.groups()
        out.append(("name", name) if name else ("num", num) if num else ("op", op))
        pos = m.end()
    return out or None


def _kind(dtype) -> str | None:
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return None


def _levels(values: np.ndarray | ExtensionArray) -> tuple[tuple, np.ndarray] | None:
    """Levels of a categorical variable and each row's level (-1: missing), or None.

    A pandas categorical keeps its categories, in their order; strings are
    sorted.  Values that are not all strings are left to formulaic.
    """
    if isinstance(values, pd.Categorical):
        return tuple(values.categories), values.codes
    codes, uniques = factorize(values)    # hashing: no sort of the rows
    if not all(isinstance(v, str) for v in uniques):
        return None
    levels = tuple(sorted(uniques))
    return levels, recode(codes, uniques, levels)


def _level_codes(values: np.ndarray | ExtensionArray, levels: tuple) -> np.ndarray:
    """Position of each value in ``levels`` (-1: missing or not a level)."""
    if isinstance(values, pd.Categorical):
        return recode(values.codes, values.categories, levels)
    codes, uniques = factorize(values)
    return recode(codes, uniques, levels)


def factorize(values: np.ndarray | ExtensionArray,
              sort: bool = False) -> tuple[np.ndarray, Sequence]:
    """Code of each value (-1: missing) and the distinct values, as ``pd.factorize``.

    Arrow-backed strings (pandas 3's default) are dictionary-encoded by
    pyarrow directly, at half the cost of pandas' wrapper.

    Parameters
    ----------
    values
        A column's values.
    sort
        Sort the distinct values (else: in order of first appearance).

    Returns
    -------
    codes : numpy.ndarray
        Position of each value among the distinct values, -1 where missing.
    uniques : sequence
        The distinct values; a list for arrow-backed strings.
    """
    if not (isinstance(values, ArrowExtensionArray) and pd.api.types.is_string_dtype(values.dtype)):
        return pd.factorize(values, sort=sort)
    import pyarrow as pa  # installed: the values are arrow arrays
    import pyarrow.compute as pc
    data = pa.array(values)
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    encoded = pc.dictionary_encode(data)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes, uniques = indices.to_numpy(zero_copy_only=False), encoded.dictionary.to_pylist()
    if sort:
        levels = sorted(uniques)
        return recode(codes, uniques, levels), levels
    return codes, uniques


def recode(codes: np.ndarray, uniques: Sequence, levels: Sequence) -> np.ndarray:
    """Codes into ``uniques`` turned into positions in ``levels``.

    Parameters
    ----------
    codes
        Position of each value in ``uniques``, -1 where missing.
    uniques, levels
        Distinct values, in two orders; a value of ``uniques`` missing from
        ``levels`` gets -1.

    Returns
    -------
    numpy.ndarray
        Position of each value in ``levels`` (-1: missing or not a level).
    """
    position = {level: i for i, level in enumerate(levels)}
    # the trailing -1 is where code -1 (missing) points
    where = np.array([position.get(u, -1) for u in uniques] + [-1], dtype=np.intp)
    return where[codes]


def _encode(var: str, values: np.ndarray | ExtensionArray, levels: tuple | None,
            codes: np.ndarray | None = None):
    """Columns and labels of one variable: numeric as is, categorical by treatment dummies."""
    if levels is None:
        floats = np.asarray(values, dtype=float) if isinstance(values, np.ndarray) else \
            values.to_numpy(dtype=float)
        return [floats], [var]
    if codes is None:
        codes = _level_codes(values, levels)
    cols = [(codes == j).astype(float) for j in range(1, len(levels))]
    return cols, [f"{var}[T.{level}]" for level in levels[1:]]
