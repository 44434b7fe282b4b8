"""The profiled deviance of an LMM with one scalar random-effects term, in closed form.

For ``y ~ x + (1 | g)`` (one grouping factor, one column ``z``) the random
effects' system ``I + theta^2 Z' W Z`` is diagonal, ``A_j = 1 + theta^2 a_j``
with ``a_j = sum_{i in j} w_i z_i^2``, and eliminating the random effects level
by level leaves the fixed effects' system and the residual sum of squares
as sums over the levels:

    P(theta) = X'WX - sum_j theta^2 c_j c_j' / A_j     (c_j = sum_{i in j} w z x)
    q(theta) = X'Wt - sum_j theta^2 c_j d_j / A_j      (d_j = sum_{i in j} w z t)
    r2       = t'Wt - sum_j theta^2 d_j^2 / A_j - q' P^{-1} q

with ``t`` the response less the offset and the weighted least-squares fit
(as :class:`glmmcore.objectives.lmm.LmmDeviance` takes it, for round-off).  Then
``log|L|^2 = sum_j log A_j``, ``log|R_X|^2 = log det P`` and the ML and
REML criteria are those of :mod:`glmmcore.objectives.lmm`.  ``a``, ``c`` and ``X'WX``
do not depend on the response: a feature costs one pass over its
observations, then O(levels p^2) per evaluation, so the one-dimensional
optimization over theta (a grid, then Brent's method to round-off) costs
less than reading the data.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..fitting.checks import FD_STEP
from ..linalg.small import small_cholesky, small_cholesky_solve

LOG_2PI = float(np.log(2.0 * np.pi))
OK, NOT_CONVERGED, NOT_FINITE = 0, 2, 3
GRID = np.concatenate([[0.0], 2.0 ** np.arange(-7, 13)])    # theta values tried first
BRENT_TOL = 1e-11       # relative tolerance on theta (the deviance is flat to 1e-20 there)
BRENT_MAXITER = 200
GOLDEN = 0.3819660112501051


@njit(cache=True, nogil=True)
def model_sums(X, codes, G, z, w):
    """The response-free sums: ``a_j``, ``c_j`` (rows of a G x p array) and X'WX."""
    n, p = X.shape
    a = np.zeros(G)
    c = np.zeros((G, p))
    XtX = np.zeros((p, p))
    for i in range(n):
        g, wi = codes[i], w[i]
        wz = wi * z[i]
        a[g] += wz * z[i]
        for k in range(p):
            c[g, k] += wz * X[i, k]
            for m in range(p):
                XtX[k, m] += wi * X[i, k] * X[i, m]
    return a, c, XtX


@njit(cache=True, nogil=True)
def _response_sums(X, codes, G, z, w, t, beta_ls, d, Xt):
    """``d_j``, X'Wt and t'Wt of ``t`` less its least-squares fit (returned)."""
    n, p = X.shape
    d[:] = 0.0
    Xt[:] = 0.0
    tt = 0.0
    for i in range(n):
        r = t[i]
        for k in range(p):
            r -= X[i, k] * beta_ls[k]
        wr = w[i] * r
        d[codes[i]] += wr * z[i]
        for k in range(p):
            Xt[k] += wr * X[i, k]
        tt += wr * r
    return tt


@njit(cache=True, nogil=True)
def _criterion(theta, a, c, XtX, d, Xt, tt, n, reml, ldW, P, L, q, beta):
    """The profiled criterion at theta; ``beta`` gets the fixed effects' increment over
    the least-squares fit, ``P``/``L`` the system and its factor.  inf if singular."""
    p = XtX.shape[0]
    t2 = theta * theta
    P[:, :] = XtX
    q[:] = Xt
    s = tt
    ld = 0.0
    for j in range(a.shape[0]):
        A = 1.0 + t2 * a[j]
        ld += np.log(A)
        f = t2 / A
        dj = d[j]
        s -= f * dj * dj
        for k in range(p):
            q[k] -= f * c[j, k] * dj
            for m in range(k + 1):
                P[k, m] -= f * c[j, k] * c[j, m]
    return profiled(P, L, q, beta, s, ld - ldW, n, reml)[0]


@njit(cache=True, nogil=True)
def profiled(P, L, q, beta, s, ld, n, reml):
    """The criterion from the fixed effects' system ``P`` (lower triangle) and ``q``,
    the random effects' residual sum ``s`` and ``ld`` = ``log|L|^2 - sum(log w)``:
    ``L`` gets the factor of ``P``, ``beta`` the solution.  Returns (criterion, r2),
    the criterion inf where ``P`` is not positive definite or ``r2`` not positive."""
    p = P.shape[0]
    for k in range(p):
        for m in range(k):
            P[m, k] = P[k, m]
    if not small_cholesky(P, L):
        return np.inf, 0.0
    small_cholesky_solve(L, q, beta)
    r2 = s
    for k in range(p):
        r2 -= q[k] * beta[k]
    if not r2 > 0.0:
        return np.inf, r2
    dof = n - p if reml else n
    if reml:
        for k in range(p):
            ld += 2.0 * np.log(L[k, k])
    return ld + dof * (1.0 + LOG_2PI + np.log(r2 / dof)), r2


@njit(cache=True, nogil=True)
def _brent(lo, hi, x, fx, args):
    """Brent's minimization on [lo, hi] from its best point ``x`` (value ``fx``)."""
    a, c, XtX, d, Xt, tt, n, reml, ldW, P, L, q, beta = args
    w = v = x
    fw = fv = fx
    e = 0.0
    step = 0.0
    for _ in range(BRENT_MAXITER):
        m = 0.5 * (lo + hi)
        tol = BRENT_TOL * abs(x) + 1e-14
        if abs(x - m) <= 2.0 * tol - 0.5 * (hi - lo):
            return x, fx
        parabolic = False
        if abs(e) > tol:
            r = (x - w) * (fx - fv)
            qq = (x - v) * (fx - fw)
            pp = (x - v) * qq - (x - w) * r
            qq = 2.0 * (qq - r)
            if qq > 0.0:
                pp = -pp
            qq = abs(qq)
            if abs(pp) < abs(0.5 * qq * e) and pp > qq * (lo - x) and pp < qq * (hi - x):
                e = step
                step = pp / qq
                parabolic = True
                if (x + step) - lo < 2.0 * tol or hi - (x + step) < 2.0 * tol:
                    step = tol if x < m else -tol
        if not parabolic:
            e = (hi - x) if x < m else (lo - x)
            step = GOLDEN * e
        u = x + step if abs(step) >= tol else x + (tol if step > 0 else -tol)
        fu = _criterion(u, a, c, XtX, d, Xt, tt, n, reml, ldW, P, L, q, beta)
        if fu <= fx:
            if u < x:
                hi = x
            else:
                lo = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                lo = u
            else:
                hi = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v == x or v == w:
                v, fv = u, fu
    return x, fx


@njit(cache=True, nogil=True)
def fit_one(X, codes, z, w, a, c, XtX, t, reml, ldW, out_beta, out_u, out_info):
    """One whole fit of the response ``t`` (less the offset).

    ``out_beta`` gets beta, ``out_u`` the spherical modes,
    ``out_info`` = (status, theta, criterion, ML deviance, r2, gradient,
    Hessian, log det P, evaluations); beta's covariance is ``sigma^2 P^{-1}``.
    """
    n, p = X.shape
    G = a.shape[0]
    L = np.zeros((p, p))
    beta_ls = np.zeros(p)
    Xt0 = np.zeros(p)
    for i in range(n):
        for k in range(p):
            Xt0[k] += w[i] * X[i, k] * t[i]
    if not small_cholesky(XtX, L):
        out_info[0] = NOT_FINITE
        return
    small_cholesky_solve(L, Xt0, beta_ls)
    d = np.zeros(G)
    Xt = np.zeros(p)
    tt = _response_sums(X, codes, G, z, w, t, beta_ls, d, Xt)
    P = np.zeros((p, p))
    q = np.zeros(p)
    beta = np.zeros(p)
    args = (a, c, XtX, d, Xt, tt, float(n), reml, ldW, P, L, q, beta)
    best, fbest, ibest = 0.0, np.inf, -1
    for k in range(GRID.shape[0]):
        f = _criterion(GRID[k], *args)
        if f < fbest:
            best, fbest, ibest = GRID[k], f, k
    evals = GRID.shape[0]
    if ibest < 0 or ibest == GRID.shape[0] - 1:
        out_info[0] = NOT_CONVERGED
        return
    lo = GRID[ibest - 1] if ibest > 0 else 0.0
    theta, f = _brent(lo, GRID[ibest + 1], best, fbest, args)
    f0 = _criterion(0.0, *args)
    if f0 <= f:
        theta, f = 0.0, f0
    # derivatives as the regular checks take them (central, forward at the bound)
    h = FD_STEP * max(abs(theta), 1.0)
    if theta - h < 0.0:
        f1 = _criterion(theta + h, *args)
        f2 = _criterion(theta + 2.0 * h, *args)
        grad = (-3.0 * f + 4.0 * f1 - f2) / (2.0 * h)
        hess = (f - 2.0 * f1 + f2) / (h * h)
    else:
        f1 = _criterion(theta + h, *args)
        f2 = _criterion(theta - h, *args)
        grad = (f1 - f2) / (2.0 * h)
        hess = (f1 - 2.0 * f + f2) / (h * h)
    ml = _criterion(theta, a, c, XtX, d, Xt, tt, float(n), False, ldW, P, L, q, beta)
    crit = _criterion(theta, *args)
    r2 = tt
    t2 = theta * theta
    for j in range(G):
        r2 -= t2 / (1.0 + t2 * a[j]) * d[j] * d[j]
    for k in range(p):
        r2 -= q[k] * beta[k]
        out_beta[k] = beta_ls[k] + beta[k]
    ldp = 0.0
    for k in range(p):
        ldp += 2.0 * np.log(L[k, k])
    for j in range(G):      # u_j = theta (d_j - c_j' beta) / A_j, beta over the LS fit
        s = d[j]
        for k in range(p):
            s -= c[j, k] * beta[k]
        out_u[j] = theta * s / (1.0 + t2 * a[j])
    out_info[0] = OK if np.isfinite(crit) and np.isfinite(hess) else NOT_FINITE
    out_info[1] = theta
    out_info[2] = crit
    out_info[3] = ml
    out_info[4] = r2
    out_info[5] = grad
    out_info[6] = hess
    out_info[7] = ldp
    out_info[8] = evals


@njit(cache=True, nogil=True)
def fit_columns(X, codes, z, w, a, c, XtX, T, reml, ldW, out_beta, out_u, out_info):
    """:func:`fit_one` for each column of ``T``, row j of each output."""
    for j in range(T.shape[1]):
        fit_one(X, codes, z, w, a, c, XtX, np.ascontiguousarray(T[:, j]), reml, ldW,
                out_beta[j], out_u[j], out_info[j])
