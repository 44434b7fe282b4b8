"""Random-effects terms: grouping factors, their columns, and theta's layout.

Each lme4 term ``(expr | g)`` has a grouping factor with ``l`` levels and ``p``
columns; its covariance is ``sigma^2 T T'`` with ``T`` lower triangular and
``theta`` the free elements of ``T`` (column-major lower triangle, as lme4).
``(expr || g)`` is split into one term per column, as lme4 splits it.

For speed, terms on the same grouping factor are merged into one *block*
whose ``T`` is block diagonal: ``(1 + x || g)`` is one block with a diagonal
``T``, not two crossed terms.  Blocks are ordered by number of levels, largest
first, so that the first block's part of ``Lambda' Z' W Z Lambda + I`` is
block diagonal.  ``theta`` itself is kept in lme4's order (terms sorted by
number of levels, stably), so values compare one to one with lme4's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from ..errors import ModelSpecError
from .fixed import model_matrix
from .formula import ParsedFormula, RandomTerm
from .frame import ColumnTable, check_magnitude
from .model_matrix import column_values, factorize


class GroupingFactor:
    """A grouping factor: one integer code per observation.

    Parameters
    ----------
    name
        As lme4 prints it (``"student"``, ``"group:sender"``).
    codes
        Level index of each observation (int64).
    nlevels
        Number of levels.
    make_levels
        Makes :attr:`levels` when first asked for: a fit reads them only for
        its random effects' labels, and building them (an Index, interaction
        labels joined level by level) cost 0.3 ms of a small model's set-up.
    variables
        The data columns whose interaction the factor is (one for a plain factor).
    """

    def __init__(self, name: str, codes: np.ndarray, nlevels: int,
                 make_levels: Callable[[], pd.Index],
                 variables: tuple[str, ...] = ()) -> None:
        self.name, self.codes, self.nlevels = name, codes, nlevels
        self._make_levels = make_levels
        self.variables = variables or (name,)

    @cached_property
    def levels(self) -> pd.Index:
        """Level labels, in lme4's order (sorted; interactions lexicographic)."""
        return self._make_levels()

    def __repr__(self) -> str:
        return f"GroupingFactor({self.name!r}, {self.nlevels} levels)"


@dataclass
class CovarianceTerm:
    """One lme4 term (after ``||`` splitting): a row group of ``VarCorr``.

    Attributes
    ----------
    label
        Group label as ``as.data.frame(VarCorr)`` prints it (``student.1``).
    block
        Index of the block holding this term.
    cols
        Positions of the term's columns inside its block.
    colnames
        Names of the term's columns.
    source
        The formula term it comes from, as ``(expr, group, uncorrelated)``
        (the terms of one ``(x || g)`` share it); ``re_form`` selects by it.
    """

    label: str
    block: int
    cols: np.ndarray
    colnames: list[str]
    source: tuple = ()


@dataclass
class ReBlock:
    """Random effects of one grouping factor (one or more merged terms).

    Attributes
    ----------
    factor
        The grouping factor.
    X
        ``n x p`` columns of the block (C order).
    colnames
        Names of the columns.
    theta_index
        ``p x p`` array: index into theta of each element of ``T``, -1 where
        ``T`` is structurally zero.
    column_specs
        How to rebuild ``X`` on new data: ``(spec, columns)`` pairs in block
        column order, each a model-matrix spec and the columns of its matrix taken.
    """

    factor: GroupingFactor
    X: np.ndarray
    colnames: list[str]
    theta_index: np.ndarray
    column_specs: list = field(default_factory=list)

    @property
    def p(self) -> int:
        """Number of columns."""
        return self.X.shape[1]

    @property
    def nlevels(self) -> int:
        """Number of levels of the grouping factor."""
        return self.factor.nlevels

    @property
    def q(self) -> int:
        """Number of random effects of the block."""
        return self.p * self.nlevels


@dataclass
class ReTerms:
    """All random-effects terms of a model.

    Attributes
    ----------
    blocks
        Merged blocks, largest number of levels first.
    terms
        lme4's terms in lme4's order (for VarCorr and theta labels).
    theta_lower
        Lower bounds of theta (0 on diagonals of T, -inf elsewhere).
    """

    blocks: list[ReBlock]
    terms: list[CovarianceTerm]
    theta_lower: np.ndarray

    @property
    def ntheta(self) -> int:
        """Length of theta."""
        return len(self.theta_lower)

    @property
    def q(self) -> int:
        """Total number of random effects."""
        return sum(b.q for b in self.blocks)

    def theta_start(self) -> np.ndarray:
        """lme4's start: 1 on the diagonals of T, 0 elsewhere."""
        return np.where(np.isfinite(self.theta_lower), 1.0, 0.0)

    def is_diagonal(self) -> np.ndarray:
        """True for the elements of theta on a diagonal of T."""
        return np.isfinite(self.theta_lower)

    def factors(self) -> dict[str, GroupingFactor]:
        """Grouping factors by name, in block order."""
        return {b.factor.name: b.factor for b in self.blocks}

    def T_matrices(self, theta: np.ndarray) -> list[np.ndarray]:
        """The relative covariance factors ``T`` of the blocks."""
        out = []
        for b in self.blocks:
            T = np.where(b.theta_index >= 0, theta[np.maximum(b.theta_index, 0)], 0.0)
            out.append(T)
        return out


@dataclass
class _SplitTerm:
    term: RandomTerm
    factor: GroupingFactor
    X: np.ndarray
    colnames: list[str]
    spec: Any
    spec_cols: np.ndarray


def build_reterms(parsed: ParsedFormula, data: pd.DataFrame | ColumnTable) -> ReTerms:
    """Build the random-effects terms of a parsed formula on model-frame data.

    Raises
    ------
    ModelSpecError
        A grouping factor has a single level.
    """
    factors: dict[tuple[str, ...], GroupingFactor] = {}
    variables: dict[str, _Variable] = {}     # a variable in several factors
    split: list[_SplitTerm] = []
    for term in parsed.random:
        if term.group not in factors:
            factors[term.group] = _grouping_factor(term.group, data, variables)
        factor = factors[term.group]
        if factor.nlevels < 2:
            raise ModelSpecError(f"grouping factor '{factor.name}' of term '{term.text}' has "
                                 f"a single level; a random effect needs at least 2 levels")
        X, names, spec = model_matrix(term.expr, data, parsed.text)
        check_magnitude(X, [f"column '{n}' of random-effects term '{term.text}'" for n in names])
        if X.shape[1] == 0:
            raise ModelSpecError(f"random-effects term '{term.text}' has no columns")
        if term.uncorrelated:
            for j, name in enumerate(names):
                split.append(_SplitTerm(term, factor, X[:, j:j + 1], [name], spec,
                                        np.array([j])))
        else:
            split.append(_SplitTerm(term, factor, X, names, spec, np.arange(len(names))))
    if not split:
        raise ModelSpecError(f"formula '{parsed.text}' has no random-effects term; "
                             "a mixed model needs at least one '(expr | group)'")
    return _assemble(split)


def _assemble(split: list[_SplitTerm]) -> ReTerms:
    # lme4 sorts terms by number of levels, decreasing; Python's sort is stable
    order = sorted(range(len(split)), key=lambda i: -split[i].factor.nlevels)
    keys: list[tuple[str, ...]] = []
    for i in order:
        if split[i].term.group not in keys:
            keys.append(split[i].term.group)
    members = {k: [i for i in order if split[i].term.group == k] for k in keys}
    block_of: dict[int, tuple[int, int]] = {}
    for b, key in enumerate(keys):
        start = 0
        for i in members[key]:
            block_of[i] = (b, start)
            start += split[i].X.shape[1]
    lower: list[float] = []
    index_parts: dict[int, np.ndarray] = {}
    terms: list[CovarianceTerm] = []
    label_count: dict[str, int] = {}
    for i in order:
        p = split[i].X.shape[1]
        idx = -np.ones((p, p), dtype=np.int64)
        for c in range(p):
            for r in range(c, p):
                idx[r, c] = len(lower)
                lower.append(0.0 if r == c else -np.inf)
        index_parts[i] = idx
        name = split[i].factor.name
        seen = label_count.get(name, 0)
        label_count[name] = seen + 1
        b, start = block_of[i]
        term = split[i].term
        terms.append(CovarianceTerm(label=name if seen == 0 else f"{name}.{seen}", block=b,
                                    cols=np.arange(start, start + p),
                                    colnames=list(split[i].colnames),
                                    source=term_source(term)))
    blocks = []
    for key in keys:
        parts = members[key]
        X = np.ascontiguousarray(np.column_stack([split[i].X for i in parts]))
        p = X.shape[1]
        theta_index = -np.ones((p, p), dtype=np.int64)
        for i in parts:
            _, start = block_of[i]
            k = split[i].X.shape[1]
            theta_index[start:start + k, start:start + k] = index_parts[i]
        colnames = [n for i in parts for n in split[i].colnames]
        blocks.append(ReBlock(factor=split[parts[0]].factor, X=X, colnames=colnames,
                              theta_index=theta_index,
                              column_specs=[(split[i].spec, split[i].spec_cols)
                                            for i in parts]))
    return ReTerms(blocks=blocks, terms=terms, theta_lower=np.array(lower))


def term_source(term: RandomTerm) -> tuple:
    """A random term's identity for ``re_form``: its columns' formula without spaces,
    its grouping variables and whether it is uncorrelated."""
    return ("".join(term.expr.split()), term.group, term.uncorrelated)


def grouping_factor(names: tuple[str, ...], data: pd.DataFrame | ColumnTable) -> GroupingFactor:
    """Integer codes of a grouping factor or of an interaction of several."""
    return _grouping_factor(names, data, {})


def _grouping_factor(names: tuple[str, ...], data: pd.DataFrame | ColumnTable,
                     variables: dict[str, _Variable]) -> GroupingFactor:
    """:func:`grouping_factor`, reusing and filling ``variables`` (codes and levels by name)."""
    for name in names:
        if name not in variables:
            variables[name] = _factorize(group_values(name, data))
    parts = [variables[name] for name in names]
    if len(names) == 1:
        return GroupingFactor(names[0], parts[0].codes, parts[0].nlevels, parts[0].levels.index,
                              names)
    # fold the factors in one at a time: the key of (levels so far, next code) stays below
    # rows x levels, so it cannot overflow, and sorts as the rows of codes do
    codes = parts[0].codes
    steps = []
    for part in parts[1:]:
        size = max(part.nlevels, 1)
        uniq, codes = _sorted_codes(codes * size + part.codes)
        steps.append((uniq, size))

    levels = [part.levels for part in parts]      # not the parts: their codes are not kept

    def labels() -> pd.Index:
        joined = levels[0].labels()
        for more, (uniq, size) in zip(levels[1:], steps):
            joined = joined[uniq // size] + ":" + more.labels()[uniq % size]
        return pd.Index(joined, dtype=object)

    return GroupingFactor(":".join(names), codes.astype(np.int64).ravel(), len(steps[-1][0]),
                          labels, names)


def group_values(name: str, data: pd.DataFrame | ColumnTable) -> Any:
    """A grouping variable's values: a column, or a call's values evaluated by derived.py."""
    if isinstance(data, ColumnTable):
        found = data.derived.get(("value", name))
        if found is not None:
            return found[0]
    return data[name]


class _Levels:
    """A grouping variable's sorted distinct values, as given (an Index is made on demand)."""

    def __init__(self, uniques: Any, dtype: Any) -> None:
        self.uniques, self.dtype = uniques, dtype

    def __len__(self) -> int:
        return len(self.uniques)

    def index(self) -> pd.Index:
        """The levels as an Index of the column's dtype."""
        if isinstance(self.uniques, pd.Index):
            return self.uniques
        # the dtype as given: pandas would infer 'str' for an object array of strings (and
        # arrow strings come back as a list)
        return _integral(pd.Index(self.uniques, dtype=self.dtype))

    def labels(self) -> np.ndarray:
        """The levels as strings (object array), as lme4 prints them in interactions."""
        levels = self.index()
        if levels.dtype.kind in "iu":  # integers print the same either way; numpy's is vectorized
            return levels.to_numpy().astype(str).astype(object)
        return np.array([level_label(v) for v in levels], dtype=object)


class _Variable:
    """A grouping variable's codes (missing coded -1) and levels."""

    def __init__(self, codes: np.ndarray, uniques: Any, dtype: Any) -> None:
        self.codes, self.levels = codes, _Levels(uniques, dtype)
        self.nlevels = len(self.levels)


def _factorize(column: pd.Series | np.ndarray | ExtensionArray) -> _Variable:
    """Codes and sorted levels of one grouping variable (missing values coded -1)."""
    values = column_values(column)
    if isinstance(values, pd.Categorical):
        values = values.remove_unused_categories()
        return _Variable(values.codes.astype(np.int64), pd.Index(values.categories), None)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iub":
        # integers cannot be missing; no hashing needed
        uniques, codes = _sorted_codes(values)
        return _Variable(codes.astype(np.int64), uniques, uniques.dtype)
    codes, uniques = factorize(values, sort=True)
    return _Variable(codes.astype(np.int64), uniques, getattr(uniques, "dtype", values.dtype))


def _sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an integer array and the position of each value among them.

    As ``np.unique(values, return_inverse=True)``.  When the values span a short
    range, a table over the range replaces the sort (O(n) instead of O(n log n)).
    """
    if values.dtype.kind in "iu" and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 2 * values.size + 1024:
            return _table_codes(values, lo, hi)
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes.ravel()


def _table_codes(values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sorted_codes` by a table of the values present in ``lo..hi``."""
    # unsigned differences cannot overflow; signed ones are taken in int64
    offsets = values - lo if values.dtype.kind == "u" else values.astype(np.int64) - lo
    present = np.zeros(hi - lo + 1, dtype=bool)
    present[offsets] = True
    table = np.empty(present.size, dtype=values.dtype)
    table[offsets] = values
    return table[present], (np.cumsum(present) - 1)[offsets]


def _integral(levels: pd.Index) -> pd.Index:
    """Float levels that are all whole numbers as integers (R's factor prints 1, not 1.0).

    An integer column becomes float in pandas when it has missing values.
    """
    if not pd.api.types.is_float_dtype(levels.dtype) or len(levels) == 0:
        return levels
    values = levels.to_numpy(dtype=float, na_value=np.nan)
    if np.all(np.isfinite(values)) and np.all(values == np.round(values)) \
            and np.all(np.abs(values) < 2.0**53):
        return pd.Index(values.astype(np.int64))
    return levels


def level_label(value: object) -> str:
    """A level as lme4 prints it: whole floats without ``.0``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
