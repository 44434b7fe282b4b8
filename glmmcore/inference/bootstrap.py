"""Parametric bootstrap (lme4's ``bootMer``): responses drawn from the fit, refitted.

Every draw has its own generator, seeded by a child of one
:class:`numpy.random.SeedSequence` (``SeedSequence(seed).spawn(nsim)``), so
draw ``j`` is the same whatever the backend, the number of workers or the order
the draws are fitted in.  The refits go through the batch engine
(:func:`glmmcore.batch.engine.fit_model`, by :func:`fit_draws`): threads over one
:class:`~glmmcore.MixedModel`, whose compiled fits release the GIL, processes or
Dask.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError
from ..linalg.threads import single_threaded_blas
from ..spec.arguments import check_int
from .parameters import term_sizes, theta_to_sdcor, variance_names

Statistic = Callable[[Any], Any]


def bootstrap(result: Any, nsim: int, *, seed: Any = None, statistic: Statistic | None = None,
              n_jobs: int | None = None, backend: str = "threads") -> pd.DataFrame:
    """Parametric bootstrap of a fit: ``nsim`` responses drawn from it, each refitted.

    Parameters
    ----------
    result
        A fitted model.
    nsim
        Number of draws.
    seed
        An int, a :class:`numpy.random.SeedSequence` or ``None`` (fresh
        entropy, recorded in ``attrs["seed"]``): the same seed gives the same
        table for any ``n_jobs``.
    statistic
        A function of a fitted draw returning a number, a sequence, a dict or
        a pandas Series (its keys name the columns).  Default: lme4's
        ``confint(method = "boot")`` statistics, the standard deviations and
        correlations of the random effects, ``sigma`` and the fixed effects,
        named as :meth:`~glmmcore.MixedModelResult.confint`'s rows.
    n_jobs
        Workers (``None`` or 1: one; -1: one per core).
    backend
        Where the refits run, as for :func:`glmmcore.fit_many`: ``"threads"``
        (one shared model; the compiled fast paths release the GIL),
        ``"processes"`` (loky workers; ``statistic`` is pickled and runs there)
        or ``"dask"`` (the current ``dask.distributed`` client).

    Returns
    -------
    pandas.DataFrame
        One row per draw (index ``draw``, 0 to ``nsim - 1``): the statistic's
        columns, then ``converged`` (the refit passed its convergence checks)
        and ``error`` (``None``, or the message of a refit that failed, whose
        statistics are NaN). ``attrs`` holds ``seed`` and ``original`` (the
        statistic of ``result`` itself, a dict).
    """
    nsim = check_int(nsim, "nsim", minimum=1)
    statistic = default_statistic if statistic is None else statistic
    if not callable(statistic):
        raise ArgumentError(f"statistic must be a function of a fit, not {statistic!r}")
    workers = _workers(n_jobs)
    from ..batch.backends import BACKENDS
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(
        _checked_seed(seed))
    original = _as_series(statistic(result))
    from ..results.predict import simulate_draws
    generators = [np.random.default_rng(child) for child in sequence.spawn(nsim)]
    responses = simulate_draws(result, generators)[0]
    entries = fit_draws(result, responses, workers, statistic=statistic, backend=backend)
    values = np.full((nsim, original.size), np.nan)
    converged = np.zeros(nsim, dtype=bool)
    errors: list[str | None] = [None] * nsim
    for j, entry in enumerate(entries):
        if isinstance(entry, Exception):
            errors[j] = f"{type(entry).__name__}: {entry}"
            continue
        found, converged[j] = entry
        values[j] = (found if isinstance(found, np.ndarray)
                     else found.reindex(original.index).to_numpy())
    table = pd.DataFrame(values, index=pd.RangeIndex(nsim, name="draw"),
                         columns=original.index)
    table["converged"] = converged
    table["error"] = pd.Series(errors, index=table.index, dtype=object)
    table.attrs["seed"] = sequence.entropy
    table.attrs["original"] = original.to_dict()
    return table


def default_statistic(fit: Any) -> pd.Series:
    """sds and correlations of the random effects, ``sigma`` and the fixed effects (lme4's
    ``confint(method = "boot")`` statistics), named as ``confint``'s rows."""
    return pd.Series(_default_values(fit),
                     index=variance_names(fit) + list(fit.predictor.fixed.names))


def _default_values(fit: Any) -> np.ndarray:
    """:func:`default_statistic`'s values, without their names."""
    scale = fit.sigma if fit.is_lmm else 1.0
    values = list(theta_to_sdcor(fit.theta, term_sizes(fit), scale))
    if fit.has_scale:
        values.append(fit.sigma)
    values.extend(fit.beta)
    return np.array(values, dtype=float)


def fit_draws(result: Any, responses: np.ndarray, workers: int, *,
              statistic: Statistic | None = None, backend: str = "threads") -> list[Any]:
    """Refit ``result``'s model to each column of ``responses`` through the batch engine
    (:func:`glmmcore.batch.engine.fit_model`); an entry is ``(statistic(fit),
    fit.converged)`` (the fit itself without ``statistic``), or a failed refit's exception.

    Where the model takes a compiled fast path (one scalar or one vector term of an
    LMM, one scalar term of a GLMM) the refits start as a fresh fit does; elsewhere
    from the fit's theta, as lme4's ``refit`` does.  They do not warn (a bootstrap of a
    fit near a boundary has many singular draws; each draw's ``converged`` is kept).
    """
    from ..batch.engine import fit_model
    from ..fitting.scalar_fast import fast_fitter
    from ..fitting.vector_fast import vector_fitter
    model = result.model
    control = replace(model.control, warn=False)
    fast = fast_fitter(model) is not None or vector_fitter(model) is not None
    per_fit = None if statistic is None else _StatisticOf(statistic)
    # the BLAS limit set once for all refits: set and restored per fit, overlapping fits in
    # threads toggle it back and forth (0.8 s against 0.2 s for 100 sleepstudy refits)
    with single_threaded_blas():
        return fit_model(model, responses, per_fit=per_fit,
                         control=control, start=None if fast else result.theta,
                         used_rows=True, backend=backend, n_jobs=workers,
                         chunk_size=_chunk_size(len(responses), workers))


def _chunk_size(nsim: int, workers: int) -> int:
    """Draws per chunk: a few chunks per worker, whatever the backend."""
    return max(1, -(-nsim // (4 * workers)))


class _StatisticOf:
    """``(statistic(fit), fit.converged)``: run where the fit ran (a worker process too);
    the default statistic's values as an array (its names are the original's)."""

    def __init__(self, statistic: Statistic) -> None:
        self.statistic = statistic

    def __call__(self, fit: Any) -> tuple[Any, bool]:
        if self.statistic is default_statistic:
            return _default_values(fit), bool(fit.converged)
        return _as_series(self.statistic(fit)), bool(fit.converged)


def _workers(n_jobs: int | None) -> int:
    if n_jobs is None:
        return 1
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == -1:
        return os.cpu_count() or 1
    if n_jobs < 1:
        raise ArgumentError(f"n_jobs must be a positive number of threads or -1, not {n_jobs}")
    return n_jobs


def _checked_seed(seed: Any) -> Any:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ArgumentError(f"seed must be a non-negative integer, a numpy SeedSequence or "
                            f"None, not {seed!r}")
    return int(seed)


def _as_series(value: Any) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.astype(float)
    if isinstance(value, dict):
        return pd.Series(value, dtype=float)
    values = np.atleast_1d(np.asarray(value, dtype=float))
    if values.ndim != 1:
        raise ArgumentError(f"statistic must return a number or a 1-d sequence, not an array "
                            f"of shape {values.shape}")
    if values.size == 1 and np.ndim(value) == 0:
        return pd.Series(values, index=["statistic"])
    return pd.Series(values, index=[f"statistic_{i + 1}" for i in range(values.size)])
