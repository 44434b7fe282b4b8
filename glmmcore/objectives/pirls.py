"""Penalized iteratively reweighted least squares (PIRLS).

Finds the conditional modes ``u`` of the spherical random effects given
``theta`` and ``beta`` (and ``beta`` too when ``beta_in_pirls``, lme4's
``nAGQ = 0``), minimizing the penalized deviance ``sum(dev_resid) + |u|^2``
by Fisher scoring with step-halving.  Each iteration solves the weighted
penalized least-squares system with the model's factor workspace, the same
one a linear mixed model uses, with the working response as its ``Y``
column(s).

The iterations stop when the Newton increment is below :data:`STEP_TOL` (or
below :data:`FLOOR_TOL` where it can only be round-off:
:func:`.pirls_kernel.at_mode`) before it is taken, so the factor left in the
workspace belongs to the weights at the returned mode: ``log|L|^2`` and the
conditional variances are consistent with ``u``.  When there is no finite mode
(complete separation drives ``beta`` to infinity), the deviance settles while
the increments do not shrink; after :data:`SLOW_ITER` iterations PIRLS then stops on the
deviance, as R's ``glm.fit`` does, and says so on its outcome.

Each run warm-starts from the previous modes; with the blocked factorization
the compiled loop starts from the modes (and, for ``nAGQ=0``, the fixed
effects) predicted for the new parameters instead (:mod:`glmmcore.objectives.pirls_kernel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..design.predictor import Predictor
from ..errors import ConvergenceError
from .family_kernels import FamilyKernels, call_map, call_observed, call_update, call_yms
from .glm_irls import CONVERGED as GLM_CONVERGED
from .glm_irls import glm_irls, glm_irls_numpy
from .pirls_kernel import (
    HALVING_FAILED,
    MAX_ITERATIONS,
    NOT_POSITIVE_DEFINITE,
    STOPPED_ON_DEVIANCE,
    at_mode,
    newton_weights,
    pirls_loop,
    rel_change,
)

STEP_TOL = 1e-12     # on max|increment| / (1 + max|value|)
# Below FLOOR_TOL a step can be round-off, not convergence still to come (at_mode says
# when): with beta in PIRLS (nAGQ=0 stage) the floor can lie above STEP_TOL:
# patents_pois_olre's steps settle at 2-7e-12 and runs went on to SLOW_ITER (25 iterations
# where 5 do).  Whether successive round-off steps grow or shrink depends on the machine's
# summation order, so Newton's iterations do not ask: one full step below FLOOR_TOL reaches
# the mode.
FLOOR_TOL = 1e-10
MAX_ITER = 60
MAX_HALVINGS = 40
SLOW_ITER = 25       # after this many iterations, also stop when the deviance settles:
DEV_TOL = 1e-10      # |change| < DEV_TOL (|pdev| + 0.1)
# A stop on the deviance counts as drifting estimates (separation) only while the steps
# stay this large: Fisher scoring with a non-canonical link (probit) converges linearly and
# may reach SLOW_ITER with steps of 1e-9, at its mode; under separation the estimates keep
# moving by O(1) per iteration.
DRIFT_STEP = 1e-4


@dataclass
class PirlsOutcome:
    """The converged mode and the pieces of the Laplace approximation.

    Attributes
    ----------
    u, beta
        Conditional modes and the fixed effects used (estimated if in PIRLS).
    pdev
        Penalized deviance ``sum(dev_resid) + |u|^2``.
    ldL2
        ``log|L|^2`` at the weights of the mode.
    loglik_y
        Complete conditional log-likelihood ``sum(log p(y | u))``.
    iterations, halvings
        Iterations and step halvings used.
    """

    u: np.ndarray
    beta: np.ndarray
    pdev: float
    ldL2: float
    loglik_y: float
    iterations: int
    halvings: int
    stopped_on_deviance: bool = False   # with steps still >= DRIFT_STEP: no finite mode

    @property
    def laplace_deviance(self) -> float:
        """``-2 log p(y | u) + |u|^2 + log|L|^2``: -2 times the Laplace log-likelihood."""
        return -2.0 * self.loglik_y + float(self.u @ self.u) + self.ldL2

    @property
    def laplace_objective(self) -> float:
        """The Laplace deviance without its data-only constants: ``pdev + log|L|^2``."""
        return self.pdev + self.ldL2


class Pirls:
    """PIRLS workspace for one model; warm-starts from the previous mode.

    Parameters
    ----------
    predictor
        X, Z and the factor layout.
    y, weights, offset
        Response, prior weights and offset.
    kernels
        The family's compiled kernels.
    beta_in_pirls
        Estimate beta inside PIRLS (``nAGQ = 0``).
    step_tol
        Convergence tolerance on the relative Newton increment.
    factor
        A factor workspace for its ``m`` columns (default: a new one); only its
        structure is read, the run's own values overwrite the rest.
    """

    def __init__(self, predictor: Predictor, y: np.ndarray, weights: np.ndarray,
                 offset: np.ndarray, kernels: FamilyKernels, beta_in_pirls: bool,
                 step_tol: float = STEP_TOL, factor: Any = None) -> None:
        self.predictor, self.kernels = predictor, kernels
        self.y, self.wt, self.offset = y, weights, offset
        self.beta_in_pirls, self.step_tol = beta_in_pirls, step_tol
        n, p = predictor.n, predictor.p
        self.m = p + 1 if beta_in_pirls else 1
        self.factor = predictor.new_factor(self.m) if factor is None else factor
        self.Y = np.zeros((n, self.m))
        if beta_in_pirls:
            self.Y[:, :p] = predictor.X
        self.eta, self.mu = np.empty(n), np.empty(n)
        self.w, self.r, self.dev = np.empty(n), np.empty(n), np.empty(n)
        self.zb, self.base = np.empty(n), np.empty(n)
        self._base_beta: np.ndarray | None = None   # the beta that self.base belongs to
        self.u = np.zeros(predictor.reterms.q)
        self.beta = np.zeros(p)
        self.dev_offset = deviance_offset(kernels, y, weights)
        self.compiled = predictor.backend == "blocked"
        if self.compiled:
            f = self.factor
            self._zargs = predictor.linear_predictor_args()
            self._cargs, self._fargs, self._sargs = (f.crossprod_args(), f.factor_args(),
                                                     f.solve_args())
            self._cwork = f.crossprod_work()
            self._work = (self.eta, self.mu, self.w, self.r, self.dev, self.zb, self.base,
                          np.empty(n))
            self._kernel_ptrs = _kernel_pointers(kernels)
            self._limits = (step_tol, float(MAX_ITER), float(MAX_HALVINGS), float(SLOW_ITER),
                            DEV_TOL, self.dev_offset, FLOOR_TOL)
            self._start = _start_state(predictor)

    def __getstate__(self) -> dict:
        # the inputs and the modes, not the workspace: kernel addresses are this process's
        # (the kernels pickle by family), and the compiled loop's arguments are views
        # into the factor's buffers that a pickle would copy apart
        return {"args": (self.predictor, self.y, self.wt, self.offset, self.kernels,
                         self.beta_in_pirls, self.step_tol), "u": self.u, "beta": self.beta}

    def __setstate__(self, state: dict) -> None:
        self.__init__(*state["args"])
        self.start_from(state["u"], state["beta"])

    def start_from(self, u: np.ndarray, beta: np.ndarray) -> None:
        """Start the next run from these modes, not from a prediction off the last run."""
        self.u, self.beta = np.array(u, dtype=float), np.array(beta, dtype=float)
        if self.compiled:
            self._start[0][0] = 0

    def run(self, theta: np.ndarray, beta: np.ndarray | None, phi: float = 1.0,
            complete: bool = True) -> PirlsOutcome:
        """Iterate to the conditional mode at theta (and beta unless estimated here).

        ``complete=False`` skips the complete log-likelihood (``loglik_y`` is
        NaN): the optimizer needs only :attr:`PirlsOutcome.laplace_objective`.

        Raises
        ------
        ConvergenceError
            Step-halving cannot reduce the penalized deviance, the iterations
            run out, or the system is not positive definite; with diagnostics.
        """
        if beta is not None:
            self.beta = np.asarray(beta, dtype=float).copy()
        theta = np.asarray(theta, dtype=float)
        if self.compiled:
            return self._run_compiled(theta, float(phi), complete)
        return self._run_python(theta, float(phi), complete)

    def _run_compiled(self, theta: np.ndarray, phi: float, complete: bool) -> PirlsOutcome:
        info = np.zeros(6)
        u, b = self.u.copy(), self.beta.copy()
        status = pirls_loop(theta, phi, self.beta_in_pirls, complete, self._limits,
                            self._kernel_ptrs,
                            self.predictor.X, self.y, self.wt, self.offset, self.Y, u, b,
                            self._zargs, self._cargs, self._cwork, self._fargs, self._sargs,
                            self._work, info, self._start)
        pdev, ldL2, loglik, iterations, halvings, step = info
        if status >= HALVING_FAILED:
            reason = {HALVING_FAILED: "PIRLS step-halving failed to reduce the penalized "
                      "deviance", MAX_ITERATIONS: f"PIRLS did not converge in {MAX_ITER} "
                      "iterations", NOT_POSITIVE_DEFINITE: "the PIRLS system is not positive "
                      "definite"}[status]
            raise ConvergenceError(reason, {"theta": theta.tolist(), "beta": b.tolist(),
                                            "penalized_deviance": pdev, "last_step": step,
                                            "iterations": int(iterations),
                                            "halvings": int(halvings)})
        self.u, self.beta = u, b
        return PirlsOutcome(u=u.copy(), beta=b.copy(), pdev=pdev, ldL2=ldL2, loglik_y=loglik,
                            iterations=int(iterations), halvings=int(halvings),
                            stopped_on_deviance=bool(status == STOPPED_ON_DEVIANCE
                                                     and step >= DRIFT_STEP))

    def _run_python(self, theta: np.ndarray, phi: float, complete: bool) -> PirlsOutcome:
        """The same iterations as :func:`pirls_loop`, for the CHOLMOD factorization."""
        u, b = self.u.copy(), self.beta.copy()
        pdev = self._evaluate(theta, u, b, phi)
        halvings = 0
        step = full_step = np.inf
        quadratic = self.kernels.newton or self.kernels.canonical
        for iteration in range(1, MAX_ITER + 1):
            u_new, b_new = self._newton(theta, phi)
            last_step = step
            step = max(rel_change(u_new, u), rel_change(b_new, b) if self.beta_in_pirls
                       else 0.0)
            if at_mode(step, last_step, full_step, quadratic, self.step_tol, FLOOR_TOL):
                self.u, self.beta = u, b
                return self._outcome(theta, u, b, pdev, phi, iteration, halvings, complete)
            t = 1.0
            for _ in range(MAX_HALVINGS):
                u_t = u + t * (u_new - u)
                b_t = b + t * (b_new - b) if self.beta_in_pirls else b
                pdev_t = self._evaluate(theta, u_t, b_t, phi)
                if pdev_t <= pdev + 1e-10 * (1.0 + abs(pdev)):
                    break
                t *= 0.5
                halvings += 1
            else:
                raise ConvergenceError(
                    "PIRLS step-halving failed to reduce the penalized deviance",
                    {"theta": theta.tolist(), "beta": b.tolist(), "iteration": iteration,
                     "penalized_deviance": pdev, "halvings": halvings})
            if iteration >= SLOW_ITER and abs(pdev - pdev_t) < DEV_TOL * (abs(pdev_t) + 0.1):
                # no finite mode in reach (e.g. separation): stop on the deviance, as R's
                # glm.fit, with the factor taken at the final weights
                self._newton(theta, phi)
                self.u, self.beta = u_t, b_t
                out = self._outcome(theta, u_t, b_t, pdev_t, phi, iteration, halvings,
                                    complete)
                out.stopped_on_deviance = step >= DRIFT_STEP
                return out
            u, b, pdev = u_t, b_t, pdev_t
            full_step = step if t == 1.0 else np.inf
        raise ConvergenceError(f"PIRLS did not converge in {MAX_ITER} iterations",
                               {"theta": theta.tolist(), "beta": b.tolist(),
                                "penalized_deviance": pdev, "last_step": step,
                                "halvings": halvings})

    def start_glm(self, start_mu: np.ndarray, phi: float = 1.0) -> np.ndarray:
        """Fixed effects of the GLM without random effects (IRLS from ``start_mu``), at the
        family's extra parameter ``phi`` (1: none, or its start when estimated).

        Needs a workspace that estimates beta; leaves the modes at zero.
        """
        if not self.beta_in_pirls:
            raise ValueError("start_glm needs a workspace that estimates beta")
        eta = np.empty_like(start_mu)
        call_map(self.kernels.linkfun_vec, np.ascontiguousarray(start_mu), eta)
        sw = np.sqrt(self.wt)
        X = self.predictor.X
        self.beta = np.linalg.lstsq(X * sw[:, None], (eta - self.offset) * sw, rcond=None)[0]
        self.u[:] = 0.0
        beta = self.beta.copy()
        limits = (self.step_tol, FLOOR_TOL, float(MAX_ITER), float(MAX_HALVINGS))
        k = self.kernels
        irls = glm_irls if self.compiled else glm_irls_numpy
        status = irls(k.update, k.observed_weights, k.newton, k.canonical, X, self.y, self.wt,
                      self.offset, phi, beta, limits, self.eta, self.mu, self.w, self.r,
                      self.dev)
        if status != GLM_CONVERGED:
            # separation or worse: PIRLS at theta = 0 stops on the deviance or says why
            beta = self.run(np.zeros(self.predictor.reterms.ntheta), None, phi).beta
        elif k.newton and not k.laplace_observed:
            # Fisher's weights and residuals, as a PIRLS run leaves them at its mode
            call_update(k.update, self.eta, self.y, self.wt, phi, self.mu, self.w, self.r,
                        self.dev)
        # no prediction from theta = 0: the next move is no small one
        self.start_from(np.zeros_like(self.u), beta)
        return beta

    def _evaluate(self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray, phi: float) -> float:
        """Working quantities at (u, beta); returns the penalized deviance."""
        if self.beta_in_pirls or self._base_beta is not beta:
            np.add(self.predictor.X @ beta, self.offset, out=self.base)
            self._base_beta = beta
        self.predictor.linear_predictor(theta, u, self.base, self.zb, self.eta)
        total = call_update(self.kernels.update, self.eta, self.y, self.wt, phi, self.mu,
                            self.w, self.r, self.dev)
        return total + self.dev_offset + float(u @ u)

    def _newton(self, theta: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
        """Solve the penalized weighted least-squares system at the current weights."""
        if self.kernels.newton:
            newton_weights(self.kernels.observed_weights, self.eta, self.y, self.wt, phi,
                           self.mu, self.w, self.r, np.empty(self.predictor.n))
        if self.beta_in_pirls:
            np.subtract(self.eta, self.offset, out=self.Y[:, -1])
        else:
            self.Y[:, 0] = self.zb
        self.Y[:, -1] += self.r
        self.factor.crossprod(self.w, self.Y)
        if not self.factor.factor(theta):
            raise ConvergenceError("the PIRLS system is not positive definite",
                                   {"theta": theta.tolist()})
        u_new, b_new = self.factor.solve(self.m - 1)
        return u_new, (b_new if self.beta_in_pirls else self.beta)

    def _refactor_observed(self, theta: np.ndarray, phi: float) -> None:
        """Refactor at the observed information (-d2 log p / d eta2) at the mode."""
        call_observed(self.kernels.observed_weights, self.eta, self.y, self.wt, phi,
                      self.mu, self.w)
        self._refactor(theta)

    def _refactor(self, theta: np.ndarray) -> None:
        """Refactor at the current weights (for log|L|^2 at the mode)."""
        self.factor.crossprod(self.w, self.Y)
        if not self.factor.factor(theta):
            raise ConvergenceError("the information is not positive definite at the mode",
                                   {"theta": theta.tolist()})

    def _outcome(self, theta: np.ndarray, u: np.ndarray, beta: np.ndarray, pdev: float,
                 phi: float, iterations: int, halvings: int, complete: bool) -> PirlsOutcome:
        if self.kernels.laplace_observed:
            self._refactor_observed(theta, phi)
        elif self.kernels.newton:   # the Laplace approximation at Fisher's weights, as lme4
            call_update(self.kernels.update, self.eta, self.y, self.wt, phi, self.mu, self.w,
                        self.r, self.dev)
            self._refactor(theta)
        loglik = np.nan
        if complete:
            loglik = call_yms(self.kernels.logpdf_vec, self.y, self.mu, self.wt, phi,
                              np.empty(self.predictor.n))
        return PirlsOutcome(u=u.copy(), beta=beta.copy(), pdev=pdev,
                            ldL2=float(self.factor.logdet_re), loglik_y=float(loglik),
                            iterations=iterations, halvings=halvings)


def _kernel_pointers(kernels: FamilyKernels) -> tuple:
    """What the compiled loop needs of the kernels: addresses and flags."""
    return (kernels.update, kernels.logpdf_vec, kernels.observed_weights,
            int(kernels.laplace_observed), int(kernels.newton), int(kernels.canonical))


def deviance_offset(kernels: FamilyKernels, y: np.ndarray, wt: np.ndarray) -> float:
    """``sum(dev_resid)`` minus the update kernel's deviance, at any linear predictor.

    With the family's cumulant the update kernel takes the deviance as
    ``2 wt (b(eta) - y eta)``, free of ``dev_resid``'s logarithm (and, for
    Poisson, vectorized); that differs from ``sum(dev_resid)`` by a term of the
    data alone, computed here once at ``eta = 0``, so that PIRLS's penalized
    deviance, its tolerances and the optimizer's objective are the same as
    with ``dev_resid``.  0 for families without a cumulant.
    """
    if not kernels.by_cumulant:
        return 0.0
    n = y.shape[0]
    eta, mu, w, r, dev = (np.zeros(n) for _ in range(5))
    kernel_sum = call_update(kernels.update, eta, y, wt, 1.0, mu, w, r, dev)
    return call_yms(kernels.devres_vec, y, mu, wt, 1.0, dev) - kernel_sum


def _start_state(predictor: Predictor) -> tuple:
    """State of the compiled loop's predicted start (:mod:`glmmcore.objectives.pirls_kernel`)."""
    n, p, q = predictor.n, predictor.p, predictor.reterms.q
    ntheta = predictor.reterms.ntheta
    return (np.zeros(1, dtype=np.int64), np.zeros(ntheta), np.zeros(p), np.zeros(q),
            np.zeros(n), np.zeros(n), np.zeros(ntheta), np.zeros(q + p), np.zeros(q),
            np.zeros(q + p))
