"""The fitted model: estimates, variance components, random effects, fit statistics.

Names follow lme4 where lme4 has one (``fixef``, ``ranef``, ``varcorr``,
``theta``, ``sigma``, ``loglik``); tables are pandas objects indexed by
coefficient or level names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ..design.predictor import Predictor
from ..design.response import Response
from ..fitting.checks import Convergence


@dataclass(eq=False)
class MixedModelResult:
    """A fitted linear or generalized linear mixed model.

    A result holds its estimates and what its methods need (the response it
    was fitted to, the linear predictor) and a reference to its
    :class:`~glmmcore.design.model.MixedModel`, which many results share; no fitting
    workspace.  Conditional variances are computed when first asked for.

    Attributes
    ----------
    model
        The model fitted (formula, family, X, Z, layout).
    response
        The response fitted (y, weights, offset, family).
    method
        ``"REML"``, ``"ML"``, ``"Laplace"``, ``"AGQ"`` or ``"nAGQ=0"``.
    theta
        Relative covariance parameters in lme4's order.
    beta
        Fixed effects (also :attr:`fixef` as a Series).
    u, b
        Spherical and scaled conditional modes of the random effects, block by
        block (``b = Lambda(theta) u``).
    sigma
        Residual standard deviation (LMM), square root of the dispersion
        (families with one), else 1.
    vcov_beta
        Covariance of the fixed effects (also :attr:`vcov`).
    loglik
        Log-likelihood at the optimum (REML criterion / -2 for a REML fit),
        complete with every constant.
    nparams
        Number of estimated parameters (for AIC and BIC).
    deviance
        ML deviance (see :attr:`reml_criterion` for REML).
    convergence
        Diagnostics of the optimizer and the checks after it.
    eta
        Conditional linear predictor ``X beta + Z b + offset``.
    extra
        Further facts of the fit (family parameters, evaluation counts, flags).
    """

    model: Any
    response: Response
    method: str
    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    b: np.ndarray
    sigma: float
    vcov_beta: np.ndarray
    loglik: float
    nparams: int
    deviance: float
    convergence: Convergence
    eta: np.ndarray
    extra: dict = field(default_factory=dict)

    # -- the model -----------------------------------------------------------
    @property
    def formula(self) -> str:
        """The model formula."""
        return self.model.formula

    @property
    def family(self) -> Any:
        """The family object (``Gaussian(link='identity')`` for an LMM)."""
        return self.response.family

    @property
    def predictor(self) -> Predictor:
        """X, the random-effects terms and the factor layout (the model's)."""
        return self.model.predictor

    @property
    def reml(self) -> bool:
        """True for a REML fit."""
        return self.method == "REML"

    @property
    def nagq(self) -> int:
        """The model's nAGQ."""
        return self.model.nagq

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values."""
        return self.model.n_dropped

    @property
    def data_label(self) -> str:
        """Name of the data shown in the summary."""
        return self.model.data_label

    @property
    def mu(self) -> np.ndarray:
        """Conditional means (the inverse link of :attr:`eta`)."""
        if self.is_lmm:
            return self.eta
        return self.family.linkinv_array(self.eta)

    # -- sizes -----------------------------------------------------------
    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return self.predictor.n

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return {b.factor.name: b.nlevels for b in self.predictor.reterms.blocks}

    @property
    def is_lmm(self) -> bool:
        """True for a linear mixed model."""
        return self.method in ("REML", "ML")

    # -- fixed effects ---------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates."""
        return pd.Series(self.beta, index=self.predictor.fixed.names, name="Estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates."""
        names = self.predictor.fixed.names
        return pd.DataFrame(self.vcov_beta, index=names, columns=names)

    @property
    def stderr(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=self.predictor.fixed.names,
                         name="Std. Error")

    # -- random effects --------------------------------------------------
    @property
    def theta_names(self) -> list[str]:
        """lme4-style labels of theta's elements (``student.(Intercept)``)."""
        names = []
        for term in self.predictor.reterms.terms:
            cols = term.colnames
            for c in range(len(cols)):
                for r in range(c, len(cols)):
                    label = cols[r] if r == c else f"{cols[r]}.{cols[c]}"
                    names.append(f"{term.label}.{label}")
        return names

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(fit))``.

        Columns ``grp, var1, var2, vcov, sdcor``: variances with their
        standard deviations, then covariances with their correlations, per
        term; a ``Residual`` row for families with a scale.
        """
        rows = []
        # an LMM's random effects are scaled by sigma; a GLMM's are not (the dispersion is
        # in its PIRLS weights)
        scale2 = self.sigma ** 2 if self.is_lmm else 1.0
        Ts = self.predictor.reterms.T_matrices(self.theta)
        for term in self.predictor.reterms.terms:
            T = Ts[term.block][np.ix_(term.cols, term.cols)]
            S = scale2 * (T @ T.T)
            sd = np.sqrt(np.diag(S))
            for i, name in enumerate(term.colnames):
                rows.append((term.label, name, None, S[i, i], sd[i]))
            for i in range(len(sd)):
                for j in range(i + 1, len(sd)):
                    corr = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    rows.append((term.label, term.colnames[i], term.colnames[j], S[i, j], corr))
        if self.has_scale:
            rows.append(("Residual", None, None, self.sigma ** 2, self.sigma))
        cols = list(zip(*rows))
        # object columns keep None (not NaN) where lme4 has NA, whatever the rows
        return pd.DataFrame({
            "grp": pd.Series(cols[0], dtype=object), "var1": pd.Series(cols[1], dtype=object),
            "var2": pd.Series(cols[2], dtype=object), "vcov": np.array(cols[3], dtype=float),
            "sdcor": np.array(cols[4], dtype=float)})

    @property
    def has_scale(self) -> bool:
        """True when the family has a residual scale (LMM, Gaussian, Gamma)."""
        return bool(self.extra.get("has_scale", self.is_lmm))

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects, one table per grouping factor."""
        out = {}
        start = 0
        for block in self.predictor.reterms.blocks:
            values = self.b[start:start + block.q].reshape(block.nlevels, block.p)
            out[block.factor.name] = pd.DataFrame(values, index=block.factor.levels,
                                                  columns=block.colnames)
            start += block.q
        return out

    @cached_property
    def condvar(self) -> dict[str, np.ndarray]:
        """Conditional covariance of each level's random effects.

        One array of shape ``(levels, p, p)`` per grouping factor (lme4's
        ``postVar``), given theta, beta and the scale.
        """
        if self.is_lmm:
            from ..fitting.lmm_fit import lmm_condvar
            blocks = lmm_condvar(self)
        else:
            from ..fitting.glmm_fit import glmm_condvar
            blocks = glmm_condvar(self)
        return {b.factor.name: v for b, v in zip(self.predictor.reterms.blocks, blocks)}

    # -- fit statistics --------------------------------------------------
    @property
    def aic(self) -> float:
        """Akaike's information criterion."""
        return -2.0 * self.loglik + 2.0 * self.nparams

    @property
    def bic(self) -> float:
        """Schwarz's Bayesian information criterion."""
        return -2.0 * self.loglik + np.log(self.nobs) * self.nparams

    @property
    def reml_criterion(self) -> float:
        """REML criterion at the optimum (NaN for a non-REML fit)."""
        return -2.0 * self.loglik if self.reml else np.nan

    @property
    def converged(self) -> bool:
        """Whether the convergence checks passed."""
        return self.convergence.converged

    @property
    def is_singular(self) -> bool:
        """Whether a variance component sits on its bound 0."""
        return self.convergence.is_singular

    # -- fitted values -----------------------------------------------------
    def fitted(self) -> pd.Series:
        """Fitted means (conditional on the random effects)."""
        return pd.Series(self.mu, index=self.response_index, name="fitted")

    def linear_predictor(self) -> pd.Series:
        """Conditional linear predictor ``X beta + Z b + offset``."""
        return pd.Series(self.eta, index=self.response_index, name="eta")

    def residuals(self, kind: str = "response") -> pd.Series:
        """Residuals: ``"response"`` (y - mu), ``"pearson"`` or ``"deviance"``."""
        y, mu = self.response.y, self.mu
        if kind == "response":
            r = y - mu
        elif kind == "pearson":
            r = (y - mu) * np.sqrt(self.response.weights / self.unit_variance())
        elif kind == "deviance":
            r = np.sign(y - mu) * np.sqrt(np.maximum(self.deviance_residuals(), 0.0))
        else:
            raise ValueError(f"kind must be 'response', 'pearson' or 'deviance', not {kind!r}")
        return pd.Series(r, index=self.response_index, name="residuals")

    @property
    def response_index(self) -> pd.Index:
        """Row labels of the data rows used."""
        return self.model.row_labels

    def unit_variance(self) -> np.ndarray:
        """Variance function at the fitted means (scale excluded for an LMM)."""
        if self.is_lmm:
            return np.ones(self.nobs)
        return self.family.response_variance(self.mu, self.extra.get("phi", 1.0))

    def deviance_residuals(self) -> np.ndarray:
        """Squared deviance residuals at the fitted means."""
        if self.is_lmm:
            return self.response.weights * (self.response.y - self.mu) ** 2
        return self.family.dev_resid_array(self.response.y, self.mu, self.response.weights,
                                           self.extra.get("phi", 1.0))

    # -- prediction and simulation -------------------------------------------
    def predict(self, newdata: Any = None, *, re_form: Any = None,
                new_levels: str = "population", type: str = "response",
                offset: Any = None) -> pd.Series:
        """Predictions on the fit's own rows or on new data (lme4's ``predict``).

        Parameters
        ----------
        newdata
            A data frame with the variables of the formula's right-hand side;
            ``None`` predicts the rows fitted.
        re_form
            Random-effects terms included: ``None`` all of them, ``"~0"`` (or
            ``"NA"``) none (population level), ``"~(1 | g)"`` those named.
        new_levels
            Levels of a grouping factor the fit never saw: ``"population"``
            (random effects of zero, lme4's ``allow.new.levels = TRUE``),
            ``"error"`` (a :class:`DataError` naming them) or ``"nan"``.
        type
            ``"response"`` (the mean) or ``"link"`` (the linear predictor).
        offset
            A column name or array of newdata's offset, added to the formula's
            ``offset(...)`` terms (needed when the fit's offset was an array).

        Returns
        -------
        pandas.Series
            Indexed like ``newdata`` (like the rows fitted without it); rows of
            newdata with a missing predictor are NaN, with a ``MissingValueWarning``.
        """
        from .predict import predict
        return predict(self, newdata, re_form=re_form, new_levels=new_levels, type=type,
                       offset=offset)

    def simulate(self, nsim: int = 1, *, seed: Any = None, newdata: Any = None,
                 re_form: Any = "~0") -> pd.DataFrame:
        """Responses drawn from the fitted model (lme4's ``simulate``).

        Parameters
        ----------
        nsim
            Number of simulated responses.
        seed
            Seed of numpy's default generator (or a ``Generator``): the same seed
            gives the same draws.
        newdata
            Rows to simulate for (default: the rows fitted; new rows get one trial
            each for a binomial family).
        re_form
            ``"~0"`` (default, lme4's ``re.form = NA``): new random effects drawn
            from their fitted distribution; ``None``: the conditional modes kept
            (new levels still drawn); ``"~(1 | g)"``: those terms kept.

        Returns
        -------
        pandas.DataFrame
            One column per simulation (``sim_1``, ...), one row per row; binomial
            responses are proportions of the rows' trials.
        """
        from .predict import simulate
        return simulate(self, nsim, seed=seed, newdata=newdata, re_form=re_form)

    # -- inference -----------------------------------------------------------
    def confint(self, parm: Any = None, *, level: float = 0.95, method: str = "profile",
                nsim: int = 1000, seed: Any = None, n_jobs: int | None = None
                ) -> pd.DataFrame:
        """Confidence intervals (lme4's ``confint(fit, oldNames = FALSE)``).

        Parameters
        ----------
        parm
            Names of rows, positions, ``"theta_"`` (the variance parameters)
            or ``"beta_"`` (the fixed effects); ``None``: all.
        level
            Confidence level.
        method
            ``"profile"`` (likelihood profile; REML fits profiled as their ML
            refit, as lme4), ``"wald"`` (fixed effects ``+- z se``, NaN for
            the variance parameters) or ``"boot"`` (parametric bootstrap
            percentile intervals of ``nsim`` draws).
        nsim, seed, n_jobs
            The bootstrap's draws, seed and threads (``method="boot"``).

        Returns
        -------
        pandas.DataFrame
            Rows ``sd_(Intercept)|g``, ``cor_x.(Intercept)|g``, ...,
            ``sigma`` (families with a scale), the fixed effects; columns
            ``2.5 %`` and ``97.5 %`` (for ``level=0.95``).
        """
        from ..inference.confint import confint
        return confint(self, parm, level=level, method=method, nsim=nsim, seed=seed,
                       n_jobs=n_jobs)

    def profile(self, parm: Any = None, **options: Any) -> pd.DataFrame:
        """The likelihood profile (lme4's ``profile``) as a table ``parameter, value,
        zeta``; options as :func:`glmmcore.inference.profile.profile`."""
        from ..inference.profile import profile
        return profile(self, parm, **options)

    def ranef_frame(self, cond_var: bool = False) -> pd.DataFrame:
        """The conditional modes as a tidy table (lme4's ``as.data.frame(ranef(fit))``).

        Columns ``grpvar, term, grp, condval`` and, with ``cond_var=True``,
        ``condsd`` (the conditional standard deviation), one row per level
        and random-effect column.
        """
        frames = []
        variances = self.condvar if cond_var else None
        for name, table in self.ranef.items():
            for k, column in enumerate(table.columns):
                part = pd.DataFrame({"grpvar": name, "term": column,
                                     "grp": table.index.astype(str),
                                     "condval": table[column].to_numpy()})
                if variances is not None:
                    part["condsd"] = np.sqrt(variances[name][:, k, k])
                frames.append(part)
        return pd.concat(frames, ignore_index=True)

    # -- presentation ------------------------------------------------------
    def summary(self, ddf: str | None = None) -> Summary:
        """lme4-style summary; ``print(fit.summary())``.

        ``ddf`` (``"satterthwaite"``, ``"kenward-roger"``, ``"asymptotic"``)
        prints the fixed effects as lmerTest does, with degrees of freedom and
        p-values (:meth:`coef_table`).
        """
        from .summary import format_summary
        return Summary(format_summary(self, ddf=ddf))

    def coef_table(self, ddf: str | None = None) -> pd.DataFrame:
        """Fixed-effects table of the summary: estimates, standard errors, t or z
        values and (GLMMs) Wald p-values, as lme4's ``coef(summary(fit))``.

        With ``ddf``, lmerTest's table with denominator degrees of freedom:
        ``"satterthwaite"`` or ``"kenward-roger"`` (linear mixed models; columns
        ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)``) or
        ``"asymptotic"`` (z tests; the only choice for a GLMM).  See
        docs/inference.md.
        """
        if ddf is not None:
            from ..inference.ddf import coef_table as ddf_table
            return ddf_table(self, ddf)
        from .summary import coef_table
        return coef_table(self)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F tests of the fixed-effects terms, as lmerTest's ``anova(fit)``.

        ``ddf``: ``"satterthwaite"`` (default), ``"kenward-roger"`` (REML fits)
        or ``"asymptotic"`` (Wald chi-square over its df; GLMMs).  Columns
        ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``.
        """
        from ..inference.ddf import anova_table
        return anova_table(self, ddf)

    def to_dict(self, *, condvar: bool = False) -> dict:
        """Everything the fit reports as JSON-ready data, in the documented schema
        (``glmmcore/schema/result.schema.json``); ``condvar=True`` adds the
        conditional covariances of the random effects."""
        from .export import result_to_dict
        return result_to_dict(self, condvar=condvar)

    def to_json(self, *, condvar: bool = False, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        from .export import result_to_json
        return result_to_json(self, condvar=condvar, indent=indent)

    def __repr__(self) -> str:
        return (f"<MixedModelResult {self.method} fit of '{self.formula}': "
                f"logLik {self.loglik:.4f}, {self.nobs} obs>")


class Summary(str):
    """Summary text that shows itself at the prompt."""

    def __repr__(self) -> str:
        return str(self)
