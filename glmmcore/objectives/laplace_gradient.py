"""Gradient of the Laplace deviance over ``(theta, beta[, log phi])``, for any link.

The criterion is ``f = D(eta) + |u|^2 + log|M|`` at the conditional mode
``u`` of ``g(u) = D(eta) + |u|^2``, with ``eta = o + X beta + Z Lambda u``,
``D`` the sum of deviance residuals and ``M = I + Lambda' Z' W Z Lambda``.
With a canonical link ``dD/d eta = -2 s`` (``s`` the score, ``w r`` in
PIRLS's terms) and ``d s / d eta = -W``, the information is the same whether
expected or observed, and:

- ``g``'s part, by the envelope theorem (``u`` minimizes ``g``):
  ``-2 X's`` and ``-2 s' Z Lambda_t u``, with ``Lambda_t = dLambda/dtheta_t``;
- ``log|M|`` at fixed weights: ``2 tr(M^{-1} Lambda' Z' W Z Lambda_t)``;
- through the weights: ``sum_i a_i d eta_i`` with ``a_i = W'_i h_i``,
  ``h_i = z_i' Lambda M^{-1} Lambda' z_i`` (the leverage of observation ``i``)
  and ``d eta`` from the mode's equations ``u = Lambda' Z' s``:
  ``M du = dLambda' Z' s - Lambda' Z' W (X dbeta + Z dLambda u)``.

With ``v = M^{-1} Lambda' Z' a`` and ``b = a - W Z Lambda v`` this is::

    df/dbeta    = X' (b - 2 s)
    df/dtheta_t = (b - 2 s)' Z Lambda_t u + v' Lambda_t' Z' s
                  + 2 sum_i W_i (Lambda_t' z_i)' M^{-1} Lambda' z_i

One pass over the observations gives ``h`` and ``M^{-1} Lambda' z_i`` from
the entries of ``M^{-1}`` that each observation couples
(:mod:`.linalg.selected`), a solve with the factor in place gives ``v``, and a
second pass the sums.  ``W'`` (the derivative of the weights in ``eta``) is a
central difference of the family's own weight kernel, so any plugin family
with a canonical link has its gradient at compiled speed.  No ``T^{-1}``
appears: the gradient holds on the boundary too.

Any other link (and the observed information).  The mode moves with the
information ``H = -d s / d eta``, which equals ``W`` only with the canonical
link: ``v`` then solves the system of ``M_H = I + Lambda' Z' H Z Lambda``
(factored beside the Laplace one) and ``b = a - H Z Lambda v``; ``log|M|`` and
the leverages stay at ``W`` (Fisher's weights as lme4, or the observed
information).  The family's generated ``laplace_weights`` kernel gives ``s``,
``W``, ``H`` and, from the variance's and the link's derivatives, ``W' =
wt mu_eta (2 mu_eta' / V - mu_eta^2 V' / V^2)`` (:mod:`glmmcore.kernels`);
with the observed information ``W'`` is a central difference of it.

An extra parameter ``phi`` (optimized as ``log phi``).  By the envelope
theorem only ``phi``'s direct effects count at the mode:
``-2 sum d log p_i / d phi`` (the family's ``dlogpdf_dphi``, else a central
difference of ``logpdf``), ``sum h_i dW_i / d phi`` and, through the mode
(``M_H du = Lambda' Z' ds / d phi``), ``(Z Lambda v)' ds / d phi``; the last two
from central differences of ``laplace_weights`` in ``log phi``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from ..errors import ConvergenceError
from ..linalg.crossprod import all_scalar
from ..linalg.rhs_solve import solve_rhs
from ..linalg.selected import observation_inverse
from ..linalg.zlambda import apply_lambda, zb_row, zb_row_scalars
from .family_kernels import call_laplace_weights, call_update, call_var, call_yms

WEIGHT_STEP = 1e-5    # central-difference step in eta for W' (error ~1e-11 relative)
PHI_STEP = 1e-5       # central-difference step in log phi for the weights' and score's slopes
# Below this a variance parameter's derivative is taken at a raised point
# (:meth:`glmmcore.objectives.glmm.GlmmDeviance.value_and_gradient`)
GRADIENT_MIN_THETA = 1e-6


def has_laplace_gradient(predictor: Any, kernels: Any, has_phi: bool) -> bool:
    """Whether :class:`LaplaceGradient` applies (module doc): the blocked factorization,
    and a canonical link with Fisher's weights and no extra parameter, or a family and
    link whose kernels give the gradient's terms (:func:`glmmcore.kernels.gradient_route`)."""
    return predictor.backend == "blocked" and (_canonical_route(kernels, has_phi)
                                               or kernels.laplace_weights != 0)


def _canonical_route(kernels: Any, has_phi: bool) -> bool:
    return (kernels.canonical and not kernels.newton and not kernels.laplace_observed
            and not has_phi)


class LaplaceGradient:
    """Gradient of the Laplace objective at the mode a PIRLS workspace holds.

    Parameters
    ----------
    pirls
        A :class:`~glmmcore.objectives.pirls.Pirls` workspace that has just run at the
        point whose gradient is wanted.
    has_phi
        The family has an extra parameter: the gradient ends with its derivative
        over ``log phi``.
    """

    def __init__(self, pirls: Any, has_phi: bool = False) -> None:
        self.pirls, self.has_phi = pirls, has_phi
        self.widths = np.array([b.p for b in pirls.predictor.reterms.blocks], dtype=np.int64)
        self.canonical = _canonical_route(pirls.kernels, has_phi)
        # H differs from W: a non-canonical link with Fisher's weights
        self.separate = not (self.canonical or pirls.kernels.canonical
                             or pirls.kernels.laplace_observed)
        self._work: _Buffers | None = None
        self._information: tuple[Any, np.ndarray] | None = None

    def _buffers(self) -> _Buffers:
        """Per-observation buffers, made on first use: a fit whose stage 1 does not take
        its gradient never pays for them (90 MB at 1,000,000 rows)."""
        if self._work is None:
            n = self.pirls.predictor.n
            self._work = _Buffers(G=np.empty((n, int(self.widths.sum()))), a=np.empty(n),
                                  dW=np.empty(n), h=np.empty(n), s=np.empty(n),
                                  W=np.empty(n), H=np.empty(n), zv=np.empty(n),
                                  scratch=[np.empty(n) for _ in range(6)])
        return self._work

    def __call__(self, theta: np.ndarray, phi: float = 1.0) -> np.ndarray:
        """The gradient at the workspace's mode for ``theta`` (module doc).

        Given beta (the Laplace stage): over ``(theta, beta)``.  When PIRLS
        estimates beta (``nAGQ=0``), over theta, with beta profiled out: the
        mode's equations gain ``X' s = 0``, so ``v`` solves the system of
        ``[Z Lambda, X]`` (the factor in place has X's rows) for
        ``[Lambda' Z' a; X' a]``, and ``b = a - W (Z Lambda v_u + X v_beta)``.
        With an extra parameter, its derivative over ``log phi`` is appended.
        """
        pirls, work = self.pirls, self._buffers()
        predictor = pirls.predictor
        if self.canonical:
            np.multiply(pirls.w, pirls.r, out=work.s)
            score, W, H = work.s, pirls.w, pirls.w
            self._weight_slope(pirls, phi)
        else:
            score, W, H = self._terms(pirls, phi)
        factor = self._information_factor(theta, H) if self.separate else pirls.factor
        _, h = self.leverages(theta)
        np.multiply(work.dW, h, out=work.a)
        codes, Xall, p, xoff, boff = predictor._z
        tidx, toff = predictor._tmaps
        q, nx = predictor.reterms.q, predictor.p
        nsolve = nx if pirls.beta_in_pirls else 0
        za = np.zeros(q)
        _add_zt(codes, Xall, p, xoff, boff, work.a, za)
        rhs = np.empty(q + nsolve)
        apply_lambda(p, boff, tidx, toff, theta, za, rhs[:q], True)
        if nsolve:
            rhs[q:] = predictor.X.T @ work.a
        v = np.empty(q + nsolve)
        solve_rhs(nsolve, *factor.solve_args(), rhs, v)
        lv = np.empty(q)
        apply_lambda(p, boff, tidx, toff, theta, v[:q], lv, False)
        vb = v[q:] if nsolve else np.zeros(nx)
        grad = np.zeros(theta.shape[0] + nx)
        _gradient_pass(codes, Xall, p, xoff, boff, tidx, toff, predictor.X, pirls.u, v[:q], lv,
                       vb, score, W, H, work.a, work.G, grad, work.zv)
        out = grad[:theta.shape[0]] if nsolve else grad
        if self.has_phi:
            out = np.append(out, self._phi_derivative(pirls, phi, h, work.zv))
        return out

    def _terms(self, pirls: Any, phi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``s``, ``W``, ``H`` and ``W'`` (into the buffers) from the family's kernel."""
        work, kernels = self._buffers(), pirls.kernels
        call_laplace_weights(kernels.laplace_weights, pirls.eta, pirls.y, pirls.wt, phi,
                             work.s, work.W, work.H, work.dW)
        if not kernels.weight_slope:
            eta_p, s_p, w_p, w_m, h_p, dw_p = work.scratch
            np.add(pirls.eta, WEIGHT_STEP, out=eta_p)
            call_laplace_weights(kernels.laplace_weights, eta_p, pirls.y, pirls.wt, phi,
                                 s_p, w_p, h_p, dw_p)
            np.subtract(pirls.eta, WEIGHT_STEP, out=eta_p)
            call_laplace_weights(kernels.laplace_weights, eta_p, pirls.y, pirls.wt, phi,
                                 s_p, w_m, h_p, dw_p)
            np.subtract(w_p, w_m, out=work.dW)
            work.dW *= 0.5 / WEIGHT_STEP
        return work.s, work.W, work.H

    def _information_factor(self, theta: np.ndarray, H: np.ndarray) -> Any:
        """The system of ``M_H`` (and X's rows when PIRLS estimates beta), factored.

        Its ``Y`` has the model matrix and a zero last column whose own diagonal
        is set to 1: the solves read only the rows before it, and ``H``, which
        may be negative for single observations, cannot make it not positive.
        """
        pirls = self.pirls
        if self._information is None:
            Y = np.zeros_like(pirls.Y)
            Y[:, :-1] = pirls.Y[:, :-1]
            self._information = (pirls.predictor.new_factor(pirls.m), Y)
        factor, Y = self._information
        factor.crossprod(H, Y)
        factor.AYY[-1, -1] = 1.0
        if not factor.factor(theta):
            raise ConvergenceError("the information is not positive definite at the mode",
                                   {"theta": theta.tolist()})
        return factor

    def _phi_derivative(self, pirls: Any, phi: float, h: np.ndarray, zv: np.ndarray) -> float:
        """The derivative over ``log phi`` (module doc)."""
        work, kernels = self._buffers(), pirls.kernels
        s_p, w_p, s_m, w_m, h_x, dw_x = work.scratch
        up, down = phi * np.exp(PHI_STEP), phi * np.exp(-PHI_STEP)
        call_laplace_weights(kernels.laplace_weights, pirls.eta, pirls.y, pirls.wt, up,
                             s_p, w_p, h_x, dw_x)
        call_laplace_weights(kernels.laplace_weights, pirls.eta, pirls.y, pirls.wt, down,
                             s_m, w_m, h_x, dw_x)
        half = 0.5 / PHI_STEP
        slopes = half * (float(h @ (w_p - w_m)) + float(zv @ (s_p - s_m)))
        if kernels.dlogpdf_dphi_vec:
            dlogp = phi * call_yms(kernels.dlogpdf_dphi_vec, pirls.y, pirls.mu, pirls.wt, phi,
                                   h_x)
        else:
            dlogp = half * (call_yms(kernels.logpdf_vec, pirls.y, pirls.mu, pirls.wt, up, h_x)
                            - call_yms(kernels.logpdf_vec, pirls.y, pirls.mu, pirls.wt, down,
                                       h_x))
        return -2.0 * dlogp + slopes

    def leverages(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(G, h)``: ``G[i] = M^{-1} Lambda' z_i`` on observation ``i``'s random effects
        (first block's, then each other block's, in order), ``h_i = z_i' Lambda G[i]``."""
        predictor, s, work = self.pirls.predictor, self.pirls.predictor.layout, self._buffers()
        S11, S21v, S22v = observation_inverse(self.pirls.factor)
        Tall = _padded_T(predictor.reterms.T_matrices(theta), int(self.widths.max()))
        _leverages(s.codes1, s.X1, s.Xr, s.rest_p, s.rest_xoff, s.obs_r1,
                   s.r1_voff, s.obs_rr, s.rr_voff, S11, S21v, S22v, Tall, work.G, work.h)
        return work.G, work.h

    def _weight_slope(self, pirls: Any, phi: float) -> None:
        """``dW/d eta``: ``W V'(mu)`` from the family's ``dvariance_vec`` kernel (the
        canonical link's ``W = wt V(mu)``), else by a central difference of the family's
        update kernel."""
        work = self._buffers()
        if pirls.kernels.dvariance_vec:
            call_var(pirls.kernels.dvariance_vec, pirls.mu, phi, work.dW)
            np.multiply(work.dW, pirls.w, out=work.dW)
            return
        eta_p, mu, w_p, w_m, r, dev = work.scratch
        update = pirls.kernels.update
        np.add(pirls.eta, WEIGHT_STEP, out=eta_p)
        call_update(update, eta_p, pirls.y, pirls.wt, phi, mu, w_p, r, dev)
        np.subtract(pirls.eta, WEIGHT_STEP, out=eta_p)
        call_update(update, eta_p, pirls.y, pirls.wt, phi, mu, w_m, r, dev)
        np.subtract(w_p, w_m, out=work.dW)
        work.dW *= 0.5 / WEIGHT_STEP


@dataclass
class _Buffers:
    """:class:`LaplaceGradient`'s per-observation arrays."""

    G: np.ndarray         # (n, sum of block widths): M^{-1} Lambda' z_i on i's random effects
    a: np.ndarray         # W'_i h_i
    dW: np.ndarray        # dW / d eta
    h: np.ndarray         # leverages
    s: np.ndarray         # the score d log p / d eta
    W: np.ndarray         # the Laplace approximation's weights
    H: np.ndarray         # the information -d s / d eta
    zv: np.ndarray        # (Z Lambda v_u + X v_beta)_i
    scratch: list         # six arrays for central differences


def _padded_T(Ts: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(Ts), width, width))
    for k, T in enumerate(Ts):
        out[k, :T.shape[0], :T.shape[1]] = T
    return out


@njit(cache=True, nogil=True)
def _leverages(codes1, X1, Xr, rest_p, rest_xoff, obs_r1, r1_voff, obs_rr, rr_voff,
               S11, S21v, S22v, Tall, G, h):
    """``G[i] = M^{-1} Lambda' z_i`` on observation ``i``'s random effects, and
    ``h_i = z_i' Lambda M^{-1} Lambda' z_i``.

    The random effects of ``i``: the first block's ``p1`` (its level
    ``codes1[i]``), then each rest block's ``p_k``, in the blocks' order.
    """
    n, p1 = X1.shape
    nr = rest_p.shape[0]
    if p1 == 1 and all_scalar(rest_p):
        _leverages_scalars(codes1, X1, Xr, obs_r1, obs_rr, S11, S21v, S22v, Tall, G, h)
        return
    J = G.shape[1]
    start = np.empty(nr + 1, dtype=np.int64)
    start[0] = p1
    for k in range(nr):
        start[k + 1] = start[k] + rest_p[k]
    zeta = np.empty(J)
    SJ = np.empty((J, J))
    for i in range(n):
        j = codes1[i]
        for c in range(p1):
            acc = 0.0
            for r in range(p1):
                acc += Tall[0, r, c] * X1[i, r]
            zeta[c] = acc
        for k in range(nr):
            pk = rest_p[k]
            for c in range(pk):
                acc = 0.0
                for r in range(pk):
                    acc += Tall[k + 1, r, c] * Xr[i, rest_xoff[k] + r]
                zeta[start[k] + c] = acc
        for x in range(p1):
            for y in range(p1):
                SJ[x, y] = S11[j, x, y]
        pair = 0
        for k in range(nr):
            pk, sk = rest_p[k], start[k]
            vo = r1_voff[obs_r1[i, k]]
            for x in range(pk):
                for c in range(p1):
                    val = S21v[vo + x * p1 + c]
                    SJ[sk + x, c] = val
                    SJ[c, sk + x] = val
            for k2 in range(k + 1):
                pk2, sk2 = rest_p[k2], start[k2]
                vo2 = rr_voff[obs_rr[i, pair]]
                pair += 1
                for x in range(pk):
                    for y in range(pk2):
                        val = S22v[vo2 + x * pk2 + y]
                        SJ[sk + x, sk2 + y] = val
                        SJ[sk2 + y, sk + x] = val
        h[i] = _leverage_row(SJ, zeta, G[i])


@njit(cache=True, nogil=True, inline="always")
def _leverages_scalars(codes1, X1, Xr, obs_r1, obs_rr, S11, S21v, S22v, Tall, G, h):
    """:func:`_leverages` when every term is scalar: each coupling block and rest pair
    holds one value (``obs_r1`` and ``obs_rr`` index them directly), no loops over widths."""
    n, nr = Xr.shape
    J = nr + 1
    zeta = np.empty(J)
    SJ = np.empty((J, J))
    for i in range(n):
        zeta[0] = Tall[0, 0, 0] * X1[i, 0]
        SJ[0, 0] = S11[codes1[i], 0, 0]
        pair = 0
        for k in range(nr):
            zeta[k + 1] = Tall[k + 1, 0, 0] * Xr[i, k]
            val = S21v[obs_r1[i, k]]
            SJ[k + 1, 0] = val
            SJ[0, k + 1] = val
            for k2 in range(k + 1):
                val = S22v[obs_rr[i, pair]]
                SJ[k + 1, k2 + 1] = val
                SJ[k2 + 1, k + 1] = val
                pair += 1
        h[i] = _leverage_row(SJ, zeta, G[i])


@njit(cache=True, nogil=True, inline="always")
def _leverage_row(SJ, zeta, g):
    """``g = SJ zeta`` (an observation's row of ``G``); returns ``h_i = zeta' SJ zeta``."""
    hi = 0.0
    for x in range(zeta.shape[0]):
        acc = 0.0
        for y in range(zeta.shape[0]):
            acc += SJ[x, y] * zeta[y]
        g[x] = acc
        hi += zeta[x] * acc
    return hi


@njit(cache=True, nogil=True)
def _add_zt(codes, Xall, p, xoff, boff, a, out):
    """``out += Z' a``."""
    for i in range(codes.shape[0]):
        for k in range(codes.shape[1]):
            pk = p[k]
            row = boff[k] + codes[i, k] * pk
            for c in range(pk):
                out[row + c] += Xall[i, xoff[k] + c] * a[i]


@njit(cache=True, nogil=True)
def _gradient_pass(codes, Xall, p, xoff, boff, tidx, toff, X, u, v, lv, vb, score, W, H, a,
                   G, grad, zvs):
    """The sums of the module doc, into ``grad`` (theta's, then beta's).

    Per block ``k`` and position ``(r, c)`` of ``T_k``:
    ``sum_i x_ikr [(b_i - 2 s_i) u_lc + s_i v_lc + 2 W_i G_i(k, c)]``, ``l`` the
    observation's level; ``b_i = a_i - H_i zv_i``, ``zv_i = (Z Lambda v)_i + x_i' vb``
    (kept in ``zvs``).
    """
    K = p.shape[0]
    ntheta = grad.shape[0] - X.shape[1]
    if all_scalar(p):
        _gradient_pass_scalars(codes, Xall, xoff, boff, tidx, toff, X, u, v, lv, vb, score, W,
                               H, a, G, grad, zvs)
        return
    pmax = 0
    for k in range(K):
        pmax = max(pmax, p[k])
    A = np.zeros((K, pmax, pmax))
    for i in range(codes.shape[0]):
        zv = zb_row(codes, Xall, p, xoff, boff, lv, i)
        for j in range(X.shape[1]):
            zv += X[i, j] * vb[j]
        zvs[i] = zv
        e = a[i] - H[i] * zv - 2.0 * score[i]
        for j in range(X.shape[1]):
            grad[ntheta + j] += X[i, j] * e
        two_w = 2.0 * W[i]
        col = 0
        for k in range(K):
            pk = p[k]
            row = boff[k] + codes[i, k] * pk
            for c in range(pk):
                t = e * u[row + c] + score[i] * v[row + c] + two_w * G[i, col + c]
                for r in range(pk):
                    A[k, r, c] += Xall[i, xoff[k] + r] * t
            col += pk
    for k in range(K):
        pk = p[k]
        for r in range(pk):
            for c in range(pk):
                t = tidx[toff[k] + r * pk + c]
                if t >= 0:
                    grad[t] += A[k, r, c]


@njit(cache=True, nogil=True, inline="always")
def _gradient_pass_scalars(codes, Xall, xoff, boff, tidx, toff, X, u, v, lv, vb, score, W, H,
                           a, G, grad, zvs):
    """:func:`_gradient_pass` when every term is scalar: one sum per block."""
    K = codes.shape[1]
    nx = X.shape[1]
    ntheta = grad.shape[0] - nx
    A = np.zeros(K)
    for i in range(codes.shape[0]):
        zv = zb_row_scalars(codes, Xall, xoff, boff, lv, i)
        for j in range(nx):
            zv += X[i, j] * vb[j]
        zvs[i] = zv
        si = score[i]
        e = a[i] - H[i] * zv - 2.0 * si
        for j in range(nx):
            grad[ntheta + j] += X[i, j] * e
        two_w = 2.0 * W[i]
        for k in range(K):
            row = boff[k] + codes[i, k]
            A[k] += Xall[i, xoff[k]] * (e * u[row] + si * v[row] + two_w * G[i, k])
    for k in range(K):
        t = tidx[toff[k]]
        if t >= 0:
            grad[t] += A[k]
