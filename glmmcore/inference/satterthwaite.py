"""Satterthwaite's denominator degrees of freedom for a linear mixed model (lmerTest's method).

For a contrast ``l`` the variance of ``l' beta`` is ``v = l' C(varpar) l``,
where ``C = sigma^2 (R_X' R_X)^{-1}`` is the fixed effects' covariance and
``varpar = (theta, sigma)``.  Its degrees of freedom are
``2 v^2 / (g' A g)`` with ``g = dv/dvarpar`` and ``A = 2 H^{-1}`` the
asymptotic covariance of ``varpar`` (``H`` the Hessian of the (RE)ML deviance
in ``varpar``, beta profiled out), both at the estimates
(Kuznetsova, Brockhoff and Christensen 2017).

The deviance in ``(theta, sigma)`` is ``a(theta) + r(theta) / sigma^2 +
c log(sigma^2)`` plus a constant, with ``a = log|L|^2`` (plus ``log|R_X|^2``
for REML), ``r`` the penalized residual sum of squares and ``c = n`` (ML) or
``n - p`` (REML); the derivatives in sigma are analytic, those in theta come
from one set of factorizations around theta (:mod:`.numderiv`): for ``k``
covariance parameters ``1 + 8 k^2`` factorizations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..objectives.lmm import LmmDeviance
from .numderiv import gradient_hessian, steps_for

EIGEN_TOL = 1e-8     # lmerTest's: eigenvalues of H at most this are left out of its inverse


@dataclass(frozen=True)
class VarparCovariance:
    """What Satterthwaite's degrees of freedom need, at the estimates.

    Attributes
    ----------
    vcov_beta
        ``C``, the fixed effects' covariance (``p x p``).
    jacobian
        ``dC/dvarpar``: shape ``(k + 1, p, p)``, the ``k`` theta first, sigma last.
    vcov_varpar
        ``A``, the asymptotic covariance of ``(theta, sigma)``.
    hessian
        ``H``, the Hessian of the deviance in ``(theta, sigma)``.
    """

    vcov_beta: np.ndarray
    jacobian: np.ndarray
    vcov_varpar: np.ndarray
    hessian: np.ndarray


def varpar_covariance(fit: Any) -> VarparCovariance:
    """The Jacobian of ``vcov(beta)`` and the covariance of ``(theta, sigma)`` of an LMM fit."""
    response = fit.response
    dev = LmmDeviance(fit.predictor, response.y, response.weights, response.offset, fit.reml)
    p = dev.p
    theta = np.asarray(fit.theta, dtype=float)

    def pieces(th: np.ndarray) -> np.ndarray:
        """``a``, ``r`` and ``(R_X' R_X)^{-1}`` at ``th``."""
        if not dev.refactor(th):
            raise FloatingPointError("the penalized system is not positive definite near "
                                     "the estimates")
        logdet = dev.factor.logdet_re + (dev.ld_rx2() if fit.reml else 0.0)
        rss = dev.factor.y_diag(p) ** 2
        rx_inv = np.linalg.inv(np.array(dev.factor.y_lower[:p, :p]))
        return np.concatenate([[logdet, rss], (rx_inv.T @ rx_inv).ravel()])

    value, grad, hess = gradient_hessian(pieces, theta, steps_for(theta))
    sigma = float(fit.sigma)
    s2 = sigma * sigma
    dof = dev.n - p if fit.reml else dev.n
    k = theta.size
    H = np.empty((k + 1, k + 1))
    H[:k, :k] = hess[:, :, 0] + hess[:, :, 1] / s2
    H[:k, k] = H[k, :k] = -2.0 * grad[:, 1] / (s2 * sigma)
    H[k, k] = 6.0 * value[1] / s2 ** 2 - 2.0 * dof / s2
    C0 = value[2:].reshape(p, p)
    jac = np.empty((k + 1, p, p))
    jac[:k] = s2 * grad[:, 2:].reshape(k, p, p)
    jac[k] = 2.0 * sigma * C0
    return VarparCovariance(vcov_beta=s2 * C0, jacobian=jac,
                            vcov_varpar=2.0 * positive_inverse(H), hessian=H)


def positive_inverse(H: np.ndarray, tol: float = EIGEN_TOL) -> np.ndarray:
    """Inverse of a symmetric matrix on the span of its eigenvalues above ``tol`` (lmerTest's:
    a boundary fit's flat directions are left out)."""
    values, vectors = np.linalg.eigh((H + H.T) / 2.0)
    keep = values > tol
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def contrast_df(parts: VarparCovariance, contrast: np.ndarray) -> tuple[float, float]:
    """Variance of ``contrast' beta`` and its Satterthwaite degrees of freedom."""
    var = float(contrast @ parts.vcov_beta @ contrast)
    grad = np.einsum("i,kij,j->k", contrast, parts.jacobian, contrast)
    return var, float(2.0 * var ** 2 / (grad @ parts.vcov_varpar @ grad))


def f_test(parts: VarparCovariance, L: np.ndarray, beta: np.ndarray,
           eps: float = np.sqrt(np.finfo(float).eps)) -> tuple[float, int, float]:
    """Satterthwaite F test of ``L beta = 0`` as lmerTest's ``contestMD``.

    ``L C L'`` is diagonalized, ``L`` rotated onto its eigenvectors of positive
    eigenvalues (``q`` of them, the numerator df), each rotated row gets its own
    degrees of freedom ``nu_m`` and the F statistic's denominator df is
    ``2 E / (E - q)`` with ``E = sum nu_m / (nu_m - 2)`` (2 if some ``nu_m <= 2``).

    Returns
    -------
    F, numerator df, denominator df
    """
    if L.shape[0] == 1:
        var, df = contrast_df(parts, L[0])
        return float((L[0] @ beta) ** 2 / var), 1, df
    values, vectors = np.linalg.eigh(L @ parts.vcov_beta @ L.T)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    positive = values > max(eps * values[0], 0.0)
    q = int(positive.sum())
    rotated = (vectors.T @ L)[:q]
    if q == 1:
        var, df = contrast_df(parts, rotated[0])
        return float((rotated[0] @ beta) ** 2 / var), 1, df
    F = float(np.sum((rotated @ beta) ** 2 / values[:q]) / q)
    nu = np.array([contrast_df(parts, row)[1] for row in rotated])
    return F, q, combined_df(nu)


def combined_df(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's denominator df of an F statistic from its components' df ``nu``."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)
