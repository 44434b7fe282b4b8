"""Adaptive Gauss-Hermite quadrature (nAGQ > 1) for one grouping factor.

Given theta and beta the groups are independent, so the marginal likelihood
is a product of ``p``-dimensional integrals, one per level.  Around each
level's conditional mode ``u_j``, with ``L_j`` the Cholesky factor of that
level's block of ``Lambda' Z' W Z Lambda + I`` (the curvature PIRLS leaves),
``u = u_j + L_j^{-T} v`` turns the integrand into a near-standard-normal
density in ``v``, integrated with the product Gauss-Hermite rule::

    log int p(y_j | u) phi(u) du
        = -log|L_j| + log sum_k w_k exp(log p(y_j | u_k) - |u_k|^2 / 2 + |v_k|^2 / 2)

At the nodes ``log p(y_j | u)`` comes from the family's ``loglik_eta_vec``
kernel, exact up to a term free of the linear predictor: from the cumulant
where the family has one (canonical link: one ``exp`` per observation and node
for Poisson, where ``linkinv`` and ``dev_resid`` take an ``exp`` and a ``log``),
else from ``dev_resid``.  That term is added back once per evaluation, at the
mode, so the value is the same whichever kernel is used.

With one node this is the Laplace approximation.  lme4 integrates only a
scalar random effect; here up to :data:`MAX_DIM` correlated random effects
of one grouping factor (``(1 + x | g)``) are integrated with ``nAGQ^p`` nodes.
The log-likelihood keeps every constant, so it compares with Laplace fits.
"""

from __future__ import annotations

import itertools

import numpy as np
from numba import njit

from ..errors import ModelSpecError
from .family_kernels import FamilyKernels, call_yms, run_sum
from .pirls import Pirls

MAX_DIM = 3
MAX_NODES = 25   # lme4's limit on nAGQ


def check_quadrature(blocks: list, nagq: int) -> None:
    """Raise before fitting if nAGQ cannot be used with these random effects."""
    if nagq < 0:
        raise ModelSpecError(f"nAGQ must be 0, 1 or a number of quadrature nodes, not {nagq}")
    if nagq <= 1:
        return
    if nagq > MAX_NODES:
        raise ModelSpecError(f"nAGQ = {nagq} is more than {MAX_NODES} nodes per dimension")
    if len(blocks) > 1:
        names = ", ".join(b.factor.name for b in blocks)
        raise ModelSpecError(f"nAGQ > 1 integrates the random effects of a single grouping "
                             f"factor, but the model has {len(blocks)} ({names}); the groups "
                             "are then not independent. Use nAGQ = 1 (Laplace) or nAGQ = 0.")
    if blocks[0].p > MAX_DIM:
        raise ModelSpecError(f"nAGQ > 1 integrates at most {MAX_DIM} random effects per group; "
                             f"'{blocks[0].factor.name}' has {blocks[0].p} "
                             f"({', '.join(blocks[0].colnames)}). Use nAGQ = 1 (Laplace).")


def gauss_hermite(k: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Product Gauss-Hermite rule for the standard normal in ``dim`` dimensions.

    Returns nodes ``(k**dim, dim)`` and log-weights summing (in exp) to 1.
    """
    x, w = np.polynomial.hermite_e.hermegauss(k)
    logw = np.log(w / np.sqrt(2.0 * np.pi))
    nodes = np.array(list(itertools.product(x, repeat=dim)), dtype=float).reshape(-1, dim)
    logs = np.array([sum(c) for c in itertools.product(logw, repeat=dim)], dtype=float)
    return np.ascontiguousarray(nodes), logs


class Quadrature:
    """AGQ deviance for a PIRLS workspace of a one-factor model.

    The observations are taken level by level (a fixed permutation): each
    node's linear predictor is then a level's shift added to a contiguous run,
    and its log-likelihood a sum over that run.
    """

    def __init__(self, pirls: Pirls, nagq: int) -> None:
        block = pirls.predictor.reterms.blocks[0]
        self.pirls = pirls
        self.nodes, self.logw = gauss_hermite(nagq, block.p)
        codes = block.factor.codes
        order = np.argsort(codes, kind="stable")
        self.level_ptr = np.searchsorted(codes[order], np.arange(block.nlevels + 1))
        self.X1 = np.ascontiguousarray(block.X[order])
        self.X = np.ascontiguousarray(pirls.predictor.X[order])
        self.offset = pirls.offset[order]
        self.y, self.wt = pirls.y[order], pirls.wt[order]
        self.buffers = [np.empty(pirls.predictor.n) for _ in range(3)]
        self._shift: tuple[float, float] | None = None   # (phi, the objective's data term)

    def deviance(self, theta: np.ndarray, phi: float, kernels: FamilyKernels,
                 complete: bool = True) -> float:
        """-2 log-likelihood by AGQ at the mode the PIRLS workspace holds.

        ``complete=False`` leaves out what ``dev_resid`` leaves out of
        ``-2 log p(y)`` (a term free of the parameters), as the Laplace
        objective does.
        """
        pirls = self.pirls
        pred = pirls.predictor
        T1 = pred.reterms.T_matrices(theta)[0]
        block = pred.reterms.blocks[0]
        U = pirls.u.reshape(block.nlevels, block.p)
        eta_fixed, eta, out = self.buffers
        np.dot(self.X, pirls.beta, out=eta_fixed)
        eta_fixed += self.offset
        value = _agq_deviance(kernels.loglik_eta_vec, self.level_ptr, self.X1,
                              np.ascontiguousarray(T1), np.ascontiguousarray(U),
                              pirls.factor.L11, eta_fixed, self.y, self.wt, float(phi),
                              self.nodes, self.logw, eta, out)
        return value - 2.0 * self._data_term(kernels, float(phi), complete)

    def _data_term(self, kernels: FamilyKernels, phi: float, complete: bool) -> float:
        """What the nodes' kernel leaves out of the log-likelihood, or (``complete=False``)
        of ``-dev_resid / 2``: a term free of eta, taken at the mode.  The latter is kept
        while phi is unchanged (it depends on the data and phi only)."""
        if not complete and self._shift is not None and self._shift[0] == phi:
            return self._shift[1]
        pirls, out = self.pirls, self.buffers[2]
        y, mu, wt = pirls.y, pirls.mu, pirls.wt
        kept = (call_yms(kernels.logpdf_vec, y, mu, wt, phi, out) if complete
                else -0.5 * call_yms(kernels.devres_vec, y, mu, wt, phi, out))
        call_yms(kernels.loglik_eta_vec, y, pirls.eta, wt, phi, out)
        term = kept - float(np.sum(out))
        if not complete:
            self._shift = (phi, term)
        return term


@njit(cache=True, nogil=True)
def _agq_deviance(loglik_fn, level_ptr, X1, T1, U, L11, eta_fixed, y, wt, phi, nodes, logw,
                  eta, out):
    """-2 log-likelihood by the product rule, without the kernel's data term.  The
    observations are in level order, level ``j`` at ``level_ptr[j]:level_ptr[j + 1]``."""
    nlev, p = U.shape
    N = nodes.shape[0]
    shift, penalty, logdet = _node_shifts(T1, U, L11, nodes)
    S = np.zeros((nlev, N))
    for k in range(N):
        for j in range(nlev):
            for i in range(level_ptr[j], level_ptr[j + 1]):
                s = eta_fixed[i]
                for a in range(p):
                    s += X1[i, a] * shift[j, k, a]
                eta[i] = s
        call_yms(loglik_fn, y, eta, wt, phi, out)
        for j in range(nlev):
            S[j, k] = run_sum(out, level_ptr[j], level_ptr[j + 1])
    total = 0.0
    for j in range(nlev):
        best = -np.inf
        for k in range(N):
            v = logw[k] + S[j, k] + penalty[j, k]
            if v > best:
                best = v
        acc = 0.0
        for k in range(N):
            acc += np.exp(logw[k] + S[j, k] + penalty[j, k] - best)
        total += best + np.log(acc) - logdet[j]
    return -2.0 * total


@njit(cache=True, nogil=True)
def _node_shifts(T1, U, L11, nodes):
    """Each level's random effect ``T1 u_jk`` at each node, the penalty
    ``-|u_jk|^2/2 + |v_k|^2/2`` and ``log|L_j|``."""
    nlev, p = U.shape
    N = nodes.shape[0]
    shift = np.empty((nlev, N, p))
    penalty = np.empty((nlev, N))
    logdet = np.zeros(nlev)
    ujk = np.empty(p)
    for j in range(nlev):
        L = L11[j]
        for a in range(p):
            logdet[j] += np.log(L[a, a])
        for k in range(N):
            for a in range(p):
                ujk[a] = nodes[k, a]
            for a in range(p - 1, -1, -1):   # L' x = v
                s = ujk[a]
                for c in range(a + 1, p):
                    s -= L[c, a] * ujk[c]
                ujk[a] = s / L[a, a]
            pen = 0.0
            for a in range(p):
                ujk[a] += U[j, a]
                pen += nodes[k, a] * nodes[k, a] - ujk[a] * ujk[a]
            penalty[j, k] = 0.5 * pen
            for a in range(p):
                s = 0.0
                for c in range(p):
                    s += T1[a, c] * ujk[c]
                shift[j, k, a] = s
    return shift, penalty, logdet
