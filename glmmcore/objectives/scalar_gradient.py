"""The fast path's analytic derivatives (:mod:`.scalar_glmm`): the Laplace objective's
gradient over (theta, beta[, log phi]) and the ``nAGQ = 0`` objective's over theta,
:mod:`glmmcore.objectives.laplace_gradient` specialized to a diagonal system.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .family_kernels import call_update, call_yms
from .laplace_gradient import WEIGHT_STEP
from .scalar_pirls import _chol_solve

PHI_STEP = 1e-5         # central differences in log phi (error ~1e-10 relative)


@njit(cache=True, nogil=True)
def _weight_slope(upd, slope, y, wt, phi, obs, dW):
    """``dW/d eta`` at obs' eta: exact for the log-linear (``slope`` = 1: ``W' = W``)
    and logistic (2: ``W' = W (1 - 2 mu)``) models, else by a central difference of the
    update kernel (0)."""
    eta, e2, m2, wp, wm, r2 = obs[0], obs[6], obs[7], obs[8], obs[9], obs[4]
    n = eta.shape[0]
    if slope == 1:
        dW[:] = obs[2]
        return
    if slope == 2:
        for i in range(n):
            dW[i] = obs[2][i] * (1.0 - 2.0 * obs[1][i])
        return
    for i in range(n):
        e2[i] = eta[i] + WEIGHT_STEP
    # obs[4] (the deviance terms) is scratch here: the deviance is summed already
    call_update(upd, e2, y, wt, phi, m2, wp, dW, r2)
    for i in range(n):
        e2[i] = eta[i] - WEIGHT_STEP
    call_update(upd, e2, y, wt, phi, m2, wm, dW, r2)
    for i in range(n):
        dW[i] = (wp[i] - wm[i]) * (0.5 / WEIGHT_STEP)


@njit(cache=True, nogil=True)
def _logdet(theta, wz2):
    total = 0.0
    for j in range(wz2.shape[0]):
        total += np.log(1.0 + theta * theta * wz2[j])
    return total


@njit(cache=True, nogil=True)
def _laplace_gradient(theta, phi, has_phi, X, codes, z, y, wt, upd, slope, logpdf, u, obs,
                      lev, grad):
    """Gradient of the Laplace objective over (theta, beta[, log phi]) at the mode in
    place.  The log-determinant is at Fisher's weights ``W`` (``A_j``), the modes'
    response to the parameters at the information ``O`` (``B_j``; the same for a
    canonical link)."""
    n, p = X.shape
    w, r, info = obs[2], obs[3], obs[10]
    wz2, za, zs, oz2 = lev[0], lev[4], lev[5], lev[7]
    dW = np.empty(n)
    _weight_slope(upd, slope, y, wt, phi, obs, dW)
    t2 = theta * theta
    za[:] = 0.0
    zs[:] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        a = dW[i] * t2 * zi * zi / (1.0 + t2 * wz2[g])
        dW[i] = a
        za[g] += zi * a
        zs[g] += zi * w[i] * r[i]
    gt = 0.0
    for j in range(za.shape[0]):
        za[j] = theta * za[j] / (1.0 + t2 * oz2[j])          # v_j
        gt += za[j] * zs[j] + 2.0 * theta * wz2[j] / (1.0 + t2 * wz2[j])
    grad[:] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        t = dW[i] - info[i] * theta * zi * za[g] - 2.0 * w[i] * r[i]
        gt += t * zi * u[g]
        for a in range(p):
            grad[1 + a] += X[i, a] * t
    grad[0] = gt
    if has_phi:
        grad[1 + p] = _phi_derivative(theta, phi, codes, z, y, wt, upd, logpdf, obs, lev)


@njit(cache=True, nogil=True)
def _phi_derivative(theta, phi, codes, z, y, wt, upd, logpdf, obs, lev):
    """The Laplace objective's derivative in ``log phi``: the conditional
    log-likelihood's and the log-determinant's at the mode, and through the modes
    (their equations' derivative); central differences of the kernels in log phi,
    no PIRLS."""
    eta, mu = obs[0], obs[1]
    wz2, v = lev[0], lev[4]
    up, down = phi * np.exp(PHI_STEP), phi * np.exp(-PHI_STEP)
    scale = 0.5 / PHI_STEP
    d_loglik = (call_yms(logpdf, y, mu, wt, up, obs[13])
                - call_yms(logpdf, y, mu, wt, down, obs[13])) * scale
    call_update(upd, eta, y, wt, up, obs[7], obs[8], obs[11], obs[4])
    call_update(upd, eta, y, wt, down, obs[7], obs[9], obs[12], obs[4])
    wp, wm, rp, rm = obs[8], obs[9], obs[11], obs[12]
    t2 = theta * theta
    g = -2.0 * d_loglik
    for i in range(eta.shape[0]):
        j, zi = codes[i], z[i]
        d_w = (wp[i] - wm[i]) * scale
        d_s = (wp[i] * rp[i] - wm[i] * rm[i]) * scale
        g += t2 * zi * zi * d_w / (1.0 + t2 * wz2[j]) + v[j] * theta * zi * d_s
    return g


@njit(cache=True, nogil=True)
def _nagq0_gradient(theta, X, codes, z, y, wt, upd, slope, u, obs, lev, cx, L):
    """Derivative of the ``nAGQ = 0`` objective in theta, beta profiled (the system
    of ``[Z Lambda, X]`` gives the modes' response to theta)."""
    n, p = X.shape
    w, r = obs[2], obs[3]
    wz2, za, zs, vu = lev[0], lev[4], lev[5], lev[6]
    dW = np.empty(n)
    _weight_slope(upd, slope, y, wt, 1.0, obs, dW)
    t2 = theta * theta
    za[:] = 0.0
    zs[:] = 0.0
    xa = np.zeros(p)
    for i in range(n):
        g, zi = codes[i], z[i]
        a = dW[i] * t2 * zi * zi / (1.0 + t2 * wz2[g])
        dW[i] = a
        za[g] += zi * a
        zs[g] += zi * w[i] * r[i]
        for c in range(p):
            xa[c] += X[i, c] * a
    # v = K^{-1} [theta za; X'a] by the Schur complement (L factors it)
    rhs = xa.copy()
    for j in range(za.shape[0]):
        f = t2 * za[j] / (1.0 + t2 * wz2[j])
        for c in range(p):
            rhs[c] -= f * cx[j, c]
    vb = np.empty(p)
    _chol_solve(L, rhs, vb)
    gt = 0.0
    for j in range(za.shape[0]):
        s = za[j]
        for c in range(p):
            s -= cx[j, c] * vb[c]
        A = 1.0 + t2 * wz2[j]
        vu[j] = theta * s / A
        gt += vu[j] * zs[j] + 2.0 * theta * wz2[j] / A
    for i in range(n):
        g, zi = codes[i], z[i]
        xv = 0.0
        for c in range(p):
            xv += X[i, c] * vb[c]
        t = dW[i] - w[i] * (theta * zi * vu[g] + xv) - 2.0 * w[i] * r[i]
        gt += t * zi * u[g]
    return gt
