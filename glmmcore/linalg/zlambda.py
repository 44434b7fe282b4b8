"""Products with ``Z`` and ``Lambda(theta)`` in the terms' layout, compiled.

``Lambda(theta)`` is block diagonal with one ``T_k`` per level of term ``k``; ``Z`` is
stored as each term's columns and each observation's levels (the arrays of
:meth:`glmmcore.design.predictor.Predictor.linear_predictor_args`).  The linear
predictor, ``Z b`` and ``Lambda u`` here serve the regular fitting path and the
Laplace gradient (:mod:`glmmcore.objectives.pirls_kernel`,
:mod:`glmmcore.objectives.laplace_gradient`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .crossprod import all_scalar
from .dense import FALSE


@njit(cache=True, nogil=True)
def linear_predictor(codes, Xall, p, xoff, boff, tidx, toff, theta, u, base, zb, eta):
    b = np.empty_like(u)
    apply_lambda(p, boff, tidx, toff, theta, u, b, FALSE)
    if all_scalar(p):
        for i in range(eta.shape[0]):
            zb[i] = zb_row_scalars(codes, Xall, xoff, boff, b, i)
            eta[i] = base[i] + zb[i]
        return
    for i in range(eta.shape[0]):
        zb[i] = zb_row(codes, Xall, p, xoff, boff, b, i)
        eta[i] = base[i] + zb[i]


@njit(cache=True, nogil=True)
def apply_lambda(p, boff, tidx, toff, theta, v, out, transpose):
    """``out = Lambda(theta) v`` (or ``Lambda' v``), level by level: ``T_k`` per level of block k.

    ``T_k[a, c]`` is ``theta[tidx[toff[k] + a * p_k + c]]`` (0 where the index is -1).
    """
    K = p.shape[0]
    for k in range(K):
        pk = p[k]
        nlev = ((boff[k + 1] if k + 1 < K else v.shape[0]) - boff[k]) // pk
        if pk == 1:     # one multiplier for the block: a loop LLVM vectorizes
            t = tidx[toff[k]]
            scale = theta[t] if t >= 0 else 0.0
            for lev in range(boff[k], boff[k] + nlev):
                out[lev] = scale * v[lev]
            continue
        for lev in range(nlev):
            start = boff[k] + lev * pk
            for a in range(pk):
                s = 0.0
                for c in range(pk):
                    t = tidx[toff[k] + (c * pk + a if transpose else a * pk + c)]
                    if t >= 0:
                        s += theta[t] * v[start + c]
                out[start + a] = s


@njit(cache=True, nogil=True)
def add_zb(codes, Xall, p, xoff, boff, b, out):
    for i in range(codes.shape[0]):
        out[i] += zb_row(codes, Xall, p, xoff, boff, b, i)


@njit(cache=True, nogil=True, inline="always")
def zb_row_scalars(codes, Xall, xoff, boff, b, i):
    """Row i of Z b when every term is scalar (no per-term column loop: 1.5x faster)."""
    s = 0.0
    for k in range(codes.shape[1]):
        s += Xall[i, xoff[k]] * b[boff[k] + codes[i, k]]
    return s


@njit(cache=True, nogil=True, inline="always")
def zb_row(codes, Xall, p, xoff, boff, b, i):
    """Row i of Z b."""
    s = 0.0
    for k in range(codes.shape[1]):
        pk = p[k]
        start = boff[k] + codes[i, k] * pk
        for a in range(pk):
            s += Xall[i, xoff[k] + a] * b[start + a]
    return s
