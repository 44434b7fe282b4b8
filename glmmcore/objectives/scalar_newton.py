"""The fast path's optimizer (:mod:`.scalar_glmm`): Newton's method on (theta,
beta[, log phi]) (or theta for ``nAGQ = 0``), the Hessian from forward differences
of the analytic gradient (not taken again after a last step too short to change
it: REUSE_TOL), a backtracking line search, ``theta >= 0``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..fitting.checks import FD_STEP, HESSIAN_STEP
from ..linalg.small import small_cholesky, small_cholesky_solve
from .family_kernels import call_yms
from .laplace_gradient import GRADIENT_MIN_THETA
from .pirls_kernel import _fixed_part
from .scalar_gradient import PHI_STEP, _laplace_gradient, _logdet, _nagq0_gradient
from .scalar_pirls import (
    _workspace,
    fill_columns,
    level_sums,
    modes,
    modes_and_beta,
    observed_information,
)

OK, PIRLS_FAILED, NOT_CONVERGED, NOT_FINITE = 0, 1, 2, 3

# Newton stops when the decrement g' H^-1 g (twice the predicted gain in deviance) is
# below NEWTON_TOL (1 + |f|): the log-likelihood is then within ~1e-13 relative of the
# optimum's; or below ROUNDOFF_TOL (1 + |f|) when the line search cannot gain any more.
NEWTON_TOL = 1e-13
ROUNDOFF_TOL = 1e-9
MAX_NEWTON = 50
# A step from a point whose decrement is below REUSE_TOL (1 + |f|) moves x by at most
# about sqrt(decrement / curvature): the point it reaches is judged (NEWTON_TOL, on its
# own gradient) with the Hessian taken before the step, whose columns cost an evaluation
# each.  At 1e-11 that Hessian's standard errors are within 1e-5 relative of a new one's
# (NB on patents: 9e-6; at 1e-8 the Poisson patents fit's moved by 4e-4).
REUSE_TOL = 1e-11


@njit(cache=True, nogil=True)
def workspace(n, G, p):
    """The optimizer's workspace W: per-observation and per-level buffers, the levels'
    ``sum w z x``, two p x p matrices, the counts (evaluations, PIRLS iterations), the
    cache of :func:`_complete_deviance` (phi, its term) and that of :func:`columns`."""
    obs, lev = _workspace(n, G)
    return (obs, lev, np.zeros((G, p)), np.zeros((p, p)), np.zeros((p, p)),
            np.zeros(2, dtype=np.int64), np.full(2, np.nan),
            (np.empty((p, n)), np.zeros((G, p)), np.zeros(p, dtype=np.bool_),
             np.zeros(1, dtype=np.bool_)))


@njit(cache=True, nogil=True)
def columns(P, W):
    """:func:`~.scalar_pirls.modes_and_beta`'s ``cols`` for the design in ``P``
    (:func:`~.scalar_pirls.design_columns`), made on first use and kept in ``W``."""
    XT, xl, by_level, made = W[7]
    if not made[0]:
        fill_columns(P[0], P[1], P[2], (XT, xl, by_level))
        made[0] = True
    return XT, xl, by_level


@njit(cache=True, nogil=True)
def _complete_deviance(pdev, phi, P, u, W):
    """``-2 log p(y | u) + |u|^2`` at the mode in the workspace, ``pdev`` its penalized
    deviance from PIRLS.  ``-2 logpdf - dev_resid`` is free of mu (the kernel contract,
    docs/family-plugins.md), so their sums differ by a function of phi alone, kept in
    ``W[6]`` for the last phi (the Hessian's columns in theta and beta keep phi): the
    negative binomial's, the Gamma's and the Beta's lgamma terms once per phi, not once
    per evaluation, and once per distinct (y, wt) where the response has few
    (:func:`phi_term`), else from logpdf at the mode."""
    y, wt, logpdf = P[3], P[4], P[9]
    obs, cache = W[0], W[6]
    if cache[0] == phi:
        return pdev + cache[1]
    if P[17].shape[0] > 0:
        cache[0] = phi
        cache[1] = phi_term(phi, P, obs[1])
        return pdev + cache[1]
    total = -2.0 * call_yms(logpdf, y, obs[1], wt, phi, obs[13])
    for j in range(u.shape[0]):
        total += u[j] * u[j]
    cache[0] = phi
    cache[1] = total - pdev
    return total


@njit(cache=True, nogil=True)
def phi_term(phi, P, mu):
    """``sum -2 logpdf - dev_resid`` (free of mu) over the distinct (y, wt) pairs
    ``P[17]`` (a row of each) times their multiplicities ``P[18]``, at that row's mean
    in ``mu``: the family's lgamma terms at a few values instead of every row."""
    logpdf, devres, mult = P[9], P[16], P[18]
    buf = distinct_values(P, P[17], mu, 2)
    yd, wd, md, lp, dr = buf[0], buf[1], buf[2], buf[3], buf[4]
    call_yms(logpdf, yd, md, wd, phi, lp)
    call_yms(devres, yd, md, wd, phi, dr)
    total = 0.0
    for k in range(mult.shape[0]):
        total += mult[k] * (-2.0 * lp[k] - dr[k])
    return total


@njit(cache=True, nogil=True)
def distinct_values(P, reps, mu, outputs):
    """Rows y, wt and mu at the rows ``reps`` (a row of each distinct (y, wt) pair), then
    ``outputs`` rows for the kernels' values there."""
    y, wt = P[3], P[4]
    K = reps.shape[0]
    buf = np.empty((3 + outputs, K))
    for k in range(K):
        i = reps[k]
        buf[0, k] = y[i]
        buf[1, k] = wt[i]
        buf[2, k] = mu[i]
    return buf


@njit(cache=True, nogil=True)
def _evaluate(theta, x, joint, P, u, beta, W, value=True):
    """The objective ``pdev + sum log A`` at theta (and beta = x[1:1+p], log phi =
    x[1+p] if joint; with phi the deviance is complete, its "constants" depend on
    phi): PIRLS from ``u`` (again from 0 if that fails); inf where it fails from both,
    and where the Laplace approximation is at the observed information
    (``laplace = "observed"``) and that is not positive at the mode.  Without
    ``value`` (the gradient alone is wanted) 0 where PIRLS converges, which then skips
    the deviance where it can (the newton_terms kernel ``P[20]``: :func:`modes`)."""
    X, codes, z, y, wt, offset, upd, obsw, has_phi = (P[0], P[1], P[2], P[3], P[4], P[5],
                                                     P[6], P[8], P[10])
    obs, lev, cx, S, L, counts = W[0], W[1], W[2], W[3], W[4], W[5]
    p = X.shape[1]
    phi = np.exp(x[1 + p]) if has_phi else 1.0
    saved_b = beta.copy()
    for _ in range(2):
        observed = False
        if joint:
            for a in range(p):
                beta[a] = x[1 + a]
            _fixed_part(X, beta, offset, obs[5])
            ok, pdev, its, observed = modes(theta, phi, codes, z, y, wt, upd, obsw, P[15],
                                            obs[5], u, obs, lev, 0 if value else P[20])
        else:
            ok, pdev, its = modes_and_beta(theta, X, codes, z, y, wt, offset, upd, u, beta,
                                           obs, lev, cx, S, L, columns(P, W))
        counts[1] += its
        if ok and (np.isfinite(pdev) or not value):
            if P[14] and not observed and not observed_information(
                    obsw, theta, phi, codes, z, y, wt, obs, lev):
                return np.inf
            if not value:
                return 0.0
            if has_phi:
                pdev = _complete_deviance(pdev, phi, P, u, W)
            return pdev + _logdet(theta, logdet_weights(P, lev))
        u[:] = 0.0
        beta[:] = saved_b
    return np.inf


@njit(cache=True, nogil=True)
def logdet_weights(P, lev):
    """The levels' ``sum W z^2`` of the log-determinant at the mode: the observed
    information's (``laplace = "observed"``), else Fisher's."""
    return lev[7] if P[14] else lev[0]


@njit(cache=True, nogil=True)
def _gradient(theta, x, joint, P, u, W, grad, want_phi):
    X, codes, z, y, wt, upd, dvar, has_phi = P[0], P[1], P[2], P[3], P[4], P[6], P[7], P[10]
    obs, lev, cx, L = W[0], W[1], W[2], W[4]
    if joint:
        phi = np.exp(x[1 + X.shape[1]]) if has_phi else 1.0
        _laplace_gradient(theta, phi, X, codes, z, y, wt, P, u, obs, lev, grad, want_phi)
    else:
        grad[0] = _nagq0_gradient(theta, columns(P, W), codes, z, y, wt, upd, dvar, u, obs,
                                  lev, cx, L)


@njit(cache=True, nogil=True)
def _objective(x, joint, P, u, beta, W, grad, want_phi=True, value=True):
    """Objective and gradient at ``x`` ((theta, beta) if ``joint``, else (theta,));
    the gradient's log phi entry NaN unless ``want_phi`` (it costs the most); without
    ``value`` the gradient alone (the objective 0, or inf: :func:`_evaluate`).

    The modes start from ``u`` (and ``beta`` for ``nAGQ = 0``) and are left at
    ``x``'s, as is the workspace; inf if PIRLS fails.  Below GRADIENT_MIN_THETA
    theta's derivative is taken at FD_STEP (as the regular path does: the
    objective is even in theta, its derivative at 0 is 0).
    """
    theta = x[0]
    W[5][0] += 1
    f = _evaluate(theta, x, joint, P, u, beta, W, value)
    if not np.isfinite(f):
        return np.inf
    _gradient(theta, x, joint, P, u, W, grad, want_phi)
    if theta < GRADIENT_MIN_THETA:
        u2, b2 = u.copy(), beta.copy()
        raised = x.copy()
        raised[0] = FD_STEP
        g2 = np.empty_like(grad)
        if not np.isfinite(_evaluate(FD_STEP, raised, joint, P, u2, b2, W, False)):
            return np.inf
        _gradient(FD_STEP, raised, joint, P, u2, W, g2, False)
        grad[0] = g2[0]
        _evaluate(theta, x, joint, P, u, beta, W, False)    # the workspace back at x's mode
    return f


@njit(cache=True, nogil=True)
def _slopes(theta, P, u, W, dU):
    """Derivatives of the modes in (theta, beta[, log phi]) at the mode in the workspace
    (the mode equations ``u_j = theta sum_j z s``, differentiated): they predict the
    modes at a nearby point, so that PIRLS starts a step's square away.  The score's
    slope in log phi is the central difference the gradient's log phi entry left in
    obs[18] (at x: minimize's points take that entry)."""
    X, codes, z = P[0], P[1], P[2]
    obs, lev = W[0], W[1]
    w, r, info = obs[2], obs[3], obs[10]
    n, p = X.shape
    with_phi = dU.shape[1] == 2 + p
    scale = 0.5 / PHI_STEP
    dU[:, :] = 0.0
    for i in range(n):
        g, zi = codes[i], z[i]
        dU[g, 0] += zi * w[i] * r[i]
        for c in range(p):
            dU[g, 1 + c] += info[i] * zi * X[i, c]
        if with_phi:
            dU[g, 1 + p] += zi * obs[18][i] * scale
    t2 = theta * theta
    for j in range(u.shape[0]):
        A = 1.0 + t2 * lev[7][j]
        dU[j, 0] = (dU[j, 0] - theta * lev[7][j] * u[j]) / A
        for c in range(p):
            dU[j, 1 + c] = -theta * dU[j, 1 + c] / A
        if with_phi:
            dU[j, 1 + p] = theta * dU[j, 1 + p] / A


@njit(cache=True, nogil=True)
def _profiled_slopes(theta, P, u, W, dU, dB):
    """Derivatives in theta of ``nAGQ = 0``'s PIRLS solution ``(u, beta)`` at the mode in
    the workspace, into ``dU[:, 0]`` and ``dB[:, 0]``: the mode equations
    ``u_j = theta sum_j z s`` and ``X's = 0`` (``s = w r``, canonical link),
    differentiated, are the PIRLS system at the mode with the right side
    ``(sum_j z s - theta sum_j w z^2 u_j, -sum_j cx_j u_j)``; its Schur complement's
    factor is PIRLS's last (``W[4]``).  One pass for the levels' ``sum z s``."""
    X, codes, z = P[0], P[1], P[2]
    obs, lev, cx, L = W[0], W[1], W[2], W[4]
    w, r, score = obs[2], obs[3], obs[11]
    wz2, zs = lev[0], lev[5]
    p = X.shape[1]
    G = u.shape[0]
    for i in range(codes.shape[0]):
        score[i] = w[i] * r[i]
    level_sums(codes, z, score, zs)
    t2 = theta * theta
    rhs = np.zeros(p)
    for j in range(G):
        A = 1.0 + t2 * wz2[j]
        b = zs[j] - theta * wz2[j] * u[j]
        for a in range(p):
            rhs[a] -= cx[j, a] * (u[j] + theta * b / A)
    db = np.empty(p)
    small_cholesky_solve(L, rhs, db)
    for a in range(p):
        dB[a, 0] = db[a]
    for j in range(G):
        s = zs[j] - theta * wz2[j] * u[j]
        for a in range(p):
            s -= theta * cx[j, a] * db[a]
        dU[j, 0] = s / (1.0 + t2 * wz2[j])


@njit(cache=True, nogil=True)
def _predict(u0, dU, step, u, cU):
    """``u0 + dU step + cU step[0]^2``: the modes' Taylor polynomial (``cU`` half their
    second derivative in theta, or 0)."""
    t2 = step[0] * step[0]
    for j in range(u.shape[0]):
        s = u0[j]
        for c in range(step.shape[0]):
            s += dU[j, c] * step[c]
        u[j] = s + cU[j] * t2


@njit(cache=True, nogil=True)
def _curvature(theta, u, dU, theta_prev, u_prev, cU):
    """Half the second derivative in theta of the modes ``u`` (slopes ``dU[:, 0]``)
    from their values at the last point ``theta_prev``: the quadratic through both
    with the slope at theta.  Where Newton's steps shrink, the next step's prediction
    then errs by its square times the last step, not by its square (nAGQ=0 on
    batch_speed's features: PIRLS iterations 24.9 -> 21.8 a fit)."""
    h = theta_prev - theta
    if h == 0.0:
        cU[:] = 0.0
        return
    for j in range(u.shape[0]):
        cU[j] = (u_prev[j] - u[j] - h * dU[j, 0]) / (h * h)


@njit(cache=True, nogil=True)
def _predict_beta(joint, b0, dB, step, beta, cB):
    """beta's start at ``x + step``: ``x``'s for Laplace (beta is part of x there), else
    predicted from its slopes in theta (``nAGQ = 0``: PIRLS solves for it)."""
    if joint:
        beta[:] = b0
    else:
        _predict(b0, dB, step, beta, cB)


@njit(cache=True, nogil=True)
def _hessian(x, g, joint, P, u, beta, W, dU, dB, cU, cB, H):
    """Forward differences of the gradient (the regular path's steps), PIRLS starting
    from the modes predicted by ``dU`` (and for ``nAGQ = 0`` beta by ``dB``); False if a
    step fails.  ``u`` and ``beta`` are left at ``x``'s, the rest of the workspace
    is not.  With a family parameter, its row is its column's (the gradient's log phi
    entry is the dearest: only the column that moves phi takes it)."""
    k = x.shape[0]
    last = k - 1 if joint and P[10] else k
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
        _predict(u0, dU, step, u, cU)
        _predict_beta(joint, b0, dB, step, beta, cB)
        if not np.isfinite(_objective(xs, joint, P, u, beta, W, g2, c >= last, False)):
            return False
        for a in range(k):
            H[a, c] = (g2[a] - g[a]) / h
    if last < k:
        for c in range(last):
            H[last, c] = H[c, last]
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
        if small_cholesky(A, L):
            break
        shift = max(2.0 * shift, 1e-8 * max(scale, 1.0))
    else:
        return np.nan
    df = np.empty(m)
    small_cholesky_solve(L, gf, df)
    dec = 0.0
    for a in range(m):
        d[idx[a]] = -df[a]
        dec += gf[a] * df[a]
    return dec


@njit(cache=True, nogil=True)
def minimize(x, joint, P, u, beta, W, grad, H):
    """Newton's method from ``x`` (module doc).  ``grad`` ends at the returned point,
    ``H`` there or where the last (short: REUSE_TOL) step started, ``u`` and ``beta`` at
    its modes.  Returns (status, value, whether the rest of the workspace is at the
    mode too: the fit ended on a point of the line search, not after the Hessian's
    columns)."""
    k = x.shape[0]
    dU = np.zeros((u.shape[0], k))
    dB = np.zeros((beta.shape[0], k))
    # nAGQ=0: the modes' second-order terms in theta, from the last point's modes
    cU, cB = np.zeros(u.shape[0]), np.zeros(beta.shape[0])
    u_prev, b_prev = np.empty(u.shape[0]), np.empty(beta.shape[0])
    theta_prev = np.nan
    f = _objective(x, joint, P, u, beta, W, grad)
    if not np.isfinite(f):
        return PIRLS_FAILED, f, False
    d = np.empty(k)
    g_t = np.empty(k)
    for _ in range(MAX_NEWTON):
        if joint:
            _slopes(x[0], P, u, W, dU)
        else:
            _profiled_slopes(x[0], P, u, W, dU, dB)
            if np.isfinite(theta_prev):
                _curvature(x[0], u, dU, theta_prev, u_prev, cU)
                _curvature(x[0], beta, dB, theta_prev, b_prev, cB)
        if not _hessian(x, grad, joint, P, u, beta, W, dU, dB, cU, cB, H):
            return NOT_FINITE, f, False
        dec = _newton_step(x, grad, H, d)
        if not np.isfinite(dec):
            return NOT_FINITE, f, False
        if dec <= NEWTON_TOL * (1.0 + abs(f)):
            return OK, f, False
        u0, b0 = u.copy(), beta.copy()
        t = 1.0
        moved = False
        for _ in range(40):
            x_t = x + t * d
            if x_t[0] < GRADIENT_MIN_THETA:
                x_t[0] = 0.0    # on the bound: the objective is even in theta there
            _predict(u0, dU, x_t - x, u, cU)
            _predict_beta(joint, b0, dB, x_t - x, beta, cB)
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
            return (OK if dec <= ROUNDOFF_TOL * (1.0 + abs(f)) else NOT_CONVERGED), f, False
        last_dec, last_f = dec, f
        # onto the bound theta = 0 the Hessian's theta column takes another step (FD_STEP)
        # and the objective's shape in theta changes (even there): a new Hessian
        onto_bound = x_t[0] == 0.0 and x[0] != 0.0
        theta_prev = x[0]
        u_prev[:] = u0
        b_prev[:] = b0
        x[:] = x_t
        grad[:] = g_t
        f = f_t
        if last_dec <= REUSE_TOL * (1.0 + abs(last_f)) and not onto_bound:
            if _newton_step(x, grad, H, d) <= NEWTON_TOL * (1.0 + abs(f)):
                return OK, f, True
    return NOT_CONVERGED, f, False
