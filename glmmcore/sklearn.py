"""scikit-learn estimators: :class:`GLMMRegressor` and :class:`GLMMClassifier`.

Two ways to say the model:

- **formula mode** (``formula="y ~ x + (1 | g)"``): ``X`` is a data frame
  (pandas, polars, pyarrow) and every variable, the grouping factors
  included, is one of its columns; ``y``, when given, replaces the formula's
  response.  This is :func:`glmmcore.fit` behind scikit-learn's interface.
- **column mode** (``formula=None``): every column of ``X`` (an array or a
  data frame of numbers) is a fixed effect and ``groups`` gives a random
  intercept, ``y ~ x0 + x1 + ... + (1 | groups)``.  Without ``groups`` there
  is no grouping and so no random effect: the fixed-effects model alone (the
  GLM, the mixed model whose random-intercept variance is 0) is fitted, with
  a :class:`~glmmcore.errors.GlmmWarning`.

Predictions use the conditional modes of the levels the fit saw and the
``new_levels`` rule for the others (population level by default: random
effects of zero), on the response scale.  ``groups``, ``offset`` and
``sample_weight`` (the prior weights) are metadata that scikit-learn's
routing can send (``est.set_fit_request(groups=True)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import type_of_target
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        validate_data,
    )
except ImportError as exc:      # pragma: no cover - the extra is installed in CI
    raise ImportError('glmmcore.sklearn needs scikit-learn >= 1.6: '
                      'pip install "glmmcore[sklearn]"') from exc

from .design.model import MixedModel
from .errors import ConvergenceWarning, GlmmWarning, RankDeficiencyWarning, warn
from .registry import get_family
from .results.predict import NEW_LEVELS
from .spec.frame import as_dataframe

__all__ = ["GLMMClassifier", "GLMMRegressor"]

# column mode's names in the frame it builds (valid formula identifiers whatever X's are)
_Y, _GROUP = "y", "group"


class _GLMMBase(BaseEstimator):
    """What both estimators share: fitting, the fitted attributes, prediction."""

    # with metadata routing, groups and offsets routed to fit (set_fit_request(groups=True))
    # reach score and the predictions too, without a request of their own: new levels there
    # follow the new_levels rule, known ones get their random effects
    __metadata_request__score = {"groups": True, "offset": True}
    __metadata_request__predict = {"groups": True, "offset": True}

    # -- fitting -----------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, groups: Any = None, sample_weight: Any = None,
            offset: Any = None) -> _GLMMBase:
        """Fit the model.

        Parameters
        ----------
        X
            Formula mode: a data frame with every variable of the formula.
            Column mode: ``(n_samples, n_features)`` numbers, each a fixed effect.
        y
            The response (labels for the classifier); formula mode: optional,
            it replaces the formula's response.
        groups
            Column mode: the grouping factor of the random intercept.
        sample_weight
            Prior weights (binomial: the number of trials of each proportion).
        offset
            Offset of each row (formula mode also: a column name).

        Returns
        -------
        self
        """
        self._check_options()
        if self.formula is None:
            return self._fit_columns(X, y, groups, sample_weight, offset)
        return self._fit_formula(X, y, groups, sample_weight, offset)

    def _fit_formula(self, X: Any, y: Any, groups: Any, sample_weight: Any,
                     offset: Any) -> _GLMMBase:
        if groups is not None:
            raise ValueError("groups= is for formula=None; with a formula the grouping "
                             "factors are columns of X named in its random-effects terms")
        frame = as_dataframe(X)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(frame.columns)
        formula = self.formula
        if y is not None or self._needs_encoded_response():
            formula, frame = self._with_response(formula, frame, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, frame)
        self._set_result(MixedModel(formula, frame, **self._model_options(),
                                    weights=sample_weight, offset=offset).fit())
        return self

    def _with_response(self, formula: str, frame: pd.DataFrame,
                       y: Any) -> tuple[str, pd.DataFrame]:
        """The formula and frame with ``y`` (or the classifier's encoded labels) as response."""
        left, right = formula.split("~", 1)
        name = left.strip()
        if y is None:           # the classifier reads its labels from X's response column
            if name not in frame.columns:
                raise ValueError(f"GLMMClassifier reads its labels from the formula's "
                                 f"response, which must be a column of X (not {name!r}), "
                                 "or give y")
            y = frame[name]
        elif not name.isidentifier():
            name = _Y
        values = self._encode_response(y)
        if values.shape[0] != len(frame):
            raise ValueError(f"y has {values.shape[0]} values but X has {len(frame)} rows")
        frame = frame.copy(deep=False)     # the caller's X keeps its columns
        frame[name] = values
        return f"{name} ~{right}", frame

    def _fit_columns(self, X: Any, y: Any, groups: Any, sample_weight: Any,
                     offset: Any) -> _GLMMBase:
        X, y = validate_data(self, X, y, y_numeric=not isinstance(self, ClassifierMixin),
                             ensure_min_samples=2, dtype=np.float64)
        y = self._encode_response(y)
        offset = None if offset is None else _column(offset, X.shape[0], "offset")
        self._has_offset = offset is not None
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
            # rows of weight 0 add nothing to the likelihood (lme4 keeps them to no effect)
            used = sample_weight > 0
            if not used.all():
                X, y, sample_weight = X[used], y[used], sample_weight[used]
                offset = None if offset is None else offset[used]
                groups = None if groups is None else _column(groups, used.size, "groups",
                                                              numeric=False)[used]
                self._check_two_classes(y)
        if groups is None:
            self._fit_fixed_only(X, y, sample_weight, offset)
            return self
        frame = _column_frame(X, _column(groups, X.shape[0], "groups", numeric=False), y)
        terms = " + ".join(frame.columns[:X.shape[1]])
        formula = f"{_Y} ~ {terms} + (1 | {_GROUP})"
        self._set_result(MixedModel(formula, frame, **self._model_options(),
                                    weights=sample_weight, offset=offset).fit())
        return self

    def _fit_fixed_only(self, X: np.ndarray, y: np.ndarray, sample_weight: Any,
                        offset: Any) -> None:
        """Column mode without groups: the fixed-effects model alone (no random effect)."""
        warn("no groups given: the model has no random effect, so the fixed-effects model "
             "alone (a GLM) is fitted; give groups= for a random intercept", GlmmWarning)
        family = get_family(self.family_argument(), self.link)
        beta = _glm_coefficients(family, X, y, sample_weight, offset)
        self.result_ = None
        self._set_coefficients(beta[0], beta[1:])

    @property
    def ranef_(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects, one data frame per grouping factor
        (``result_.ranef``; empty without a random effect)."""
        check_is_fitted(self)
        return {} if self.result_ is None else self.result_.ranef

    def _set_result(self, result: Any) -> None:
        self.result_ = result
        fixef = dict(zip(result.predictor.fixed.names, result.beta))
        intercept = fixef.pop("(Intercept)", 0.0)
        if self.formula is None:    # one coefficient per column of X (0 where dropped)
            coef = [fixef.get(f"x{j}", 0.0) for j in range(self.n_features_in_)]
        else:
            coef = list(fixef.values())
        self._set_coefficients(intercept, np.array(coef, dtype=float))

    # -- prediction --------------------------------------------------------------
    def _linear_predictor(self, X: Any, groups: Any, offset: Any) -> np.ndarray:
        """The linear predictor of new rows (random effects by the new_levels rule)."""
        check_is_fitted(self)
        if self.formula is not None:
            if groups is not None:
                raise ValueError("groups= is for formula=None; with a formula the grouping "
                                 "factors are columns of X")
            return self.result_.predict(as_dataframe(X), new_levels=self.new_levels,
                                        type="link", offset=offset).to_numpy()
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if offset is None and self._has_offset:
            raise ValueError("fit was given an offset, so predictions need one: give offset= "
                             "(with metadata routing, predict and score request it)")
        offset = None if offset is None else _column(offset, X.shape[0], "offset")
        if groups is not None and self.result_ is not None:
            frame = _column_frame(X, _column(groups, X.shape[0], "groups", numeric=False))
            return self.result_.predict(frame, new_levels=self.new_levels, type="link",
                                        offset=offset).to_numpy()
        # no known level: the fixed effects (and the new_levels rule for the random effect)
        eta = X @ self._coef_vector() + self._intercept_value()
        if offset is not None:
            eta += offset
        if self.result_ is not None and self.new_levels != "population":
            if self.new_levels == "error":
                raise ValueError("predict without groups gives every row a level the fit "
                                 "never saw, which new_levels='error' refuses; give groups=")
            eta[:] = np.nan
        return eta

    def _mean(self, X: Any, groups: Any, offset: Any) -> np.ndarray:
        eta = self._linear_predictor(X, groups, offset)
        family = self._fitted_family()
        return eta if family.is_gaussian_identity else family.linkinv_array(eta)

    def _fitted_family(self) -> Any:
        if self.result_ is not None:
            return self.result_.family
        return get_family(self.family_argument(), self.link)

    # -- options -----------------------------------------------------------------
    def _check_options(self) -> None:
        if self.formula is not None and not (isinstance(self.formula, str)
                                             and "~" in self.formula):
            raise ValueError(f"formula must be a two-sided lme4 formula such as "
                             f"'y ~ x + (1 | g)', or None, not {self.formula!r}")
        if self.new_levels not in NEW_LEVELS:
            raise ValueError(f"new_levels must be one of {', '.join(map(repr, NEW_LEVELS))}, "
                             f"not {self.new_levels!r}")

    def _model_options(self) -> dict[str, Any]:
        return {"family": self.family_argument(), "link": self.link, "REML": self._reml(),
                "nAGQ": self.nAGQ, "control": self.control}

    def _needs_encoded_response(self) -> bool:
        return False

    def _check_two_classes(self, y: np.ndarray) -> None:
        """Classifier: both classes still present (after rows of weight 0 left)."""

    def _score_target(self, X: Any, y: Any) -> Any:
        """``y``, or in formula mode without it the response column of ``X``."""
        if y is not None:
            return y
        name = self.formula.split("~", 1)[0].strip() if self.formula is not None else None
        frame = as_dataframe(X) if name is not None else None
        if frame is None or name not in frame.columns:
            raise ValueError("score needs y (or, in formula mode, X with the formula's "
                             "response column)")
        return frame[name].to_numpy()

    def _encode_response(self, y: Any) -> np.ndarray:
        return np.asarray(y, dtype=float)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        if self.formula is not None:     # a data frame with the formula's columns
            tags.input_tags.two_d_array = False
            tags.input_tags.string = True
            tags.input_tags.categorical = True
            tags.target_tags.required = False
        return tags


class GLMMRegressor(RegressorMixin, _GLMMBase):
    """A linear or generalized linear mixed model as a scikit-learn regressor.

    Parameters
    ----------
    formula
        A two-sided lme4 formula whose variables are columns of ``X``
        (formula mode), or ``None`` (column mode: every column of ``X`` a
        fixed effect, a random intercept per level of ``fit``'s ``groups``).
    family, link
        A family name, class or instance, and optionally a link name.
    REML
        REML (default) or ML for a linear mixed model.
    nAGQ
        GLMM integration: 0, 1 (Laplace) or adaptive Gauss-Hermite nodes.
    new_levels
        What prediction gives levels the fit never saw: ``"population"``
        (random effects of zero), ``"nan"`` or ``"error"``.
    control
        :class:`glmmcore.FitControl` or a dict of its fields.

    Attributes
    ----------
    result_
        The :class:`glmmcore.MixedModelResult` (``None`` for a column-mode fit
        without groups, which has no random effect).
    coef_, intercept_
        The fixed effects: one per column of ``X`` in column mode, the
        formula's (intercept excepted) in formula mode.
    ranef_
        Conditional modes, one data frame per grouping factor.
    n_features_in_, feature_names_in_
        The columns of ``X`` seen by ``fit``.
    """

    def __init__(self, formula: str | None = None, *, family: Any = "gaussian",
                 link: str | None = None, REML: bool = True, nAGQ: int = 1,
                 new_levels: str = "population", control: Any = None) -> None:
        self.formula = formula
        self.family = family
        self.link = link
        self.REML = REML
        self.nAGQ = nAGQ
        self.new_levels = new_levels
        self.control = control

    def family_argument(self) -> Any:
        """The family the estimator fits."""
        return self.family

    def _reml(self) -> bool:
        # REML applies to a linear mixed model only (glmmcore warns when it is ignored)
        family = get_family(self.family, self.link)
        return self.REML if family.is_gaussian_identity else True

    def _set_coefficients(self, intercept: float, coef: np.ndarray) -> None:
        self.intercept_ = float(intercept)
        self.coef_ = np.asarray(coef, dtype=float)

    def _coef_vector(self) -> np.ndarray:
        return self.coef_

    def _intercept_value(self) -> float:
        return self.intercept_

    def predict(self, X: Any, *, groups: Any = None, offset: Any = None) -> np.ndarray:
        """Predicted means of new rows (conditional on the random effects of known levels).

        Parameters
        ----------
        X
            Rows like ``fit``'s ``X``.
        groups
            Column mode: each row's level (without it, every row is of a new level).
        offset
            Offset of each row (needed when ``fit`` had an offset array).

        Returns
        -------
        numpy.ndarray
        """
        return self._mean(X, groups, offset)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None, *,
              groups: Any = None, offset: Any = None) -> float:
        """R^2 of :meth:`predict` (``groups`` and ``offset`` as there; formula mode: ``y``
        defaults to X's response column)."""
        from sklearn.metrics import r2_score
        y = self._score_target(X, y)
        return float(r2_score(y, self.predict(X, groups=groups, offset=offset),
                              sample_weight=sample_weight))


class GLMMClassifier(ClassifierMixin, _GLMMBase):
    """A binomial generalized linear mixed model as a scikit-learn classifier.

    ``y`` has two classes of any labels (``classes_``, sorted); the second is
    the event whose probability the model gives.

    Parameters
    ----------
    formula
        A two-sided lme4 formula whose variables are columns of ``X``
        (formula mode), or ``None`` (column mode, see :class:`GLMMRegressor`).
    link
        The binomial family's link (``"logit"``, ``"probit"``, ``"cloglog"``, ...).
    nAGQ
        0, 1 (Laplace) or the number of adaptive Gauss-Hermite nodes.
    new_levels
        What prediction gives levels the fit never saw (see :class:`GLMMRegressor`).
    control
        :class:`glmmcore.FitControl` or a dict of its fields.

    Attributes
    ----------
    classes_
        The two labels.
    result_, ranef_, n_features_in_, feature_names_in_
        As :class:`GLMMRegressor`'s.
    coef_, intercept_
        Shapes ``(1, n_coefficients)`` and ``(1,)``, as scikit-learn's linear
        classifiers.
    """

    __metadata_request__predict_proba = {"groups": True, "offset": True}
    __metadata_request__decision_function = {"groups": True, "offset": True}

    def __init__(self, formula: str | None = None, *, link: str = "logit", nAGQ: int = 1,
                 new_levels: str = "population", control: Any = None) -> None:
        self.formula = formula
        self.link = link
        self.nAGQ = nAGQ
        self.new_levels = new_levels
        self.control = control

    def family_argument(self) -> str:
        """The family the estimator fits: binomial."""
        return "binomial"

    def _reml(self) -> bool:
        return True

    def _needs_encoded_response(self) -> bool:
        return True

    def _check_two_classes(self, y: np.ndarray) -> None:
        if np.unique(y).size < 2:
            raise ValueError("GLMMClassifier needs two classes among the rows of positive "
                             "sample_weight, not one class")

    def _encode_response(self, y: Any) -> np.ndarray:
        labels = y.to_numpy() if isinstance(y, pd.Series) else np.asarray(y)
        if labels.ndim != 1:
            labels = np.ravel(labels) if labels.ndim == 2 and labels.shape[1] == 1 else labels
        missing = pd.isna(labels)
        present = labels[~missing] if missing.any() else labels
        try:        # the kind of the distinct labels is the kind of y, found faster
            distinct = np.unique(present) if present.ndim == 1 else present
        except TypeError:           # labels that do not sort: type_of_target names them
            distinct = present
        kind = "binary" if _plainly_binary(distinct) else type_of_target(
            distinct, input_name="y", raise_unknown=True)
        if kind.startswith("continuous"):
            raise ValueError(f"Unknown label type: {kind}: a classifier takes classes, "
                             "not continuous values")
        if kind != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the "
                             f"target is {kind}.")
        classes = distinct if distinct is not present else np.unique(present)
        if classes.size != 2:
            raise ValueError(f"GLMMClassifier needs two classes in y, not {classes.size} "
                             f"class ({classes[0]!r})")
        self.classes_ = classes
        values = (labels == classes[1]).astype(float)
        values[missing] = np.nan        # rows dropped as the formula's missing values are
        return values

    def _set_coefficients(self, intercept: float, coef: np.ndarray) -> None:
        self.intercept_ = np.array([float(intercept)])
        self.coef_ = np.asarray(coef, dtype=float).reshape(1, -1)

    def _coef_vector(self) -> np.ndarray:
        return self.coef_[0]

    def _intercept_value(self) -> float:
        return float(self.intercept_[0])

    def predict_proba(self, X: Any, *, groups: Any = None, offset: Any = None) -> np.ndarray:
        """Probabilities of ``classes_`` per row, shape ``(n, 2)`` (``groups`` as in
        :meth:`GLMMRegressor.predict`)."""
        p = self._mean(X, groups, offset)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: Any, *, groups: Any = None,
                          offset: Any = None) -> np.ndarray:
        """Log-odds of ``classes_[1]``: positive where it is predicted (the linear
        predictor itself for the logit link)."""
        check_is_fitted(self)
        if self._fitted_family().link.name == "logit":
            return self._linear_predictor(X, groups, offset)
        p = self._mean(X, groups, offset)
        with np.errstate(divide="ignore"):
            return np.log(p) - np.log1p(-p)

    def predict(self, X: Any, *, groups: Any = None, offset: Any = None) -> np.ndarray:
        """The more probable class of each row (``classes_[1]`` where its probability
        exceeds 1/2)."""
        p = self._mean(X, groups, offset)
        return self.classes_[(p > 0.5).astype(int)]

    def score(self, X: Any, y: Any = None, sample_weight: Any = None, *,
              groups: Any = None, offset: Any = None) -> float:
        """Accuracy of :meth:`predict` (``groups`` and ``offset`` as there; formula mode:
        ``y`` defaults to X's response column)."""
        from sklearn.metrics import accuracy_score
        y = self._score_target(X, y)
        return float(accuracy_score(y, self.predict(X, groups=groups, offset=offset),
                                    sample_weight=sample_weight))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


def _plainly_binary(distinct: np.ndarray) -> bool:
    """Two distinct labels that are integers, integral floats, booleans or strings: what
    ``type_of_target`` calls binary, decided without its ~1 ms of checks."""
    if distinct.ndim != 1 or distinct.size != 2:
        return False
    if distinct.dtype.kind in "biuUS":
        return True
    if distinct.dtype.kind == "f":
        return bool(np.all(np.isfinite(distinct)) and np.all(distinct == np.round(distinct)))
    return distinct.dtype.kind == "O" and all(isinstance(v, str) for v in distinct)


def _column(values: Any, n: int, name: str, numeric: bool = True) -> np.ndarray:
    """One value per row of X, as a 1-d array."""
    array = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    array = array.ravel() if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must have one value per row of X ({n}), "
                         f"not shape {array.shape}")
    if numeric:
        array = array.astype(float)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite numbers")
    return array


def _column_frame(X: np.ndarray, groups: np.ndarray | None,
                  y: np.ndarray | None = None) -> pd.DataFrame:
    """Column mode's data frame: ``x0, x1, ...``, the ``group`` column and ``y``."""
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    if groups is not None:
        columns[_GROUP] = groups
    if y is not None:
        columns[_Y] = y
    return pd.DataFrame(columns, copy=False)     # the columns as they are, not consolidated


def _glm_coefficients(family: Any, X: np.ndarray, y: np.ndarray, sample_weight: Any,
                      offset: Any) -> np.ndarray:
    """Intercept and coefficients of the GLM (no random effect), by glmmcore's IRLS."""
    from .objectives.family_kernels import family_kernels
    from .objectives.glm_irls import CONVERGED, NOT_POSITIVE_DEFINITE, glm_irls
    from .objectives.pirls import FLOOR_TOL, MAX_HALVINGS, MAX_ITER, STEP_TOL
    from .spec.fixed import independent_columns
    if family.extra is not None and family.name not in ("gaussian", "gamma"):
        raise ValueError(f"the {family.name} family's {family.extra.name} is estimated with "
                         "the random effects; give groups=")
    n = X.shape[0]
    design = np.column_stack([np.ones(n), X])
    weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    y, weights, _ = family.prepare_response([pd.Series(y, name=_Y)], weights, _Y,
                                            pd.RangeIndex(n))
    y, weights = np.ascontiguousarray(y, dtype=float), np.ascontiguousarray(weights, dtype=float)
    off = np.zeros(n) if offset is None else np.ascontiguousarray(offset, dtype=float)
    root = np.sqrt(weights)
    # as lme4 (and glmmcore's formulas): columns dependent on earlier ones are dropped
    keep = independent_columns(design * root[:, None])
    if not keep.all():
        warn(f"{int((~keep).sum())} column(s) of X are linear combinations of the intercept "
             "and earlier columns; their coefficients are set to 0", RankDeficiencyWarning)
        design = np.ascontiguousarray(design[:, keep])
    start = family.linkfun_array(family.start_mu(y, weights))
    beta = np.linalg.lstsq(design * root[:, None], (start - off) * root, rcond=None)[0]
    work = [np.empty(n) for _ in range(5)]      # eta, mu, working weights, residuals, deviance
    kernels = family_kernels(family)
    limits = (STEP_TOL, FLOOR_TOL, float(MAX_ITER), float(MAX_HALVINGS))
    status = glm_irls(kernels.update, kernels.observed_weights, kernels.newton,
                      kernels.canonical, design, y, weights, off, 1.0, beta, limits, *work)
    if status == NOT_POSITIVE_DEFINITE:
        raise ValueError("the columns of X and the intercept are linearly dependent (or "
                         "every weight is 0): the fixed effects are not identified")
    if status != CONVERGED:
        warn("the fixed-effects model's IRLS did not converge (separated classes?); its "
             "coefficients are those of the last iteration", ConvergenceWarning)
    out = np.zeros(keep.size)
    out[keep] = beta
    return out
