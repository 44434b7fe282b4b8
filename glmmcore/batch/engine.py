"""``fit_many``: one mixed model fitted to many responses (features).

The model (and the reduced model of a likelihood-ratio test) is built once;
the features are cut into chunks of consecutive columns, whose size depends
only on the number of features, so that the tables are the same whatever the
backend, the number of workers or an interruption resumed from a checkpoint.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..design.model import MixedModel
from ..errors import ArgumentError, DataError, GlmmWarning, ModelSpecError, warn
from ..fitting.control import FitControl
from ..spec.arguments import check_str
from ..spec.formula import parse_formula
from . import backends
from .checkpoint import Checkpoint, digest
from .mapper import ModelMapper
from .responses import Responses, from_anndata, is_anndata
from .result import BatchResult
from .rows import ChunkFitter, ChunkTables, frame

ON_ERROR = ("record", "raise")
MAX_CHUNK = 200
MIN_CHUNK = 16
CHUNKS_TARGET = 100


def fit_many(formula: str, data: Any, responses: Any = None, *, family: Any = "gaussian",
             link: str | None = None, REML: bool = True, nAGQ: int = 1, weights: Any = None,
             offset: Any = None, reduced: str | None = None,
             control: FitControl | dict | None = None, backend: str = "threads",
             n_jobs: int | None = None, client: Any = None, chunk_size: int | None = None,
             checkpoint: Any = None, progress: bool | None = None, on_error: str = "record",
             features: Any = None, layer: str | None = None) -> BatchResult:
    """Fit one mixed model to each of many responses sharing one design.

    Parameters
    ----------
    formula
        The model; its left side names the response, e.g.
        ``"y ~ cond + offset(lsf) + (1 | subject)"``.  A column of that name in
        ``data`` is not needed.
    data
        The observations' table (covariates, grouping factors, offsets), or
        an AnnData object (table from ``.obs``, responses from ``.X`` or
        ``layer``, feature names from ``.var_names``).
    responses
        One column per feature, one row per row of ``data``: a DataFrame, a
        2-D array, a scipy.sparse matrix (read a chunk at a time) or a dict of
        name -> array.
    family, link, REML, nAGQ, weights, offset, control
        As for :class:`~glmmcore.MixedModel`.
    reduced
        A formula nested in ``formula``: each feature also gets the
        likelihood-ratio test against it, both models fitted by ML.
    backend
        ``"threads"`` (one shared model), ``"processes"`` (loky workers, the
        models sent once to each) or ``"dask"`` (a ``dask.distributed``
        client; the models sent once to each worker).
    n_jobs
        Threads or processes (default: the cores available).
    client
        The Dask client (default: the current one).
    chunk_size
        Features per chunk (default: from the number of features alone, about
        100 chunks of 16 to 200 features).
    checkpoint
        A directory where each finished chunk is written as Parquet; a run
        with the same arguments and directory resumes from it.
    progress
        A tqdm progress bar over features (default: when standard error is a
        terminal).
    on_error
        ``"record"`` (a failing feature gets its error in ``fits.error``) or
        ``"raise"``.
    features
        Feature names (default: the responses' columns or keys).
    layer
        With AnnData: the layer holding the responses (default ``.X``).

    Returns
    -------
    BatchResult
    """
    backend = _checked_choices(backend, on_error)
    n_jobs = _positive_or_none(n_jobs, "n_jobs")
    chunk_size = _positive_or_none(chunk_size, "chunk_size")
    if is_anndata(data):
        if responses is not None:
            raise ArgumentError("with an AnnData, the responses come from it (.X or layer=); "
                                "do not pass responses")
        data, responses, anndata_names = from_anndata(data, layer)
        features = anndata_names if features is None else features
    elif layer is not None:
        raise ArgumentError("layer= applies to an AnnData object only")
    if responses is None:
        raise ArgumentError("responses are missing: one column per feature")
    table = _as_pandas(data)
    source = Responses(responses, len(table), features)
    if source.n_features == 0:
        raise DataError("responses have no feature (no column)")
    if backend == "dask":
        client = backends.dask_client(client)   # the error before any heavy work

    arguments = {"family": family, "link": link, "REML": REML if reduced is None else False,
                 "nAGQ": nAGQ, "weights": weights, "offset": offset, "control": control}
    table = _with_response(formula, table, source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlmmWarning)   # each feature's diagnostics are data
        model = MixedModel(formula, table, **arguments)
        small = None if reduced is None else MixedModel(reduced, table, **arguments)
    if small is not None:
        _check_nested(model, small, reduced)
    fitter = ChunkFitter(model, small, on_error)
    size = chunk_size or default_chunk_size(source.n_features)
    chunks = [(k, a, min(a + size, source.n_features))
              for k, a in enumerate(range(0, source.n_features, size))]

    store = None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, _fingerprint_parts(
            formula, reduced, table, source, arguments, model, size))
    done: dict[int, ChunkTables] = {}
    if store is not None:
        done = {k: store.read(k) for k in sorted(store.finished()) if k < len(chunks)}
    todo = [c for c in chunks if c[0] not in done]
    bar = _progress_bar(progress, source.n_features,
                        sum(len(t) for t in done.values()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GlmmWarning)
            for tables in backends.run(backend, fitter, source, todo, n_jobs, client):
                if store is not None:
                    store.write(tables)
                done[tables.index] = tables
                if bar is not None:
                    bar.update(len(tables))
    finally:
        if bar is not None:
            bar.close()
    ordered = [done[k] for k, _, _ in chunks]
    result = BatchResult.from_chunks(frame(ordered, "fits"), frame(ordered, "coefs"),
                                     refit=_Refit(model, source))
    _warn_summary(result)
    return result


def fit_model(model: MixedModel, responses: Any, *, per_fit: Any = None,
              control: FitControl | dict | None = None, start: Any = None,
              used_rows: bool = False, backend: str = "threads", n_jobs: int | None = None,
              client: Any = None, chunk_size: int | None = None,
              on_error: str = "record") -> list:
    """Fit one built model to each column of ``responses``: the engine's entry point for a
    model already built (:func:`glmmcore.bootstrap`'s draws; ``fit_many`` runs its
    features' chunks on the same backends).

    Parameters
    ----------
    model
        The :class:`~glmmcore.MixedModel`.
    responses
        One column per response (a 2-D array, a DataFrame, a dict of arrays or a
        scipy.sparse matrix), one row per row of the model's data, or per
        observation used with ``used_rows``.
    per_fit
        A function of a fit whose value is kept (default: the fit itself).  It
        runs where the fit ran (with ``backend="processes"`` it is pickled).
    control, start
        As :meth:`~glmmcore.MixedModel.fit`'s.
    backend, n_jobs, client, chunk_size
        As :func:`fit_many`'s.  The chunks depend on the number of responses
        alone, so the entries do not depend on the backend or the workers.
    on_error
        ``"record"``: a fit that fails (a :class:`~glmmcore.errors.GlmmError` or a
        numerical error) gives its exception as its entry; ``"raise"``.

    Returns
    -------
    list
        One entry per column, in order.
    """
    backend = _checked_choices(backend, on_error)
    n_jobs = _positive_or_none(n_jobs, "n_jobs")
    chunk_size = _positive_or_none(chunk_size, "chunk_size")
    source = Responses(responses, model.nobs if used_rows else model.nrows)
    if backend == "dask":
        client = backends.dask_client(client)
    # the batch compiles the kernels at once (no cold path) and builds the factorization's
    # layout before any thread reads it
    control = replace(model.control if control is None else FitControl.from_any(control),
                      cold_start=False)
    model.predictor.layout    # noqa: B018
    fitter = ModelMapper(model, per_fit, control=control, start=start, used_rows=used_rows,
                         on_error=on_error)
    size = chunk_size or default_chunk_size(source.n_features)
    chunks = [(k, a, min(a + size, source.n_features))
              for k, a in enumerate(range(0, source.n_features, size))]
    done = {part.index: part.values
            for part in backends.run(backend, fitter, source, chunks, n_jobs, client)}
    return [value for k, _, _ in chunks for value in done[k]]


def _checked_choices(backend: str, on_error: str) -> str:
    """The backend name, after typed errors for an unknown backend or ``on_error``."""
    backend = check_str(backend, "backend")
    if backend not in backends.BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(backends.BACKENDS)}, "
                            f"not {backend!r}")
    if on_error not in ON_ERROR:
        raise ArgumentError(f"on_error must be 'record' or 'raise', not {on_error!r}")
    return backend


def default_chunk_size(n_features: int) -> int:
    """Features per chunk, from the number of features alone: about 100 chunks of at most
    200 features, and at least 16 features a chunk (or an eighth of them) so that the
    chunks' bookkeeping stays small against their fits."""
    smallest = min(MIN_CHUNK, math.ceil(n_features / 8))
    return max(1, min(MAX_CHUNK, max(smallest, math.ceil(n_features / CHUNKS_TARGET))))


class _Refit:
    """Fits one feature of the batch again, for :meth:`BatchResult.result`."""

    def __init__(self, model: MixedModel, source: Responses) -> None:
        self.model, self.source = model, source

    def __call__(self, feature: str) -> Any:
        return self.model.fit(self.source.column(self.source.position(feature)))


def _with_response(formula: str, table: pd.DataFrame, source: Responses) -> pd.DataFrame:
    """The data with a placeholder for the formula's response when it has none: the
    first feature without a missing value (the model's rows must not depend on it)."""
    response = parse_formula(formula).response
    if len(response) != 1:
        raise ModelSpecError(f"the formula's response must be one name in a batch (each "
                             f"feature is fitted as that response), not cbind{response}")
    name = response[0]
    if name in table.columns:
        return table
    if not name.isidentifier():
        raise ModelSpecError(f"the formula's response {name!r} must be a plain name in a "
                             "batch (each feature is fitted as that response)")
    for j in range(source.n_features):
        column = source.column(j)
        if not pd.isna(column).any():
            return table.assign(**{name: column})
    raise DataError("every feature has a missing value: there is no response to build "
                    "the model with")


def _check_nested(model: MixedModel, small: MixedModel, reduced: str) -> None:
    full_terms = set(model.predictor.fixed.names)
    extra = [t for t in small.predictor.fixed.names if t not in full_terms]
    if extra or small.nobs != model.nobs:
        why = (f"its fixed effects {extra} are not in the full model's" if extra
               else f"it uses {small.nobs} observations, the full model {model.nobs}")
        raise ModelSpecError(f"reduced={reduced!r} is not nested in the formula: {why}")
    from .rows import _nparams
    if _nparams(small) >= _nparams(model):
        raise ModelSpecError(f"reduced={reduced!r} must have fewer parameters than the "
                             f"formula ({_nparams(small)} against {_nparams(model)})")


def _fingerprint_parts(formula: str, reduced: str | None, table: pd.DataFrame,
                       source: Responses, arguments: dict, model: MixedModel,
                       size: int) -> dict[str, str]:
    from .. import __version__
    parts = {"formula": digest(formula), "reduced": digest(reduced), "data": digest(table),
             "responses": source.digest(), "chunk_size": digest(size),
             "glmmcore_version": digest(__version__),
             "family": digest(f"{model.family.name}/{model.family.link.name}")}
    for key in ("REML", "nAGQ", "weights", "offset", "control"):
        value = arguments[key]
        parts[key] = digest(np.asarray(value) if isinstance(value, (list, tuple)) else
                            FitControl.from_any(value) if key == "control" else value)
    return parts


def _progress_bar(progress: bool | None, total: int, initial: int) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
        if progress:
            try:
                import tqdm
            except ImportError:
                return None
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError('progress=True needs tqdm: pip install "glmmcore[progress]"') from None
    return tqdm(total=total, initial=initial, unit="feature", desc="fit_many")


def _warn_summary(result: BatchResult) -> None:
    failed = int(result.fits["error"].notna().sum())
    unconverged = int((~result.fits["converged"]).sum()) - failed
    if failed or unconverged:
        parts = [f"{failed} failed (see .failed)"] if failed else []
        parts += [f"{unconverged} did not converge (fits.converged)"] if unconverged else []
        warn(f"fit_many: of {len(result)} features, {' and '.join(parts)}", GlmmWarning)


def _positive_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive whole number or None, not {value!r}")
    return int(value)


def _as_pandas(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    try:
        return pd.DataFrame(data)
    except (TypeError, ValueError):
        raise DataError(f"data must be a data frame, not {type(data).__name__}") from None
