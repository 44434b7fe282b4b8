"""Profiled deviance of a linear mixed model (penalized least squares).

With ``L`` the factor of ``Lambda' Z' W Z Lambda + I``, ``R_X`` that of the
fixed effects' Schur complement and ``r2`` the penalized weighted residual
sum of squares (all from one factorization of the system with ``[X y]``
appended), the deviance profiled over ``beta`` and ``sigma`` is (lme4, Bates
et al. 2015, eq. 34 and 41)::

    ML:   log|L|^2 - sum(log w) + n (1 + log(2 pi r2 / n))
    REML: log|L|^2 - sum(log w) + log|R_X|^2 + (n-p) (1 + log(2 pi r2 / (n-p)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..design.predictor import Predictor
from ..fitting.checks import (
    FD_STEP,
)
from .lmm_gradient import profiled_gradient

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class LmmSolution:
    """Everything that follows from theta at the optimum.

    Attributes
    ----------
    beta
        Fixed effects.
    u
        Spherical random effects (``b = Lambda u``).
    sigma
        Residual standard deviation.
    RX_lower
        Lower factor ``R_X'`` of the fixed effects' Schur complement.
    pwrss
        Penalized weighted residual sum of squares.
    ldL2, ldRX2
        ``log|L|^2`` and ``log|R_X|^2``.
    """

    beta: np.ndarray
    u: np.ndarray
    sigma: float
    RX_lower: np.ndarray
    pwrss: float
    ldL2: float
    ldRX2: float


class LmmDeviance:
    """The profiled (RE)ML deviance as a function of theta.

    The weighted cross-products are formed once here; each call applies
    ``Lambda(theta)`` and refactors, so a call costs no more than the
    factorization.  The response column is ``y - offset - X beta_ls``
    (``beta_ls`` the weighted least-squares fit without random effects,
    :attr:`beta_ls`): the same deviance and random effects, the fixed effects
    shifted by ``beta_ls``, but the penalized residual sum of squares is no
    longer the small difference of two large sums (``gpa_rs``: ``y'y`` is 12x
    the residual sum), so the deviance carries less round-off for the
    optimizer to stall in.

    Parameters
    ----------
    predictor
        X and the random-effects layout.
    y, weights, offset
        Response, prior weights (positive) and offset.
    reml
        REML criterion if True, else ML deviance.
    factor
        A factor workspace for ``p + 1`` columns to use (default: a new one).
    normal
        :func:`normal_equations` of X and these weights, if made already.
    """

    def __init__(self, predictor: Predictor, y: np.ndarray, weights: np.ndarray,
                 offset: np.ndarray, reml: bool, *, factor: Any = None,
                 normal: NormalEquations | None = None) -> None:
        self.predictor = predictor
        self.n, self.p = predictor.n, predictor.p
        self.reml = reml
        X, target = predictor.X, y - offset
        if normal is None:
            normal = normal_equations(X, weights)
        self.ldW = normal.ldW
        self.beta_ls = normal.solve(X, target, weights)
        Y = np.empty((self.n, self.p + 1))
        Y[:, :self.p] = X
        Y[:, self.p] = target - X @ self.beta_ls
        self.ls_residuals = Y[:, self.p].copy()     # for the moment start (lmm_start)
        self.factor = predictor.new_factor(self.p + 1) if factor is None else factor
        self.factor.crossprod(np.ascontiguousarray(weights, dtype=float), Y)
        self.nevals = 0
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None
        self._factored_at: tuple[bytes, float] | None = None   # theta of the factor, value
        self.gradient_args: tuple | None = None     # lmm_gradient.gradient_args

    def __call__(self, theta: np.ndarray) -> float:
        """Deviance (REML criterion if ``reml``) at ``theta``.

        A call at the theta of the last factorization reuses it: the optimizer
        starts where the last start candidate was evaluated, when it won.
        """
        key = np.asarray(theta, dtype=float).tobytes()
        if self._factored_at is not None and self._factored_at[0] == key:
            return self._factored_at[1]       # the optimizer's start, just chosen by value
        self.nevals += 1
        self._factored_at = None
        if not self.factor.factor(theta):
            return np.inf
        value = self.criterion(self.reml)
        self._factored_at = (key, value)
        return value

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Deviance and its gradient at ``theta`` (:mod:`glmmcore.objectives.lmm_gradient`).

        A block whose ``T`` is nearly singular (on or near the boundary) takes
        its derivatives from the analytic gradient at ``theta`` with its small
        diagonal elements raised to :data:`~glmmcore.fitting.checks.FD_STEP`: a
        forward difference's accuracy, at the cost of one more factorization.
        There the derivative of an even deviance (a variance at 0) is
        ``f'' FD_STEP`` instead of 0, which shows L-BFGS-B which way it falls.
        The last result is kept: the optimizer's final point is asked for
        again by the checks.
        """
        if self._last is not None and self._last[0].tobytes() == theta.tobytes():
            return self._last[1], self._last[2].copy()
        value = self(theta)
        if not math.isfinite(value):
            return value, np.zeros_like(theta)
        grad, missing = profiled_gradient(self, theta)
        if missing.any():
            raised = np.where(self.predictor.reterms.is_diagonal() & missing,
                              np.maximum(theta, FD_STEP), theta)
            self(raised)
            grad[missing] = profiled_gradient(self, raised)[0][missing]
        self._last = (np.array(theta, dtype=float), value, grad.copy())
        return value, grad

    def criterion(self, reml: bool) -> float:
        """Deviance of the current factorization, ML or REML."""
        return _criterion(self.factor.y_lower, self.factor.logdet_re - self.ldW, self.n, self.p,
                          reml)

    def ld_rx2(self) -> float:
        """``log|R_X|^2`` of the current factorization."""
        return _ld_rx2(self.factor.y_lower, self.p)

    def refactor(self, theta: np.ndarray) -> bool:
        """Factor at ``theta`` outside an evaluation (not counted); False if not positive
        definite."""
        self._factored_at = None
        return self.factor.factor(theta)

    def solution(self, theta: np.ndarray) -> LmmSolution:
        """beta, u, sigma and the factor pieces at ``theta``."""
        if not self.refactor(theta):
            raise FloatingPointError("the penalized system is not positive definite at theta")
        u, beta = self.factor.solve(self.p)
        beta += self.beta_ls
        pwrss = self.factor.y_diag(self.p) ** 2
        dof = self.n - self.p if self.reml else self.n
        return LmmSolution(beta=beta, u=u, sigma=float(np.sqrt(pwrss / dof)),
                           RX_lower=np.array(self.factor.y_lower[:self.p, :self.p]),
                           pwrss=float(pwrss), ldL2=float(self.factor.logdet_re),
                           ldRX2=self.ld_rx2())


@dataclass(frozen=True)
class NormalEquations:
    """The weighted least-squares normal equations of X, for any response.

    Attributes
    ----------
    Xw
        ``X`` times the weights, row by row.
    L
        Cholesky factor of ``X' W X`` (None where it failed: X nearly collinear).
    ldW
        ``sum(log w)``.
    """

    Xw: np.ndarray
    L: np.ndarray | None
    ldW: float

    def solve(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted least-squares coefficients of ``y`` (an SVD where ``L`` failed).

        Only a shift of the response (:class:`LmmDeviance`): any beta gives the
        same fit, a good one a small residual.  Half the time of ``lstsq``'s SVD.
        """
        if self.L is None:
            sw = np.sqrt(weights)
            return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
        # numpy's solves, once per fit: compiled ones cost a first fit 1.1 s to compile
        return np.linalg.solve(self.L.T, np.linalg.solve(self.L, self.Xw.T @ y))


def normal_equations(X: np.ndarray, weights: np.ndarray) -> NormalEquations:
    """:class:`NormalEquations` of X and the weights (the same for every response: a
    model makes them once for its own weights).  X has full column rank (aliased
    columns were dropped), so the Cholesky factor exists unless X is nearly collinear."""
    Xw = X * weights[:, None]
    try:
        L = np.linalg.cholesky(X.T @ Xw)
    except np.linalg.LinAlgError:
        L = None
    return NormalEquations(Xw=Xw, L=L, ldW=float(np.sum(np.log(weights))))


@njit(cache=True, nogil=True)
def _criterion(y_lower, logdet, n, p, reml):
    """The module doc's deviance from the factor's ``Y`` rows (``R_X'``, then the response's
    row); ``logdet`` is ``log|L|^2 - sum(log w)``."""
    pwrss = y_lower[p, p] ** 2
    if not reml:
        return logdet + n * (1.0 + LOG_2PI + np.log(pwrss / n))
    nmp = n - p
    return logdet + _ld_rx2(y_lower, p) + nmp * (1.0 + LOG_2PI + np.log(pwrss / nmp))


@njit(cache=True, nogil=True)
def _ld_rx2(y_lower, p):
    """``log|R_X|^2`` from the factor's ``Y`` rows (``R_X'`` in the first ``p``)."""
    out = 0.0
    for i in range(p):
        out += 2.0 * np.log(y_lower[i, i])
    return out
