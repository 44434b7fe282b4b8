"""One feature's fit as table rows, and a chunk of features as two small tables.

:func:`fit_one` is the only place a batch fits one feature: ``model.fit(y)``.
Where the model has one scalar random-effects term, the chunk is first fitted
as a block on the compiled fast path (:func:`glmmcore.fitting.scalar_block.fit_block`:
the same optima and checks as ``model.fit``, with no Python step per feature);
the features it leaves (errors, flags before the fit, failed checks) go to
:func:`fit_one`.
:class:`ChunkFitter` knows the columns every feature gets (from the models,
before any fit, so a failed feature has the same columns as the others) and
turns a block of responses into the chunk's ``fits`` and ``coefs`` columns with
numpy only; the batch's two tables are built once from all chunks' columns
(:func:`frame`): per-chunk pandas work would cost more than a chunk's fits.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FIT_COLUMNS = ("converged", "singular", "loglik", "deviance", "aic")
LRT_COLUMNS = ("loglik_reduced", "lrt_statistic", "lrt_df", "lrt_p_value")
TAIL_COLUMNS = ("n_evaluations", "seconds", "error", "flags")
COEF_COLUMNS = ("estimate", "std_error", "statistic", "p_value")


def fit_one(model: Any, y: np.ndarray) -> Any:
    """Fit one feature's response ``y`` (one value per row of the data) to ``model``."""
    return model.fit(y)


@dataclass
class ChunkTables:
    """One chunk's results as columns (name -> 1-D array, in the tables' order):
    ``fits`` (one row per feature) and ``coefs`` (long)."""

    index: int
    fits: dict[str, np.ndarray]
    coefs: dict[str, np.ndarray]

    def __len__(self) -> int:
        """The chunk's features."""
        return len(self.fits["feature"])

    @classmethod
    def from_frames(cls, index: int, fits: pd.DataFrame, coefs: pd.DataFrame) -> ChunkTables:
        """A chunk's columns from its two tables (as a checkpoint stores them)."""
        return cls(index=index, fits={c: fits[c].to_numpy() for c in fits.columns},
                   coefs={c: coefs[c].to_numpy() for c in coefs.columns})


def frame(chunks: list[ChunkTables], kind: str) -> pd.DataFrame:
    """The ``kind`` (``"fits"`` or ``"coefs"``) table of chunks, in their order: each
    column concatenated once (no per-chunk table)."""
    parts = [getattr(t, kind) for t in chunks]
    return pd.DataFrame({c: np.concatenate([part[c] for part in parts]) for c in parts[0]})


class ChunkFitter:
    """Fits features to a model (and its reduced model) and lays the results out.

    Parameters
    ----------
    model
        The :class:`~glmmcore.MixedModel` of every feature.
    reduced
        The reduced model of the likelihood-ratio test, or None.
    on_error
        ``"record"``: a failing feature gets its row with the error;
        ``"raise"``: the exception propagates.
    """

    def __init__(self, model: Any, reduced: Any = None, on_error: str = "record") -> None:
        self.model, self.reduced, self.on_error = model, reduced, on_error
        self.terms = list(model.predictor.fixed.names)
        self.component_names, self.component_slots = _components(model)
        family = model.family
        self.has_sigma = bool(model.is_lmm or (family.extra is not None
                                               and family.extra.name == "dispersion"))
        self.family_params = ([] if model.is_lmm or family.extra is None
                              else list(family.display_params(1.0)))
        self.lrt_df = (_nparams(model) - _nparams(reduced)) if reduced is not None else None

    @property
    def fit_columns(self) -> list[str]:
        """Columns of the ``fits`` table, in order (``feature`` first)."""
        columns = ["feature", *FIT_COLUMNS, *self.component_names]
        columns += ["sigma"] if self.has_sigma else []
        columns += [f"family_{name}" for name in self.family_params]
        columns += list(LRT_COLUMNS) if self.reduced is not None else []
        return columns + list(TAIL_COLUMNS)

    def fit_chunk(self, index: int, names: list[str], Y: np.ndarray) -> ChunkTables:
        """Fit every column of ``Y`` (dense, observations x features) and tabulate."""
        from scipy import special  # here: importing glmmcore does not load scipy.special
        n, p = len(names), len(self.terms)
        numbers = {c: np.full(n, np.nan) for c in self.fit_columns
                   if c not in ("feature", "converged", "singular", "error", "flags")}
        converged = np.zeros(n, dtype=bool)
        singular = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        flags = [""] * n
        estimate, std_error = np.full((n, p), np.nan), np.full((n, p), np.nan)
        done = self._fill_block(Y, numbers, converged, singular, flags, estimate, std_error)
        for i in range(n):
            if done[i]:
                continue
            start = time.perf_counter()
            try:
                fit = fit_one(self.model, Y[:, i])
                small = fit_one(self.reduced, Y[:, i]) if self.reduced is not None else None
            except Exception as exc:        # any failure is the feature's row, never the batch's
                if self.on_error == "raise":
                    raise
                errors[i] = _describe(exc)
                numbers["seconds"][i] = time.perf_counter() - start
                continue
            converged[i] = fit.converged and (small is None or small.converged)
            singular[i] = fit.is_singular
            flags[i] = ";".join(getattr(f, "code", "other") for f in fit.convergence.flags)
            self._fill(numbers, i, fit, small)
            estimate[i] = fit.beta
            std_error[i] = np.sqrt(np.diag(fit.vcov_beta))
            numbers["seconds"][i] = time.perf_counter() - start
        columns = {"feature": _objects(names), "converged": converged, "singular": singular,
                   **numbers, "error": _objects(errors), "flags": _objects(flags)}
        # a failed feature's converged and singular stay False
        fits = {c: columns[c] for c in self.fit_columns}
        statistic = (estimate / std_error).ravel()
        coefs = {  # the normal's survival function: scipy.stats.norm.sf's, at less cost
            "feature": np.repeat(_objects(names), p), "term": np.tile(_objects(self.terms), n),
            "estimate": estimate.ravel(), "std_error": std_error.ravel(),
            "statistic": statistic, "p_value": 2 * special.ndtr(-np.abs(statistic))}
        return ChunkTables(index=index, fits=fits, coefs=coefs)

    def _fill_block(self, Y: np.ndarray, numbers: dict[str, np.ndarray], converged: np.ndarray,
                    singular: np.ndarray, flags: list[str], estimate: np.ndarray,
                    std_error: np.ndarray) -> np.ndarray:
        """The chunk's rows that the fast path answers (of the model and, with a
        likelihood-ratio test, of the reduced model); returns which."""
        from scipy import special

        from ..fitting.scalar_block import fit_block
        start = time.perf_counter()
        block = fit_block(self.model, Y)
        small = fit_block(self.reduced, Y) if self.reduced is not None else None
        n = Y.shape[1]
        if block is None or (self.reduced is not None and small is None):
            return np.zeros(n, dtype=bool)
        done = ~block.regular & (np.ones(n, dtype=bool) if small is None else ~small.regular)
        rows = np.flatnonzero(done)
        fits = block.fits
        numbers["loglik"][rows] = fits.loglik[rows]
        numbers["deviance"][rows] = fits.deviance[rows]
        numbers["aic"][rows] = -2.0 * fits.loglik[rows] + 2.0 * _nparams(self.model)
        numbers["n_evaluations"][rows] = fits.nevals[rows]
        scale = fits.sigma[rows] if self.model.is_lmm else 1.0
        (name,) = self.component_names         # one scalar term
        numbers[name][rows] = fits.theta[rows, 0] * scale
        if self.has_sigma:
            numbers["sigma"][rows] = fits.sigma[rows]
        for i in rows:
            for key, value in self.model.family.display_params(fits.phi[i]).items() if (
                    self.family_params) else ():
                numbers[f"family_{key}"][i] = value
        if small is not None:
            statistic = 2.0 * (fits.loglik[rows] - small.fits.loglik[rows])
            numbers["loglik_reduced"][rows] = small.fits.loglik[rows]
            numbers["lrt_statistic"][rows] = statistic
            numbers["lrt_df"][rows] = self.lrt_df
            numbers["lrt_p_value"][rows] = special.chdtrc(self.lrt_df,     # chi2.sf
                                                          np.maximum(statistic, 0.0))
        converged[rows] = block.converged[rows] & (True if small is None
                                                   else small.converged[rows])
        singular[rows] = block.singular[rows]
        for i in rows:
            flags[i] = ";".join(block.flags[i])
        estimate[rows] = fits.beta[rows]
        std_error[rows] = block.std_error[rows]
        numbers["seconds"][rows] = (time.perf_counter() - start) / max(len(rows), 1)
        return done

    def _fill(self, numbers: dict[str, np.ndarray], i: int, fit: Any, small: Any) -> None:
        from scipy import special
        numbers["loglik"][i] = fit.loglik
        numbers["deviance"][i] = fit.deviance
        numbers["aic"][i] = -2.0 * fit.loglik + 2.0 * fit.nparams
        numbers["n_evaluations"][i] = fit.extra.get("nevals", np.nan)
        scale2 = fit.sigma ** 2 if self.model.is_lmm else 1.0
        Ts = self.model.predictor.reterms.T_matrices(fit.theta)
        for block, cols, entries in self.component_slots:
            T = Ts[block][np.ix_(cols, cols)]
            S = scale2 * (T @ T.T)
            for name, (a, b) in entries:
                if a == b:
                    numbers[name][i] = np.sqrt(S[a, a])
                else:
                    denominator = np.sqrt(S[a, a] * S[b, b])
                    numbers[name][i] = S[a, b] / denominator if denominator > 0 else np.nan
        if self.has_sigma:
            numbers["sigma"][i] = fit.sigma
        for key, value in fit.extra.get("family_params", {}).items():
            numbers[f"family_{key}"][i] = value
        if small is not None:
            statistic = 2.0 * (fit.loglik - small.loglik)
            numbers["loglik_reduced"][i] = small.loglik
            numbers["lrt_statistic"][i] = statistic
            numbers["lrt_df"][i] = self.lrt_df
            numbers["lrt_p_value"][i] = special.chdtrc(self.lrt_df, max(statistic, 0.0))


def _objects(values: list) -> np.ndarray:
    """A list as a 1-D object array (strings and None kept as they are)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _components(model: Any) -> tuple[list[str], list[tuple[int, list[int], list]]]:
    """Names of the variance-component columns (standard deviations ``sd__COL|GROUP``,
    correlations ``cor__COL1.COL2|GROUP``, broom.mixed's names) and, per term, its
    block, its columns there and each name's place in the term's covariance matrix
    (computed as :attr:`MixedModelResult.varcorr` computes it)."""
    names, slots = [], []
    for term in model.predictor.reterms.terms:
        entries = []
        k_cols = len(term.colnames)
        for k, col in enumerate(term.colnames):
            entries.append((f"sd__{col}|{term.label}", (k, k)))
        for k in range(k_cols):
            for m in range(k + 1, k_cols):
                entries.append((f"cor__{term.colnames[k]}.{term.colnames[m]}|{term.label}",
                                (k, m)))
        names += [name for name, _ in entries]
        slots.append((term.block, list(term.cols), entries))
    return names, slots


def _nparams(model: Any) -> int:
    """Parameters a fit of the model estimates: theta, beta and the family's extra one."""
    extra = 0 if model.is_lmm else int(model.family.extra is not None)
    return (model.predictor.reterms.ntheta + len(model.predictor.fixed.names) + extra
            + int(model.is_lmm))


def _describe(exc: BaseException) -> str:
    """The error of a failed feature on one line: class, message, and where for an
    error that is not glmmcore's own (a plugin family's bug, say)."""
    from ..errors import GlmmError
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if not isinstance(exc, GlmmError):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename}:{last.lineno})"
    return text
