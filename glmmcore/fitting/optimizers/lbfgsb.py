"""L-BFGS-B (scipy's compiled setulb) with round-off stops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...linalg.scipy_ext import extension
from ..checks import pinned_at_bound
from .base import OptimResult

LBFGSB_GTOL = 1e-5     # L-BFGS-B's bound on the projected gradient
# L-BFGS-B's smallest relative decrease per iteration, at least: a deviance carries ~1e-12
# relative round-off (line searches lost in it are ended by the stall rule below)
LBFGSB_FTOL = 1e-12
LBFGSB_MEMORY = 10      # L-BFGS-B's stored corrections (scipy's maxcor default)
LBFGSB_MAXLS = 20       # its line search's evaluations at most (scipy's maxls default)
# what setulb's task codes mean (scipy's own wording, which minimize reports)
LBFGSB_MESSAGES = {401: "convergence: norm of projected gradient <= pgtol",
                   402: "convergence: relative reduction of f <= factr*epsmch",
                   502: "stop: total no. of f,g evaluations exceeds limit",
                   601: "warning: rounding errors prevent progress",
                   602: "warning: stp = stpmax", 603: "warning: stp = stpmin",
                   604: "warning: xtol test satisfied"}
STALL_EVALS = 6        # evaluations in a row within STALL_BAND above the best end L-BFGS-B
STALL_BAND = 1e-9


def lbfgsb(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
           lower: np.ndarray, *, rel_tol: float = 1e-12, maxeval: int = 100_000,
           x_tol: float | None = None, initial_step: object = None) -> OptimResult:
    """Minimize ``f`` subject to ``x >= lower`` with L-BFGS-B, ``fg(x)`` giving ``(f, grad)``.

    ``x_tol`` and ``initial_step`` are not used (the stops are on ``f`` and the gradient).

    Stops when an iteration lowers ``f`` by less than ``rel_tol`` relative (at
    least :data:`LBFGSB_FTOL`), when the projected gradient is below
    :data:`LBFGSB_GTOL`, or when :data:`STALL_EVALS` evaluations in a row
    stay within :data:`STALL_BAND` of the best value without lowering it (a
    line search lost in round-off).  The projected gradient is also checked
    at such a point, which scipy's line search rejects for a value above the
    best by round-off (``gpa_rs`` went on for 5 more evaluations from a
    gradient of 3e-7, 3e-12 above the best), and that point is returned;
    otherwise the best point seen, whatever scipy's message.
    """
    x0 = np.asarray(x0, dtype=float)
    best = {"x": x0.copy(), "f": np.inf}
    count = [0, 0]          # evaluations, evaluations in a row that stalled

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        count[0] += 1
        value, grad = fg(x)
        band = STALL_BAND * (1.0 + abs(best["f"]))
        count[1] = count[1] + 1 if best["f"] <= value < best["f"] + band else 0
        if value < best["f"]:
            best["x"], best["f"] = x.copy(), float(value)
        if count[1] >= STALL_EVALS:
            raise _StalledError("stalled at round-off")
        if count[1] and _projected_gradient_norm(x, grad, lower) <= LBFGSB_GTOL:
            best["x"], best["f"] = x.copy(), float(value)     # the optimum, to round-off
            raise _StalledError("convergence: norm of projected gradient <= pgtol within "
                                "round-off of the best value")
        if not np.isfinite(value):
            return 1e300, np.zeros_like(x)
        return float(value), grad

    start = np.maximum(x0, np.where(np.isfinite(lower), lower, -np.inf))
    try:
        message = run_lbfgsb(objective, start, lower, max(rel_tol, LBFGSB_FTOL), LBFGSB_GTOL,
                             maxeval)
    except _StalledError as stop:
        message = str(stop)
    return OptimResult(best["x"], best["f"], count[0], message,
                       message == LBFGSB_MESSAGES[502])


def _projected_gradient_norm(x: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> float:
    """``max |grad|`` over the parameters not pinned at their bound (L-BFGS-B's ``pgtol``
    test: its projection of such a gradient is at most their distance to the bound)."""
    return float(np.max(np.abs(np.where(pinned_at_bound(x, lower, grad), 0.0, grad)),
                        initial=0.0))


def run_lbfgsb(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray,
               lower: np.ndarray, ftol: float, gtol: float, maxfun: int) -> str:
    """Drive scipy's compiled L-BFGS-B (``setulb``) from ``x0``; returns its message.

    ``scipy.optimize.minimize`` spends about 100 us per evaluation in its
    wrappers (``ScalarFunction``, bounds objects, copies): as much as a small
    LMM's whole evaluation.  This loop is the one ``minimize`` runs around
    ``setulb`` (scipy >= 1.15, its C port), with the same options, so the
    iterates are the same; if that private interface is not there, ``minimize``
    itself runs.
    """
    try:      # scipy.optimize itself takes 0.8 s to import (glmmcore.linalg.scipy_ext)
        setulb = extension("scipy.optimize._lbfgsb").setulb
    except (ImportError, AttributeError):   # pragma: no cover - no C port's interface
        return _minimize_lbfgsb(objective, x0, lower, ftol, gtol, maxfun)
    n, m, maxls = x0.size, LBFGSB_MEMORY, LBFGSB_MAXLS
    nbd = np.isfinite(lower).astype(np.int32)          # 1: lower bound only, 0: none
    low, up = np.where(np.isfinite(lower), lower, 0.0), np.zeros(n)
    x, f, g = np.array(x0, dtype=np.float64), 0.0, np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task, ln_task = np.zeros(2, dtype=np.int32), np.zeros(2, dtype=np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    nfev = 0
    factr = ftol / np.finfo(float).eps
    while True:
        setulb(m, x, low, up, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, maxls,
               ln_task)
        if task[0] == 3:            # evaluate at x
            f, grad = objective(x.copy())
            g = np.array(grad, dtype=np.float64)
            nfev += 1
        elif task[0] == 1:          # a new iterate
            if nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    return LBFGSB_MESSAGES.get(int(task[1]), f"stopped (code {task[0]}, {task[1]})")


def _minimize_lbfgsb(objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
                     x0: np.ndarray, lower: np.ndarray, ftol: float, gtol: float,
                     maxfun: int) -> str:
    """:func:`run_lbfgsb` through ``scipy.optimize.minimize``."""
    # here, not at the top: scipy.optimize adds ~0.3 s to every ``import glmmcore``
    from scipy.optimize import minimize

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": ftol, "gtol": gtol, "maxfun": maxfun,
                            "maxcor": LBFGSB_MEMORY, "maxls": LBFGSB_MAXLS})
    return str(res.message).lower()


class _StalledError(Exception):
    """Raised inside L-BFGS-B's objective to end a line search lost in round-off; its
    message is the result's."""
