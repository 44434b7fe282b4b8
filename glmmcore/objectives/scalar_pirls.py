"""PIRLS for one scalar random-effects term, compiled (:mod:`.scalar_glmm`).

The random-effects system is diagonal, so the modes given theta (and beta, or
with beta for ``nAGQ = 0``) cost a few passes over the observations; the
iterations, tolerances and step halving are the regular path's
(:mod:`glmmcore.objectives.pirls`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg.small import small_cholesky, small_cholesky_solve
from .family_kernels import call_observed, call_update, call_update_newton
from .pirls import FLOOR_TOL, MAX_HALVINGS, MAX_ITER, STEP_TOL
from .pirls_kernel import _fixed_part, _rel_change, at_mode


@njit(cache=True, nogil=True)
def _workspace(n, G):
    """Buffers of one fit: per observation and per level."""
    return np.empty((20, n)), np.empty((12, G))


# The sums over observations below are each one chain of additions in a register: sums
# into arrays indexed per observation (a level's, a matrix entry's) wait on a store and
# a load each (~8x slower at n = 600, p = 2).

@njit(cache=True, nogil=True)
def level_sums(codes, a, b, out):
    """``out[j] = sum_{i in level j} a_i b_i``: each run of equal codes summed in a
    register, then added in (any order of the observations is right; grouped by level,
    as data usually are, it is one addition per observation)."""
    out[:] = 0.0
    if codes.shape[0] == 0:
        return
    g = codes[0]
    s = 0.0
    for i in range(codes.shape[0]):
        c = codes[i]
        if c != g:
            out[g] += s
            s = 0.0
            g = c
        s += a[i] * b[i]
    out[g] += s


@njit(cache=True, nogil=True)
def dot2(a, b):
    """``sum a_i b_i`` as :func:`dot3`."""
    n = a.shape[0]
    m = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, m, 4):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
    for i in range(m, n):
        s0 += a[i] * b[i]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def dot3(a, b, c):
    """``sum a_i b_i c_i`` in four interleaved partial sums (independent chains of
    additions; a fixed order, so the same bits every time)."""
    n = a.shape[0]
    m = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, m, 4):
        s0 += a[i] * b[i] * c[i]
        s1 += a[i + 1] * b[i + 1] * c[i + 1]
        s2 += a[i + 2] * b[i + 2] * c[i + 2]
        s3 += a[i + 3] * b[i + 3] * c[i + 3]
    for i in range(m, n):
        s0 += a[i] * b[i] * c[i]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs, updn=0):
    """Penalized deviance at ``u`` (the update kernel's deviance plus ``|u|^2``); leaves
    eta, mu, w, r there, and with the ``update_newton`` kernel ``updn`` the information
    and ``dW / d eta`` in obs[16] and obs[17]."""
    eta, mu, w, r, dev = obs[0], obs[1], obs[2], obs[3], obs[4]
    for i in range(eta.shape[0]):
        eta[i] = base[i] + theta * z[i] * u[codes[i]]
    if updn != 0:
        total = call_update_newton(updn, eta, y, wt, phi, mu, w, r, dev, obs[16], obs[17])
    else:
        total = call_update(upd, eta, y, wt, phi, mu, w, r, dev)
    for j in range(u.shape[0]):
        total += u[j] * u[j]
    return total


@njit(cache=True, nogil=True)
def _observed(obsw, updn, phi, y, wt, obs):
    """``-d s / d eta`` into obs[10]: the observed information from the family's kernel
    (a non-canonical link; the update_newton kernel ``updn`` left it in obs[16]), or
    where that is not finite, and for a canonical link (where they agree), the working
    weights.  Single observations' information may be negative (a Beta response far
    in a tail): :func:`modes` steps on the levels' sums.  Returns whether obs[10]
    holds the family's observed information."""
    w, info = obs[2], obs[10]
    if obsw != 0:
        if updn != 0:
            info[:] = obs[16]
        else:
            call_observed(obsw, obs[0], y, wt, phi, obs[1], info)
        for i in range(info.shape[0]):
            if wt[i] != 0.0 and not np.isfinite(info[i]):
                info[:] = w
                return False
        return True
    info[:] = w
    return False


@njit(cache=True, nogil=True)
def observed_information(obsw, theta, phi, codes, z, y, wt, obs, lev):
    """The family's observed information at obs' eta into obs[10] and its levels' sums
    ``sum O z^2`` into lev[7], single observations' not positive included (the
    Laplace approximation at the observed information, as the regular path's);
    False where a level's ``1 + theta^2 sum O z^2`` is not positive."""
    info, oz2 = obs[10], lev[7]
    call_observed(obsw, obs[0], y, wt, phi, obs[1], info)
    oz2[:] = 0.0
    for i in range(codes.shape[0]):
        oz2[codes[i]] += info[i] * z[i] * z[i]
    for j in range(oz2.shape[0]):
        if not (1.0 + theta * theta * oz2[j] > 0.0):
            return False
    return True


@njit(cache=True, nogil=True)
def modes(theta, phi, codes, z, y, wt, upd, obsw, updn, base, u, obs, lev, terms=0):
    """PIRLS for the modes ``u`` given theta, phi and the fixed part ``base``: Newton's
    steps level by level (Fisher scoring where the information is Fisher's, and on a
    level whose ``1 + theta^2 sum O z^2`` is not positive); ``updn`` the update_newton
    kernel or 0 (:func:`_pdev`).  ``terms``, the newton_terms kernel or 0: where given
    (``u`` predicted from the modes nearby: the Hessian's columns), the first step is
    taken whole (from the prediction it is the square of the prediction's small error;
    the step halving needs the deviance at ``u``) and the updates before and after it
    skip the deviance; PIRLS takes the deviance at ``u`` only where it steps again
    (most such evaluations end on the update after the first step: its deviance would
    go unused).  pdev is NaN where PIRLS ends by its second update.

    Returns (converged, pdev, iterations, observed); at convergence eta, mu, w, r and
    the information obs[10] are at ``u``, ``lev[0]`` holds ``sum w z^2`` per level and
    ``lev[7]`` ``sum O z^2`` (O the information; ``observed``: the family's observed
    information, positive on every level).
    """
    w, r, info, wz, oz = obs[2], obs[3], obs[10], obs[6], obs[7]
    wz2, sz, u_new, u_try, oz2 = lev[0], lev[1], lev[2], lev[3], lev[7]
    lazy = terms != 0       # the deviance at u not taken
    if lazy:
        _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs, terms)
        pdev = np.nan
    else:
        pdev = _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs, updn)
    step = full_step = np.inf
    t2 = theta * theta
    for iteration in range(MAX_ITER):
        observed = _observed(obsw, updn, phi, y, wt, obs)
        for i in range(codes.shape[0]):
            wz[i] = w[i] * z[i]
            oz[i] = info[i] * z[i]
        level_sums(codes, wz, z, wz2)
        level_sums(codes, oz, z, oz2)
        level_sums(codes, wz, r, sz)
        fisher = False
        for j in range(u.shape[0]):
            curvature = 1.0 + t2 * oz2[j]
            if not curvature > 0.0:     # Newton's step would climb: Fisher's there
                curvature = 1.0 + t2 * wz2[j]
                fisher = True
            u_new[j] = u[j] + (theta * sz[j] - u[j]) / curvature
        last = step
        step = _rel_change(u_new, u)
        # Newton's steps (a canonical link, or the observed information): quadratic
        if at_mode(step, last, full_step, not fisher, STEP_TOL, FLOOR_TOL):
            return True, pdev, iteration + 1, observed and not fisher
        whole = iteration == 0 and lazy     # no deviance at u to compare with
        if lazy and not whole:
            # a second step: the deviance at u (the same update, with it)
            pdev = _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs, updn)
            lazy = False
        t = 1.0
        accepted = False
        pdev_t = pdev
        for _ in range(MAX_HALVINGS):
            for j in range(u.shape[0]):
                u_try[j] = u[j] + t * (u_new[j] - u[j])
            pdev_t = _pdev(theta, phi, u_try, codes, z, base, y, wt, upd, obs,
                           terms if whole else updn)
            if whole or pdev_t <= pdev + 1e-10 * (1.0 + abs(pdev)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return False, pdev, iteration + 1, False
        u[:] = u_try
        pdev = np.nan if whole else pdev_t
        full_step = step if t == 1.0 else np.inf
    return False, pdev, MAX_ITER, False


@njit(cache=True, nogil=True)
def modes_and_beta(theta, X, codes, z, y, wt, offset, upd, u, beta, obs, lev, cx, S, L,
                   cols, phi=1.0, step_tol=STEP_TOL):
    """PIRLS for ``(u, beta)`` jointly given theta (``nAGQ = 0``; and at theta = 0 the
    start's GLM, at the family parameter ``phi``), until the relative step is below
    ``step_tol`` (a start's GLM needs no more than a few digits).  ``cols`` is
    :func:`design_columns`' (X', and X's columns by level).

    Returns (converged, pdev, iterations); at convergence ``lev[0]`` holds
    ``sum w z^2`` per level, ``cx`` the levels' ``sum w z x``, ``S`` the Schur
    complement ``X' W X - sum theta^2 cx cx' / A`` and ``L`` its Cholesky factor,
    all at the weights of the mode.  A random intercept's sums over a column of X
    that is constant within levels (the condition of a per-gene design) are sums over
    levels (:func:`level_columns`).
    """
    n, p = X.shape
    G = u.shape[0]
    eta, w, r, base = obs[0], obs[2], obs[3], obs[5]
    wz, work = obs[6], obs[7]
    wz2, rz, u_new, u_try = lev[0], lev[1], lev[2], lev[3]
    b_new, b_try, rhs = np.empty(p), np.empty(p), np.empty(p)
    XT, xl, by_level = cols
    _fixed_part(X, beta, offset, base)
    pdev = _pdev(theta, phi, u, codes, z, base, y, wt, upd, obs)
    step = full_step = np.inf
    t2 = theta * theta
    for iteration in range(MAX_ITER):
        for i in range(n):
            wz[i] = w[i] * z[i]
            work[i] = eta[i] - offset[i] + r[i]     # the working response
        level_sums(codes, wz, z, wz2)
        level_sums(codes, wz, work, rz)
        _cross_sums(XT, codes, w, wz, work, wz2, rz, xl, by_level, cx, rhs, S)
        for j in range(G):
            f = t2 / (1.0 + t2 * wz2[j])
            for a in range(p):
                rhs[a] -= f * cx[j, a] * rz[j]
                for c in range(a + 1):
                    S[a, c] -= f * cx[j, a] * cx[j, c]
        for a in range(p):
            for c in range(a):
                S[c, a] = S[a, c]
        if not small_cholesky(S, L):
            return False, pdev, iteration + 1
        small_cholesky_solve(L, rhs, b_new)
        for j in range(G):
            s = rz[j]
            for a in range(p):
                s -= cx[j, a] * b_new[a]
            u_new[j] = theta * s / (1.0 + t2 * wz2[j])
        last = step
        step = max(_rel_change(u_new, u), _rel_change(b_new, beta))
        # nAGQ=0 takes canonical links only: Fisher scoring is Newton's method
        if at_mode(step, last, full_step, True, step_tol, FLOOR_TOL):
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
            pdev_t = _pdev(theta, phi, u_try, codes, z, base, y, wt, upd, obs)
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
def design_columns(X, codes, z, G):
    """:func:`modes_and_beta`'s ``cols``: X' (columns contiguous: :func:`dot3`'s
    operands), X's values per level ``xl`` (G x p) and which columns are constant within
    the levels (for a random intercept, ``z`` = 1; for any other ``z`` none is taken as
    constant): the cross sums over such a column are sums over levels
    (:func:`_cross_sums`)."""
    n, p = X.shape
    cols = (np.empty((p, n)), np.zeros((G, p)), np.zeros(p, dtype=np.bool_))
    fill_columns(X, codes, z, cols)
    return cols


@njit(cache=True, nogil=True)
def fill_columns(X, codes, z, cols):
    """:func:`design_columns`' arrays ``cols``, filled in place."""
    XT, xl, by_level = cols
    for a in range(X.shape[1]):
        for i in range(X.shape[0]):
            XT[a, i] = X[i, a]
    _by_level(X, codes, z, xl, by_level)


@njit(cache=True, nogil=True)
def _by_level(X, codes, z, xl, by_level):
    """:func:`design_columns`' ``xl`` and ``by_level``, into them."""
    n, p = X.shape
    by_level[:] = False
    for i in range(n):
        if z[i] != 1.0:
            return
    by_level[:] = True
    seen = np.zeros(xl.shape[0], dtype=np.bool_)
    for i in range(n):
        g = codes[i]
        if not seen[g]:
            seen[g] = True
            for a in range(p):
                xl[g, a] = X[i, a]
            continue
        for a in range(p):
            if X[i, a] != xl[g, a]:
                by_level[a] = False


@njit(cache=True, nogil=True)
def _cross_sums(XT, codes, w, wz, work, wz2, rz, xl, by_level, cx, rhs, S):
    """The levels' ``cx = sum w z x``, ``rhs = X' W work`` and the lower triangle of
    ``S = X' W X``: over the observations, or for a column constant within levels
    (``by_level``, ``z`` = 1: ``wz2`` and ``rz`` are the levels' ``sum w`` and
    ``sum w work``) over the levels, as ``sum_j x_j (sum_{i in j} ...)``."""
    p = XT.shape[0]
    G = wz2.shape[0]
    for a in range(p):
        if by_level[a]:
            for j in range(G):
                cx[j, a] = xl[j, a] * wz2[j]
        else:
            level_sums(codes, wz, XT[a], cx[:, a])
    for a in range(p):
        if by_level[a]:
            rhs[a] = _level_dot(xl[:, a], rz)
        else:
            rhs[a] = dot3(XT[a], w, work)
        for c in range(a + 1):
            if by_level[c]:
                S[a, c] = _level_dot(xl[:, c], cx[:, a])
            elif by_level[a]:
                S[a, c] = _level_dot(xl[:, a], cx[:, c])
            else:
                S[a, c] = dot3(XT[a], XT[c], w)


@njit(cache=True, nogil=True)
def _level_dot(a, b):
    """``sum_j a_j b_j`` over levels (strided columns)."""
    total = 0.0
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total
