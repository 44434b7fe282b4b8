"""The fast path's analytic derivatives (:mod:`.scalar_glmm`): the Laplace objective's
gradient over (theta, beta[, log phi]) and the ``nAGQ = 0`` objective's over theta,
:mod:`glmmcore.objectives.laplace_gradient` specialized to a diagonal system.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg.small import small_cholesky_solve
from .family_kernels import (
    call_laplace_weights,
    call_map,
    call_observed,
    call_phi_weights,
    call_update,
    call_var,
    call_yms,
)
from .laplace_gradient import WEIGHT_STEP
from .scalar_pirls import _level_dot, dot2, level_sums

PHI_STEP = 1e-5         # central differences in log phi (error ~1e-10 relative)


@njit(cache=True, nogil=True)
def _weight_slope(upd, dvar, y, wt, phi, obs, dW):
    """``dW/d eta`` at obs' eta on the canonical route: ``W V'(mu)`` from the family's
    ``dvariance_vec`` kernel ``dvar`` (``W = wt V(mu)`` there), else (0) by a central
    difference of the update kernel."""
    eta, e2, m2, wp, wm, r2 = obs[0], obs[6], obs[7], obs[8], obs[9], obs[4]
    if dvar != 0:
        call_var(dvar, obs[1], phi, dW)
        W = obs[2]
        for i in range(eta.shape[0]):
            dW[i] *= W[i]
        return
    _shifted(eta, WEIGHT_STEP, e2)
    # obs[4] (the deviance terms) is scratch here: the deviance is summed already
    call_update(upd, e2, y, wt, phi, m2, wp, dW, r2)
    _shifted(eta, -WEIGHT_STEP, e2)
    call_update(upd, e2, y, wt, phi, m2, wm, dW, r2)
    _central_difference(wp, wm, dW)


@njit(cache=True, nogil=True, inline="always")
def _shifted(eta, h, out):
    """``eta + h`` into ``out``: a side of the central differences in eta."""
    for i in range(eta.shape[0]):
        out[i] = eta[i] + h


@njit(cache=True, nogil=True, inline="always")
def _central_difference(up, down, out):
    """``(up - down) / (2 WEIGHT_STEP)`` into ``out``: a weight's slope in eta from its
    values at ``eta +- WEIGHT_STEP``."""
    for i in range(out.shape[0]):
        out[i] = (up[i] - down[i]) * (0.5 / WEIGHT_STEP)


@njit(cache=True, nogil=True)
def _logdet(theta, wz2):
    total = 0.0
    for j in range(wz2.shape[0]):
        total += np.log(1.0 + theta * theta * wz2[j])
    return total


@njit(cache=True, nogil=True)
def _laplace_gradient(theta, phi, X, codes, z, y, wt, P, u, obs, lev, grad, want_phi):
    """Gradient of the Laplace objective over (theta, beta[, log phi]) at the mode in
    place (:mod:`glmmcore.objectives.laplace_gradient`'s terms for one scalar term);
    the log phi entry NaN unless ``want_phi``.

    The family's terms (score ``s``, the log-determinant's weights ``W``, the
    information ``H`` that moves the modes, ``dW / d eta``) come, at the observed
    information, from the mode (``s = w r`` and ``W = H``) and the family's
    observed-information kernel (``dW / d eta``: :func:`_observed_slope`); else from
    PIRLS's last update where its kernel gave them (``update_newton``: ``s = w r``,
    ``W = w``, H and ``dW / d eta`` in obs[16:18]), else from the family's
    ``laplace_weights`` kernel where it has one (any link, an extra parameter), else
    (a canonical link) from PIRLS's working weights and residuals (``W = H``) and
    :func:`_weight_slope`.
    """
    upd, dvar, lw, has_phi = P[6], P[7], P[11], P[10]
    s = obs[14]
    if lw != 0 and P[14]:
        # the Laplace approximation at the observed information: the mode's W = H is
        # obs[10] (lev[7] its levels' sums) and s = w r (evaluate left them)
        W, H, dW = obs[10], obs[10], obs[17]
        Wz2, Hz2 = lev[7], lev[7]
        _observed_slope(P[8], P[19], phi, y, wt, obs)
        for i in range(codes.shape[0]):
            s[i] = obs[2][i] * obs[3][i]
    elif P[15] != 0:
        W, H, dW = obs[2], obs[16], obs[17]
        Wz2, Hz2 = lev[8], lev[9]
        Wz2[:] = 0.0
        Hz2[:] = 0.0
        for i in range(codes.shape[0]):
            g, z2 = codes[i], z[i] * z[i]
            s[i] = W[i] * obs[3][i]
            Wz2[g] += W[i] * z2
            Hz2[g] += H[i] * z2
    elif lw != 0:
        W, H, dW = obs[15], obs[16], obs[17]
        _kernel_terms(lw, P[12], phi, y, wt, obs)
        Wz2, Hz2 = lev[8], lev[9]
        Wz2[:] = 0.0
        Hz2[:] = 0.0
        for i in range(codes.shape[0]):
            g, z2 = codes[i], z[i] * z[i]
            Wz2[g] += W[i] * z2
            Hz2[g] += H[i] * z2
    else:
        W, H, dW = obs[2], obs[10], obs[17]
        Wz2, Hz2 = lev[0], lev[7]
        _weight_slope(upd, dvar, y, wt, phi, obs, dW)
        for i in range(codes.shape[0]):
            s[i] = obs[2][i] * obs[3][i]
    _gradient_sums(theta, X, codes, z, u, s, W, H, dW, Wz2, Hz2, lev[4], lev[5], grad)
    if has_phi:
        grad[1 + X.shape[1]] = _phi_derivative(theta, phi, codes, z, y, wt, P, obs, Wz2,
                                               lev[4]) if want_phi else np.nan


@njit(cache=True, nogil=True)
def _observed_slope(obsw, linkinv, phi, y, wt, obs):
    """``dW / d eta`` into obs[17] by a central difference of the observed-information
    kernel (W the observed information; one pass of it per side)."""
    eta, e2, m2, wp, wm = obs[0], obs[6], obs[7], obs[8], obs[9]
    _shifted(eta, WEIGHT_STEP, e2)
    call_map(linkinv, e2, m2)
    call_observed(obsw, e2, y, wt, phi, m2, wp)
    _shifted(eta, -WEIGHT_STEP, e2)
    call_map(linkinv, e2, m2)
    call_observed(obsw, e2, y, wt, phi, m2, wm)
    _central_difference(wp, wm, obs[17])


@njit(cache=True, nogil=True)
def _kernel_terms(lw, analytic_slope, phi, y, wt, obs):
    """``s``, ``W``, ``H``, ``dW / d eta`` into obs[14:18] at obs' eta from the family's
    laplace_weights kernel; ``dW / d eta`` by a central difference of it where the
    kernel does not give it."""
    eta = obs[0]
    call_laplace_weights(lw, eta, y, wt, phi, obs[14], obs[15], obs[16], obs[17])
    if analytic_slope:
        return
    e2, wp, wm, scratch = obs[6], obs[7], obs[8], obs[9]
    _shifted(eta, WEIGHT_STEP, e2)
    call_laplace_weights(lw, e2, y, wt, phi, scratch, wp, obs[11], obs[12])
    _shifted(eta, -WEIGHT_STEP, e2)
    call_laplace_weights(lw, e2, y, wt, phi, scratch, wm, obs[11], obs[12])
    _central_difference(wp, wm, obs[17])


@njit(cache=True, nogil=True)
def _gradient_sums(theta, X, codes, z, u, s, W, H, dW, Wz2, Hz2, v, zs, grad):
    """The gradient over (theta, beta) from the per-observation terms (module doc of
    :mod:`glmmcore.objectives.laplace_gradient`, ``M`` diagonal: ``A_j = 1 + theta^2
    Wz2_j`` for the log-determinant, ``1 + theta^2 Hz2_j`` for the modes); leaves
    ``v`` in ``v``."""
    n, p = X.shape
    t2 = theta * theta
    a = np.empty(n)
    v[:] = 0.0
    zs[:] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        a[i] = dW[i] * t2 * zi * zi / (1.0 + t2 * Wz2[g])
        v[g] += zi * a[i]
        zs[g] += zi * s[i]
    gt = 0.0
    for j in range(v.shape[0]):
        v[j] = theta * v[j] / (1.0 + t2 * Hz2[j])
        gt += v[j] * zs[j] + 2.0 * theta * Wz2[j] / (1.0 + t2 * Wz2[j])
    grad[:] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        t = a[i] - H[i] * theta * zi * v[g] - 2.0 * s[i]
        gt += t * zi * u[g]
        for c in range(p):
            grad[1 + c] += X[i, c] * t
    grad[0] = gt


@njit(cache=True, nogil=True)
def _phi_derivative(theta, phi, codes, z, y, wt, P, obs, Wz2, v):
    """The Laplace objective's derivative in ``log phi``: the conditional
    log-likelihood's (the family's ``dlogpdf_dphi``, else a central difference of
    ``logpdf``) and, by central differences of laplace_weights' score and weights in
    log phi (the phi_weights kernel ``P[21]``, which leaves the score's in obs[18]), the
    log-determinant's at the mode and through the modes; no PIRLS."""
    logpdf, dphi = P[9], P[13]
    eta, mu = obs[0], obs[1]
    up, down = phi * np.exp(PHI_STEP), phi * np.exp(-PHI_STEP)
    scale = 0.5 / PHI_STEP
    if dphi != 0:
        d_loglik = phi * call_yms(dphi, y, mu, wt, phi, obs[13])
    else:
        d_loglik = (call_yms(logpdf, y, mu, wt, up, obs[13])
                    - call_yms(logpdf, y, mu, wt, down, obs[13])) * scale
    ds, dw = obs[18], obs[19]
    call_phi_weights(P[21], eta, y, wt, up, down, ds, dw)
    t2 = theta * theta
    g = -2.0 * d_loglik
    for i in range(eta.shape[0]):
        j, zi = codes[i], z[i]
        d_w = dw[i] * scale
        d_s = ds[i] * scale
        g += t2 * zi * zi * d_w / (1.0 + t2 * Wz2[j]) + v[j] * theta * zi * d_s
    return g


@njit(cache=True, nogil=True)
def _nagq0_gradient(theta, cols, codes, z, y, wt, upd, dvar, u, obs, lev, cx, L):
    """Derivative of the ``nAGQ = 0`` objective in theta, beta profiled (the system
    of ``[Z Lambda, X]`` gives the modes' response to theta); ``cols`` X' and its
    columns by level (:func:`glmmcore.objectives.scalar_pirls.design_columns`)."""
    XT, xl, by_level = cols
    p, n = XT.shape
    w, r = obs[2], obs[3]
    wz2, za, zs, vu = lev[0], lev[4], lev[5], lev[6]
    dW = np.empty(n)
    _weight_slope(upd, dvar, y, wt, 1.0, obs, dW)
    t2 = theta * theta
    score = obs[11]
    for i in range(n):
        zi = z[i]
        dW[i] *= t2 * zi * zi / (1.0 + t2 * wz2[codes[i]])
        score[i] = w[i] * r[i]
    level_sums(codes, z, dW, za)
    level_sums(codes, z, score, zs)
    xa = np.empty(p)
    for c in range(p):      # X'a; a column constant within levels (z = 1): by levels
        xa[c] = _level_dot(xl[:, c], za) if by_level[c] else dot2(XT[c], dW)
    # v = K^{-1} [theta za; X'a] by the Schur complement (L factors it)
    rhs = xa.copy()
    for j in range(za.shape[0]):
        f = t2 * za[j] / (1.0 + t2 * wz2[j])
        for c in range(p):
            rhs[c] -= f * cx[j, c]
    vb = np.empty(p)
    small_cholesky_solve(L, rhs, vb)
    gt = 0.0
    for j in range(za.shape[0]):
        s = za[j]
        for c in range(p):
            s -= cx[j, c] * vb[c]
        A = 1.0 + t2 * wz2[j]
        vu[j] = theta * s / A
        gt += vu[j] * zs[j] + 2.0 * theta * wz2[j] / A
    # sum_i z_i u_g t_i, t = a - w (theta z vu_g + x'vb) - 2 w r, by levels
    for j in range(za.shape[0]):
        xv = 0.0
        for c in range(p):
            xv += cx[j, c] * vb[c]
        gt += u[j] * (za[j] - theta * wz2[j] * vu[j] - xv - 2.0 * zs[j])
    return gt
