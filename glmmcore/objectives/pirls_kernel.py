"""The PIRLS iterations compiled in one loop, for the blocked factorization.

The same algorithm as :meth:`glmmcore.objectives.pirls.Pirls.run` (which documents it and
runs it in Python for the CHOLMOD factorization), without a Python round trip
per iteration: for small and medium models the interpreter's overhead would
otherwise cost as much as the arithmetic.  The tests check that both loops
give the same modes.

Predicted start.  When the previous run converged, the loop starts from the
modes predicted for the new (theta, beta) by one Newton step with the previous
factor, which is still in place: with ``g(u) = Lambda' Z' s(eta) - u`` (``s`` the score) zero at the
old mode ``u0``, linearizing in ``u`` and the parameters gives
``u = u0 + H^{-1} (dLambda' Z' s0 - Lambda0' Z' W0 d_eta)``, ``H`` the old
system and ``d_eta`` the change of the linear predictor at ``u0``.  Its error
is quadratic in the parameters' change, so the optimizer's small moves and the
finite-difference derivatives converge in 2 iterations instead of 3 (the third
confirmed the mode and refactored at its weights).  It costs two products with
Z and a solve, no factorization.  With a non-canonical link the kept factor is
Fisher's information (the Laplace approximation's), not the Hessian, and the
step is a chord step: fewer iterations still, not half.  When PIRLS estimates
beta too (``nAGQ=0``), the unknowns are ``(u, beta)``, the mode equations gain
``X' s(eta) = 0`` and the kept factor is that of the system of
``[Z Lambda, X]``: the same step predicts both, with ``d_eta = Z dLambda u0``
and the right-hand side ``-X' W0 d_eta`` for beta.  If the iterations
from a prediction fail (a long move out of the linearization's reach), they
run again from the previous modes, as without prediction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg.blocked import _factor, _solve
from ..linalg.crossprod import _crossprod, all_scalar
from ..linalg.dense import FALSE, TRUE
from ..linalg.rhs_solve import solve_rhs
from ..linalg.zlambda import apply_lambda, linear_predictor, zb_row, zb_row_scalars
from .family_kernels import call_observed, call_update, call_yms

CONVERGED, STOPPED_ON_DEVIANCE, HALVING_FAILED, MAX_ITERATIONS, NOT_POSITIVE_DEFINITE = range(5)
# With a non-canonical link the penalized deviance need not be convex (Poisson's sqrt
# link has a mirror mode at -eta): a prediction moving a spherical random effect by more
# than one prior SD is not trusted, and the iterations start from the last modes.
PREDICT_REACH = 1.0


@njit(cache=True, nogil=True)
def pirls_loop(theta, phi, beta_in_pirls, complete, limits, kernels, X, y, wt, offset, Y, u,
               beta, zargs, cargs, cwork, fargs, sargs, work, info, start):
    """Iterate to the conditional mode; returns a status code (see module constants).

    ``limits`` = (step_tol, max_iter, max_halvings, slow_iter, dev_tol, dev_offset,
    floor_tol);
    ``kernels`` = (update, logpdf_vec, observed_weights addresses, Laplace at the
    observed information, Newton steps, canonical link: 0 or 1); ``zargs``,
    ``cargs``, ``fargs``, ``sargs`` = the linear predictor's, cross-product's,
    factor's and solve's fixed arguments; ``cwork`` the cross-products' arrays;
    ``work`` = (eta, mu, w, r, dev, zb, base, lp) buffers.  ``u`` and ``beta``
    are updated in place; ``info`` gets (pdev, log|L|^2, log-likelihood,
    iterations, halvings, last step); the
    log-likelihood only if ``complete`` (its data-only constants cost as much
    as an iteration and do not move the optimum).  ``start`` is the state of
    the predicted start (:func:`predict_modes`; its flag: 0 nothing to predict
    from, 1 predict, -1 never).
    """
    eta, mu, w, r, _dev, _zb, base, lp = work
    flag = start[0]
    newton = kernels[4] != 0
    predicted = False
    if not beta_in_pirls:
        _fixed_part(X, beta, offset, base)
    if flag[0] == 1:
        reach = np.inf if kernels[5] != 0 else PREDICT_REACH
        predicted = predict_modes(theta, beta, X, zargs, sargs, start, u, beta_in_pirls, reach)
    capture = flag[0] >= 0
    if flag[0] == 1:
        flag[0] = 0
    iteration = halvings = 0
    for attempt in range(2 if predicted else 1):
        if attempt == 1:
            # the prediction was out of its reach (a long move): again from the last modes
            u[:] = start[3]
            if beta_in_pirls:
                beta[:] = start[2]
        # one call site: _iterate is inlined, and compiled once, here
        status, pdev, more, more_halvings, step = _iterate(
            theta, phi, beta_in_pirls, limits, kernels, X, y, wt, offset, Y, u, beta, zargs,
            cargs, cwork, fargs, sargs, work, info, start[5], capture)
        iteration += more
        halvings += more_halvings
        if status < HALVING_FAILED:
            break
    if status <= STOPPED_ON_DEVIANCE and (kernels[3] != 0 or newton):
        # log|L|^2 at the information the Laplace approximation uses
        if kernels[3] != 0:
            call_observed(kernels[2], eta, y, wt, phi, mu, w)
        else:
            call_update(kernels[0], eta, y, wt, phi, mu, w, r, _dev)
        _crossprod(*cargs, w, Y, *cwork)
        ok, logdet = _factor(theta, *fargs)
        info[1] = logdet
        if not ok:
            status = NOT_POSITIVE_DEFINITE
    if status == CONVERGED and flag[0] == 0:
        _keep_start(theta, beta, u, w, start)
    info[0] = pdev
    info[2] = call_yms(kernels[1], y, mu, wt, phi, lp) if complete else np.nan
    info[3] = iteration
    info[4] = halvings
    info[5] = step
    return status


@njit(cache=True, nogil=True, inline="always")
def _iterate(theta, phi, beta_in_pirls, limits, kernels, X, y, wt, offset, Y, u, beta, zargs,
             cargs, cwork, fargs, sargs, work, info, s0, capture):
    """PIRLS iterations from ``u`` (and ``beta``); returns (status, pdev, iterations,
    halvings, last step).  With ``capture``, the score at a converged mode goes to ``s0``."""
    step_tol, max_iter, max_halvings, slow_iter, dev_tol, dev_offset, floor_tol = limits
    eta, mu, w, r, _dev, zb, _base, _lp = work
    m = Y.shape[1]
    nsolve = m - 1
    pdev = _evaluate(theta, phi, beta_in_pirls, kernels, X, y, wt, offset, u, beta, zargs,
                     work, dev_offset)
    newton = kernels[4] != 0
    wbuf = np.empty(w.shape[0] if newton else 0)
    u_new = np.empty_like(u)
    b_new = np.empty(nsolve)
    u_try = np.empty_like(u)
    b_try = beta.copy()
    quadratic = kernels[4] != 0 or kernels[5] != 0
    halvings = 0
    step = np.inf
    full_step = np.inf       # the last step taken, if taken in full
    status = MAX_ITERATIONS
    iteration = 0
    while iteration < int(max_iter):
        iteration += 1
        if newton:
            newton_weights(kernels[2], eta, y, wt, phi, mu, w, r, wbuf)
        if not _newton(theta, beta_in_pirls, eta, offset, zb, r, w, Y, cargs, cwork, fargs,
                       sargs, u_new, b_new, info):
            status = NOT_POSITIVE_DEFINITE
            break
        last_step = step
        step = _rel_change(u_new, u)
        if beta_in_pirls:
            step = max(step, _rel_change(b_new, beta))
        if at_mode(step, last_step, full_step, quadratic, step_tol, floor_tol):
            status = CONVERGED
            if capture:
                for i in range(w.shape[0]):
                    s0[i] = w[i] * r[i]     # the score (Newton's weights keep the product)
            break
        t = 1.0
        accepted = False
        pdev_t = pdev
        for _ in range(int(max_halvings)):
            for i in range(u.shape[0]):
                u_try[i] = u[i] + t * (u_new[i] - u[i])
            if beta_in_pirls:
                for i in range(beta.shape[0]):
                    b_try[i] = beta[i] + t * (b_new[i] - beta[i])
            pdev_t = _evaluate(theta, phi, beta_in_pirls, kernels, X, y, wt, offset, u_try,
                               b_try, zargs, work, dev_offset)
            if pdev_t <= pdev + 1e-10 * (1.0 + abs(pdev)):
                accepted = True
                break
            t *= 0.5
            halvings += 1
        if not accepted:
            status = HALVING_FAILED
            break
        full_step = step if t == 1.0 else np.inf
        settled = (iteration >= slow_iter
                   and abs(pdev - pdev_t) < dev_tol * (abs(pdev_t) + 0.1))
        u[:] = u_try
        if beta_in_pirls:
            beta[:] = b_try
        pdev = pdev_t
        if settled:   # no finite mode in reach: factor at the final weights and stop
            if newton:
                newton_weights(kernels[2], eta, y, wt, phi, mu, w, r, wbuf)
            if not _newton(theta, beta_in_pirls, eta, offset, zb, r, w, Y, cargs, cwork,
                           fargs, sargs, u_new, b_new, info):
                status = NOT_POSITIVE_DEFINITE
            else:
                status = STOPPED_ON_DEVIANCE
            break
    return status, pdev, iteration, halvings, step


@njit(cache=True, nogil=True, inline="always")
def predict_modes(theta, beta, X, zargs, sargs, start, u, beta_in_pirls, reach=np.inf):
    """Set ``u`` (and ``beta`` if PIRLS estimates it) to the values predicted at the new
    parameters from the last converged run.

    ``start`` = (flag, theta0, beta0, u0, w0, s0, then scratch: d_theta of
    length ntheta, g and du of length q + p, zs of length q); the factor in ``sargs`` is the
    last run's.  One pass over the observations forms ``Z' W0 d_eta``,
    ``Z' s0`` and, estimating beta, ``X' W0 d_eta``.  Returns whether it
    predicted: not if the prediction is not finite, or moves a spherical random
    effect by more than ``reach``.
    """
    _, theta0, beta0, u0, w0, s0, d_theta, g, zs, du = start
    codes, Xall, p, xoff, boff, tidx, toff = zargs
    q = u.shape[0]
    nsolve = beta.shape[0] if beta_in_pirls else 0
    for t in range(theta.shape[0]):
        d_theta[t] = theta[t] - theta0[t]
    d_beta = beta - beta0           # zero when PIRLS estimates beta: it starts at beta0
    g_u, du_u = g[:q], du[:q]
    apply_lambda(p, boff, tidx, toff, d_theta, u0, du_u, FALSE)   # d_Lambda u0
    g[:] = 0.0
    zs[:] = 0.0
    if all_scalar(p):
        _predict_pass_scalars(X, codes, Xall, xoff, boff, w0, s0, du, d_beta, g, zs, nsolve)
    else:
        _predict_pass(X, codes, Xall, p, xoff, boff, w0, s0, du, d_beta, g, zs, nsolve)
    apply_lambda(p, boff, tidx, toff, theta0, g_u, du_u, TRUE)     # Lambda0' Z' W0 d_eta
    apply_lambda(p, boff, tidx, toff, d_theta, zs, g_u, TRUE)      # d_Lambda' Z' s0
    for k in range(q):
        g[k] -= du[k]
    solve_rhs(nsolve, *sargs, g[:q + nsolve], du[:q + nsolve])
    for k in range(q + nsolve):
        if not np.isfinite(du[k]):
            return False
    for k in range(q):
        if abs(du[k]) > reach:
            return False
    for k in range(q):
        u[k] = u0[k] + du[k]
    for j in range(nsolve):
        beta[j] = beta0[j] + du[q + j]
    return True


@njit(cache=True, nogil=True, inline="always")
def _predict_pass(X, codes, Xall, p, xoff, boff, w0, s0, du, d_beta, g, zs, nsolve):
    """``g = [Z' W0 d_eta; -X' W0 d_eta]`` (the latter ``nsolve`` long), ``zs = Z' s0``.

    ``d_eta = Z du + X d_beta`` is the change of the linear predictor at ``u0``.
    """
    q = zs.shape[0]
    for i in range(X.shape[0]):
        d_eta = zb_row(codes, Xall, p, xoff, boff, du, i)
        for j in range(d_beta.shape[0]):
            d_eta += X[i, j] * d_beta[j]
        wd, si = w0[i] * d_eta, s0[i]
        for k in range(codes.shape[1]):
            pk = p[k]
            row = boff[k] + codes[i, k] * pk
            for a in range(pk):
                x = Xall[i, xoff[k] + a]
                g[row + a] += x * wd
                zs[row + a] += x * si
        for j in range(nsolve):
            g[q + j] -= X[i, j] * wd


@njit(cache=True, nogil=True, inline="always")
def _predict_pass_scalars(X, codes, Xall, xoff, boff, w0, s0, du, d_beta, g, zs, nsolve):
    """:func:`_predict_pass` when every term is scalar (1.5x faster)."""
    q = zs.shape[0]
    for i in range(X.shape[0]):
        d_eta = zb_row_scalars(codes, Xall, xoff, boff, du, i)
        for j in range(d_beta.shape[0]):
            d_eta += X[i, j] * d_beta[j]
        wd, si = w0[i] * d_eta, s0[i]
        for k in range(codes.shape[1]):
            row = boff[k] + codes[i, k]
            x = Xall[i, xoff[k]]
            g[row] += x * wd
            zs[row] += x * si
        for j in range(nsolve):
            g[q + j] -= X[i, j] * wd


@njit(cache=True, nogil=True, inline="always")
def _keep_start(theta, beta, u, w, start):
    """Keep what the next run's prediction needs (the factor stays in its workspace)."""
    flag, theta0, beta0, u0, w0 = start[0], start[1], start[2], start[3], start[4]
    theta0[:] = theta
    beta0[:] = beta
    u0[:] = u
    w0[:] = w
    flag[0] = 1


@njit(cache=True, nogil=True)
def newton_weights(observed, eta, y, wt, phi, mu, w, r, wbuf):
    """Turn Fisher scoring's weights and working residuals into Newton's, in place.

    The score ``w r`` is kept and divided by the observed information; where
    that is not positive (far from the mode with some links) Fisher's stay.
    Returns whether the weights were changed.
    """
    call_observed(observed, eta, y, wt, phi, mu, wbuf)
    for i in range(w.shape[0]):
        if wt[i] != 0.0 and not (wbuf[i] > 0.0 and np.isfinite(wbuf[i])):
            return False
    for i in range(w.shape[0]):
        if wt[i] != 0.0:
            r[i] = w[i] * r[i] / wbuf[i]
            w[i] = wbuf[i]
    return True


@njit(cache=True, nogil=True)
def _fixed_part(X, beta, offset, base):
    n, p = X.shape
    for i in range(n):
        s = offset[i]
        for j in range(p):
            s += X[i, j] * beta[j]
        base[i] = s


@njit(cache=True, nogil=True)
def _evaluate(theta, phi, beta_in_pirls, kernels, X, y, wt, offset, u, beta, zargs, work,
              dev_offset):
    """Linear predictor, working quantities and penalized deviance at (u, beta);
    ``dev_offset`` completes the update kernel's deviance (:attr:`.pirls.Pirls.dev_offset`)."""
    eta, mu, w, r, dev, zb, base, _lp = work
    if beta_in_pirls:
        _fixed_part(X, beta, offset, base)
    linear_predictor(*zargs, theta, u, base, zb, eta)
    total = call_update(kernels[0], eta, y, wt, phi, mu, w, r, dev) + dev_offset
    for i in range(u.shape[0]):
        total += u[i] * u[i]
    return total


@njit(cache=True, nogil=True, inline="always")
def _newton(theta, beta_in_pirls, eta, offset, zb, r, w, Y, cargs, cwork, fargs, sargs, u_new,
            b_new, info):
    """Factor at the current weights and solve for the full Newton step."""
    m = Y.shape[1]
    for i in range(eta.shape[0]):
        Y[i, m - 1] = (eta[i] - offset[i] if beta_in_pirls else zb[i]) + r[i]
    _crossprod(*cargs, w, Y, *cwork)
    ok, logdet = _factor(theta, *fargs)
    info[1] = logdet
    if not ok:
        return False
    _solve(m - 1, *sargs, u_new, b_new)
    return True


@njit(cache=True, nogil=True)
def at_mode(step, last_step, full_step, quadratic, step_tol, floor_tol):
    """Whether the iterations stop before taking the Newton step ``step`` (relative).

    Converged below ``step_tol``.  Below ``floor_tol`` a step is also taken as
    round-off: Newton's steps (``quadratic``: the canonical link, or Newton's
    weights) shrink quadratically, so after a full step below ``floor_tol`` the
    iterate is at the mode to round-off and the next step measures nothing but
    round-off, however it compares with the last one (whose size, near 1e-12,
    varies with the machine's summation order).  Fisher scoring with another link
    converges linearly: there only a step no smaller than the last is round-off.
    """
    if step < step_tol:
        return True
    if step >= floor_tol:
        return False
    if quadratic:
        return full_step < floor_tol
    return step >= last_step


def rel_change(new: np.ndarray, old: np.ndarray) -> float:
    """:func:`_rel_change` with numpy, for the Python loops (the sparse factorization's)."""
    if new.size == 0:
        return 0.0
    return float(np.max(np.abs(new - old)) / (1.0 + np.max(np.abs(old))))


@njit(cache=True, nogil=True)
def _rel_change(new, old):
    if new.shape[0] == 0:
        return 0.0
    diff, size = 0.0, 0.0
    for i in range(new.shape[0]):
        diff = max(diff, abs(new[i] - old[i]))
        size = max(size, abs(old[i]))
    return diff / (1.0 + size)
