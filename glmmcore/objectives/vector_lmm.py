"""Whole compiled fits of an LMM with one vector random-effects term on one factor.

For ``y ~ x + (1 + x | g)`` the random effects' system is block diagonal with
one ``k x k`` block per level, ``A_j = T' S_j T + I`` (``S_j = Z_j' W Z_j``,
``T`` the relative covariance factor).  With ``L_j`` its Cholesky factor,
``C~_j = L_j^{-1} T' C_j`` (``C_j = Z_j' W X_j``) and ``d~_j = L_j^{-1} T' e_j``
(``e_j = Z_j' W t``), eliminating the random effects level by level leaves

    P  = X'WX - sum_j C~_j' C~_j,    q = X'Wt - sum_j C~_j' d~_j,
    r2 = t'Wt - sum_j |d~_j|^2 - q' P^{-1} q,

``log|L|^2 = sum_j log|A_j|`` and ``log|R_X|^2 = log det P``: the profiled
criteria of :mod:`glmmcore.objectives.lmm`, with ``t`` the response less the
offset and its weighted least-squares fit, as there.  The gradient needs no
``T^{-1}`` (exact on the boundary too): with ``M`` the penalized system,
``d log|M| / d T_ab = 2 sum_j [A_j^{-1} T' S_j + H_j P^{-1} (H_j' T' S_j - C_j')]_ba``
(``H_j = A_j^{-1} T' C_j``; REML only; ML keeps the first term) and, by the
envelope theorem, ``d r2 / d T_ab = -2 sum_j v_j[a] u_j[b]`` with ``u_j`` the
spherical modes and ``v_j = Z_j' W (t - X beta - Z_j T u_j)``.

A fit starts as the regular path does (lme4's start or the moment guess of
:mod:`glmmcore.fitting.start`, the lower) and minimizes by projected Newton
steps with the Hessian by forward differences of the gradient (the
derivatives the convergence checks take), to a Newton decrement of
:data:`DECREMENT_TOL` relative.  Everything response-free (``S_j``, ``C_j``,
``X'WX``) is summed once per model; an evaluation costs O(levels k^2 (k + p)).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..fitting.checks import AT_BOUND, FD_STEP
from ..fitting.start import SMALLEST_GUESS, _column_spread, _within_sum
from ..linalg.small import small_cholesky, small_cholesky_solve
from .scalar_lmm import profiled

OK, NOT_CONVERGED, NOT_FINITE = 0, 2, 3
DECREMENT_TOL = 1e-13   # Newton decrement relative to 1 + |criterion| that ends a fit
MAX_NEWTON = 200
MAX_HALVINGS = 40
ARMIJO = 1e-4


@njit(cache=True, nogil=True)
def model_sums(X, codes, G, Z, w):
    """The response-free sums: ``S_j`` (G x k x k), ``C_j`` (G x k x p) and X'WX."""
    n, p = X.shape
    k = Z.shape[1]
    S = np.zeros((G, k, k))
    C = np.zeros((G, k, p))
    XtX = np.zeros((p, p))
    for i in range(n):
        g, wi = codes[i], w[i]
        for a in range(k):
            wz = wi * Z[i, a]
            for b in range(k):
                S[g, a, b] += wz * Z[i, b]
            for m in range(p):
                C[g, a, m] += wz * X[i, m]
        for a in range(p):
            for b in range(p):
                XtX[a, b] += wi * X[i, a] * X[i, b]
    return S, C, XtX


@njit(cache=True, nogil=True)
def _evaluate(theta, tidx, S, C, XtX, e, Xr, rr, n, reml, ldW, ws, grad):
    """The criterion at ``theta`` (inf where not positive definite); the gradient into
    ``grad`` when it has ``theta``'s length.  ``ws`` = (T, Ls, Ct, dt, P, LP, q, beta, u,
    and the gradient's scratch arrays: see :func:`fit_one`)."""
    T, Ls, Ct, dt, P, LP, q, beta = ws[:8]
    G, k, p = C.shape
    for a in range(k):
        for b in range(k):
            T[a, b] = theta[tidx[a, b]] if tidx[a, b] >= 0 else 0.0
    P[:, :] = XtX
    q[:] = Xr
    s, ld = rr, 0.0
    for j in range(G):
        ldj = _level(j, T, S, C, e, Ls, Ct, dt)
        if not np.isfinite(ldj):
            return np.inf
        ld += ldj
        for a in range(k):
            s -= dt[j, a] * dt[j, a]
            for m in range(p):
                q[m] -= Ct[j, a, m] * dt[j, a]
                for r in range(m + 1):
                    P[m, r] -= Ct[j, a, m] * Ct[j, a, r]
    crit, r2 = profiled(P, LP, q, beta, s, ld - ldW, n, reml)
    if np.isfinite(crit) and grad.shape[0] == theta.shape[0]:
        _gradient(tidx, T, S, C, e, reml, (n - p if reml else n) / r2, ws, grad)
    return crit


@njit(cache=True, nogil=True)
def _level(j, T, S, C, e, Ls, Ct, dt):
    """Level ``j``: ``L_j`` (the factor of ``T' S_j T + I``), ``C~_j`` and ``d~_j``
    into ``Ls``, ``Ct``, ``dt`` by index (no views: this runs levels x evaluations
    times); returns ``log|A_j|``, NaN where not positive definite."""
    k, p = C.shape[1], C.shape[2]
    ld = 0.0
    for a in range(k):                  # column a of L from A = T' S_j T + I
        for b in range(a, k):
            v = 0.0
            for c in range(a, k):
                tc = T[c, a]
                if tc != 0.0:
                    for m in range(b, k):
                        v += tc * S[j, c, m] * T[m, b]
            if b == a:
                v += 1.0
            for m in range(a):
                v -= Ls[j, b, m] * Ls[j, a, m]
            if b == a:
                if not v > 0.0:
                    return np.nan
                Ls[j, a, a] = np.sqrt(v)
                ld += np.log(v)
            else:
                Ls[j, b, a] = v / Ls[j, a, a]
    for a in range(k):                  # forward solves of T' C_j and T' e_j
        for m in range(p):
            v = 0.0
            for c in range(a, k):
                v += T[c, a] * C[j, c, m]
            for b in range(a):
                v -= Ls[j, a, b] * Ct[j, b, m]
            Ct[j, a, m] = v / Ls[j, a, a]
        v = 0.0
        for c in range(a, k):
            v += T[c, a] * e[j, c]
        for b in range(a):
            v -= Ls[j, a, b] * dt[j, b]
        dt[j, a] = v / Ls[j, a, a]
    return ld


@njit(cache=True, nogil=True)
def _forward_level(Ls, j, v):
    """``v = L_j^{-1} v`` in place."""
    for a in range(v.shape[0]):
        s = v[a]
        for b in range(a):
            s -= Ls[j, a, b] * v[b]
        v[a] = s / Ls[j, a, a]


@njit(cache=True, nogil=True)
def _back_level(Ls, j, v):
    """``v = L_j'^{-1} v`` in place."""
    for a in range(v.shape[0] - 1, -1, -1):
        s = v[a]
        for b in range(a + 1, v.shape[0]):
            s -= Ls[j, b, a] * v[b]
        v[a] = s / Ls[j, a, a]


@njit(cache=True, nogil=True)
def _gradient(tidx, T, S, C, e, reml, dof_r2, ws, grad):
    """The module doc's gradient after :func:`_evaluate` filled ``ws``; the spherical
    modes into ``ws``'s ``u`` (G x k)."""
    Ls, Ct, dt, LP, beta, u = ws[1], ws[2], ws[3], ws[5], ws[7], ws[8]
    Pinv, gT, TS, W, H, HP, colk, col = ws[9:]
    G, k, p = C.shape
    for m in range(p):
        col[:] = 0.0
        col[m] = 1.0
        small_cholesky_solve(LP, col, Pinv[m])
    gT[:, :] = 0.0
    for j in range(G):
        for a in range(k):          # TS = T' S_j
            for b in range(k):
                v = 0.0
                for c in range(a, k):
                    v += T[c, a] * S[j, c, b]
                TS[a, b] = v
        for b in range(k):          # W = A^{-1} T' S_j, column by column
            for a in range(k):
                colk[a] = TS[a, b]
            _forward_level(Ls, j, colk)
            _back_level(Ls, j, colk)
            for a in range(k):
                W[a, b] = colk[a]
        if reml:
            for m in range(p):      # H = L^{-T} C~_j
                for a in range(k):
                    colk[a] = Ct[j, a, m]
                _back_level(Ls, j, colk)
                for a in range(k):
                    H[a, m] = colk[a]
            for a in range(k):
                for m in range(p):
                    v = 0.0
                    for r in range(p):
                        v += H[a, r] * Pinv[r, m]
                    HP[a, m] = v
            for a in range(k):      # W += H P^{-1} (H' T' S_j - C_j')
                for b in range(k):
                    v = 0.0
                    for m in range(p):
                        qmb = -C[j, b, m]
                        for c in range(k):
                            qmb += H[c, m] * TS[c, b]
                        v += HP[a, m] * qmb
                    W[a, b] += v
        for a in range(k):          # u_j = L^{-T} (d~_j - C~_j beta)
            v = dt[j, a]
            for m in range(p):
                v -= Ct[j, a, m] * beta[m]
            colk[a] = v
        _back_level(Ls, j, colk)
        for a in range(k):
            u[j, a] = colk[a]
        for a in range(k):          # v_j = e_j - C_j beta - S_j T u_j
            v = e[j, a]
            for m in range(p):
                v -= C[j, a, m] * beta[m]
            colk[a] = v
        for c in range(k):          # v -= S_j (T u_j)
            tu = 0.0
            for m in range(c + 1):
                tu += T[c, m] * u[j, m]
            for a in range(k):
                colk[a] -= S[j, a, c] * tu
        for a in range(k):
            for b in range(k):
                gT[a, b] += 2.0 * W[b, a] - 2.0 * dof_r2 * colk[a] * u[j, b]
    grad[:] = 0.0
    for a in range(k):
        for b in range(k):
            if tidx[a, b] >= 0:
                grad[tidx[a, b]] += gT[a, b]


@njit(cache=True, nogil=True)
def _response_sums(X, codes, Z, w, XtX, t, beta_ls, r, e, Xr):
    """``beta_ls`` (weighted least squares), ``r = t - X beta_ls``, ``e_j``, X'Wr; returns
    r'Wr, or -1 where X'WX is not positive definite."""
    n, p = X.shape
    k = Z.shape[1]
    L = np.zeros((p, p))
    if not small_cholesky(XtX, L):
        return -1.0
    Xt = np.zeros(p)
    for i in range(n):
        for m in range(p):
            Xt[m] += w[i] * X[i, m] * t[i]
    small_cholesky_solve(L, Xt, beta_ls)
    e[:, :] = 0.0
    Xr[:] = 0.0
    rr = 0.0
    for i in range(n):
        v = t[i]
        for m in range(p):
            v -= X[i, m] * beta_ls[m]
        r[i] = v
        wr = w[i] * v
        for a in range(k):
            e[codes[i], a] += wr * Z[i, a]
        for m in range(p):
            Xr[m] += wr * X[i, m]
        rr += wr * v
    return rr


@njit(cache=True, nogil=True)
def _moment_start(codes, G, Zt, w, r, tidx, theta):
    """The moment guess of :func:`glmmcore.fitting.start.moment_theta` for one block."""
    n = r.shape[0]
    scale = 0.0
    for i in range(n):
        scale += w[i] * r[i] * r[i]
    scale /= max(n - 1, 1)
    if n > G:
        scale = min(scale, _within_sum(codes, G, w, r) / (n - G))
    if not (scale > 0.0 and np.isfinite(scale)):
        return
    for c in range(Zt.shape[0]):
        spread = _column_spread(codes, G, Zt[c], w, r, scale)
        if np.isfinite(spread):
            theta[tidx[c, c]] = max(np.sqrt(max(spread, 0.0) / scale), SMALLEST_GUESS)


@njit(cache=True, nogil=True)
def _hessian(x, g, args, ws, H):
    """Forward differences of the gradient (steps :data:`FD_STEP` relative), symmetrized,
    as :func:`glmmcore.fitting.checks.gradient_hessian`; False if one is not finite."""
    tidx, S, C, XtX, e, Xr, rr, n, reml, ldW = args
    nt = x.shape[0]
    xh = x.copy()
    gh = np.empty(nt)
    for i in range(nt):
        h = FD_STEP * max(abs(x[i]), 1.0)
        xh[i] = x[i] + h
        f = _evaluate(xh, tidx, S, C, XtX, e, Xr, rr, n, reml, ldW, ws, gh)
        xh[i] = x[i]
        if not np.isfinite(f):
            return False
        for m in range(nt):
            H[m, i] = (gh[m] - g[m]) / h
    for i in range(nt):
        for m in range(i):
            H[i, m] = H[m, i] = 0.5 * (H[i, m] + H[m, i])
    return True


@njit(cache=True, nogil=True)
def _on_bound(x, bounded, i):
    return bounded[i] and x[i] < AT_BOUND


@njit(cache=True, nogil=True)
def _newton_step(x, g, H, bounded, step):
    """The projected Newton step on the free parameters, damped until positive definite;
    returns the Newton decrement ``-g' step`` and whether it was damped.

    A parameter on its bound 0 stays there when the criterion rises into the
    interior, judged by the gradient a step :data:`FD_STEP` inside (the stand-in
    derivative of :meth:`glmmcore.objectives.lmm.LmmDeviance.value_and_gradient`: a
    variance at 0 has derivative 0 by symmetry, its curvature says which way it
    falls); a free one on its bound takes that gradient.
    """
    nt = x.shape[0]
    geff = g.copy()
    free = np.empty(nt, dtype=np.bool_)
    nf = 0
    for i in range(nt):
        if _on_bound(x, bounded, i):
            geff[i] = g[i] + FD_STEP * H[i, i]
        free[i] = not (_on_bound(x, bounded, i) and geff[i] >= 0.0)
        if free[i]:
            nf += 1
    step[:] = 0.0
    if nf == 0:
        return 0.0, False
    idx = np.flatnonzero(free)
    Hf = np.empty((nf, nf))
    gf = np.empty(nf)
    Lf = np.zeros((nf, nf))
    sf = np.empty(nf)
    scale = 0.0
    for a in range(nf):
        gf[a] = -geff[idx[a]]
        scale = max(scale, abs(H[idx[a], idx[a]]))
    damping = 0.0
    for _ in range(60):
        for a in range(nf):
            for b in range(nf):
                Hf[a, b] = H[idx[a], idx[b]]
            Hf[a, a] += damping
        if small_cholesky(Hf, Lf):
            break
        damping = max(1e-10 * max(scale, 1e-300), 10.0 * damping)
    else:
        return 0.0, True
    small_cholesky_solve(Lf, gf, sf)
    dec = 0.0
    for a in range(nf):
        step[idx[a]] = sf[a]
        dec += gf[a] * sf[a]
    return dec, damping > 0.0


@njit(cache=True, nogil=True)
def _canonical(x, tidx):
    """Where a diagonal of a full lower-triangular ``T`` is 0 with nonzero elements below
    it, ``T`` becomes the (semidefinite) Cholesky factor of ``T T'``: the same
    covariance and criterion, off the face where the criterion is flat along a circle
    (an even function of a column's sign).  Returns whether ``x`` changed."""
    k = tidx.shape[0]
    degenerate = False
    for a in range(k):
        for b in range(k):
            if (tidx[a, b] >= 0) != (b <= a):
                return False
        if x[tidx[a, a]] == 0.0:
            for c in range(a + 1, k):
                degenerate = degenerate or x[tidx[c, a]] != 0.0
    if not degenerate:
        return False
    T = np.zeros((k, k))
    for a in range(k):
        for b in range(a + 1):
            T[a, b] = x[tidx[a, b]]
    cov = T @ T.T
    Lc = np.zeros((k, k))
    for j in range(k):
        d = cov[j, j]
        for m in range(j):
            d -= Lc[j, m] * Lc[j, m]
        if d <= 1e-14 * max(cov[j, j], 1e-300):
            continue
        Lc[j, j] = np.sqrt(d)
        for i in range(j + 1, k):
            v = cov[i, j]
            for m in range(j):
                v -= Lc[i, m] * Lc[j, m]
            Lc[i, j] = v / Lc[j, j]
    for a in range(k):
        for b in range(a + 1):
            x[tidx[a, b]] = Lc[a, b]
    return True


@njit(cache=True, nogil=True)
def _descent_direction(x, g, H, bounded, gtol, d):
    """A direction of negative curvature at a point where the Newton step vanished (a
    saddle on a bound: the gradient 0 by symmetry), over the free parameters and those on
    their bound with a gradient below ``gtol``; the bound ones kept from going below 0.
    Returns False where the Hessian there is positive semidefinite."""
    nt = x.shape[0]
    idx = np.empty(nt, dtype=np.int64)
    ne = 0
    for i in range(nt):
        if not _on_bound(x, bounded, i) or g[i] <= gtol:
            idx[ne] = i
            ne += 1
    if ne == 0:
        return False
    He = np.empty((ne, ne))
    for a in range(ne):
        for b in range(ne):
            He[a, b] = H[idx[a], idx[b]]
    values, vectors = np.linalg.eigh(He)
    scale = max(np.max(np.abs(values)), 1e-300)
    if values[0] >= -1e-6 * scale:
        return False
    d[:] = 0.0
    sign = 1.0
    for a in range(ne):        # into the interior where a bound one moves
        if _on_bound(x, bounded, idx[a]) and vectors[a, 0] != 0.0:
            sign = 1.0 if vectors[a, 0] > 0.0 else -1.0
            break
    for a in range(ne):
        d[idx[a]] = sign * vectors[a, 0]
        if _on_bound(x, bounded, idx[a]) and d[idx[a]] < 0.0:
            d[idx[a]] = 0.0
    return True


@njit(cache=True, nogil=True)
def _line_search(x, f, g, step, bounded, args, ws, xn, gn, armijo):
    """Halve the step from 1 until the criterion falls (Armijo's rule with ``armijo``);
    ``xn``, ``gn`` get the point and its gradient.  Returns (moved, value, evaluations)."""
    tidx, S, C, XtX, e, Xr, rr, n, reml, ldW = args
    alpha = 1.0
    for it in range(MAX_HALVINGS):
        slope = 0.0
        for i in range(x.shape[0]):
            xn[i] = x[i] + alpha * step[i]
            if bounded[i] and xn[i] < 0.0:
                xn[i] = 0.0
            slope += g[i] * (xn[i] - x[i])
        fn = _evaluate(xn, tidx, S, C, XtX, e, Xr, rr, n, reml, ldW, ws, gn)
        if fn <= f + armijo * min(slope, 0.0) and fn < f + 1e-14 * (1.0 + abs(f)):
            return True, fn, it + 1
        alpha *= 0.5
    return False, f, MAX_HALVINGS


@njit(cache=True, nogil=True)
def _bfgs_update(H, s, y):
    """BFGS's update of the Hessian approximation ``H`` by the step ``s`` and the change of
    the gradient ``y`` (skipped where the curvature ``s'y`` is not positive)."""
    nt = s.shape[0]
    Hs = H @ s
    sy, sHs = s @ y, s @ Hs
    if not (sy > 1e-12 * np.sqrt((s @ s) * (y @ y)) and sHs > 0.0):
        return
    for i in range(nt):
        for m in range(nt):
            H[i, m] += y[i] * y[m] / sy - Hs[i] * Hs[m] / sHs


@njit(cache=True, nogil=True)
def _minimize(x, bounded, args, ws, H, out):
    """Projected quasi-Newton steps from ``x`` (updated in place): the Hessian by
    differences of the gradient at the start and wherever the steps end, BFGS updates in
    between; the end is confirmed with that Hessian, and saddles on the bounds are left
    by directions of negative curvature.  ``out`` = (status, criterion, evaluations)."""
    tidx, S, C, XtX, e, Xr, rr, n, reml, ldW = args
    nt = x.shape[0]
    g = np.empty(nt)
    gn = np.empty(nt)
    step = np.empty(nt)
    xn = np.empty(nt)
    f = _evaluate(x, tidx, S, C, XtX, e, Xr, rr, n, reml, ldW, ws, g)
    evals = 1
    status = NOT_CONVERGED
    exact = True        # H is the differences' Hessian at x
    for _ in range(MAX_NEWTON):
        if not exact:
            pass
        elif not (np.isfinite(f) and _hessian(x, g, args, ws, H)):
            status = NOT_FINITE
            break
        else:
            evals += nt
        dec, damped = _newton_step(x, g, H, bounded, step)
        done = dec <= DECREMENT_TOL * (1.0 + abs(f))
        if not done:
            moved, fn, used = _line_search(x, f, g, step, bounded, args, ws, xn, gn, ARMIJO)
            evals += used
            if not moved:       # no decrease left but round-off, or a poor approximation
                done = exact and dec <= 1e-9 * (1.0 + abs(f))
                if not done:
                    if exact:
                        break
                    exact = True
                    continue
        if done:
            if not exact:
                exact = True
                continue
            if _canonical(x, tidx):
                f = _evaluate(x, tidx, S, C, XtX, e, Xr, rr, n, reml, ldW, ws, g)
                evals += 1
                continue
            if not _descent_direction(x, g, H, bounded, 1e-6 * (1.0 + abs(f)), step):
                status = OK
                break
            moved, fn, used = _line_search(x, f, g, step, bounded, args, ws, xn, gn, 0.0)
            evals += used
            if not moved:
                status = OK
                break
            exact = True
        else:       # BFGS from a positive definite Hessian; Newton steps before
            exact = damped
            if not damped:
                _bfgs_update(H, xn - x, gn - g)
        x[:] = xn
        g[:] = gn
        f = fn
    out[0], out[1], out[2] = status, f, evals


@njit(cache=True, nogil=True)
def fit_one(X, codes, Z, Zt, w, tidx, bounded, S, C, XtX, t, reml, ldW, out_theta, out_beta,
            out_u, out_grad, out_hess, out_pinv, out_info):
    """One whole fit of ``t`` (the response less the offset).

    ``out_theta``, ``out_beta``, ``out_u`` (G x k, spherical), ``out_grad`` and
    ``out_hess`` (the derivatives the checks take), ``out_pinv`` (``P^{-1}``:
    beta's covariance over sigma^2) and ``out_info`` = (status, criterion, ML
    deviance, r2, evaluations).
    """
    n, p = X.shape
    G, k = C.shape[0], C.shape[1]
    beta_ls, r, e, Xr = np.zeros(p), np.empty(n), np.zeros((G, k)), np.zeros(p)
    rr = _response_sums(X, codes, Z, w, XtX, t, beta_ls, r, e, Xr)
    out_info[0] = NOT_FINITE
    if rr < 0.0:
        return
    ws = (np.zeros((k, k)), np.zeros((G, k, k)), np.zeros((G, k, p)), np.zeros((G, k)),
          np.zeros((p, p)), np.zeros((p, p)), np.zeros(p), np.zeros(p), out_u,
          np.zeros((p, p)), np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k)),
          np.zeros((k, p)), np.zeros((k, p)), np.zeros(k), np.zeros(p))
    args = (tidx, S, C, XtX, e, Xr, rr, float(n), reml, ldW)
    nt = out_theta.shape[0]
    none = np.empty(0)
    for i in range(nt):             # lme4's start, or the moment guess if lower
        out_theta[i] = 1.0 if bounded[i] else 0.0
    guess = out_theta.copy()
    _moment_start(codes, G, Zt, w, r, tidx, guess)
    f0 = _evaluate(out_theta, tidx, S, C, XtX, e, Xr, rr, float(n), reml, ldW, ws, none)
    f1 = _evaluate(guess, tidx, S, C, XtX, e, Xr, rr, float(n), reml, ldW, ws, none)
    if np.isfinite(f1) and not f1 >= f0:
        out_theta[:] = guess
    info = np.zeros(3)
    _minimize(out_theta, bounded, args, ws, out_hess, info)
    if info[0] != OK:
        out_info[0] = info[0]
        out_info[4] = info[2]
        return
    crit = _evaluate(out_theta, tidx, S, C, XtX, e, Xr, rr, float(n), reml, ldW, ws, out_grad)
    if not (np.isfinite(crit)
            and _hessian(out_theta, out_grad, args, ws, out_hess)):
        return
    ml = _evaluate(out_theta, tidx, S, C, XtX, e, Xr, rr, float(n), False, ldW, ws, none)
    # the factor pieces at theta again (the ML evaluation left the REML ones)
    _evaluate(out_theta, tidx, S, C, XtX, e, Xr, rr, float(n), reml, ldW, ws, out_grad)
    LP, q, beta = ws[5], ws[6], ws[7]
    r2 = rr
    for j in range(G):
        for a in range(k):
            r2 -= ws[3][j, a] * ws[3][j, a]
    for m in range(p):
        r2 -= q[m] * beta[m]
        out_beta[m] = beta_ls[m] + beta[m]
    col = np.empty(p)
    for m in range(p):
        col[:] = 0.0
        col[m] = 1.0
        small_cholesky_solve(LP, col, out_pinv[m])
    out_info[0] = OK
    out_info[1] = crit
    out_info[2] = ml
    out_info[3] = r2
    out_info[4] = info[2] + 3 + 2 * nt


@njit(cache=True, nogil=True)
def fit_columns(X, codes, Z, Zt, w, tidx, bounded, S, C, XtX, T, reml, ldW, out_theta,
                out_beta, out_u, out_grad, out_hess, out_pinv, out_info):
    """:func:`fit_one` for each column of ``T``, row j of each output."""
    for j in range(T.shape[1]):
        fit_one(X, codes, Z, Zt, w, tidx, bounded, S, C, XtX, np.ascontiguousarray(T[:, j]),
                reml, ldW, out_theta[j], out_beta[j], out_u[j], out_grad[j], out_hess[j],
                out_pinv[j], out_info[j])
