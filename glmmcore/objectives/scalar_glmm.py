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

The parts: PIRLS (:mod:`.scalar_pirls`), the derivatives (:mod:`.scalar_gradient`),
Newton's method (:mod:`.scalar_newton`); here the start and the whole fit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg.small import small_cholesky, small_cholesky_solve
from .family_kernels import call_update, call_yms
from .pirls import STEP_TOL
from .pirls_kernel import _fixed_part
from .scalar_gradient import PHI_STEP, _logdet
from .scalar_newton import (
    OK,
    PIRLS_FAILED,
    _evaluate,
    columns,
    distinct_values,
    logdet_weights,
    minimize,
    workspace,
)
from .scalar_pirls import _workspace, design_columns, dot3, level_sums, modes_and_beta

SMALLEST_START = 0.05
# nAGQ=0's GLM gives theta's start alone: PIRLS stops there at steps below this
# (batch_speed's Poisson features: 24.9 PIRLS iterations a fit at 1e-2, 26.1 at 1e-4,
# 26.8 and more evaluations at 1e-1)
GLM_START_TOL = 1e-2
PHI_START_STEPS = 8     # Newton steps of the family parameter's start (conditional_phi)
PHI_START_TOL = 1e-3    # ... ending when the step in log phi is below this
# the GLMs of a family parameter's start (glm_means, fit_one) end at this relative step:
# Newton's method on (theta, beta, log phi) takes the start's few digits, and Fisher
# scoring off the canonical link gains about one digit per iteration (the negative
# binomial's on patents: 9 iterations to 1e-12, 3 to 1e-4)
START_TOL = 1e-4
# the most distinct (y, wt) pairs for which the family parameter's term is summed over
# them (scalar_newton.phi_term), not over the rows: counts take a few dozen values
DISTINCT_MAX = 64
_HASH_SLOTS = 4 * DISTINCT_MAX
_HASH_Y, _HASH_W = 0x1E3779B97F4A7C15, 0x2545F4914F6CDD1D   # odd: a multiplicative hash


@njit(cache=True, nogil=True)
def glm_beta(XT, y, wt, offset, upd, eta0, obs, L):
    """Fixed effects of the GLM without random effects: one weighted least-squares
    step from ``eta0`` (the family's start), then PIRLS at theta = 0.  ``XT`` is X'
    (:func:`~.scalar_pirls.design_columns`' first array), ``L`` a p x p buffer."""
    p, n = XT.shape
    eta, mu, w, r, dev = obs[0], obs[1], obs[2], obs[3], obs[4]
    eta[:] = eta0
    call_update(upd, eta, y, wt, 1.0, mu, w, r, dev)
    work = obs[6]
    for i in range(n):
        work[i] = eta[i] - offset[i] + r[i]
    XtWX = np.empty((p, p))
    rhs = np.empty(p)
    for a in range(p):
        rhs[a] = dot3(XT[a], w, work)
        for c in range(a + 1):
            XtWX[a, c] = XtWX[c, a] = dot3(XT[a], XT[c], w)
    beta = np.zeros(p)
    if small_cholesky(XtWX, L):
        small_cholesky_solve(L, rhs, beta)
    return beta


@njit(cache=True, nogil=True)
def moment_start(theta_lm, codes, G, z, obs, lev):
    """A start for theta from IRLS's working residuals at the GLM (unit scale): the
    spread of the levels' weighted slopes of ``r`` on ``z`` beyond their sampling
    variance (:func:`glmmcore.fitting.start.moment_theta`'s idea, for one scalar term)."""
    w, r, wz = obs[2], obs[3], obs[6]
    sw, swr = lev[0], lev[1]
    for i in range(codes.shape[0]):
        wz[i] = w[i] * z[i]
    level_sums(codes, wz, z, sw)
    level_sums(codes, wz, r, swr)
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
def fit_one(X, codes, G, z, y, wt, offset, eta0, phi0, glm, kern, nagq, out_x, out_u,
            out_beta, out_grad, out_hess, out_cov, out_info):
    """One whole fit; results into the ``out_*`` arrays.

    ``kern`` = (update, dvariance_vec kernel or 0 (the canonical route's weight slope),
    logpdf, observed-information kernel or 0, has phi, laplace_weights kernel or 0,
    whether it gives ``dW / d eta``,
    dlogpdf_dphi kernel or 0, the Laplace approximation at the observed information,
    update_newton kernel or 0, devres kernel, inverse link kernel, newton_terms kernel
    or 0, phi_weights kernel or 0);
    ``phi0`` the family parameter's start (unused without one); ``glm`` the fit without
    random effects from :func:`glm_means` (beta, then its PIRLS iterations) where it was
    made for that start, else NaN (it is made here).
    ``out_info`` = (status, complete deviance, evaluations, PIRLS iterations).
    ``out_x`` is (theta, beta[, log phi]) for nAGQ=1, (theta,) for nAGQ=0,
    ``out_grad`` and ``out_hess`` its derivatives (the Hessian possibly from just before
    a last short step: scalar_newton.REUSE_TOL); ``out_cov`` beta's covariance
    given theta.
    """
    (upd, dvar, logpdf, obsw, has_phi, lw, analytic_slope, dphi, laplace_observed,
     updn, devres, linkinv, terms, phi_weights) = kern
    n, p = X.shape
    W = workspace(n, G, p)
    obs, lev, cx, S, L, counts = W[0], W[1], W[2], W[3], W[4], W[5]
    reps, mult = distinct_rows(y, wt)
    P = (X, codes, z, y, wt, offset, upd, dvar, obsw, logpdf, has_phi, lw, analytic_slope,
         dphi, laplace_observed, updn, devres, reps, mult, linkinv, terms, phi_weights)
    u = np.zeros(G)
    joint = nagq >= 1
    if np.isnan(glm[0]):
        cols = columns(P, W)
        beta = glm_beta(cols[0], y, wt, offset, upd, eta0, obs, L)
        # nAGQ=0 takes only theta's start from the GLM (PIRLS estimates beta again)
        ok, _, its = modes_and_beta(0.0, X, codes, z, y, wt, offset, upd, u, beta, obs, lev,
                                    cx, S, L, cols, 1.0, STEP_TOL if joint else GLM_START_TOL)
        counts[1] += its
        if not ok:
            out_info[0] = PIRLS_FAILED
            return
    else:           # the same fit, made already: its eta (u = 0 at theta = 0)
        beta = glm[:p].copy()
        counts[1] += int(glm[p])
        _fixed_part(X, beta, offset, obs[0])
    if has_phi:
        # the GLM at the family parameter's start, not at 1: the Beta's fixed effects
        # depend on its precision (the benchmark's slope 0.26 at 1, 0.62 at the optimum)
        start = beta.copy()
        ok, _, its = modes_and_beta(0.0, X, codes, z, y, wt, offset, upd, u, beta, obs, lev,
                                    cx, S, L, columns(P, W), phi0, START_TOL)
        counts[1] += its
        if not ok:
            beta[:] = start
            _fixed_part(X, beta, offset, obs[0])
        # the working weights there
        call_update(upd, obs[0], y, wt, phi0, obs[1], obs[2], obs[3], obs[4])
    theta0 = moment_start(1.0, codes, G, z, obs, lev)
    k = 1 + p + int(has_phi) if joint else 1
    x = np.empty(k)
    x[0] = theta0
    if joint:
        x[1:1 + p] = beta
        if has_phi:
            x[1 + p] = np.log(phi0)
            x[1 + p] = conditional_phi(x, P, u, beta, W)
    grad = np.empty(k)
    H = np.empty((k, k))
    # u is 0 (the GLM's) or conditional_phi's modes (at x's theta and beta): PIRLS's start
    status, _, at_x = minimize(x, joint, P, u, beta, W, grad, H)
    out_info[0] = status
    out_info[2] = counts[0]
    out_info[3] = counts[1]
    if status != OK:
        return
    theta = x[0]
    # where the Hessian's last step left the workspace off x: back to x's mode (nAGQ=0's
    # gradient keeps what follows needs, the deviance terms too where W' has its rule)
    if not (at_x and not joint and dvar != 0) and not np.isfinite(
            _evaluate(theta, x, joint, P, u, beta, W)):
        out_info[0] = PIRLS_FAILED
        return
    phi = np.exp(x[1 + p]) if has_phi and joint else 1.0
    loglik = _loglik(phi, P, obs, reps, mult)
    uu = 0.0
    for j in range(G):
        uu += u[j] * u[j]
    out_info[1] = -2.0 * loglik + uu + _logdet(theta, logdet_weights(P, lev))
    out_x[:k] = x
    out_u[:] = u
    out_beta[:] = beta
    out_grad[:k] = grad
    out_hess[:k, :k] = H
    if joint:
        _given_theta_cov(theta, X, codes, z, obs[10] if laplace_observed else obs[2], out_cov)
    else:       # PIRLS's last Schur complement is this one: its factor is in L
        _cholesky_inverse(L, out_cov)


@njit(cache=True, nogil=True)
def distinct_rows(y, wt):
    """A row of each distinct (y, wt) pair (by bit pattern) and its number of rows, for
    :func:`glmmcore.objectives.scalar_newton.phi_term` (the family parameter's term, the
    log-likelihood's part free of mu); empty where there are more than
    :data:`DISTINCT_MAX` pairs or more than half as many as rows (the term is then summed
    over the rows).  One pass, a hash table of row indices."""
    n = y.shape[0]
    yb, wb = y.view(np.int64), wt.view(np.int64)
    table = np.full(_HASH_SLOTS, -1, dtype=np.int64)
    reps = np.empty(DISTINCT_MAX, dtype=np.int64)
    mult = np.zeros(DISTINCT_MAX)
    slot_of = np.empty(_HASH_SLOTS, dtype=np.int64)    # table slot -> pair number
    K = 0
    for i in range(n):
        h = yb[i] * _HASH_Y + wb[i] * _HASH_W     # wraps: the high bits mix all bits
        s = (h >> 48) & (_HASH_SLOTS - 1)
        while True:
            r = table[s]
            if r < 0:
                if K == DISTINCT_MAX or 2 * (K + 1) > n:
                    return reps[:0].copy(), mult[:0].copy()
                table[s] = i
                slot_of[s] = K
                reps[K] = i
                mult[K] = 1.0
                K += 1
                break
            if yb[r] == yb[i] and wb[r] == wb[i]:
                mult[slot_of[s]] += 1.0
                break
            s = (s + 1) & (_HASH_SLOTS - 1)
    return reps[:K].copy(), mult[:K].copy()


@njit(cache=True, nogil=True)
def conditional_phi(x, P, u, beta, W):
    """The log phi that maximizes ``sum log p(y | mu, phi)`` at the modes at ``x`` =
    (theta, beta, log phi): a start nearer the optimum than the family's, taken from the
    fit without random effects, which counts their spread as the family's (the Gamma's
    dispersion twice, the Beta's precision a third, on the gpa data and the plugin's).
    Newton's method in log phi, the slope from the family's ``dlogpdf_dphi`` (else
    central differences of logpdf), the curvature from forward differences of the
    slope; x's log phi where PIRLS or a step fails.  ``u`` ends at x's modes."""
    p = P[0].shape[1]
    start = x[1 + p]
    W[5][0] += 1
    if not np.isfinite(_evaluate(x[0], x, True, P, u, beta, W)):
        return start
    lp = start
    for _ in range(PHI_START_STEPS):
        g = _loglik_slope(lp, P, W[0])
        h = (_loglik_slope(lp + 1e3 * PHI_STEP, P, W[0]) - g) / (1e3 * PHI_STEP)
        if not (np.isfinite(g) and h < 0.0):
            break
        step = min(max(-g / h, -2.0), 2.0)
        lp += step
        if abs(step) < PHI_START_TOL:
            break
    return lp if np.isfinite(lp) else start


@njit(cache=True, nogil=True)
def _loglik_slope(lp, P, obs):
    """``d sum log p(y | mu, phi) / d log phi`` at obs' mu, phi = exp(lp)."""
    y, wt, logpdf, dphi = P[3], P[4], P[9], P[13]
    mu, out = obs[1], obs[13]
    phi = np.exp(lp)
    if dphi != 0:
        return phi * call_yms(dphi, y, mu, wt, phi, out)
    up = call_yms(logpdf, y, mu, wt, phi * np.exp(PHI_STEP), out)
    return (up - call_yms(logpdf, y, mu, wt, phi * np.exp(-PHI_STEP), out)) / (2 * PHI_STEP)


@njit(cache=True, nogil=True)
def glm_means(X, codes, G, z, Y, wt, offset, eta0, upd, out_mu, out_glm):
    """The fitted means of the GLM without random effects (phi = 1) of each column of
    ``Y``: a family parameter's start (the family's ``start_phi``) is taken from them.
    ``out_glm`` gets each fit's beta and PIRLS iterations (:func:`fit_one` starts from
    them), NaN where PIRLS failed."""
    n, p = X.shape
    obs, lev = _workspace(n, G)
    cx = np.zeros((G, p))
    S = np.zeros((p, p))
    L = np.zeros((p, p))
    u = np.zeros(G)
    cols = design_columns(X, codes, z, G)
    for j in range(Y.shape[1]):
        y = np.ascontiguousarray(Y[:, j])
        beta = glm_beta(cols[0], y, wt, offset, upd, np.ascontiguousarray(eta0[:, j]), obs, L)
        u[:] = 0.0
        ok, _, its = modes_and_beta(0.0, X, codes, z, y, wt, offset, upd, u, beta, obs, lev,
                                    cx, S, L, cols, 1.0, START_TOL)
        out_mu[:, j] = obs[1]
        out_glm[j, :p] = beta
        if not ok:
            out_glm[j, :p] = np.nan
        out_glm[j, p] = its


@njit(cache=True, nogil=True)
def _loglik(phi, P, obs, reps, mult):
    """``sum log p(y | mu, phi)`` at obs' mu: where the response has few distinct (y, wt)
    pairs (``reps``, ``mult``: :func:`distinct_rows`), the update kernel's deviance
    terms obs[4] plus ``-2 log p - dev`` (free of eta: the kernel contract) at a row of
    each pair, the family's logpdf (lgamma terms) at a few values instead of every row."""
    y, wt, logpdf = P[3], P[4], P[9]
    mu, dev = obs[1], obs[4]
    K = reps.shape[0]
    if K == 0:
        return call_yms(logpdf, y, mu, wt, phi, obs[6])
    buf = distinct_values(P, reps, mu, 1)
    lp = buf[3]
    call_yms(logpdf, buf[0], buf[2], buf[1], phi, lp)
    total = 0.0
    for i in range(dev.shape[0]):
        total += dev[i]
    for k in range(K):
        total += mult[k] * (-2.0 * lp[k] - dev[reps[k]])
    return -0.5 * total


@njit(cache=True, nogil=True)
def _cholesky_inverse(L, out):
    """The inverse of ``L L'`` into ``out``, column by column."""
    p = L.shape[0]
    e = np.zeros(p)
    col = np.empty(p)
    for c in range(p):
        e[:] = 0.0
        e[c] = 1.0
        small_cholesky_solve(L, e, col)
        for a in range(p):
            out[a, c] = col[a]


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
    if not small_cholesky(S, L):
        out[:, :] = np.nan
        return
    _cholesky_inverse(L, out)


@njit(cache=True, nogil=True)
def fit_columns(X, codes, G, z, Y, wt, offset, eta0, phi0, glm, kern, nagq, out_x, out_u,
                out_beta, out_grad, out_hess, out_cov, out_info):
    """:func:`fit_one` for each column of ``Y`` (and of ``eta0``, row of ``glm``), row j
    of each output."""
    for j in range(Y.shape[1]):
        fit_one(X, codes, G, z, np.ascontiguousarray(Y[:, j]), wt, offset,
                np.ascontiguousarray(eta0[:, j]), phi0[j], glm[j], kern, nagq, out_x[j],
                out_u[j], out_beta[j], out_grad[j], out_hess[j], out_cov[j], out_info[j])
