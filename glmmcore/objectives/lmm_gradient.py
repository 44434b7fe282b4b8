"""Gradient of a linear mixed model's profiled deviance with respect to theta.

With ``M`` the penalized system (``Lambda' Z' W Z Lambda + I``, and for REML
the fixed effects' rows and columns too), ``u`` the spherical random effects
at the optimum over ``(u, beta)``, ``r2`` the penalized residual sum of squares
and ``dof`` = n (ML) or n - p (REML), the profiled deviance is
``log|M| + dof log r2 + const``.  For one grouping factor with relative
covariance factor ``T`` (``k x k``, lower triangular) and levels ``l``,
``Lambda`` is ``T`` repeated along the diagonal, and ``d Lambda / d theta_j``
places a 1 at every position ``(r, c)`` of ``T`` that holds ``theta_j``.  Then

- ``d log|M| / d theta_j = 2 sum_(r,c) [K T^{-1}]_(c,r)`` with
  ``K = sum_l (I - C_l)``, ``C_l`` the diagonal block of ``M^{-1}`` of level
  ``l``, because ``M^{-1} Lambda' Z'WZ Lambda = I - M^{-1}`` on the random
  effects' rows;
- ``d r2 / d theta_j = -2 sum_(r,c) [U T^{-1}]_(c,r)`` with ``U = sum_l u_l u_l'``,
  by the envelope theorem and the normal equations ``Lambda' Z' W r = u``.

So the gradient is ``2 [(K - dof / r2 U) T^{-1}]_(c,r)`` summed over the
positions of ``theta_j``, at the cost of the diagonal blocks of ``M^{-1}``
summed over levels (:mod:`.linalg.inverse`): 1.6-2 factorizations
(docs/design.md).

For REML, ``M`` has the fixed effects' rows too.  With ``L`` the factor of
the random effects' system ``A``, ``L_X = B' L^{-T}`` the fixed effects' rows
of the factor and ``R_X`` their diagonal block, the random effects' block of
``M^{-1}`` is ``A^{-1} + H H'`` with ``H = L^{-T} L_X' R_X^{-T}``
(``q x p``, ``p`` back-substitutions): the blocked factorization takes the
diagonal blocks of ``A^{-1}`` and adds ``H``'s (:func:`_add_fixed_rows`),
instead of the selected inverse over the ``p`` dense rows of ``X`` in ``D``
(``socio_m4``, ``p = 7``: inverse blocks 125 -> 43 us plus 40 for ``H``; the
whole gradient 102 -> 95 us).

``T^{-1}`` needs the diagonal of ``T`` away from 0.  A block with a diagonal
element below :data:`GRADIENT_MIN_DIAG` (a fit on or near its boundary), where
the identity above loses its precision, is reported missing; the caller
takes those derivatives at a nearby point
(:meth:`glmmcore.objectives.lmm.LmmDeviance.value_and_gradient`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ..linalg.blocked import BlockedFactor, _solve
from ..linalg.dense import solve_lower_t
from ..linalg.inverse import diag_blocks_into

GRADIENT_MIN_DIAG = 1e-6


def profiled_gradient(dev: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradient of ``dev`` at ``theta``, and where it is not available.

    Parameters
    ----------
    dev
        An :class:`~glmmcore.objectives.lmm.LmmDeviance` whose factor was just computed at
        ``theta`` (by calling ``dev(theta)``).
    theta
        Covariance parameters.

    Returns
    -------
    grad : ndarray
        The gradient, the same length as ``theta`` (NaN where not available).
    missing : ndarray of bool
        The elements of a block whose ``T`` is nearly singular (module doc).
    """
    if isinstance(dev.factor, BlockedFactor):
        return _blocked_gradient(dev, theta)
    reterms = dev.predictor.reterms
    grad = np.zeros(theta.shape[0])
    missing = np.zeros(theta.shape[0], dtype=bool)
    analytic = []
    for block in reterms.blocks:
        diag = theta[np.diagonal(block.theta_index)]
        analytic.append(bool(np.min(np.abs(diag)) >= GRADIENT_MIN_DIAG))
        if not analytic[-1]:
            missing[block.theta_index[block.theta_index >= 0]] = True
    if any(analytic):
        _add_analytic(dev, theta, analytic, grad)
    grad[missing] = np.nan
    return grad, missing


def _blocked_gradient(dev: Any, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`profiled_gradient` on the blocked factorization, in one compiled call."""
    factor, p = dev.factor, dev.p
    dof = dev.n - p if dev.reml else dev.n
    grad = np.zeros(theta.shape[0])
    missing = np.zeros(theta.shape[0], dtype=bool)
    if not _blocked_gradient_kernel(theta, p, dof / factor.y_diag(p) ** 2, *gradient_args(dev),
                                    grad, missing):
        raise FloatingPointError("dpotri failed: the factor is singular")
    return grad, missing


def gradient_args(dev: Any) -> tuple:
    """The arguments of :func:`_blocked_gradient_kernel` that do not change with theta.

    Made once per factor workspace and kept on it (``factor.kept``), and on the
    deviance (``dev.gradient_args``): the workspace is the factor's, used by one
    call at a time, and a model's fits reuse their workspaces.
    """
    if getattr(dev, "gradient_args", None) is None:
        factor = dev.factor
        nx = dev.p if dev.reml else 0
        key = ("gradient", nx)
        if key not in factor.kept:
            s = factor.s
            summed_args = factor.diag_blocks_args(0, summed=True)
            nlevels = np.array([b.nlevels for b in dev.predictor.reterms.blocks],
                               dtype=np.int64)
            factor.kept[key] = (s.tidx, s.toff, nlevels, factor.solve_args(), summed_args,
                                summed_args[-2], summed_args[-1], np.empty(s.q),
                                np.empty(dev.p), np.empty((s.q, nx)))
        dev.gradient_args = factor.kept[key]
    return dev.gradient_args


@njit(cache=True, nogil=True)
def _blocked_gradient_kernel(theta, p, scale, tidx, toff, nlevels, solve_args, summed_args,
                             sums, soff, u, x, H, grad, missing):
    """The module doc's gradient from a :class:`~.linalg.blocked.BlockedFactor` in place.

    ``solve_args`` and ``summed_args`` are the factor's
    :meth:`~.linalg.blocked.BlockedFactor.solve_args` and
    :meth:`~.linalg.blocked.BlockedFactor.diag_blocks_args` (summed), whose output
    ``sums`` (offsets ``soff``) gives each block's summed inverse blocks;
    ``nlevels`` are the blocks' levels, ``scale`` is ``dof / r2``, ``u`` and
    ``x`` workspace, ``H`` (``q x p`` for REML, else ``q x 0``) that of
    :func:`_add_fixed_rows`.  Blocks with a nearly singular ``T`` are marked in
    ``missing`` (NaN in ``grad``).  False if the inverse failed.
    """
    nblocks = toff.shape[0] - 1
    analytic = np.empty(nblocks, dtype=np.bool_)
    for b in range(nblocks):
        k = int(np.sqrt(toff[b + 1] - toff[b]) + 0.5)
        analytic[b] = True
        for a in range(k):
            t = tidx[toff[b] + a * k + a]
            if t < 0 or abs(theta[t]) < GRADIENT_MIN_DIAG:
                analytic[b] = False
        if not analytic[b]:
            for e in range(toff[b], toff[b + 1]):
                if tidx[e] >= 0:
                    missing[tidx[e]] = True
    if np.any(analytic):
        _solve(p, *solve_args, u, x)
        if not diag_blocks_into(*summed_args):
            return False
        if H.shape[1] > 0:
            _add_fixed_rows(solve_args, toff, nlevels, H, sums, soff)
        offset = 0
        for b in range(nblocks):
            k = int(np.sqrt(toff[b + 1] - toff[b]) + 0.5)
            nlev = nlevels[b]
            if analytic[b]:
                _add_block_gradient(theta, tidx[toff[b]:toff[b + 1]].reshape((k, k)),
                                    u[offset:offset + nlev * k], nlev,
                                    sums[soff[b]:soff[b + 1]].reshape((k, k)), scale, grad)
            offset += nlev * k
    for i in range(grad.shape[0]):
        if missing[i]:
            grad[i] = np.nan
    return True


@njit(cache=True, nogil=True, inline="always")
def _add_fixed_rows(solve_args, toff, nlevels, H, sums, soff):
    """Add each block's ``sum_l H_l H_l'`` to ``sums``, ``H = L^{-T} L_X' R_X^{-T}`` (module doc).

    ``H`` (``q x p``) is workspace.  The ``p`` columns go through every step
    together, a row of ``H`` at a time: one pass over the factor's index
    arrays instead of ``p`` (one column at a time was 3x slower, ``socio_m4``).
    """
    r1_ptr, r1_row, r1_term, r1_voff, rest_p, rest_perm, L11, L21v, LY1, D, first = solve_args
    q, p = H.shape
    l1, p1 = L11.shape[0], L11.shape[1]
    q_r = D.shape[0] - LY1.shape[1]
    off1 = l1 * p1
    E = np.empty((q, p))            # L_X' R_X^{-T}, rows in the factorization's order
    for j in range(l1):
        for c in range(p1):
            for t in range(p):
                E[j * p1 + c, t] = LY1[j, t, c]
    for i in range(q_r):
        for t in range(p):
            E[off1 + i, t] = D[q_r + t, i]
    RX = D[q_r:q_r + p, q_r:q_r + p].copy()
    inv_diag = np.empty(p)
    for t in range(p):
        inv_diag[t] = 1.0 / RX[t, t]
    for i in range(q):
        for t in range(p):
            v = E[i, t]
            for s in range(t):
                v -= RX[t, s] * E[i, s]
            E[i, t] = v * inv_diag[t]
    rest = E[off1:]
    for i in range(q_r - 1, -1, -1):            # L22' X = E's rest rows, in place
        inv = 1.0 / D[i, i]
        for t in range(p):
            rest[i, t] *= inv
        for k in range(first[i], i):
            f = D[i, k]
            if f != 0.0:
                for t in range(p):
                    rest[k, t] -= f * rest[i, t]
    for i in range(q_r):
        for t in range(p):
            H[off1 + rest_perm[i], t] = rest[i, t]
    if p1 == 1:
        _first_rows_scalar(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, E, rest, H)
    else:
        _first_rows(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, E, rest, H)
    offset = 0
    for b in range(toff.shape[0] - 1):
        k = int(np.sqrt(toff[b + 1] - toff[b]) + 0.5)
        C = sums[soff[b]:soff[b + 1]].reshape((k, k))
        for lv in range(nlevels[b]):
            o = offset + lv * k
            for a in range(k):
                for c in range(k):
                    v = 0.0
                    for t in range(p):
                        v += H[o + a, t] * H[o + c, t]
                    C[a, c] += v
        offset += nlevels[b] * k


@njit(cache=True, nogil=True, inline="always")
def _first_rows(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, E, rest, H):
    """The first block's rows of ``H``: ``L11_j' H_j = E_j - L21_j' X`` per level."""
    l1, p1 = L11.shape[0], L11.shape[1]
    p = H.shape[1]
    part = np.empty((p, p1))
    for j in range(l1):
        for c in range(p1):
            for t in range(p):
                part[t, c] = E[j * p1 + c, t]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                for c in range(p1):
                    f = L21v[vo + a * p1 + c]
                    for t in range(p):
                        part[t, c] -= f * rest[r0 + a, t]
        for t in range(p):
            solve_lower_t(L11[j], part[t])
            for c in range(p1):
                H[j * p1 + c, t] = part[t, c]


@njit(cache=True, nogil=True, inline="always")
def _first_rows_scalar(r1_ptr, r1_row, r1_term, r1_voff, rest_p, L11, L21v, E, rest, H):
    """:func:`_first_rows` for a scalar first block: a division per entry, where a
    triangular solve per level and column cost more than its arithmetic
    (``socio_m4``, 155 levels and ``p = 7``: the whole correction 52 -> 29 us, with
    ``R_X``'s reciprocals once)."""
    p = H.shape[1]
    for j in range(L11.shape[0]):
        for t in range(p):
            H[j, t] = E[j, t]
        for blk in range(r1_ptr[j], r1_ptr[j + 1]):
            vo, r0 = r1_voff[blk], r1_row[blk]
            for a in range(rest_p[r1_term[blk]]):
                f = L21v[vo + a]
                for t in range(p):
                    H[j, t] -= f * rest[r0 + a, t]
        inv = 1.0 / L11[j, 0, 0]
        for t in range(p):
            H[j, t] *= inv


def _add_analytic(dev: Any, theta: np.ndarray, analytic: list[bool], grad: np.ndarray) -> None:
    """Add the blocks' analytic gradients where ``analytic`` says (module doc)."""
    factor, p = dev.factor, dev.p
    u, _ = factor.solve(p)
    r2 = factor.y_diag(p) ** 2
    dof = dev.n - p if dev.reml else dev.n
    sums = factor.inverse_diag_blocks(p if dev.reml else 0, summed=True)
    offset = 0
    for block, C, ok in zip(dev.predictor.reterms.blocks, sums, analytic):
        if ok:
            _add_block_gradient(theta, block.theta_index, u[offset:offset + block.q],
                                block.nlevels, C[0], dof / r2, grad)
        offset += block.q


@njit(cache=True, nogil=True)
def _add_block_gradient(theta, tindex, u, nlev, Csum, scale, grad):
    """Add ``2 [S T^{-1}]_(c,r)`` at each position ``(r, c)`` of T's thetas.

    ``S = nlev I - Csum - scale sum_l u_l u_l'`` (see the module doc).
    """
    k = tindex.shape[0]
    T = np.zeros((k, k))
    for r in range(k):
        for c in range(k):
            if tindex[r, c] >= 0:
                T[r, c] = theta[tindex[r, c]]
    S = np.zeros((k, k))
    for lv in range(nlev):
        for a in range(k):
            ua = u[lv * k + a]
            for b in range(k):
                S[a, b] += ua * u[lv * k + b]
    for a in range(k):
        for b in range(k):
            S[a, b] = (nlev if a == b else 0.0) - Csum[a, b] - scale * S[a, b]
    F = S.copy()                    # F T = S: each row solves T' f = s
    for i in range(k):
        solve_lower_t(T, F[i])
    for r in range(k):
        for c in range(k):
            if tindex[r, c] >= 0:
                grad[tindex[r, c]] += 2.0 * F[c, r]
