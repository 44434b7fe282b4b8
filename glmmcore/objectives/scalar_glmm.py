"""A whole GLMM fit with one scalar random-effects term, compiled in one loop.

For ``y ~ x + (1 | g)`` (one grouping factor, one column ``z`` per level;
a random intercept has ``z = 1``) and a canonical link, the random-effects
system ``I + Lambda' Z' W Z Lambda`` is diagonal: level ``j`` has
``A_j = 1 + theta^2 sum_{i in j} w_i z_i^2``.  PIRLS, the Laplace deviance
and its analytic gradient (:mod:`glmmcore.objectives.laplace_gradient`, specialized to
a diagonal system) then cost a few passes over the observations, and the
whole optimization runs here without the interpreter:

- ``nAGQ = 1``: the Laplace objective ``pdev + sum log A_j`` over
  ``x = (theta, beta)``, by Newton's method with the Hessian from forward
  differences of the analytic gradient (the step of the regular path's
  checks, :func:`glmmcore.fitting.checks.gradient_hessian`), a backtracking line
  search and ``theta >= 0``;
- ``nAGQ = 0``: PIRLS estimates ``(u, beta)`` jointly, and the objective is
  minimized over ``theta`` alone, the same way.

The objective, the PIRLS iterations (tolerances, step halving) and the
derivatives' steps are the regular path's, so the optimum is the same one;
only the optimizer differs.  A fit that does not end on Newton's criterion
reports a status other than :data:`OK` and the caller falls back to the
regular path.  Every function releases the GIL: threads fit features in
parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..fitting.checks import FD_STEP, HESSIAN_STEP
from .family_kernels import call_observed, call_update, call_yms
from .laplace_gradient import GRADIENT_MIN_THETA, WEIGHT_STEP
from .pirls import FLOOR_TOL, MAX_HALVINGS, MAX_ITER, STEP_TOL
from .pirls_kernel import _fixed_part, _rel_change, at_mode

OK, PIRLS_FAILED, NOT_CONVERGED, NOT_FINITE = 0, 1, 2, 3

# Newton stops when the decrement g' H^-1 g (twice the predicted gain in deviance) is
# below NEWTON_TOL (1 + |f|): the log-likelihood is then within ~1e-13 relative of the
# optimum's; or below ROUNDOFF_TOL (1 + |f|) when the line search cannot gain any more.
NEWTON_TOL = 1e-13
ROUNDOFF_TOL = 1e-9
MAX_NEWTON = 50
SMALLEST_START = 0.05
PHI_STEP = 1e-5         # central differences in log phi (error ~1e-10 relative)


@njit(cache=True, nogil=True)
def _workspace(n, G):
    """Buffers of one fit: per observation and per level."""
    return np.empty((14, n)), np.empty((10, G))


@njit(cache=True, nogil=True)
def _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs):
    """Penalized deviance at ``u`` (the update kernel's deviance plus ``|u|^2``); leaves
    eta, mu, w, r there."""
    eta, mu, w, r, dev = obs[0], obs[1], obs[2], obs[3], obs[4]
    for i in range(eta.shape[0]):
        eta[i] = base[i] + theta * z[i] * u[codes[i]]
    total = call_update(upd, eta, y, wt, phi, mu, w, r, dev)
    for j in range(u.shape[0]):
        total += u[j] * u[j]
    return total


@njit(cache=True, nogil=True)
def _observed(obsw, phi, y, wt, obs):
    """``-d s / d eta`` into obs[10]: the observed information from the family's kernel
    (a non-canonical link), or where that is not positive, and for a canonical link
    (where they agree), the working weights (the regular path's rule)."""
    w, info = obs[2], obs[10]
    if obsw != 0:
        call_observed(obsw, obs[0], y, wt, phi, obs[1], info)
        for i in range(info.shape[0]):
            if wt[i] != 0.0 and not (info[i] > 0.0 and np.isfinite(info[i])):
                info[:] = w
                return
        return
    info[:] = w


@njit(cache=True, nogil=True)
def modes(theta, phi, codes, z, y, wt, upd, obsw, base, u, obs, lev):
    """PIRLS for the modes ``u`` given theta, phi and the fixed part ``base``: Newton's
    steps level by level (Fisher scoring where the information is Fisher's).

    Returns (converged, pdev, iterations); at convergence eta, mu, w, r and the
    information obs[10] are at ``u``, ``lev[0]`` holds ``sum w z^2`` per level and
    ``lev[7]`` ``sum O z^2`` (O the information).
    """
    w, r, info = obs[2], obs[3], obs[10]
    wz2, sz, u_new, u_try, oz2 = lev[0], lev[1], lev[2], lev[3], lev[7]
    pdev = _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs)
    step = full_step = np.inf
    t2 = theta * theta
    for iteration in range(MAX_ITER):
        _observed(obsw, phi, y, wt, obs)
        wz2[:] = 0.0
        oz2[:] = 0.0
        sz[:] = 0.0
        for i in range(codes.shape[0]):
            g, zi = codes[i], z[i]
            wz2[g] += w[i] * zi * zi
            oz2[g] += info[i] * zi * zi
            sz[g] += zi * w[i] * r[i]
        for j in range(u.shape[0]):
            u_new[j] = u[j] + (theta * sz[j] - u[j]) / (1.0 + t2 * oz2[j])
        last = step
        step = _rel_change(u_new, u)
        # Newton's steps (a canonical link, or the observed information): quadratic
        if at_mode(step, last, full_step, True, STEP_TOL, FLOOR_TOL):
            return True, pdev, iteration + 1
        t = 1.0
        accepted = False
        pdev_t = pdev
        for _ in range(MAX_HALVINGS):
            for j in range(u.shape[0]):
                u_try[j] = u[j] + t * (u_new[j] - u[j])
            pdev_t = _pdev(theta, phi, u_try, codes, z, base, y, wt, upd, obs)
            if pdev_t <= pdev + 1e-10 * (1.0 + abs(pdev)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return False, pdev, iteration + 1
        u[:] = u_try
        pdev = pdev_t
        full_step = step if t == 1.0 else np.inf
    return False, pdev, MAX_ITER


@njit(cache=True, nogil=True)
def _cholesky(A, L):
    """Lower Cholesky factor of a small matrix into ``L``; False if not positive definite."""
    k = A.shape[0]
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not (s > 0.0) or not np.isfinite(s):
            return False
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, k):
            t = A[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / L[j, j]
        for i in range(j):
            L[i, j] = 0.0
    return True


@njit(cache=True, nogil=True)
def _chol_solve(L, b, out):
    k = L.shape[0]
    for i in range(k):
        s = b[i]
        for m in range(i):
            s -= L[i, m] * out[m]
        out[i] = s / L[i, i]
    for i in range(k - 1, -1, -1):
        s = out[i]
        for m in range(i + 1, k):
            s -= L[m, i] * out[m]
        out[i] = s / L[i, i]


@njit(cache=True, nogil=True)
def modes_and_beta(theta, X, codes, z, y, wt, offset, upd, u, beta, obs, lev, cx, S, L):
    """PIRLS for ``(u, beta)`` jointly given theta (``nAGQ = 0``).

    Returns (converged, pdev, iterations); at convergence ``lev[0]`` holds
    ``sum w z^2`` per level, ``cx`` the levels' ``sum w z x``, ``S`` the Schur
    complement ``X' W X - sum theta^2 cx cx' / A`` and ``L`` its Cholesky factor,
    all at the weights of the mode.
    """
    n, p = X.shape
    G = u.shape[0]
    eta, w, r, base = obs[0], obs[2], obs[3], obs[5]
    wz2, rz, u_new, u_try = lev[0], lev[1], lev[2], lev[3]
    b_new, b_try, rhs, xwz = np.empty(p), np.empty(p), np.empty(p), np.empty(p)
    _fixed_part(X, beta, offset, base)
    pdev = _pdev(theta, 1.0, u, codes, z, base, y, wt, upd, obs)
    step = full_step = np.inf
    t2 = theta * theta
    for iteration in range(MAX_ITER):
        wz2[:] = 0.0
        rz[:] = 0.0
        cx[:, :] = 0.0
        S[:, :] = 0.0
        xwz[:] = 0.0
        for i in range(n):
            g, zi = codes[i], z[i]
            wi = w[i]
            work = eta[i] - offset[i] + r[i]        # the working response
            wz = wi * zi
            wz2[g] += wz * zi
            rz[g] += wz * work
            for a in range(p):
                xa = X[i, a]
                cx[g, a] += wz * xa
                xwz[a] += wi * xa * work
                for c in range(a + 1):
                    S[a, c] += wi * xa * X[i, c]
        for a in range(p):
            rhs[a] = xwz[a]
        for j in range(G):
            f = t2 / (1.0 + t2 * wz2[j])
            for a in range(p):
                rhs[a] -= f * cx[j, a] * rz[j]
                for c in range(a + 1):
                    S[a, c] -= f * cx[j, a] * cx[j, c]
        for a in range(p):
            for c in range(a):
                S[c, a] = S[a, c]
        if not _cholesky(S, L):
            return False, pdev, iteration + 1
        _chol_solve(L, rhs, b_new)
        for j in range(G):
            s = rz[j]
            for a in range(p):
                s -= cx[j, a] * b_new[a]
            u_new[j] = theta * s / (1.0 + t2 * wz2[j])
        last = step
        step = max(_rel_change(u_new, u), _rel_change(b_new, beta))
        # nAGQ=0 takes canonical links only: Fisher scoring is Newton's method
        if at_mode(step, last, full_step, True, STEP_TOL, FLOOR_TOL):
            return True, pdev, iteration + 1
        t = 1.0
        accepted = False
        pdev_t = pdev
        for _ in range(MAX_HALVINGS):
            for j in range(G):
                u_try[j] = u[j] + t * (u_new[j] - u[j])
            for a in range(p):
                b_try[a] = beta[a] + t * (b_new[a] - beta[a])
            _fixed_part(X, b_try, offset, base)
            pdev_t = _pdev(theta, 1.0, u_try, codes, z, base, y, wt, upd, obs)
            if pdev_t <= pdev + 1e-10 * (1.0 + abs(pdev)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return False, pdev, iteration + 1
        u[:] = u_try
        beta[:] = b_try
        pdev = pdev_t
        full_step = step if t == 1.0 else np.inf
    return False, pdev, MAX_ITER


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


@njit(cache=True, nogil=True)
def _evaluate(theta, x, joint, P, u, beta, W):
    """The objective ``pdev + sum log A`` at theta (and beta = x[1:1+p], log phi =
    x[1+p] if joint; with phi the deviance is complete, its "constants" depend on
    phi): PIRLS from ``u`` (again from 0 if that fails); inf where it fails from both."""
    X, codes, z, y, wt, offset, upd, _, obsw, logpdf, has_phi = P
    obs, lev, cx, S, L, counts = W
    p = X.shape[1]
    phi = np.exp(x[1 + p]) if has_phi else 1.0
    saved_b = beta.copy()
    for _ in range(2):
        if joint:
            for a in range(p):
                beta[a] = x[1 + a]
            _fixed_part(X, beta, offset, obs[5])
            ok, pdev, its = modes(theta, phi, codes, z, y, wt, upd, obsw, obs[5], u, obs,
                                  lev)
        else:
            ok, pdev, its = modes_and_beta(theta, X, codes, z, y, wt, offset, upd, u, beta,
                                           obs, lev, cx, S, L)
        counts[1] += its
        if ok and np.isfinite(pdev):
            if has_phi:
                pdev = -2.0 * call_yms(logpdf, y, obs[1], wt, phi, obs[13])
                for j in range(u.shape[0]):
                    pdev += u[j] * u[j]
            return pdev + _logdet(theta, lev[0])
        u[:] = 0.0
        beta[:] = saved_b
    return np.inf


@njit(cache=True, nogil=True)
def _gradient(theta, x, joint, P, u, W, grad):
    X, codes, z, y, wt, _, upd, slope, _, logpdf, has_phi = P
    obs, lev, cx, _, L, _ = W
    if joint:
        phi = np.exp(x[1 + X.shape[1]]) if has_phi else 1.0
        _laplace_gradient(theta, phi, has_phi, X, codes, z, y, wt, upd, slope, logpdf, u,
                          obs, lev, grad)
    else:
        grad[0] = _nagq0_gradient(theta, X, codes, z, y, wt, upd, slope, u, obs, lev, cx, L)


@njit(cache=True, nogil=True)
def _objective(x, joint, P, u, beta, W, grad):
    """Objective and gradient at ``x`` ((theta, beta) if ``joint``, else (theta,)).

    The modes start from ``u`` (and ``beta`` for ``nAGQ = 0``) and are left at
    ``x``'s, as is the workspace; inf if PIRLS fails.  Below GRADIENT_MIN_THETA
    theta's derivative is taken at FD_STEP (as the regular path does: the
    objective is even in theta, its derivative at 0 is 0).
    """
    theta = x[0]
    W[5][0] += 1
    value = _evaluate(theta, x, joint, P, u, beta, W)
    if not np.isfinite(value):
        return np.inf
    _gradient(theta, x, joint, P, u, W, grad)
    if theta < GRADIENT_MIN_THETA:
        u2, b2 = u.copy(), beta.copy()
        raised = x.copy()
        raised[0] = FD_STEP
        g2 = np.empty_like(grad)
        if not np.isfinite(_evaluate(FD_STEP, raised, joint, P, u2, b2, W)):
            return np.inf
        _gradient(FD_STEP, raised, joint, P, u2, W, g2)
        grad[0] = g2[0]
        _evaluate(theta, x, joint, P, u, beta, W)    # the workspace back at x's mode
    return value


@njit(cache=True, nogil=True)
def _slopes(theta, P, u, W, dU):
    """Derivatives of the modes in (theta, beta) at the mode in the workspace (the
    mode equations ``u_j = theta sum_j z s``, differentiated): they predict the
    modes at a nearby point, so that PIRLS starts a step's square away (log phi's
    column stays 0)."""
    X, codes, z = P[0], P[1], P[2]
    obs, lev = W[0], W[1]
    w, r, info = obs[2], obs[3], obs[10]
    n, p = X.shape
    dU[:, :] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        dU[g, 0] += zi * w[i] * r[i]
        for c in range(p):
            dU[g, 1 + c] += info[i] * zi * X[i, c]
    t2 = theta * theta
    for j in range(u.shape[0]):
        A = 1.0 + t2 * lev[7][j]
        dU[j, 0] = (dU[j, 0] - theta * lev[7][j] * u[j]) / A
        for c in range(p):
            dU[j, 1 + c] = -theta * dU[j, 1 + c] / A


@njit(cache=True, nogil=True)
def _predict(u0, dU, step, u):
    for j in range(u.shape[0]):
        s = u0[j]
        for c in range(step.shape[0]):
            s += dU[j, c] * step[c]
        u[j] = s


@njit(cache=True, nogil=True)
def _hessian(x, g, joint, P, u, beta, W, dU, H):
    """Forward differences of the gradient (the regular path's steps); False if a
    step fails.  ``u`` and ``beta`` are left at ``x``'s, the rest of the workspace
    is not."""
    k = x.shape[0]
    g2 = np.empty(k)
    u0, b0 = u.copy(), beta.copy()
    step = np.zeros(k)
    for c in range(k):
        h = HESSIAN_STEP * max(abs(x[c]), 1.0)
        if c == 0 and x[0] < FD_STEP:
            h = FD_STEP * max(abs(x[0]), 1.0)
        xs = x.copy()
        xs[c] += h
        step[:] = 0.0
        step[c] = h
        _predict(u0, dU, step, u)
        beta[:] = b0
        if not np.isfinite(_objective(xs, joint, P, u, beta, W, g2)):
            return False
        for a in range(k):
            H[a, c] = (g2[a] - g[a]) / h
    for a in range(k):
        for c in range(a):
            m = 0.5 * (H[a, c] + H[c, a])
            H[a, c] = m
            H[c, a] = m
    u[:] = u0
    beta[:] = b0
    return True


@njit(cache=True, nogil=True)
def _newton_step(x, g, H, d):
    """The Newton direction on the free parameters (theta on 0 with the objective
    rising is not free), the Hessian shifted until positive definite.
    Returns the decrement ``-g'd`` (NaN if no shift helps)."""
    k = x.shape[0]
    free = np.ones(k, dtype=np.bool_)
    if x[0] <= 0.0 and g[0] > 0.0:
        free[0] = False
    idx = np.flatnonzero(free)
    m = idx.shape[0]
    d[:] = 0.0
    if m == 0:
        return 0.0
    Hf = np.empty((m, m))
    gf = np.empty(m)
    for a in range(m):
        gf[a] = g[idx[a]]
        for c in range(m):
            Hf[a, c] = H[idx[a], idx[c]]
    L = np.zeros((m, m))
    scale = 0.0
    for a in range(m):
        scale = max(scale, abs(Hf[a, a]))
    shift = 0.0
    for _ in range(60):
        A = Hf.copy()
        for a in range(m):
            A[a, a] += shift
        if _cholesky(A, L):
            break
        shift = max(2.0 * shift, 1e-8 * max(scale, 1.0))
    else:
        return np.nan
    df = np.empty(m)
    _chol_solve(L, gf, df)
    dec = 0.0
    for a in range(m):
        d[idx[a]] = -df[a]
        dec += gf[a] * df[a]
    return dec


@njit(cache=True, nogil=True)
def minimize(x, joint, P, u, beta, W, grad, H):
    """Newton's method from ``x`` (module doc).  ``grad`` and ``H`` end at the
    returned point, ``u`` and ``beta`` at its modes.  Returns (status, value)."""
    k = x.shape[0]
    dU = np.zeros((u.shape[0], k))
    f = _objective(x, joint, P, u, beta, W, grad)
    if not np.isfinite(f):
        return PIRLS_FAILED, f
    d = np.empty(k)
    g_t = np.empty(k)
    for _ in range(MAX_NEWTON):
        if joint:
            _slopes(x[0], P, u, W, dU)
        if not _hessian(x, grad, joint, P, u, beta, W, dU, H):
            return NOT_FINITE, f
        dec = _newton_step(x, grad, H, d)
        if not np.isfinite(dec):
            return NOT_FINITE, f
        if dec <= NEWTON_TOL * (1.0 + abs(f)):
            return OK, f
        u0, b0 = u.copy(), beta.copy()
        t = 1.0
        moved = False
        for _ in range(40):
            x_t = x + t * d
            if x_t[0] < GRADIENT_MIN_THETA:
                x_t[0] = 0.0    # on the bound: the objective is even in theta there
            _predict(u0, dU, x_t - x, u)
            beta[:] = b0
            f_t = _objective(x_t, joint, P, u, beta, W, g_t)
            if np.isfinite(f_t) and f_t <= f - 1e-4 * t * dec:
                moved = True
                break
            t *= 0.5
        if not moved:
            # no gain left within round-off: x is the optimum if Newton's decrement
            # says so
            u[:] = u0
            beta[:] = b0
            return (OK if dec <= ROUNDOFF_TOL * (1.0 + abs(f)) else NOT_CONVERGED), f
        x[:] = x_t
        grad[:] = g_t
        f = f_t
    return NOT_CONVERGED, f


@njit(cache=True, nogil=True)
def glm_beta(X, y, wt, offset, upd, eta0, obs, lev, cx, S, L):
    """Fixed effects of the GLM without random effects: one weighted least-squares
    step from ``eta0`` (the family's start), then PIRLS at theta = 0."""
    n, p = X.shape
    eta, mu, w, r, dev = obs[0], obs[1], obs[2], obs[3], obs[4]
    eta[:] = eta0
    call_update(upd, eta, y, wt, 1.0, mu, w, r, dev)
    XtWX = np.zeros((p, p))
    rhs = np.zeros(p)
    for i in range(n):
        work = eta[i] - offset[i] + r[i]
        for a in range(p):
            rhs[a] += w[i] * X[i, a] * work
            for c in range(p):
                XtWX[a, c] += w[i] * X[i, a] * X[i, c]
    beta = np.zeros(p)
    if _cholesky(XtWX, L):
        _chol_solve(L, rhs, beta)
    return beta


@njit(cache=True, nogil=True)
def moment_start(theta_lm, codes, G, z, obs, lev):
    """A start for theta from IRLS's working residuals at the GLM (unit scale): the
    spread of the levels' weighted slopes of ``r`` on ``z`` beyond their sampling
    variance (:func:`glmmcore.fitting.start.moment_theta`'s idea, for one scalar term)."""
    w, r = obs[2], obs[3]
    sw, swr = lev[0], lev[1]
    sw[:] = 0.0
    swr[:] = 0.0
    for i in range(codes.shape[0]):
        g, zi = codes[i], z[i]
        sw[g] += w[i] * zi * zi
        swr[g] += w[i] * zi * r[i]
    m = 0
    mean = 0.0
    for j in range(G):
        if sw[j] > 0.0:
            mean += swr[j] / sw[j]
            m += 1
    if m < 2:
        return theta_lm
    mean /= m
    spread, sampling = 0.0, 0.0
    for j in range(G):
        if sw[j] > 0.0:
            b = swr[j] / sw[j]
            spread += (b - mean) * (b - mean)
            sampling += 1.0 / sw[j]
    var = spread / (m - 1) - sampling / m
    return max(np.sqrt(max(var, 0.0)), SMALLEST_START)


@njit(cache=True, nogil=True)
def fit_one(X, codes, G, z, y, wt, offset, eta0, phi0, kern, nagq, out_x, out_u, out_beta,
            out_grad, out_hess, out_cov, out_info):
    """One whole fit; results into the ``out_*`` arrays.

    ``kern`` = (update, weight slope rule, logpdf, observed-information kernel or 0,
    has phi); ``phi0`` the family parameter's start (unused without one).
    ``out_info`` = (status, complete deviance, evaluations, PIRLS iterations).
    ``out_x`` is (theta, beta[, log phi]) for nAGQ=1, (theta,) for nAGQ=0,
    ``out_grad`` and ``out_hess`` its derivatives; ``out_cov`` beta's covariance
    given theta.
    """
    upd, slope, logpdf, obsw, has_phi = kern
    n, p = X.shape
    obs, lev = _workspace(n, G)
    cx = np.zeros((G, p))
    S = np.zeros((p, p))
    L = np.zeros((p, p))
    counts = np.zeros(2, dtype=np.int64)
    P = (X, codes, z, y, wt, offset, upd, slope, obsw, logpdf, has_phi)
    W = (obs, lev, cx, S, L, counts)
    beta = glm_beta(X, y, wt, offset, upd, eta0, obs, lev, cx, S, L)
    u = np.zeros(G)
    ok, _, its = modes_and_beta(0.0, X, codes, z, y, wt, offset, upd, u, beta, obs, lev, cx,
                                S, L)
    counts[1] += its
    if not ok:
        out_info[0] = PIRLS_FAILED
        return
    theta0 = moment_start(1.0, codes, G, z, obs, lev)
    joint = nagq >= 1
    k = 1 + p + int(has_phi) if joint else 1
    x = np.empty(k)
    x[0] = theta0
    if joint:
        x[1:1 + p] = beta
        if has_phi:
            x[1 + p] = np.log(phi0)
    grad = np.empty(k)
    H = np.empty((k, k))
    u[:] = 0.0
    status, _ = minimize(x, joint, P, u, beta, W, grad, H)
    out_info[0] = status
    out_info[2] = counts[0]
    out_info[3] = counts[1]
    if status != OK:
        return
    theta = x[0]
    # the Hessian's last step left the workspace off x: back to x's mode
    if not np.isfinite(_evaluate(theta, x, joint, P, u, beta, W)):
        out_info[0] = PIRLS_FAILED
        return
    phi = np.exp(x[1 + p]) if has_phi and joint else 1.0
    loglik = call_yms(logpdf, y, obs[1], wt, phi, obs[6])
    uu = 0.0
    for j in range(G):
        uu += u[j] * u[j]
    out_info[1] = -2.0 * loglik + uu + _logdet(theta, lev[0])
    out_x[:k] = x
    out_u[:] = u
    out_beta[:] = beta
    out_grad[:k] = grad
    out_hess[:k, :k] = H
    _given_theta_cov(theta, X, codes, z, obs[2], out_cov)


@njit(cache=True, nogil=True)
def glm_means(X, codes, G, z, Y, wt, offset, eta0, upd, out_mu):
    """The fitted means of the GLM without random effects (phi = 1) of each column of
    ``Y``: a family parameter's start (the family's ``start_phi``) is taken from them."""
    n, p = X.shape
    obs, lev = _workspace(n, G)
    cx = np.zeros((G, p))
    S = np.zeros((p, p))
    L = np.zeros((p, p))
    u = np.zeros(G)
    for j in range(Y.shape[1]):
        y = np.ascontiguousarray(Y[:, j])
        beta = glm_beta(X, y, wt, offset, upd, np.ascontiguousarray(eta0[:, j]), obs, lev,
                        cx, S, L)
        u[:] = 0.0
        modes_and_beta(0.0, X, codes, z, y, wt, offset, upd, u, beta, obs, lev, cx, S, L)
        out_mu[:, j] = obs[1]


@njit(cache=True, nogil=True)
def _given_theta_cov(theta, X, codes, z, w, out):
    """beta's covariance given theta at weights ``w``: the inverse of the Schur
    complement ``X'WX - sum_j theta^2 c_j c_j' / A_j`` (the regular path's
    :func:`glmmcore.objectives.glmm.rx_vcov`); NaN if it is singular."""
    n, p = X.shape
    G = 0
    for i in range(n):
        G = max(G, codes[i] + 1)
    wz2 = np.zeros(G)
    cx = np.zeros((G, p))
    S = np.zeros((p, p))
    for i in range(n):
        g, wz = codes[i], w[i] * z[i]
        wz2[g] += wz * z[i]
        for a in range(p):
            cx[g, a] += wz * X[i, a]
            for c in range(a + 1):
                S[a, c] += w[i] * X[i, a] * X[i, c]
    t2 = theta * theta
    for j in range(G):
        f = t2 / (1.0 + t2 * wz2[j])
        for a in range(p):
            for c in range(a + 1):
                S[a, c] -= f * cx[j, a] * cx[j, c]
    for a in range(p):
        for c in range(a):
            S[c, a] = S[a, c]
    L = np.zeros((p, p))
    if not _cholesky(S, L):
        out[:, :] = np.nan
        return
    e = np.zeros(p)
    col = np.empty(p)
    for c in range(p):
        e[:] = 0.0
        e[c] = 1.0
        _chol_solve(L, e, col)
        for a in range(p):
            out[a, c] = col[a]


@njit(cache=True, nogil=True)
def fit_columns(X, codes, G, z, Y, wt, offset, eta0, phi0, kern, nagq, out_x, out_u,
                out_beta, out_grad, out_hess, out_cov, out_info):
    """:func:`fit_one` for each column of ``Y`` (and of ``eta0``), row j of each output."""
    for j in range(Y.shape[1]):
        fit_one(X, codes, G, z, np.ascontiguousarray(Y[:, j]), wt, offset,
                np.ascontiguousarray(eta0[:, j]), phi0[j], kern, nagq, out_x[j], out_u[j],
                out_beta[j], out_grad[j], out_hess[j], out_cov[j], out_info[j])
