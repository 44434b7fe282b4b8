"""Convergence checks after an optimizer: derivatives, polish, verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

GRAD_TOL = 2e-3        # lme4's check.conv.grad
SINGULAR_TOL = 1e-4    # lme4's check.conv.singular
FD_STEP = 1e-4         # lme4's deriv12 delta
# relative step of a Hessian by forward differences of an analytic gradient that gives
# standard errors (GLMM joint stage): seed GLMMs' standard errors 2e-7 to 1.2e-6 relative
# from central differences at 1e-5; at FD_STEP forward 4e-6 to 1.2e-4, at 1e-7 noise sets in
HESSIAN_STEP = 1e-6
POLISH_GAIN = 1e-12    # smallest predicted relative decrease worth a Newton polish
AT_BOUND = 1e-8        # a parameter this close to its lower bound is on it (checks, polish)
# after a Newton polish, the scaled gradient below which the Hessian it used is kept
# (polished_and_checked): 1/200 of lme4's tolerance, where the quadratic model held
KEEP_HESSIAN_TOL = 1e-5


@dataclass
class Convergence:
    """Convergence diagnostics of a fit, as data.

    Attributes
    ----------
    converged
        True when the optimizer stopped on its tolerance (not its evaluation
        limit) and, where the derivative checks ran, the scaled gradient is
        small and the Hessian is positive definite on the free parameters.
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
    flags
        What the data cannot identify or what went wrong numerically, as
        :class:`~glmmcore.fitting.diagnostics.Flag` strings with a ``code``
        (:data:`glmmcore.fitting.diagnostics.FLAG_CODES`); ``extra["flags"]`` is the
        same list.
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
    flags: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.extra["flags"] = self.flags

    def as_dict(self) -> dict:
        """Plain-data view (lists and floats) for JSON output; ``flags`` as
        ``{"code", "message"}`` records."""
        return {"converged": self.converged, "reason": self.reason,
                "is_singular": self.is_singular, "gradient": self.gradient.tolist(),
                "scaled_gradient": self.scaled_gradient.tolist(),
                "min_eigenvalue": self.min_eigenvalue, "optimizer": list(self.optimizer),
                **self.extra,
                "flags": [{"code": getattr(f, "code", "other"), "message": str(f)}
                          for f in self.flags]}

    def stopped_at_limit(self, maxeval: int) -> None:
        """Record that the optimizer ran out of evaluations: not converged, whatever
        the checks said."""
        checks = "the derivative checks passed there" if self.converged else self.reason
        self.converged = False
        self.reason = (f"the optimizer stopped at its limit of {maxeval} evaluations, not on "
                       f"its tolerance; {checks}")


def pinned_at_bound(x: np.ndarray, lower: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The parameters on their lower bound (within :data:`AT_BOUND`) with the objective
    rising into the interior: a minimum may stop there with a nonzero derivative."""
    return (x - lower < AT_BOUND) & (grad >= 0)


def fd_derivatives(f: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                   step: float = FD_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference gradient and Hessian of ``f`` at ``x`` (:func:`_fd_derivatives`);
    differences of infinite values (a failed evaluation) are NaN, without a warning."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _fd_derivatives(f, x, lower, step)


def _fd_derivatives(f: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray,
                    step: float) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference gradient and Hessian of ``f`` at ``x``.

    Central differences, except one-sided (forward) for a coordinate whose
    backward step would cross its lower bound.  A mixed derivative of two
    central coordinates takes two evaluations, ``f(x + h_i + h_j)`` and
    ``f(x - h_i - h_j)``, with the single-coordinate ones (second order, like
    the four-point rule, at half its cost): ``n^2 + n + 1`` evaluations in all.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    h, forward = _fd_steps(x, lower, step)
    f0 = f(x)
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


def _fd_steps(x: np.ndarray, lower: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Step per coordinate, and where a backward step would cross the lower bound."""
    h = step * np.maximum(np.abs(x), 1.0)
    return h, x - h < lower


def gradient_hessian(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray,
                     lower: np.ndarray, step: float = FD_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Gradient at ``x`` and the Hessian by forward differences of the gradient.

    ``n + 1`` calls of ``fg``: each column is ``(g(x + h e_i) - g(x)) / h``,
    accurate to ``O(h)`` (``h`` = ``step`` relative): ample for the convergence
    checks and the Newton polish at :data:`FD_STEP`, and at
    :data:`HESSIAN_STEP` (an analytic gradient's accuracy allows it) to ~1e-6
    relative, as central differences (``2n + 1`` calls) at ``FD_STEP``, which
    the joint stage once took.  A coordinate within
    ``FD_STEP`` of its bound keeps that step: a variance at 0 has a stand-in
    derivative there (:meth:`glmmcore.objectives.glmm.GlmmDeviance.value_and_gradient`)
    that only a step of ``FD_STEP`` matches.  The result is symmetrized.
    """
    x = np.asarray(x, dtype=float)
    h = _fd_steps(x, lower, step)[0]
    if step < FD_STEP:
        h_bound, near = _fd_steps(x, lower, FD_STEP)
        h = np.where(near, h_bound, h)
    grad = np.asarray(fg(x)[1], dtype=float)
    hess = np.empty((x.size, x.size))
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h[i]
        hess[:, i] = (fg(x + e)[1] - grad) / h[i]
    return grad, 0.5 * (hess + hess.T)


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
    free = ~pinned_at_bound(x, lower, grad)
    if not np.any(free):
        return None
    g, H = _free_part(grad, hess, free)
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


def polished_and_checked(f: Callable[[np.ndarray], float], x: np.ndarray, fx: float | None,
                         lower: np.ndarray,
                         derivatives: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                         diagonal: np.ndarray, n_theta: int, messages: list[str], *,
                         polish_first: bool,
                         gradient: Callable[[np.ndarray], np.ndarray] | None = None
                         ) -> tuple[np.ndarray, Convergence]:
    """The convergence checks at ``x``, after a Newton polish with their derivatives.

    ``derivatives(x)`` gives the gradient and Hessian; ``fx`` is ``f(x)`` if
    known (else evaluated when a polish is tried).  With ``polish_first`` the
    polish is tried before the checks (cheap when it declines: no evaluation,
    :data:`POLISH_GAIN`); otherwise only when the checks fail, as a polish that
    succeeds costs a second Hessian.  After a polish the derivatives and the
    checks are taken again at the point reported, except that with
    ``gradient`` (the gradient alone) the Hessian is kept when the scaled
    gradient at the new point is below :data:`KEEP_HESSIAN_TOL`: the Newton
    step then landed where the Hessian's quadratic model said it would, a
    fraction of a standard error from where that Hessian was taken.
    """
    grad, hess = derivatives(x)
    conv = None if polish_first else check_convergence(grad, hess, x, lower, diagonal,
                                                       n_theta, messages)
    if conv is None or not conv.converged:
        polished = newton_polish(f, x, f(x) if fx is None else fx, lower, grad, hess)
        if polished is not None:
            x = polished[0]
            messages.append("a Newton step with the derivatives improved the optimum")
            conv = _kept_hessian_check(gradient, hess, x, lower, diagonal, n_theta, messages)
            if conv is None:
                grad, hess = derivatives(x)
    if conv is None:
        conv = check_convergence(grad, hess, x, lower, diagonal, n_theta, messages)
    return x, conv


def _kept_hessian_check(gradient: Callable[[np.ndarray], np.ndarray] | None, hess: np.ndarray,
                        x: np.ndarray, lower: np.ndarray, diagonal: np.ndarray, n_theta: int,
                        messages: list[str]) -> Convergence | None:
    """The checks at a polished ``x`` with the Hessian from before the step, if its model
    held there (:func:`polished_and_checked`); None to take the derivatives again."""
    if gradient is None:
        return None
    conv = check_convergence(gradient(x), hess, x, lower, diagonal, n_theta, messages)
    if not (conv.converged and np.max(np.abs(conv.scaled_gradient), initial=0.0)
            < KEEP_HESSIAN_TOL):
        return None
    messages.append("the Hessian from before the step is kept (its model held)")
    return conv


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
    # a parameter on its bound with the objective rising into the interior is a KKT point
    free = ~(pinned_at_bound(x, lower, grad) & (np.arange(x.size) < n_theta))
    g, H = _free_part(grad, hess, free)
    if not (np.isfinite(g).all() and np.isfinite(H).all()):
        # the objective failed (PIRLS, a factorization) within a step of the optimum
        return Convergence(converged=False, reason="the gradient or Hessian is not finite: "
                           "the objective cannot be evaluated next to the optimum",
                           is_singular=singular, gradient=grad, hessian=hess,
                           scaled_gradient=np.full(grad.size, np.nan), min_eigenvalue=np.nan,
                           optimizer=messages)
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


def _free_part(grad: np.ndarray, hess: np.ndarray, free: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The gradient and Hessian of the free parameters (the arrays themselves, read
    only, when all are free: the common case, without numpy's fancy indexing)."""
    if free.all():
        return grad, hess
    return grad[free], hess[np.ix_(free, free)]


def unchecked_convergence(x: np.ndarray, diagonal: np.ndarray,
                          messages: list[str]) -> Convergence:
    """Diagnostics when the derivative checks were switched off (converged unless the
    optimizer then stopped at its limit, :meth:`Convergence.stopped_at_limit`)."""
    n = x.size
    singular = bool(np.any(x[:diagonal.size][diagonal] < SINGULAR_TOL))
    return Convergence(converged=True, reason="derivative checks not run (control)",
                       is_singular=singular, gradient=np.full(n, np.nan),
                       hessian=np.full((n, n), np.nan), scaled_gradient=np.full(n, np.nan),
                       min_eigenvalue=np.nan, optimizer=messages)
