"""The formula's expressions evaluated on the model frame, as R's ``model.frame`` does.

R evaluates every variable of a formula (``log(y)``, ``I(1/x)``, ``offset(log(t))``,
``factor(g)``) before ``na.omit`` drops the incomplete rows, so a transformation
that gives ``NaN`` drops its rows as a missing value would.  Here the
expressions that are not plain columns are evaluated on the rows the
model frame kept: Python expressions (response, ``cbind`` arguments, offsets,
grouping factors written as calls) by :mod:`glmmcore.spec.expression`, model
matrices of the fixed part and of each random term by formulaic.  Rows where
any of them is ``NaN`` are dropped and counted with the other missing rows
(one :class:`~glmmcore.errors.MissingValueWarning` names the terms); an
infinite value is a :class:`~glmmcore.errors.DataError` naming the term.  The
results are kept on the frame's table for the design builders, so nothing is
evaluated twice.  Stateful transforms (``scale``, ``poly``) learn their state
from the rows the model uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, MissingValueWarning, show, user_stacklevel
from .expression import evaluate
from .fixed import formulaic_matrix
from .formula import ParsedFormula
from .frame import ColumnTable, ModelFrame, finite_mask, missing_mask, value_variables
from .model_matrix import parse_simple

MAX_PASSES = 3


@dataclass
class _Task:
    kind: str        # "value" (one value per row) or "matrix" (a model matrix)
    expr: str
    label: str       # how messages name it


@dataclass
class _Pass:
    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    nan: np.ndarray | None = None
    nan_terms: dict[str, int] = field(default_factory=dict)


def derive(parsed: ParsedFormula, frame: ModelFrame) -> ModelFrame:
    """Evaluate the formula's expressions on ``frame``, dropping the rows they make NaN.

    Parameters
    ----------
    parsed
        The parsed formula.
    frame
        The model frame (complete rows of the raw columns).

    Returns
    -------
    ModelFrame
        ``frame``, or a frame without the rows a transformation made NaN;
        its table holds the evaluated expressions (``table.derived``).

    Raises
    ------
    DataError
        An expression is infinite somewhere, or NaN in every row.
    """
    tasks = _tasks(parsed, frame.table)
    if not tasks:
        return frame
    dropped: dict[str, int] = {}
    for _ in range(MAX_PASSES):
        found = _evaluate(tasks, frame, parsed.text)
        if found.nan is None or not found.nan.any():
            frame.table.derived.update(found.values)
            frame.nan_terms = dropped
            return frame
        if found.nan.all():
            term = next(iter(found.nan_terms))
            raise DataError(f"{term} is NaN (missing) in every row the model could use; "
                            "check the transformation against the data's range")
        for term, count in found.nan_terms.items():
            dropped[term] = dropped.get(term, 0) + count
        warnings.warn(_dropped_message(found), MissingValueWarning,
                      stacklevel=user_stacklevel())
        frame = frame.drop(found.nan)
    raise DataError(f"the formula's transformations kept giving NaN in new rows after "
                    f"{MAX_PASSES} passes ({', '.join(dropped)})")


def _dropped_message(found: _Pass) -> str:
    parts = ", ".join(f"{term} in {count} row{'s' if count > 1 else ''}"
                      for term, count in found.nan_terms.items())
    return (f"{int(found.nan.sum())} row(s) dropped as missing: a transformation gave NaN "
            f"({parts}); they are counted in n_dropped")


def _tasks(parsed: ParsedFormula, table: ColumnTable) -> list[_Task]:
    """The expressions that are not plain columns, in formula order."""
    tasks: list[_Task] = []
    response = "response" if len(parsed.response) == 1 else "cbind() argument"
    for expr in parsed.response:
        if expr not in table.columns:
            tasks.append(_Task("value", expr, f"{response} '{expr}'"))
    if parse_simple(parsed.fixed) is None:
        tasks.append(_Task("matrix", parsed.fixed, "of the fixed effects"))
    for expr in parsed.offsets:
        if expr not in table.columns:
            tasks.append(_Task("value", expr, f"offset({expr})"))
    seen = {t.expr for t in tasks if t.kind == "matrix"}
    for term in parsed.random:
        if term.expr not in seen and parse_simple(term.expr) is None:
            seen.add(term.expr)
            tasks.append(_Task("matrix", term.expr, f"of random-effects term '{term.text}'"))
        for atom in sorted(term.calls):
            if all(t.expr != atom or t.kind != "value" for t in tasks):
                tasks.append(_Task("value", atom, f"grouping factor '{atom}'"))
    return tasks


def _evaluate(tasks: list[_Task], frame: ModelFrame, formula: str) -> _Pass:
    table = frame.table
    found = _Pass(nan=np.zeros(table.nrows, dtype=bool))
    for task in tasks:
        if task.kind == "value":
            columns = {n: table.series(n) for n in value_variables(task.expr)
                       if n in table.columns}
            state: dict = {}
            values = evaluate(task.expr, columns, table.nrows, state, formula)
            found.values[("value", task.expr)] = (values, state)
            _check(task.label, missing_mask(values), finite_mask(values), frame, found)
        else:
            X, names, spec = formulaic_matrix(task.expr, table, formula)
            found.values[("matrix", task.expr)] = (X, names, spec)
            nan = np.isnan(X)
            for j, name in enumerate(names):
                _check(f"column '{name}' {task.label}", nan[:, j], np.isfinite(X[:, j]),
                       frame, found)
    return found


def _check(label: str, nan: np.ndarray | None, finite: np.ndarray | None,
           frame: ModelFrame, found: _Pass) -> None:
    """Record the NaN rows of one expression; raise on an infinite value."""
    if finite is not None:
        infinite = ~finite if nan is None else ~finite & ~nan
        if infinite.any():
            rows = np.flatnonzero(infinite)
            raise DataError(f"{label} is infinite in row {show(frame.row_labels[rows[0]])} "
                            f"({rows.size} such row{'s' if rows.size > 1 else ''}): a "
                            "transformation overflowed or divided by zero; transform or "
                            "filter the data so that it stays finite")
    if nan is not None and nan.any():
        found.nan |= nan
        found.nan_terms[label] = found.nan_terms.get(label, 0) + int(nan.sum())
