"""The fixed-effects model matrix X, built by formulaic.

Treatment coding with the first level in sorted order as the reference (what
lme4 gets from ``read.csv(stringsAsFactors = TRUE)``); the intercept is named
``(Intercept)`` as in lme4, other columns as formulaic names them
(``sex[T.male]``).  Aliased columns are dropped, the later of each aliased set,
as lme4 does, with a warning naming them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError, RankDeficiencyWarning
from .frame import ColumnTable, as_pandas
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
        """Model matrix of new data with the fitted coding."""
        if isinstance(self.spec, SimpleSpec):
            X = self.spec.build(data)[0]
        else:
            X = np.asarray(self.spec.get_model_matrix(data, output="numpy"), dtype=float)
        return np.ascontiguousarray(X if self.keep is None else X[:, self.keep])


def fixed_design(rhs: str, data: pd.DataFrame | ColumnTable, formula: str) -> FixedDesign:
    """Build X for the right-hand side ``rhs`` of the fixed effects.

    Raises
    ------
    FormulaError
        formulaic cannot evaluate a term on these data.
    """
    X, names, spec = model_matrix(rhs, data, formula)
    keep = independent_columns(X)
    dropped = [n for n, k in zip(names, keep) if not k]
    if dropped:
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping "
                      f"{len(dropped)} column(s): {', '.join(dropped)}",
                      RankDeficiencyWarning, stacklevel=3)
        X = np.ascontiguousarray(X[:, keep])
    kept = [n for n, k in zip(names, keep) if k]
    return FixedDesign(X=X, names=kept, dropped=dropped, spec=spec,
                       keep=keep if dropped else None)


def model_matrix(expr: str, data: pd.DataFrame | ColumnTable,
                 formula: str) -> tuple[np.ndarray, list[str], Any]:
    """Model matrix, column names (lme4's ``(Intercept)``) and the spec to rebuild it.

    Simple formulas are built directly (:mod:`glmmcore.model_matrix`), the rest
    by formulaic; both give the same columns.
    """
    simple = simple_model_matrix(expr, data)
    if simple is not None:
        spec, X, names = simple
    else:
        mm = evaluate_model_matrix(expr, data, formula)
        X, names, spec = mm.to_numpy(dtype=float), [str(c) for c in mm.columns], mm.model_spec
    return np.ascontiguousarray(X), [rename_intercept(n) for n in names], spec


def evaluate_model_matrix(expr: str, data: pd.DataFrame | ColumnTable,
                          formula: str) -> pd.DataFrame:
    """Evaluate a right-hand side with formulaic, translating its errors."""
    from formulaic import model_matrix as formulaic_model_matrix  # lazy: costly import
    from formulaic.errors import FormulaicError
    try:
        return formulaic_model_matrix(expr, as_pandas(data), na_action="ignore")
    except FormulaicError as exc:
        reason = str(exc).splitlines()[0]
        raise FormulaError(f"cannot evaluate '{expr}' on the data: {reason}", formula) from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot evaluate '{expr}' on the data: {exc}") from None


def rename_intercept(name: str) -> str:
    """formulaic's ``Intercept`` is lme4's ``(Intercept)``."""
    return INTERCEPT if name == "Intercept" else name


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
