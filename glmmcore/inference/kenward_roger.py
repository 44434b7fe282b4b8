"""Kenward-Roger's adjusted covariance of the fixed effects and denominator degrees of freedom.

pbkrtest's method (Halekoh and Hojsgaard 2014; Kenward and Roger 1997): the
marginal covariance is linear in the variance parameters,
``Sigma = sum_i s_i G_i`` -- for each random-effects term one parameter per
variance and covariance of its ``VarCorr`` matrix (``G_i = Z_t (I x E_i) Z_t'``)
and the residual variance (``G = I``) -- and with ``Phi = (X' Sigma^{-1} X)^{-1}``

    P_i  = -X' Sigma^-1 G_i Sigma^-1 X
    Q_ij =  X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X
    I_ij =  tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j)
    W    =  2 I^{-1}
    Phi_A = Phi + 2 Phi (sum_ij W_ij (Q_ij - P_i Phi P_j)) Phi.

pbkrtest forms ``Sigma`` and the ``G_i`` as ``n x n`` matrices.  Here every
quantity is reduced, with Woodbury's identity ``Sigma^{-1} = sigma^-2 (I - Z R Z')``
(``R = Lambda (Lambda' Z'Z Lambda + I)^{-1} Lambda'``), to products of the
cross-products ``Z'Z``, ``Z'X`` and ``X'X``: ``q x q`` dense matrices at most
(``q`` random effects), never ``n x n``.  Cost: ``O(nnz(Z) q)`` to form ``Z'Z``,
``O(q^3)`` for the factorization and ``S = Z' Sigma^{-1} Z``, and per pair of
variance parameters ``O(m_i m_j)`` for their trace (``m_i`` the levels of the
term's factor, times 2 for a covariance) and ``O(m_i p^2)`` for ``Q_ij``;
memory ``O(q^2)``.  Prior weights enter as in the likelihood (the residual
``G`` is ``W^{-1}``; pbkrtest ignores weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

SINGULAR_TOL = 1e-10   # pbkrtest: a generalized inverse of I when its smallest |eigenvalue| is


@dataclass(frozen=True)
class KenwardRoger:
    """pbkrtest's ``vcovAdj`` and what its degrees of freedom need.

    Attributes
    ----------
    vcov_beta
        ``Phi``, the unadjusted covariance of the fixed effects.
    vcov_adjusted
        ``Phi_A``, the adjusted covariance.
    P
        The ``P_i`` matrices (``p x p``), one per variance parameter.
    W
        ``W``, twice the inverse of the expected information of the variance parameters.
    """

    vcov_beta: np.ndarray
    vcov_adjusted: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray


def random_effects_matrix(predictor: Any) -> sp.csc_matrix:
    """``Z`` (``n x q``) in the order of glmmcore's random effects (block by block,
    level-major)."""
    n = predictor.n
    rows, cols, vals = [], [], []
    offset = 0
    for block in predictor.reterms.blocks:
        codes = np.asarray(block.factor.codes, dtype=np.int64)
        for j in range(block.p):
            rows.append(np.arange(n))
            cols.append(offset + codes * block.p + j)
            vals.append(block.X[:, j])
        offset += block.q
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, offset))


def relative_factor(predictor: Any, theta: np.ndarray) -> sp.csc_matrix:
    """``Lambda(theta)``: block diagonal, one ``T`` per level of each block."""
    parts = [sp.kron(sp.identity(block.nlevels), sp.csr_matrix(T))
             for block, T in zip(predictor.reterms.blocks,
                                 predictor.reterms.T_matrices(np.asarray(theta, dtype=float)))]
    return sp.block_diag(parts, format="csc")


def variance_parameters(predictor: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each random-effects variance or covariance as the pairs ``(a, b)`` of random-effect
    indices where its ``G_i = Z D_i Z'`` has ``D_i[a, b] = 1``."""
    out = []
    offsets = np.concatenate([[0], np.cumsum([b.q for b in predictor.reterms.blocks])])
    for term in predictor.reterms.terms:
        block = predictor.reterms.blocks[term.block]
        base = offsets[term.block] + np.arange(block.nlevels) * block.p
        cols = list(term.cols)
        for j in range(len(cols)):
            for i in range(j, len(cols)):
                a, b = base + cols[i], base + cols[j]
                out.append((a, b) if i == j else (np.concatenate([a, b]), np.concatenate([b, a])))
    return out


def kenward_roger(fit: Any) -> KenwardRoger:
    """pbkrtest's adjusted covariance of an LMM fit's fixed effects (module doc)."""
    predictor = fit.predictor
    sw = np.sqrt(fit.response.weights)
    X = predictor.X * sw[:, None]
    Z = sp.diags(sw) @ random_effects_matrix(predictor)
    Lam = relative_factor(predictor, fit.theta)
    n, p, q = X.shape[0], X.shape[1], Z.shape[1]
    s2 = float(fit.sigma) ** 2
    Gz = (Z.T @ Z).toarray()
    Gx = np.asarray(Z.T @ X)
    Gxx = X.T @ X
    Lam_d = Lam.toarray()
    M = Lam_d.T @ Gz @ Lam_d + np.eye(q)
    R = Lam_d @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(M, lower=True), Lam_d.T)
    RGz = R @ Gz
    I_RGz = np.eye(q) - RGz
    A = I_RGz.T @ Gx / s2                        # Z' Sigma^-1 X
    S = Gz @ I_RGz / s2                          # Z' Sigma^-1 Z
    S = (S + S.T) / 2.0
    XSX = (Gxx - Gx.T @ R @ Gx) / s2             # X' Sigma^-1 X
    Phi = np.linalg.inv((XSX + XSX.T) / 2.0)
    # Sigma^-1 X = X cx + Z cz and Sigma^-1 Z = Z I_RGz / s2: the second powers from them
    cz = -R @ Gx / s2
    cx = np.eye(p) / s2
    X2X = cx.T @ Gxx @ cx + cx.T @ Gx.T @ cz + cz.T @ Gx @ cx + cz.T @ Gz @ cz
    Z2X = I_RGz.T @ (Gx @ cx + Gz @ cz) / s2     # Z' Sigma^-2 X
    Z2Z = I_RGz.T @ Gz @ I_RGz / s2 ** 2         # Z' Sigma^-2 Z
    X3X = cx.T @ XSX @ cx + cx.T @ A.T @ cz + cz.T @ A @ cx + cz.T @ S @ cz
    tr_s2 = (n - 2.0 * np.trace(RGz) + np.sum(RGz * RGz.T)) / s2 ** 2

    params = variance_parameters(predictor)
    m = len(params) + 1
    P = [-(A[a].T @ A[b]) for a, b in params] + [-X2X]
    Q: dict[tuple[int, int], np.ndarray] = {}
    K = np.empty((m, m))
    res = m - 1
    for i, (a, b) in enumerate(params):
        for j in range(i, len(params)):
            c, d = params[j]
            Q[i, j] = A[a].T @ S[np.ix_(b, c)] @ A[d]
            K[i, j] = K[j, i] = np.sum(S[np.ix_(b, c)] * S[np.ix_(a, d)])
        Q[i, res] = A[a].T @ Z2X[b]
        K[i, res] = K[res, i] = np.sum(Z2Z[b, a])
    Q[res, res] = X3X
    K[res, res] = tr_s2

    info = np.empty((m, m))
    for i in range(m):
        PhiPi = Phi @ P[i]
        for j in range(i, m):
            info[i, j] = info[j, i] = (K[i, j] - 2.0 * np.sum(Phi * Q[i, j])
                                       + np.sum(PhiPi * (P[j] @ Phi)))
    if np.min(np.abs(np.linalg.eigvalsh(info))) > SINGULAR_TOL:
        W = 2.0 * np.linalg.inv(info)
    else:
        W = 2.0 * np.linalg.pinv(info)
    W = (W + W.T) / 2.0
    U = np.zeros((p, p))
    for i in range(m):
        for j in range(i + 1, m):
            U += W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
    U = U + U.T
    for i in range(m):
        U += W[i, i] * (Q[i, i] - P[i] @ Phi @ P[i])
    adjusted = Phi + 2.0 * Phi @ U @ Phi
    return KenwardRoger(vcov_beta=Phi, vcov_adjusted=adjusted, P=P, W=W)


def kr_test(kr: KenwardRoger, L: np.ndarray, beta: np.ndarray) -> dict[str, float]:
    """pbkrtest's Kenward-Roger F test of ``L beta = 0`` (``.KR_adjust``).

    Returns
    -------
    dict
        ``ndf`` (the rank of ``L``), ``ddf``, ``F_unscaled`` (the Wald
        statistic with the adjusted covariance over ``ndf``), ``scaling``
        (the F statistic is ``scaling * F_unscaled``) and ``F``.
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    Phi = kr.vcov_beta
    q = int(np.linalg.matrix_rank(L))
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    u = [TP @ Pi @ Phi for Pi in kr.P]
    A1 = A2 = 0.0
    m = len(u)
    for i in range(m):
        for j in range(i, m):
            e = 1.0 if i == j else 2.0
            A1 += e * kr.W[i, j] * np.trace(u[i]) * np.trace(u[j])
            A2 += e * kr.W[i, j] * np.sum(u[i] * u[j].T)
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denom = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
    v0 = 1.0 + c1 * B
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    v1, v2 = 1.0 - c2 * B, 1.0 - c3 * B
    ratio = 1.0 if abs(1.0 - A2 / q) < 1e-14 and abs(v1) < 1e-14 else (1.0 - A2 / q) / v1
    rho = ratio ** 2 * v0 / v2 / q
    ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
    scaling = 1.0 if abs(ddf - 2.0) < 0.01 else ddf * (1.0 - A2 / q) / (ddf - 2.0)
    Lb = L @ beta
    F_unscaled = float(Lb @ np.linalg.solve(L @ kr.vcov_adjusted @ L.T, Lb)) / q
    return {"ndf": q, "ddf": float(ddf), "F_unscaled": F_unscaled, "scaling": float(scaling),
            "F": float(scaling * F_unscaled)}


def coefficient_df(kr: KenwardRoger, index: int) -> float:
    """Kenward-Roger degrees of freedom of one coefficient (pbkrtest's ``Lb_ddf``)."""
    L = np.zeros((1, kr.vcov_beta.shape[0]))
    L[0, index] = 1.0
    return kr_test(kr, L, np.zeros(L.shape[1]))["ddf"]
