"""The GLM without random effects by IRLS, compiled: the GLMM's starting fixed effects.

lme4 starts ``glmer`` from ``glm.fit``'s coefficients.  PIRLS at ``theta = 0``
gives them too (the modes are then penalized to 0), but each of its iterations
forms and factors the whole penalized system, ``q + p`` unknowns; here one
iteration is a pass over the ``n x p`` design and a ``p x p`` Cholesky
(``patents_pois_olre``, 4,809 observation-level modes: the start 3.1 -> 1.0 ms).
The same iterations as PIRLS's (:mod:`glmmcore.objectives.pirls`): Newton's weights
where the family asks for them (non-canonical links; Fisher scoring's where
those are not positive), step-halving on the deviance, and the stop on the
relative increment; the working weights and residuals at the end are the ones
PIRLS would leave.  :func:`glm_irls_numpy` takes the same iterations with numpy's
products and solves, for the sparse factorization's fits (the cold path's: their
first fit does not wait for this loop to compile).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..linalg.dense import chol_lower_small, solve_lower, solve_lower_t
from .family_kernels import call_update
from .pirls_kernel import _fixed_part, _rel_change, at_mode, newton_weights, rel_change

CONVERGED, NOT_POSITIVE_DEFINITE, HALVING_FAILED, MAX_ITERATIONS = range(4)


@njit(cache=True, nogil=True)
def glm_irls(update, observed, newton, canonical, X, y, wt, offset, phi, beta, limits, eta,
             mu, w, r, dev):
    """Iterate ``beta`` (in place) to the GLM's maximum likelihood; returns a status.

    ``update`` and ``observed`` are the family's kernels (``observed`` used when
    ``newton``; ``canonical``: the link is canonical, so Fisher scoring is Newton's
    method, :func:`.pirls_kernel.at_mode`); ``limits`` = (step_tol, floor_tol, max_iter,
    max_halvings);
    ``eta``, ``mu``, ``w``, ``r``, ``dev`` end at the returned ``beta`` (working
    weights and residuals there, as the moment start reads them).
    """
    step_tol, floor_tol, max_iter, max_halvings = limits
    p = beta.shape[0]
    A = np.empty((p, p))
    b = np.empty(p)
    trial = np.empty(p)
    wbuf = np.empty(w.shape[0] if newton else 0)
    deviance = _deviance_at(update, X, y, wt, offset, phi, beta, eta, mu, w, r, dev)
    quadratic = newton or canonical
    step = np.inf
    full_step = np.inf
    for _ in range(int(max_iter)):
        if newton:
            newton_weights(observed, eta, y, wt, phi, mu, w, r, wbuf)
        if not _scoring_step(X, offset, eta, w, r, A, b):
            return NOT_POSITIVE_DEFINITE
        last_step = step
        step = _rel_change(b, beta)
        if at_mode(step, last_step, full_step, quadratic, step_tol, floor_tol):
            return CONVERGED
        t = 1.0
        for _ in range(int(max_halvings)):
            for j in range(p):
                trial[j] = beta[j] + t * (b[j] - beta[j])
            value = _deviance_at(update, X, y, wt, offset, phi, trial, eta, mu, w, r, dev)
            if value <= deviance + 1e-10 * (1.0 + abs(deviance)):
                break
            t *= 0.5
        else:
            _deviance_at(update, X, y, wt, offset, phi, beta, eta, mu, w, r, dev)
            return HALVING_FAILED
        beta[:] = trial
        deviance = value
        full_step = step if t == 1.0 else np.inf
    return MAX_ITERATIONS


def glm_irls_numpy(update, observed, newton, canonical, X, y, wt, offset, phi, beta, limits,
                   eta, mu, w, r, dev):
    """:func:`glm_irls`'s iterations (the same arguments and status) with numpy."""
    step_tol, floor_tol, max_iter, max_halvings = limits
    wbuf = np.empty(w.shape[0] if newton else 0)

    def deviance_at(coef):
        np.add(X @ coef, offset, out=eta)
        return call_update(update, eta, y, wt, phi, mu, w, r, dev)

    deviance = deviance_at(beta)
    step = full_step = np.inf
    for _ in range(int(max_iter)):
        if newton:
            newton_weights(observed, eta, y, wt, phi, mu, w, r, wbuf)
        try:
            L = np.linalg.cholesky(X.T @ (X * w[:, None]))
        except np.linalg.LinAlgError:
            return NOT_POSITIVE_DEFINITE
        b = np.linalg.solve(L.T, np.linalg.solve(L, X.T @ (w * (eta - offset + r))))
        last_step = step
        step = rel_change(b, beta)
        if at_mode(step, last_step, full_step, newton or canonical, step_tol, floor_tol):
            return CONVERGED
        t = 1.0
        for _ in range(int(max_halvings)):
            trial = beta + t * (b - beta)
            value = deviance_at(trial)
            if value <= deviance + 1e-10 * (1.0 + abs(deviance)):
                break
            t *= 0.5
        else:
            deviance_at(beta)
            return HALVING_FAILED
        beta[:] = trial
        deviance = value
        full_step = step if t == 1.0 else np.inf
    return MAX_ITERATIONS


@njit(cache=True, nogil=True)
def _deviance_at(update, X, y, wt, offset, phi, beta, eta, mu, w, r, dev):
    _fixed_part(X, beta, offset, eta)
    return call_update(update, eta, y, wt, phi, mu, w, r, dev)


@njit(cache=True, nogil=True)
def _scoring_step(X, offset, eta, w, r, A, b):
    """``b`` = the weighted least-squares solution for the working response; False if
    ``X' W X`` is not positive definite."""
    n, p = X.shape
    A[:] = 0.0
    b[:] = 0.0
    for i in range(n):
        z = eta[i] - offset[i] + r[i]
        for j in range(p):
            wx = w[i] * X[i, j]
            b[j] += wx * z
            for k in range(j + 1):
                A[j, k] += wx * X[i, k]
    if not chol_lower_small(A):
        return False
    solve_lower(A, b)
    solve_lower_t(A, b)
    return True
