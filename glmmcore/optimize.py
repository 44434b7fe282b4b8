"""Bounded derivative-free optimization (BOBYQA through nlopt) and the checks after it.

After the optimizer stops, the gradient and Hessian are estimated by finite
differences at the optimum (as lme4's ``deriv12``) and reported as data: the
gradient scaled by the Hessian, the smallest Hessian eigenvalue, whether a
variance sits on its bound (a singular fit), and ``converged`` with a reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import nlopt
import numpy as np

from .errors import ConvergenceWarning

GRAD_TOL = 2e-3        # lme4's check.conv.grad
SINGULAR_TOL = 1e-4    # lme4's check.conv.singular
FD_STEP = 1e-4         # lme4's deriv12 delta
POLISH_GAIN = 1e-12    # smallest predicted relative decrease worth a Newton polish


@dataclass
class OptimResult:
    """Outcome of one optimizer run."""

    x: np.ndarray
    fun: float
    nevals: int
    message: str


@dataclass
class Convergence:
    """Convergence diagnostics of a fit, as data.

    Attributes
    ----------
    converged
        True when the scaled gradient is small and the Hessian is positive
        definite on the free parameters.
    reason
        Why ``converged`` is what it is, in words.
    is_singular
        A variance component (a diagonal element of T) is on its bound 0.
    gradient, hessian
        Finite-difference estimates at the optimum.
    scaled_gradient
        ``solve(chol(H), g)`` (lme4's), or the gradient when H is not positive definite.
    min_eigenvalue
        Smallest eigenvalue of the Hessian over the free parameters.
    optimizer
        Messages and evaluation counts of the optimizer runs.
    """

    converged: bool
    reason: str
    is_singular: bool
    gradient: np.ndarray
    hessian: np.ndarray
    scaled_gradient: np.ndarray
    min_eigenvalue: float
    optimizer: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain-data view (lists and floats) for JSON output."""
        return {"converged": self.converged, "reason": self.reason,
                "is_singular": self.is_singular, "gradient": self.gradient.tolist(),
                "scaled_gradient": self.scaled_gradient.tolist(),
                "min_eigenvalue": self.min_eigenvalue, "optimizer": list(self.optimizer),
                **self.extra}


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
    start = np.maximum(x0, np.where(np.isfinite(lower), lower, -np.inf))
    try:
        opt.optimize(start)
        message = _NLOPT_MESSAGES.get(opt.last_optimize_result(), "stopped")
    except nlopt.RoundoffLimited:
        message = "round-off limited"
    return OptimResult(best["x"], best["f"], count[0], message)


_NLOPT_MESSAGES = {
    nlopt.SUCCESS: "success",
    nlopt.STOPVAL_REACHED: "stop value reached",
    nlopt.FTOL_REACHED: "function tolerance reached",
    nlopt.XTOL_REACHED: "parameter tolerance reached",
    nlopt.MAXEVAL_REACHED: "maximum number of evaluations reached",
    nlopt.MAXTIME_REACHED: "maximum time reached",
}


def fd_derivatives(f: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                   step: float = FD_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference gradient and Hessian of ``f`` at ``x``.

    Central differences, except one-sided (forward) for a coordinate whose
    backward step would cross its lower bound.  A mixed derivative of two
    central coordinates takes two evaluations, ``f(x + h_i + h_j)`` and
    ``f(x - h_i - h_j)``, with the single-coordinate ones (second order, like
    the four-point rule, at half its cost): ``n^2 + n + 1`` evaluations in all.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    h = step * np.maximum(np.abs(x), 1.0)
    f0 = f(x)
    forward = x - h < lower
    grad = np.empty(n)
    hess = np.empty((n, n))
    fp, fm = np.empty(n), np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h[i]
        if forward[i]:
            fp[i], fm[i] = f(x + e), f(x + 2 * e)
            grad[i] = (-3 * f0 + 4 * fp[i] - fm[i]) / (2 * h[i])
            hess[i, i] = (f0 - 2 * fp[i] + fm[i]) / h[i] ** 2
        else:
            fp[i], fm[i] = f(x + e), f(x - e)
            grad[i] = (fp[i] - fm[i]) / (2 * h[i])
            hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / h[i] ** 2
    for i in range(n):
        for j in range(i):
            e = np.zeros(n)
            e[i], e[j] = h[i], h[j]
            if forward[i] or forward[j]:
                hess[i, j] = (f(x + e) - fp[i] - fp[j] + f0) / (h[i] * h[j])
            else:
                hess[i, j] = (f(x + e) + f(x - e) - fp[i] - fm[i] - fp[j] - fm[j]
                              + 2 * f0) / (2 * h[i] * h[j])
            hess[j, i] = hess[i, j]
    return grad, hess


def newton_polish(f: Callable[[np.ndarray], float], x: np.ndarray, fx: float,
                  lower: np.ndarray, grad: np.ndarray,
                  hess: np.ndarray) -> tuple[np.ndarray, float] | None:
    """One Newton step from the optimizer's point with the finite-difference derivatives.

    BOBYQA stops when its trust region is small, which in a flat valley can be
    short of the optimum by more than its tolerance suggests; the derivatives
    computed for the convergence checks give the step to it.  Parameters on
    their bound with the objective rising into the interior stay there.
    Returns the new point and value if the step (or half of it) improves.  A
    step whose predicted decrease, by the quadratic model, is below
    ``POLISH_GAIN`` relative is not tried (two evaluations saved on most fits).
    """
    free = ~((x - lower < 1e-8) & (grad >= 0))
    if not np.any(free):
        return None
    g, H = grad[free], hess[np.ix_(free, free)]
    try:
        step = np.linalg.solve(H, -g)
    except np.linalg.LinAlgError:
        return None
    gain = -(g @ step + 0.5 * step @ H @ step)
    if not gain > POLISH_GAIN * (1.0 + abs(fx)):
        return None
    for scale in (1.0, 0.5):
        trial = x.copy()
        trial[free] += scale * step
        trial = np.maximum(trial, lower)
        value = f(trial)
        if value < fx - 1e-12 * (1.0 + abs(fx)):
            return trial, value
    return None


def check_convergence(grad: np.ndarray, hess: np.ndarray, x: np.ndarray, lower: np.ndarray,
                      diagonal: np.ndarray, n_theta: int,
                      messages: list[str]) -> Convergence:
    """lme4-style convergence checks from derivatives at the optimum.

    Parameters
    ----------
    grad, hess
        Derivatives of the objective at ``x``.
    lower
        Lower bounds of ``x``.
    diagonal
        For the first ``n_theta`` elements of ``x``: True where the element is
        a diagonal of T (a standard deviation, bounded by 0).
    n_theta
        Number of covariance parameters at the start of ``x``.
    """
    theta = x[:n_theta]
    singular = bool(np.any(theta[diagonal] < SINGULAR_TOL))
    at_bound = np.zeros(x.size, dtype=bool)
    at_bound[:n_theta] = np.isfinite(lower[:n_theta]) & (x[:n_theta] - lower[:n_theta] < 1e-8)
    # a parameter on its bound with the objective rising into the interior is a KKT point
    free = ~(at_bound & (grad >= 0))
    g, H = grad[free], hess[np.ix_(free, free)]
    eig = np.linalg.eigvalsh(H) if H.size else np.array([np.inf])
    try:
        R = np.linalg.cholesky(H).T if H.size else np.zeros((0, 0))
        scaled = np.linalg.solve(R, g) if H.size else g
    except np.linalg.LinAlgError:
        scaled = g
    worst = float(np.max(np.minimum(np.abs(scaled), np.abs(g)))) if g.size else 0.0
    full_scaled = np.zeros_like(grad)
    full_scaled[free] = scaled
    if worst > GRAD_TOL:
        ok, reason = False, f"max|scaled gradient| = {worst:.3g} exceeds {GRAD_TOL}"
    elif eig.size and eig[0] <= 0:
        ok, reason = False, (f"Hessian has {int(np.sum(eig <= 0))} non-positive eigenvalue(s); "
                             "the model may be unidentifiable")
    else:
        ok, reason = True, "gradient and Hessian checks passed"
        if singular:
            reason += "; singular fit (a variance component is on its bound 0)"
    return Convergence(converged=ok, reason=reason, is_singular=singular, gradient=grad,
                       hessian=hess, scaled_gradient=full_scaled,
                       min_eigenvalue=float(eig[0]) if eig.size else np.inf,
                       optimizer=messages)


def unchecked_convergence(x: np.ndarray, diagonal: np.ndarray,
                          messages: list[str]) -> Convergence:
    """Diagnostics when the derivative checks were switched off."""
    n = x.size
    singular = bool(np.any(x[:diagonal.size][diagonal] < SINGULAR_TOL))
    return Convergence(converged=True, reason="derivative checks not run (control)",
                       is_singular=singular, gradient=np.full(n, np.nan),
                       hessian=np.full((n, n), np.nan), scaled_gradient=np.full(n, np.nan),
                       min_eigenvalue=np.nan, optimizer=messages)


def warn_once(conv: Convergence, problems: list[str], control: object) -> None:
    """One :class:`ConvergenceWarning` per fit for a failed check or other problems.

    Diagnostics are on the result either way; ``control.warn = False`` silences it.
    """
    problems = ([] if conv.converged else [conv.reason]) + list(problems)
    if problems and getattr(control, "warn", True):
        warnings.warn("; ".join(problems), ConvergenceWarning, stacklevel=4)
