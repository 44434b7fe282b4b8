"""The model: built once from a formula and data, fitted to one response or many.

:class:`MixedModel` does every check on the input and builds everything that
does not depend on the response once: the model frame, X, the random-effects
terms, the factorization's layout (CHOLMOD's symbolic analysis included) and
the family's compiled kernels.  :meth:`MixedModel.fit` then reads a response,
builds the fit's own workspace and optimizes.  The model is not changed by a
fit, so one model may be fitted from several threads at once (the compiled
kernels release the GIL) and a fit's result does not depend on the fits
before it.  This is the template that lme4's ``refit`` and MixedModels.jl's
``refit!`` reuse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError, IgnoredArgumentWarning, ModelSpecError, show, warn
from ..fitting.cold_path import fit_cold, takes_cold_path
from ..fitting.control import FitControl
from ..fitting.scalar_fast import control_allows, fast_fitter
from ..fitting.warmup import announce_compilation
from ..linalg.threads import single_threaded_blas
from ..registry import get_family
from ..results.result import MixedModelResult
from ..spec.arguments import check_bool, check_link, check_nagq, check_str
from ..spec.derived import derive
from ..spec.fixed import fixed_design
from ..spec.formula import parse_formula
from ..spec.frame import model_frame
from ..spec.reterms import build_reterms
from .predictor import build_predictor
from .response import Response, build_response


class MixedModel:
    """A linear or generalized linear mixed model given by an lme4 formula and data.

    Parameters
    ----------
    formula
        lme4 syntax, e.g. ``"y ~ x + (1 + x | g)"``.
    data
        A data frame (pandas, polars, pyarrow or anything with ``__dataframe__``).
    family, link
        A family name, class or instance, and optionally a link name.
        ``"gaussian"`` with the identity link is a linear mixed model.
    REML
        REML (default) or ML for a linear mixed model.
    nAGQ
        GLMM integration: 0, 1 (Laplace) or the number of adaptive
        Gauss-Hermite nodes per random effect.
    weights, offset
        Prior weights and offset: a column name or an array.
    control
        :class:`FitControl` or a dict of its fields: the default of every fit.
    data_label
        Name of the data shown in summaries.

    Examples
    --------
    >>> model = glmmcore.MixedModel("y ~ x + (1 | g)", data)
    >>> first = model.fit()                    # the data's own response
    >>> other = model.fit(new_y)               # one value per row of data
    """

    def __init__(self, formula: str, data: Any, *, family: Any = "gaussian",
                 link: str | None = None, REML: bool = True, nAGQ: int = 1,
                 weights: Any = None, offset: Any = None,
                 control: FitControl | dict | None = None, data_label: str = "data") -> None:
        self.reml, self.nagq = check_bool(REML, "REML"), check_nagq(nAGQ)
        self.data_label = check_str(data_label, "data_label")
        self.control = FitControl.from_any(control)
        parsed = parse_formula(formula)
        self.family = get_family(family, check_link(link))
        _warn_ignored(self.family, self.reml, self.nagq)
        frame = model_frame(parsed, data, weights=weights, offset=offset)
        # the formula's expressions on the frame; rows they make NaN are dropped
        frame = derive(parsed, frame)
        self.nan_dropped = dict(frame.nan_terms)
        # the state of stateful transforms in the formula's Python expressions (offsets,
        # grouping calls), for new data
        self.formula_state = {expr: found[1] for (kind, expr), found
                              in frame.table.derived.items() if kind == "value" and found[1]}
        self.response = build_response(parsed, frame, self.family)
        fixed = fixed_design(parsed.fixed, frame.table, parsed.text)
        reterms = build_reterms(parsed, frame.table)
        self.predictor = build_predictor(fixed, reterms, self.control.backend, build=False)
        self.formula = parsed.text
        self.parsed = parsed
        # what prediction on new data evaluates there: a column name, or an array of the
        # data's rows (which new data cannot have)
        self.offset_argument = offset
        self.n_dropped = frame.n_dropped
        self.row_labels = frame.row_labels
        self.nrows = frame.nobs + frame.n_dropped
        self.kept_rows = frame.kept_rows
        self.prior_weights = frame.weights
        self._check()
        # lazily built parts of the predictor, built here so that threads only read them;
        # the blocked layout's ordering compiles kernels that a fit on the cold path
        # (glmmcore.fitting.cold_path) does not need: then the first compiled fit builds it
        self.predictor.linear_predictor_args()
        self._free_factors: dict = {}      # factor workspaces no fit is using, by m
        self._kept: dict = {}              # for_weights and once: made by the first fit
        if not takes_cold_path(self, self.control, None):
            self.predictor.layout     # noqa: B018

    # -- sizes -----------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        """Number of observations used (rows of data less those dropped)."""
        return self.predictor.n

    @property
    def is_lmm(self) -> bool:
        """True when the model is a linear mixed model (Gaussian family, identity link)."""
        return bool(self.family.is_gaussian_identity)

    # -- fitting ---------------------------------------------------------------------
    def fit(self, y: Any = None, *, control: FitControl | dict | None = None,
            start: Any = None) -> MixedModelResult:
        """Fit the model to its data's response or to another one.

        Parameters
        ----------
        y
            A new response: one value per row of the data the model was built
            from (rows the model dropped for missing values are dropped from
            ``y`` too), on the scale the formula's response was given
            (binomial: 0/1, booleans, a two-level column, proportions of the
            model's trials, or an ``(n, 2)`` array of successes and failures).
            ``None`` fits the data's own response.
        control
            :class:`FitControl` or a dict of its fields (default: the model's).
        start
            Starting theta (lme4's order, ``len(theta)`` values) instead of
            the start rule, e.g. the estimates of a fit to a similar response.

        Returns
        -------
        MixedModelResult
        """
        response = self.response if y is None else self.response_from(y)
        return self.fit_response(response, control=control, start=start)

    def fit_response(self, response: Response, *, control: FitControl | dict | None = None,
                     start: Any = None) -> MixedModelResult:
        """Fit a response already read for this model (see :meth:`response_from`)."""
        ctrl = self.control if control is None else FitControl.from_any(control)
        if ctrl.backend not in ("auto", self.predictor.backend):
            raise ModelSpecError(f"control backend {ctrl.backend!r} differs from the model's "
                                 f"{self.predictor.backend!r}; build a MixedModel with it")
        theta0 = None if start is None else self._checked_start(start)
        kind = "lmm" if self.is_lmm else "glmm"
        if takes_cold_path(self, ctrl, theta0):
            announce_compilation(kind, "cold")
            return fit_cold(self, response, ctrl)
        if theta0 is None and control_allows(ctrl):
            fast = fast_fitter(self)
            path = "fast"
            if fast is None:
                from ..fitting.vector_fast import vector_fitter
                fast, path = vector_fitter(self), "vector"
            if fast is not None:
                announce_compilation(kind, path)
            result = None if fast is None else fast.fit(response, ctrl)
            if result is not None:
                return result
        announce_compilation(kind, "regular")
        # one BLAS thread: OpenBLAS threads spin-wait, and a fit makes many small calls
        with single_threaded_blas():
            if self.is_lmm:
                from ..fitting.lmm_fit import fit_lmm
                return fit_lmm(self, response, ctrl, theta0)
            from ..fitting.glmm_fit import fit_glmm
            return fit_glmm(self, response, ctrl, theta0)

    # -- what fits reuse ------------------------------------------------------------
    def take_factor(self, m: int) -> Any:
        """A factor workspace for ``m`` dense columns: one a finished fit gave back
        (:meth:`give_back`) or a new one.  Each fit has its own while it runs, so fits
        from several threads never share one; list ``pop`` and ``append`` are atomic.
        Only the blocked factorization's are reused (CHOLMOD's keep a factor object)."""
        if self.predictor.backend != "blocked":
            return self.predictor.new_factor(m)
        try:
            return self._free_factors.setdefault(m, []).pop()
        except IndexError:
            return self.predictor.new_factor(m)

    def give_back(self, *factors: Any) -> None:
        """Return workspaces taken by :meth:`take_factor` once their fit is done."""
        if self.predictor.backend == "blocked":
            for factor in factors:
                self._free_factors.setdefault(factor.m, []).append(factor)

    def for_weights(self, name: str, weights: np.ndarray, build: Any) -> Any:
        """``build(weights)``, made once per model when ``weights`` are the model's own
        prior weights (a new response keeps them), else made each time.

        ``build`` must depend on the model and the weights alone.  Two threads may
        both build it the first time: the same value either way.
        """
        own = self.response.weights
        if weights is not own and not (weights.shape == own.shape
                                       and np.array_equal(weights, own)):
            return build(weights)
        found = self._kept.get(name)
        if found is None:
            found = self._kept[name] = build(own)
        return found

    def once(self, name: str, build: Any) -> Any:
        """``build()``, made on the first fit and kept: it must depend on the model
        alone.  Two threads may both build it the first time: the same value either way."""
        found = self._kept.get(name, _MISSING)
        if found is _MISSING:
            found = self._kept[name] = build()
        return found

    # -- responses -------------------------------------------------------------------
    def response_from(self, y: Any) -> Response:
        """Read a new response given with one value per row of the model's data."""
        values = _as_values(y)
        if values.shape[0] != self.nrows:
            raise DataError(f"y must have one value per row of the model's data "
                            f"({self.nrows}), not shape {values.shape}")
        if self.kept_rows is not None:
            values = values[self.kept_rows]
        return self.response_from_used(values, "y")

    def response_from_used(self, values: Any, argument: str = "newresp") -> Response:
        """Read a new response given with one value per observation used (``nobs``)."""
        values = _as_values(values)
        if values.shape[0] != self.nobs or values.ndim > 2 or (
                values.ndim == 2 and values.shape[1] != 2):
            raise DataError(f"{argument} must have one value per observation the model "
                            f"used ({self.nobs}) (or two columns, successes and failures), "
                            f"not shape {values.shape}")
        old = self.response
        columns = [values] if values.ndim == 1 else [values[:, 0], values[:, 1]]
        for column in columns:
            missing = _missing(column)
            if missing.size:
                raise DataError(f"{argument} has a missing value in row "
                                f"{show(self.row_labels[missing[0]])}: a new response keeps "
                                "the model's observations, so none can be dropped")
        if (len(columns) == 1 and columns[0].dtype.kind in "fiu"
                and _base_prepare_response(self.family)):
            # the base family's reading of a numeric column, without the pandas Series
            # its interface takes (a tenth of a small LMM's refit)
            y = columns[0].astype(float)
            self.family.check_support(y, old.name, self.row_labels)
            return Response(name=old.name, y=np.ascontiguousarray(y),
                            weights=np.ascontiguousarray(old.weights.copy(), dtype=float),
                            offset=old.offset, family=self.family, info={})
        series = [pd.Series(c, name=old.name, copy=False) for c in columns]
        if len(series) == 2:
            weights = (np.ones(self.nobs) if self.prior_weights is None
                       else self.prior_weights.astype(float))
        else:       # proportions keep the model's trials (binomial counts) or weights
            weights = old.weights.copy()
        y, weights, info = self.family.prepare_response(series, weights, old.name,
                                                        self.row_labels)
        return Response(name=old.name, y=np.ascontiguousarray(y, dtype=float),
                        weights=np.ascontiguousarray(weights, dtype=float),
                        offset=old.offset, family=self.family, info=info)

    # -- checks ----------------------------------------------------------------------
    def _check(self) -> None:
        """Checks of the model that need no fit (lme4's, before optimizing)."""
        if self.is_lmm:
            from ..fitting.diagnostics import check_identifiable, check_lmm_weights
            check_lmm_weights(self.response.weights)
            check_identifiable(self.predictor, self.reml)
        else:
            from ..fitting.diagnostics import check_not_saturated
            from ..objectives.quadrature import check_quadrature
            check_quadrature(self.predictor.reterms.blocks, self.nagq)
            check_not_saturated(self.predictor)

    def _checked_start(self, start: Any) -> np.ndarray:
        reterms = self.predictor.reterms
        try:
            theta = np.array(start, dtype=float).ravel()
        except (TypeError, ValueError):
            raise ArgumentError(f"start must be numbers (theta), not {start!r}") from None
        if theta.shape[0] != reterms.ntheta:
            raise ModelSpecError(f"start must have {reterms.ntheta} values (theta), "
                                 f"not {theta.shape[0]}")
        if not np.all(np.isfinite(theta)) or np.any(theta < reterms.theta_lower):
            raise ModelSpecError(f"start must be finite and within theta's bounds "
                                 f"(diagonal elements >= 0), not {theta.tolist()}")
        return theta

    def __getstate__(self) -> dict:
        # the fast path's workspace, the factor workspaces and what fits kept are rebuilt
        # on first use, not shipped with the model
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("_fast_fitter", "_vector_fitter")}
        state["_free_factors"], state["_kept"] = {}, {}
        return state

    def __repr__(self) -> str:
        kind = "LMM" if self.is_lmm else f"GLMM ({self.family!r})"
        return f"<MixedModel {kind} '{self.formula}': {self.nobs} obs>"


def _warn_ignored(family: Any, reml: Any, nagq: Any) -> None:
    """lme4's "extra argument(s) disregarded": an option that does not apply to the model."""
    if family.is_gaussian_identity:
        if nagq != 1:
            warn(f"nAGQ={nagq!r} does not apply to a linear mixed model (its likelihood is "
                 "exact, no integration is approximated) and is ignored",
                 IgnoredArgumentWarning)
    elif not reml:
        warn(f"REML={reml!r} does not apply to a {family.name} model (always fitted by "
             "maximum likelihood, with nAGQ choosing the approximation) and is ignored",
             IgnoredArgumentWarning)


_MISSING = object()


def _base_prepare_response(family: Any) -> bool:
    """Whether the family reads its response with the base family's
    ``prepare_response`` (a float column whose values it supports)."""
    return type(family).prepare_response.__qualname__ == "Family.prepare_response"


def _missing(column: np.ndarray) -> np.ndarray:
    """Positions of missing values (NaN, None, NaT) in a column."""
    if column.dtype.kind == "f":
        return np.flatnonzero(np.isnan(column))
    if column.dtype.kind in "iub":
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(pd.isna(column))


def _as_values(y: Any) -> np.ndarray:
    if isinstance(y, (pd.Series, pd.DataFrame)):
        return y.to_numpy()
    return np.asarray(y)
