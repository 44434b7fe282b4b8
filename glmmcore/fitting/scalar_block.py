"""Blocks of responses on the fast path, checked without a Python step per feature.

A batch hands :func:`fit_block` a block of responses (one column per feature,
one row per row of the model's data).  The responses are read and checked
for the whole block at once, fitted by the compiled whole fit
(:meth:`~glmmcore.fitting.scalar_fast.ScalarFastFitter.fit_columns`), and
the regular path's convergence checks (:func:`glmmcore.fitting.checks.check_convergence`)
and flags are taken on all of them with array operations.  A feature the
fast path cannot answer as the regular path would (a response to be read or
refused by the family, flags before the fit, a fit that fails its criterion
or its checks) is marked ``regular``: the caller fits it with
``model.fit(y)``, which raises the regular path's error or gives its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .checks import AT_BOUND, GRAD_TOL, SINGULAR_TOL
from .diagnostics import EXACT_TOL, ZERO_SIGMA_TOL
from .scalar_fast import FastFits, fast_fitter

# families whose response is a plain column of numbers, checked here for the block
_PLAIN = {"gaussian": "finite", "poisson": "counts", "negative_binomial": "counts"}


@dataclass
class FastBlock:
    """The fast path's answers for a block of features (one row each).

    Rows with ``regular`` True carry no answer: fit them with ``model.fit``.
    ``converged`` and ``singular`` are the regular checks' verdicts,
    ``std_error`` beta's, ``flags`` each feature's flag codes (``zero_count_levels``,
    ``separation``), ``fits`` the estimates (:class:`~.scalar_fast.FastFits`).
    """

    regular: np.ndarray
    converged: np.ndarray
    singular: np.ndarray
    std_error: np.ndarray
    flags: list[list[str]]
    fits: FastFits


def fit_block(model: Any, Y: np.ndarray) -> FastBlock | None:
    """Fit the columns of ``Y`` (rows of the model's data) on the fast path; None when
    it does not apply to the model, or its control opts out (the model's default)."""
    from .scalar_fast import control_allows
    fitter = fast_fitter(model)
    if fitter is None or not control_allows(model.control):
        return None
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[0] != model.nrows:
        return None
    if model.kept_rows is not None:
        Y = Y[model.kept_rows]
    family = model.family
    kind = _PLAIN.get(family.name) if type(family).__module__.startswith(
        "glmmcore.families.") else None
    if kind is None:
        return None
    readable = np.all(np.isfinite(Y), axis=0)
    if kind == "counts":
        readable &= np.all((Y >= 0) & (np.abs(Y - np.round(Y)) <= 1e-7), axis=0)
    ready = readable & ~_flagged_before(model, fitter, Y)
    m, p = Y.shape[1], model.predictor.p
    fits = fitter.fit_columns(Y[:, ready]) if ready.any() else None
    full = _spread_fits(fits, ready, m, p, fitter.G)
    converged = _checks(model, full) & ready & (full.status == 0)
    if model.is_lmm:       # a residual SD of 0: the regular path flags it
        target = Y - model.response.offset[:, None]
        converged &= full.sigma > ZERO_SIGMA_TOL * _spreads(target)
    std_error = np.sqrt(np.einsum("mkk->mk", full.vcov))
    converged &= np.all(np.isfinite(std_error), axis=1)
    flags = _flags_after(model, fitter, Y, full) if not model.is_lmm else [[] for _ in range(m)]
    return FastBlock(regular=~converged, converged=converged,
                     singular=converged & (full.theta[:, 0] < SINGULAR_TOL),
                     std_error=std_error, flags=flags, fits=full)


def _flagged_before(model: Any, fitter: Any, Y: np.ndarray) -> np.ndarray:
    """Features with a flag or an error before the fit (the regular path's
    :func:`~glmmcore.fitting.diagnostics.structure_flags` and response checks)."""
    if fitter._confounded_flags(fitter.weights):
        return np.ones(Y.shape[1], dtype=bool)
    if not model.is_lmm:        # a constant response is refused by the regular path
        return np.all(Y == Y[:1], axis=0)
    target = Y - model.response.offset[:, None]
    codes, G = fitter.codes, fitter.G
    counts = np.bincount(codes, minlength=G)
    means = _level_sums(codes, G, target) / np.maximum(counts, 1)[:, None]
    within = np.max(np.abs(target - means[codes]), axis=0)
    spread = _spreads(target)
    return (spread > 0) & (within <= EXACT_TOL * spread)


def _spreads(target: np.ndarray) -> np.ndarray:
    """:func:`glmmcore.fitting.diagnostics._spread` of each column."""
    sd = np.std(target, axis=0)
    return np.where(sd > 0, sd, np.sqrt(np.mean(target ** 2, axis=0)))


def _level_sums(codes: np.ndarray, G: int, values: np.ndarray) -> np.ndarray:
    """Each level's sums of the columns of ``values``, summed in the rows' order."""
    m = values.shape[1]
    bins = (codes[:, None] + G * np.arange(m)).ravel()      # (level, column) of each value
    return np.bincount(bins, weights=values.ravel(), minlength=G * m).reshape(m, G).T


def _spread_fits(fits: FastFits | None, ready: np.ndarray, m: int, p: int,
                 G: int) -> FastFits:
    """The block's fits with rows of NaN (status -1) for features not fitted."""
    nk = fits.gradient.shape[1] if fits is not None else 1
    full = FastFits(status=np.full(m, -1), theta=np.full((m, 1), np.nan),
                    beta=np.full((m, p), np.nan), u=np.full((m, G), np.nan),
                    loglik=np.full(m, np.nan), deviance=np.full(m, np.nan),
                    phi=np.full(m, np.nan), sigma=np.full(m, np.nan),
                    vcov=np.full((m, p, p), np.nan),
                    gradient=np.full((m, nk), np.nan), hessian=np.full((m, nk, nk), np.nan),
                    nevals=np.zeros(m, dtype=np.int64),
                    pirls_iterations=np.zeros(m, dtype=np.int64))
    if fits is not None:
        for name in full.__dataclass_fields__:
            getattr(full, name)[ready] = getattr(fits, name)
    return full


def _checks(model: Any, fits: FastFits) -> np.ndarray:
    """:func:`glmmcore.fitting.checks.check_convergence`'s verdict for every feature: the
    scaled gradient below GRAD_TOL and the Hessian positive definite on the free
    parameters (theta not free where it is on 0 with the objective rising)."""
    g, H = fits.gradient, fits.hessian
    m = g.shape[0]
    ok = np.zeros(m, dtype=bool)
    finite = np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(H), axis=(1, 2))
    pinned = (fits.theta[:, 0] < AT_BOUND) & (g[:, 0] >= 0)
    for fixed_theta in (False, True):
        rows = np.flatnonzero(finite & (pinned == fixed_theta))
        if rows.size == 0:
            continue
        first = 1 if fixed_theta else 0
        gg, HH = g[rows, first:], H[rows, first:, first:]
        if gg.shape[1] == 0:
            ok[rows] = True
            continue
        eig = np.linalg.eigvalsh(HH)[:, 0]
        positive = eig > 0
        scaled = np.full(gg.shape, np.inf)
        if positive.any():
            upper = np.swapaxes(np.linalg.cholesky(HH[positive]), 1, 2)   # H = R'R
            scaled[positive] = np.linalg.solve(upper, gg[positive][:, :, None])[:, :, 0]
        worst = np.max(np.minimum(np.abs(scaled), np.abs(gg)), axis=1)
        ok[rows] = positive & (worst <= GRAD_TOL)
    return ok


def _flags_after(model: Any, fitter: Any, Y: np.ndarray, fits: FastFits) -> list[list[str]]:
    """The regular path's flags after a GLMM fit, as codes: levels with zero responses
    only, and fitted means on the bounds of their range."""
    family = model.family
    m = Y.shape[1]
    flags: list[list[str]] = [[] for _ in range(m)]
    if family.zero_responses_matter:
        sums = _level_sums(fitter.codes, fitter.G, Y * fitter.weights[:, None])
        for j in np.flatnonzero(np.any(sums == 0, axis=0)):
            flags[j].append("zero_count_levels")
    if family.mean_bounds is not None:
        from ..objectives.family_kernels import call_map
        lo, hi = family.mean_bounds
        eps = 10 * np.finfo(float).eps
        eta = np.ascontiguousarray(
            fitter.X @ fits.beta.T + (fits.theta[:, 0] * fits.u)[:, fitter.codes].T
            * fitter.z[:, None] + fitter.offset[:, None])
        mu = np.empty_like(eta)
        call_map(fitter.kernels().linkinv_vec, eta, mu)     # family.linkinv_array's
        for j in np.flatnonzero(np.any((mu < lo + eps) | (mu > hi - eps), axis=0)):
            flags[j].append("separation")
    return flags
