"""BOBYQA (nlopt): bounded minimization without derivatives."""

from __future__ import annotations

from collections.abc import Callable

import nlopt
import numpy as np

from .base import OptimResult

BOUND_SNAP = 1e-12     # a BOBYQA start this close to its bound (relative) starts on it


def bobyqa(f: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
           *, rel_tol: float = 1e-12, x_tol: float = 1e-10, maxeval: int = 100_000,
           initial_step: np.ndarray | float | None = None) -> OptimResult:
    """Minimize ``f`` subject to ``x >= lower`` with BOBYQA.

    The best point seen is returned even if nlopt stops on round-off.
    """
    x0 = np.asarray(x0, dtype=float)
    n = x0.size
    best = {"x": x0.copy(), "f": np.inf}
    count = [0]

    def objective(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        value = float(f(x))
        if value < best["f"]:
            best["x"], best["f"] = x.copy(), value
        return value if np.isfinite(value) else 1e300

    if n == 0:
        return OptimResult(x0, float(f(x0)), 1, "no parameters")
    opt = nlopt.opt(nlopt.LN_BOBYQA, n) if n > 1 else nlopt.opt(nlopt.LN_BOBYQA, 1)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -np.inf))
    opt.set_min_objective(objective)
    opt.set_ftol_rel(rel_tol)
    opt.set_ftol_abs(rel_tol)
    opt.set_xtol_abs(x_tol)
    opt.set_maxeval(maxeval)
    if initial_step is None:
        initial_step = np.maximum(0.1 * np.abs(x0), 0.1)
    opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), (n,)).copy())
    bound = np.where(np.isfinite(lower), lower, -np.inf)
    start = np.maximum(x0, bound)
    # BOBYQA moves a start less than its initial step inside a bound to bound + step:
    # a start within round-off of its bound (an earlier stage's) is on it
    near = np.isfinite(bound) & (start - bound <= BOUND_SNAP * np.maximum(1.0, np.abs(bound)))
    start = np.where(near, bound, start)
    at_limit = False
    try:
        opt.optimize(start)
        code = opt.last_optimize_result()
        message = _NLOPT_MESSAGES.get(code, "stopped")
        at_limit = code in (nlopt.MAXEVAL_REACHED, nlopt.MAXTIME_REACHED)
    except nlopt.RoundoffLimited:
        message = "round-off limited"
    return OptimResult(best["x"], best["f"], count[0], message, at_limit)


_NLOPT_MESSAGES = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stop value reached",
    nlopt.FTOL_REACHED: "function tolerance reached",
    nlopt.XTOL_REACHED: "parameter tolerance reached",
    nlopt.MAXEVAL_REACHED: "maximum number of evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
}
