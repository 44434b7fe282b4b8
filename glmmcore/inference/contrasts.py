"""The contrasts of lmerTest's type III tests, from the fixed-effects terms' coding.

lmerTest (``get_contrasts_type3``, treatment contrasts) expresses every column
of the "full" design -- the intercept, and for each term one column per level
(combination) of its factors (R's ``model.matrix(~ 0 + term)``) -- in the
coefficients of ``X``; then, from the highest order down, makes each term's
columns orthogonal (least squares over the full design's columns) to those of
the terms that contain it (same numeric variables, a strict superset of the
variables); the hypothesis of a term is those columns, on the rows of the
full design that are columns of ``X``.  The result does not depend on the
coding (SAS's type III hypotheses).

The full design's columns are expressed in ``X``'s coefficients exactly from
the treatment coding (the reference level's dummy is the intercept minus the
other levels' dummies); that needs each such product's columns to be in the
model (a hierarchical model).  A model with one term uses lmerTest's
"type I" rows (a Doolittle factorization of ``X'X``), as lmerTest does.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelSpecError
from ..results.rformat import zapsmall
from ..spec.fixed import INTERCEPT
from ..spec.model_matrix import SimpleSpec

ZERO_ROW = 1e-8       # lmerTest drops contrast rows whose absolute sum is at most this


@dataclass(frozen=True)
class FixedTerm:
    """One fixed-effects term.

    Attributes
    ----------
    name
        As R labels it (``"sex:ses"``).
    variables
        The variables multiplied, in order.
    levels
        Levels of each categorical variable (numeric ones are absent).
    reduced
        The categorical variables coded without their first level in this term.
    columns
        Indices of the term's columns in ``X``.
    column_levels
        For each column, the level of each categorical variable it is the dummy of.
    """

    name: str
    variables: tuple[str, ...]
    levels: dict[str, tuple]
    reduced: frozenset[str]
    columns: tuple[int, ...]
    column_levels: tuple[dict, ...]

    @property
    def numeric(self) -> frozenset[str]:
        """The term's numeric variables."""
        return frozenset(v for v in self.variables if v not in self.levels)


def fixed_terms(fixed: Any) -> tuple[bool, list[FixedTerm]]:
    """Whether ``X`` has an intercept, and its terms, from the fixed design's spec.

    Raises
    ------
    ModelSpecError
        Columns dropped as aliased, or a spec whose terms cannot be read.
    """
    if fixed.dropped:
        raise ModelSpecError("type III tests need a fixed-effects design of full rank; "
                             f"these columns were dropped as aliased: {', '.join(fixed.dropped)}")
    spec = fixed.spec
    if isinstance(spec, SimpleSpec):
        return spec.intercept, _simple_terms(spec, fixed.names)
    return _formulaic_terms(spec, fixed.names)


def _simple_terms(spec: SimpleSpec, names: list[str]) -> list[FixedTerm]:
    position = 1 if spec.intercept else 0
    out = []
    for variables in spec.terms:
        per_var = [[{var: lev} for lev in spec.levels[var][1:]] if var in spec.levels
                   else [{}] for var in variables]
        # first variable varies fastest, as SimpleSpec builds the columns
        combos = [_merge(reversed(c)) for c in itertools.product(*reversed(per_var))]
        cols = tuple(range(position, position + len(combos)))
        position += len(combos)
        levels = {v: tuple(spec.levels[v]) for v in variables if v in spec.levels}
        out.append(FixedTerm(":".join(variables), tuple(variables), levels,
                             frozenset(levels), cols, tuple(combos)))
    if position != len(names):
        raise ModelSpecError("cannot match the fixed-effects columns to their terms")
    return out


def _merge(dicts: Any) -> dict:
    out: dict = {}
    for d in dicts:
        out.update(d)
    return out


def _formulaic_terms(spec: Any, names: list[str]) -> tuple[bool, list[FixedTerm]]:
    """Terms of a formulaic ``ModelSpec``: categorical factors and their levels from its
    contrasts' state, the level of each column from its name (``x[T.b]`` or ``x[b]``)."""
    contrasts = {str(factor): state for factor, state in spec.factor_contrasts.items()}
    intercept, out, position = False, [], 0
    for structure in spec.structure:
        n_cols = len(structure.columns)
        if str(structure.term) == "1":
            intercept, position = True, position + n_cols
            continue
        variables = tuple(str(f) for f in structure.term.factors)
        levels, reduced = {}, set()
        for scoped in structure.scoped_terms[0].factors:
            name = str(scoped.factor)
            if name in contrasts:
                state = contrasts[name]
                if type(state.contrasts).__name__ != "TreatmentContrasts":
                    raise ModelSpecError(f"type III tests need treatment contrasts; "
                                         f"'{name}' has {type(state.contrasts).__name__}")
                levels[name] = tuple(str(v) for v in state.levels)
                if scoped.reduced:
                    reduced.add(name)
        combos = tuple(_column_levels(col, variables, levels) for col in structure.columns)
        cols = tuple(range(position, position + n_cols))
        position += n_cols
        out.append(FixedTerm(":".join(variables), variables, levels, frozenset(reduced),
                             cols, combos))
    if position != len(names):
        raise ModelSpecError("cannot match the fixed-effects columns to their terms")
    return intercept, out


def _column_levels(column: str, variables: tuple[str, ...], levels: dict) -> dict:
    parts = column.split(":")
    if len(parts) != len(variables):
        raise ModelSpecError(f"cannot read the levels of column '{column}'")
    out = {}
    for var, part in zip(variables, parts):
        if var in levels:
            m = re.fullmatch(re.escape(var) + r"\[(?:T\.)?(.*)\]", part)
            if m is None or m.group(1) not in levels[var]:
                raise ModelSpecError(f"cannot read the level of '{var}' in column '{column}'")
            out[var] = m.group(1)
    return out


def type3_contrasts(fixed: Any) -> dict[str, np.ndarray]:
    """lmerTest's type III contrast matrix of each term (rows: hypotheses, columns: ``X``'s)."""
    p = fixed.X.shape[1]
    intercept, terms = fixed_terms(fixed)
    if p <= 1 or len(terms) <= 1:
        return type1_contrasts(fixed.X, terms)
    lookup = {INTERCEPT: 0} if intercept else {}
    for term in terms:
        for col, levs in zip(term.columns, term.column_levels):
            lookup[_key(term.variables, levs)] = col
    full_rows, row_of_column = [], {}
    if intercept:
        row_of_column[0] = 0
        e = np.zeros(p)
        e[0] = 1.0
        full_rows.append(e)
    for term in terms:
        for levs in _all_levels(term):
            row = _expand(term, levs, lookup, p)
            key = _key(term.variables, levs)
            if key in lookup:
                row_of_column[lookup[key]] = len(full_rows)
            full_rows.append(row)
    L = zapsmall(np.array(full_rows))
    for term in sorted(terms, key=lambda t: -len(t.variables)):
        containers = [t for t in terms if _contains(t, term)]
        if containers:
            cols = list(term.columns)
            others = [c for t in containers for c in t.columns]
            coef = np.linalg.lstsq(L[:, others], L[:, cols], rcond=None)[0]
            L[:, cols] = zapsmall(L[:, cols] - L[:, others] @ coef)
    selected = L[[row_of_column[j] for j in range(p)]]
    out = {}
    for term in terms:
        block = selected[:, list(term.columns)].T
        out[term.name] = block[np.abs(block).sum(axis=1) > ZERO_ROW]
    return out


def _key(variables: tuple[str, ...], levels: dict) -> tuple:
    return tuple(sorted((v, levels.get(v)) for v in variables))


def _all_levels(term: FixedTerm) -> list[dict]:
    """The full design's columns of a term (``~ 0 + term``), first variable fastest."""
    per_var = [[{v: lev} for lev in term.levels[v]] if v in term.levels else [{}]
               for v in term.variables]
    return [_merge(reversed(c)) for c in itertools.product(*reversed(per_var))]


def _expand(term: FixedTerm, levels: dict, lookup: dict, p: int) -> np.ndarray:
    """A full-design column as a combination of ``X``'s columns (treatment coding).

    The product over the term's variables of: a numeric variable itself; a
    dummy of a level other than a reduced factor's first; the first level's
    dummy as one minus the others' (the variable drops out of the product's
    first summand).
    """
    summands: list[tuple[dict, float]] = [({}, 1.0)]
    for var in term.variables:
        if var not in term.levels:
            options = [({var: None}, 1.0)]
        elif var in term.reduced and levels[var] == term.levels[var][0]:
            options = [({}, 1.0)] + [({var: lev}, -1.0) for lev in term.levels[var][1:]]
        else:
            options = [({var: levels[var]}, 1.0)]
        summands = [({**s, **o}, a * b) for s, a in summands for o, b in options]
    row = np.zeros(p)
    for parts, coef in summands:
        key = _key(tuple(parts), {v: lev for v, lev in parts.items() if lev is not None}) \
            if parts else INTERCEPT
        if key not in lookup:
            raise ModelSpecError(f"type III tests need a hierarchical model: term "
                                 f"'{term.name}' needs the terms it is made of "
                                 f"({', '.join(sorted(parts)) or 'the intercept'})")
        row[lookup[key]] += coef
    return row


def _contains(big: FixedTerm, small: FixedTerm) -> bool:
    """lmerTest's containment: ``small``'s variables a strict subset of ``big``'s, and the
    same numeric variables."""
    a, b = set(small.variables), set(big.variables)
    return a < b and small.numeric == big.numeric


def type1_contrasts(X: np.ndarray, terms: list[FixedTerm]) -> dict[str, np.ndarray]:
    """lmerTest's type I contrasts: rows of the transposed unit lower factor of the
    Doolittle (LDL') factorization of ``X'X``, by term."""
    G = X.T @ X
    p = G.shape[0]
    lower = np.eye(p)
    d = np.zeros(p)
    for j in range(p):
        d[j] = G[j, j] - np.sum(lower[j, :j] ** 2 * d[:j])
        for i in range(j + 1, p):
            lower[i, j] = (G[i, j] - np.sum(lower[i, :j] * lower[j, :j] * d[:j])) / d[j]
    upper = lower.T
    return {t.name: upper[list(t.columns)] for t in terms}
