"""The fixed-effects model matrix X, built by formulaic.

Treatment coding with the first level in sorted order as the reference (what
lme4 gets from ``read.csv(stringsAsFactors = TRUE)``); the intercept is named
``(Intercept)`` as in lme4, other columns as formulaic names them
(``sex[T.male]``).  Aliased columns are dropped, the later of each aliased set,
as lme4 does, with a warning naming them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError, RankDeficiencyWarning, warn
from .expression import formulaic_context, hint
from .formula import matching_close, split_top_level
from .frame import ColumnTable, as_pandas, check_magnitude
from .model_matrix import SimpleSpec, simple_model_matrix

INTERCEPT = "(Intercept)"
RANK_TOL = 1e-7


@dataclass
class FixedDesign:
    """The fixed-effects design.

    Attributes
    ----------
    X
        ``n x p`` model matrix (float64, C order) of the kept columns.
    names
        Names of the columns of ``X``.
    dropped
        Names of columns dropped as aliased.
    spec
        formulaic's model spec, to build X for new data.
    """

    X: np.ndarray
    names: list[str]
    dropped: list[str] = field(default_factory=list)
    spec: Any = None
    keep: np.ndarray | None = None

    @property
    def p(self) -> int:
        """Number of fixed-effects coefficients."""
        return self.X.shape[1]

    def new_X(self, data: pd.DataFrame) -> np.ndarray:
        """Model matrix of new data with the fitted coding and transform state."""
        X = matrix_from_spec(self.spec, data)
        return np.ascontiguousarray(X if self.keep is None else X[:, self.keep])


def matrix_from_spec(spec: Any, data: pd.DataFrame) -> np.ndarray:
    """A model matrix of new data from the spec a fit kept (its coding, its transforms' state).

    Parameters
    ----------
    spec
        A :class:`~glmmcore.spec.model_matrix.SimpleSpec` or formulaic's ``ModelSpec``.
    data
        The new data (a DataFrame with the columns the spec uses).

    Returns
    -------
    numpy.ndarray
        ``n x p`` float64, every column of the spec (aliased ones included).
    """
    if isinstance(spec, SimpleSpec):
        return spec.build(data)[0]
    with np.errstate(all="ignore"):
        X = spec.get_model_matrix(data, output="numpy", context=formulaic_context(),
                                  na_action="ignore")
    return np.asarray(X, dtype=float)


def fixed_design(rhs: str, data: pd.DataFrame | ColumnTable, formula: str) -> FixedDesign:
    """Build X for the right-hand side ``rhs`` of the fixed effects.

    Raises
    ------
    FormulaError
        formulaic cannot evaluate a term on these data.
    """
    X, names, spec = model_matrix(rhs, data, formula)
    check_magnitude(X, [f"column '{n}' of the fixed effects" for n in names])
    keep = independent_columns(X)
    dropped = [n for n, k in zip(names, keep) if not k]
    if dropped:
        warn(f"fixed-effect model matrix is rank deficient so dropping "
             f"{len(dropped)} column(s): {', '.join(dropped)}", RankDeficiencyWarning)
        X = np.ascontiguousarray(X[:, keep])
    kept = [n for n, k in zip(names, keep) if k]
    return FixedDesign(X=X, names=kept, dropped=dropped, spec=spec,
                       keep=keep if dropped else None)


def model_matrix(expr: str, data: pd.DataFrame | ColumnTable,
                 formula: str) -> tuple[np.ndarray, list[str], Any]:
    """Model matrix, column names (lme4's ``(Intercept)``) and the spec to rebuild it.

    Simple formulas are built directly (:mod:`glmmcore.spec.model_matrix`), the rest
    by formulaic; both give the same columns.
    """
    simple = simple_model_matrix(expr, data)
    if simple is None:
        return formulaic_matrix(expr, data, formula)
    spec, X, names = simple
    if spec.intercept:
        names = [INTERCEPT, *names[1:]]
    return np.ascontiguousarray(X), unique_names(names, expr, formula), spec


def formulaic_matrix(expr: str, data: pd.DataFrame | ColumnTable,
                     formula: str) -> tuple[np.ndarray, list[str], Any]:
    """:func:`model_matrix` by formulaic (evaluated once per model frame: see derived.py)."""
    if isinstance(data, ColumnTable):
        cached = data.derived.get(("matrix", expr))
        if cached is not None:
            return cached
    mm = evaluate_model_matrix(expr, data, formula)
    names = [str(c) for c in mm.model_spec.column_names]
    names = unique_names(_lme4_names(mm.model_spec, names), expr, formula, names)
    return np.ascontiguousarray(np.asarray(mm, dtype=float)), names, mm.model_spec


def evaluate_model_matrix(expr: str, data: pd.DataFrame | ColumnTable, formula: str) -> Any:
    """Evaluate a right-hand side with formulaic, translating its errors.

    The matrix comes as numpy: formulaic's pandas output keeps one of two
    columns with the same name (a data column ``Intercept`` and the intercept).
    """
    from formulaic import model_matrix as formulaic_model_matrix  # lazy: costly import
    from formulaic.errors import FormulaicError
    try:
        with np.errstate(all="ignore"):   # NaN and overflow are reported by derived.py
            return formulaic_model_matrix(expr, as_pandas(data), na_action="ignore",
                                          context=formulaic_context(), output="numpy")
    except FormulaicError as exc:
        reason = str(exc).splitlines()[0]
        raise FormulaError(f"cannot evaluate '{expr}' on the data: {reason}{hint(reason)}",
                           formula) from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot evaluate '{expr}' on the data: {exc}") from None


def _lme4_names(spec: Any, names: list[str]) -> list[str]:
    """formulaic's column names with the intercept's ``(Intercept)`` and short ``C(x, ...)``.

    Only the intercept term's column is renamed: a data column named
    ``Intercept`` keeps its name.
    """
    out: list[str] = []
    for structure in spec.structure:
        intercept = str(structure.term) == "1"
        out.extend(INTERCEPT if intercept else short_name(c) for c in structure.columns)
    return out if len(out) == len(names) else names


def short_name(name: str) -> str:
    """``C(x, levels=[...])[T.b]`` as ``x[T.b]``: a ``C()`` with arguments by its variable.

    ``C(x)`` alone keeps its name (it says how ``x`` was coded); in an
    interaction each factor is shortened.
    """
    if "C(" not in name:
        return name
    return ":".join(_short_factor(part) for part in split_top_level(name, ":"))


def _short_factor(part: str) -> str:
    if not part.startswith("C("):
        return part
    close = matching_close(part, 1)
    if close < 0:
        return part
    try:
        call = ast.parse(part[:close + 1], mode="eval").body
    except SyntaxError:
        return part
    extra = len(call.args) > 1 or call.keywords
    if extra and call.args and isinstance(call.args[0], ast.Name):
        return call.args[0].id + part[close + 1:]
    return part


def unique_names(names: list[str], expr: str, formula: str,
                 fallback: list[str] | None = None) -> list[str]:
    """``names``, checked to be distinct; shortened names that collide take ``fallback``'s.

    Raises
    ------
    FormulaError
        Two columns keep the same name (a data column named ``(Intercept)``).
    """
    if len(set(names)) == len(names):
        return names
    if fallback is not None:
        names = [f if names.count(n) > 1 and n != INTERCEPT else n
                 for n, f in zip(names, fallback)]
        if len(set(names)) == len(names):
            return names
    twice = next(n for n in names if names.count(n) > 1)
    raise FormulaError(f"two columns of '{expr}' are both named '{twice}'; rename the data "
                       f"column (a column named '{INTERCEPT}' collides with the intercept)",
                       formula)


def independent_columns(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Mask of the columns kept when later aliased columns are dropped.

    A column is aliased when its residual after projection on the kept
    columns before it is below ``tol`` times its norm (lme4's tolerance).
    """
    n, p = X.shape
    if _clearly_independent(X):
        return np.ones(p, dtype=bool)
    keep = np.zeros(p, dtype=bool)
    # the orthonormal basis of the kept columns fills a preallocated array: growing it
    # with column_stack copied it once per column
    basis = np.empty((n, p))
    k = 0
    for j in range(p):
        col = X[:, j]
        norm = np.linalg.norm(col)
        if norm == 0.0:
            continue
        Q = basis[:, :k]
        resid = col - Q @ (Q.T @ col)
        resid -= Q @ (Q.T @ resid)  # second pass for orthogonality
        rnorm = np.linalg.norm(resid)
        if rnorm > tol * norm:
            keep[j] = True
            basis[:, k] = resid / rnorm
            k += 1
    return keep


def _clearly_independent(X: np.ndarray) -> bool:
    """True when no column comes near the span of the columns before it.

    The diagonal of the Cholesky factor of ``X'X`` holds the norm of each
    column's residual on the columns before it.  When each is above ``1e-3``
    of its column's norm, four orders of magnitude over ``RANK_TOL`` and far
    beyond the rounding of ``X'X`` and its factor (about ``n * eps`` of the
    squared norms, unless the earlier columns are themselves nearly
    collinear), the loop of :func:`independent_columns` keeps every column,
    so it is skipped: it costs ten times more than this check.
    """
    gram = X.T @ X
    try:
        factor = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:   # not positive definite: aliased or zero columns
        return False
    return bool(np.all(np.diagonal(factor) > 1e-3 * np.sqrt(np.diagonal(gram))))
