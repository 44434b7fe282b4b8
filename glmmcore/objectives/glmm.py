"""Laplace, adaptive Gauss-Hermite and nAGQ=0 deviance of a GLMM."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..design.predictor import Predictor
from ..errors import ConvergenceError
from ..fitting.checks import (
    FD_STEP,
)
from .family_kernels import family_kernels
from .laplace_gradient import GRADIENT_MIN_THETA, LaplaceGradient, has_laplace_gradient
from .pirls import STEP_TOL, Pirls, PirlsOutcome
from .quadrature import Quadrature

# PIRLS's tolerance in the nAGQ=0 stage when it only starts the joint stage: its modes
# then need not be exact to round-off (its optimizer stops at START_STAGE_REL_TOL). Start
# stage PIRLS iterations per fit against 1e-12: patents_pois_olre 101 -> 72,
# speed_slopes 78 -> 71, speed_crossed 56 -> 51, the others within 4, the same optima and
# evaluations; 36 simulated stress fits within 1e-10 of the log-likelihood, all converged.
# (With the start stage at 1e-6, on a stress fit with a variance
# at 0 the joint stage then failed its checks.)
START_STAGE_STEP_TOL = 1e-9


class GlmmDeviance:
    """The GLMM deviance at stage 1 (theta[, log phi]) and stage 2 (theta, beta[, log phi]).

    Parameters
    ----------
    predictor, response
        The two sides of the model.
    nagq
        0, 1 or the number of quadrature nodes.
    new_factor
        Gives the PIRLS workspaces' factor workspace for ``m`` columns (default:
        new ones; a model's fits reuse theirs).
    """

    def __init__(self, predictor: Predictor, response: Any, nagq: int,
                 new_factor: Any = None) -> None:
        self.predictor, self.response, self.nagq = predictor, response, nagq
        self.family = response.family
        self.kernels = family_kernels(self.family)
        self.has_phi = self.family.estimates_phi
        # the extra parameter's value where it is not estimated (1: the family has none)
        self.fixed_phi = self.family.fixed_phi if self.family.fixed_phi is not None else 1.0
        self.ntheta = predictor.reterms.ntheta
        args = (predictor, response.y, response.weights, response.offset, self.kernels)
        new_factor = predictor.new_factor if new_factor is None else new_factor
        self.pirls0 = Pirls(*args, beta_in_pirls=True,
                            step_tol=STEP_TOL if nagq == 0 else START_STAGE_STEP_TOL,
                            factor=new_factor(predictor.p + 1))
        self.pirls1 = (Pirls(*args, beta_in_pirls=False, factor=new_factor(1)) if nagq >= 1
                       else None)
        self.quad = Quadrature(self.pirls1, nagq) if nagq > 1 else None
        # the analytic gradient of each stage's objective, where there is one
        self.gradients: dict[int, LaplaceGradient] = {}
        if has_laplace_gradient(predictor, self.kernels, self.has_phi):
            self.gradients[1] = LaplaceGradient(self.pirls0, self.has_phi)
            if nagq == 1:
                self.gradients[2] = LaplaceGradient(self.pirls1, self.has_phi)
        self.failures = 0
        self.nevals = 0
        self._last: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}

    def split(self, x: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray | None, float]:
        """theta, beta (None in stage 1) and phi from an optimizer vector."""
        theta = x[:self.ntheta]
        beta = x[self.ntheta:self.ntheta + self.predictor.p] if stage == 2 else None
        phi = float(np.exp(x[-1])) if self.has_phi else self.fixed_phi
        return theta, beta, phi

    def evaluate(self, x: np.ndarray, stage: int,
                 complete: bool = True) -> tuple[float, PirlsOutcome]:
        """Deviance and PIRLS outcome at x (raises ConvergenceError if PIRLS fails).

        ``complete=False`` leaves out the data-only constants of the
        log-likelihood (log y!, log choose(n, k)) where they are constants:
        the optimizer's path and the derivatives do not depend on them.
        """
        theta, beta, phi = self.split(x, stage)
        complete = complete or self.has_phi    # with phi, the "constants" depend on it
        workspace = self.pirls0 if stage == 1 else self.pirls1
        out = workspace.run(theta, beta, phi, complete=complete)
        if self.quad is not None and stage == 2:
            return self.quad.deviance(theta, phi, self.kernels, complete), out
        return (out.laplace_deviance if complete else out.laplace_objective), out

    def objective(self, stage: int):
        """The deviance as the optimizer sees it (constants left out): inf where PIRLS fails."""
        def f(x: np.ndarray) -> float:
            self.nevals += 1
            try:
                return self.evaluate(np.asarray(x, dtype=float), stage, complete=False)[0]
            except ConvergenceError:
                self.failures += 1
                return np.inf
        return f

    def value_and_gradient(self, x: np.ndarray, stage: int = 2) -> tuple[float, np.ndarray]:
        """A stage's objective and its analytic gradient at ``x`` (inf where PIRLS fails).

        A variance parameter below :data:`GRADIENT_MIN_THETA` takes its
        derivative at ``FD_STEP`` instead: the deviance is even in it, so its
        derivative at 0 is 0 and would hold L-BFGS-B (and the checks) at a
        saddle on the bound; at ``FD_STEP`` it is ``f'' FD_STEP``, which shows
        which way the deviance falls.  The last result is kept: the
        optimizer's final point is asked for again by the checks.
        """
        last = self._last.get(stage)
        if last is not None and np.array_equal(last[0], x):
            return last[1], last[2].copy()
        value, grad = self._value_and_gradient(x, stage)
        diagonal = self.predictor.reterms.is_diagonal()
        low = np.zeros(x.size, dtype=bool)
        low[:self.ntheta] = diagonal & (np.abs(x[:self.ntheta]) < GRADIENT_MIN_THETA)
        if np.isfinite(value) and np.any(low):
            raised = np.where(low, FD_STEP, x)
            grad[low] = self._value_and_gradient(raised, stage)[1][low]
        self.remember(x, stage, value, grad)
        return value, grad

    def remember(self, x: np.ndarray, stage: int, value: float, grad: np.ndarray) -> None:
        """Keep a stage's value and gradient at ``x`` for the next call there."""
        self._last[stage] = (np.array(x, dtype=float), value, grad.copy())

    def _value_and_gradient(self, x: np.ndarray, stage: int) -> tuple[float, np.ndarray]:
        self.nevals += 1
        try:
            value = self.evaluate(x, stage, complete=False)[0]
        except ConvergenceError:
            self.failures += 1
            return np.inf, np.zeros_like(x)
        theta, _, phi = self.split(x, stage)
        return value, self.gradients[stage](theta, phi)


# nAGQ=0 alone: L-BFGS-B from this many covariance parameters (simulated crossed binomial
# data, 15,000 rows: 2 parameters 1.73x, 3 1.93x, 4 2.35x faster than BOBYQA; one
# parameter, speed_nagq0, 0.88-1.16x)
NAGQ0_LBFGSB_MIN_THETA = 2


def rx_vcov(predictor: Predictor, w: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``(R_X' R_X)^{-1}``: beta's covariance given theta, at working weights ``w``."""
    p = predictor.p
    factor = predictor.new_factor(p + 1)
    factor.crossprod(w, np.column_stack([predictor.X, np.zeros(predictor.n)]))
    factor.factor(theta)
    inv = np.linalg.inv(np.array(factor.y_lower[:p, :p]))
    return inv.T @ inv
