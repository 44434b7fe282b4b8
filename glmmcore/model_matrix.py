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
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
        columns: list[np.ndarray] = []
        names: list[str] = []
        if self.intercept:
            columns.append(np.ones(len(data)))
            names.append("Intercept")
        parts = {var: _encode(var, data[var], self.levels.get(var)) for term in self.terms
                 for var in term}
        for term in self.terms:
            vals, labels = parts[term[0]]
            for var in term[1:]:
                right, right_labels = parts[var]
                vals = [a * b for b in right for a in vals]     # first factor varies fastest
                labels = [f"{la}:{lb}" for lb in right_labels for la in labels]
            columns.extend(vals)
            names.extend(labels)
        X = np.column_stack(columns) if columns else np.zeros((len(data), 0))
        return np.ascontiguousarray(X, dtype=float), names


def simple_spec(rhs: str, data: pd.DataFrame) -> SimpleSpec | None:
    """The spec of a simple right-hand side on ``data``, or None if it is not simple."""
    parsed = parse_simple(rhs)
    if parsed is None:
        return None
    intercept, terms = parsed
    if any(var not in data.columns for term in terms for var in term):
        return None
    levels: dict[str, tuple] = {}
    for var in {v for term in terms for v in term}:
        kind = _kind(data[var])
        if kind is None:
            return None
        if kind == "categorical":
            found = _levels(data[var])
            if found is None:
                return None
            levels[var] = found
    mains = {term[0] for term in terms if len(term) == 1}
    for term in terms:
        # formulaic (like R) codes a factor in full unless the rest of its term is present
        if len(term) == 2 and not (intercept and set(term) <= mains):
            return None
    if not intercept and levels:
        return None
    return SimpleSpec(intercept=intercept, terms=terms, levels=levels)


def simple_variables(expr: str) -> list[str] | None:
    """Variable names of a simple expression (None if it is not simple)."""
    parsed = parse_simple(expr)
    if parsed is None:
        return None
    names: list[str] = []
    for term in parsed[1]:
        names.extend(v for v in term if v not in names)
    return names


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


def _kind(series: pd.Series) -> str | None:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return None


def _levels(series: pd.Series) -> tuple | None:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return tuple(series.cat.categories)
    values = series.dropna().unique()
    if not all(isinstance(v, str) for v in values):
        return None
    return tuple(sorted(values))


def _encode(var: str, series: pd.Series, levels: tuple | None):
    """Columns and labels of one variable: numeric as is, categorical by treatment dummies."""
    if levels is None:
        return [series.to_numpy(dtype=float)], [var]
    values = series.to_numpy(dtype=object) if not isinstance(series.dtype,
                                                              pd.CategoricalDtype) else \
        series.astype(object).to_numpy()
    cols = [(values == level).astype(float) for level in levels[1:]]
    return cols, [f"{var}[T.{level}]" for level in levels[1:]]
