"""The source text of the generated family-kernel modules (:mod:`.family_kernels`).

Templates of the array kernels (``numba.cfunc`` loops over observations that call a
family's scalar kernels) and the loop bodies :mod:`.family_kernels` fills in for a family
and link.  Their text is part of every generated module's cache key
(:func:`glmmcore.objectives.family_kernels.family_kernels`): editing it gives new modules.
"""

from __future__ import annotations

# An array kernel of a scalar kernel (y, mu, wt, phi), each value and their sum; its text
# keeps the generated module's own placeholders ({cache}) for TEMPLATE's format.
_SUMMED = '''@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P),
       cache={cache}, error_model="numpy")
def {{name}}(n, y_p, mu_p, wt_p, phi, out_p):
    y, mu, wt, out = carray(y_p, n), carray(mu_p, n), carray(wt_p, n), carray(out_p, n)
    total = 0.0
    for i in range(n):
        v = {{kernel}}(y[i], mu[i], wt[i], phi) if wt[i] != 0.0 else 0.0
        out[i] = v
        total += v
    return total
'''


def _summed(name: str, kernel: str) -> str:
    """:data:`_SUMMED` for the array kernel ``name`` of the scalar kernel ``kernel``."""
    return _SUMMED.replace("{{name}}", name).replace("{{kernel}}", kernel)


# An array kernel of a scalar kernel of the mean (mu, phi): the variance, its derivative
_OF_MEAN = '''@cfunc(types.float64(types.int64, _P, types.float64, _P),
       cache={cache}, error_model="numpy")
def {{name}}(n, mu_p, phi, out_p):
    mu, out = carray(mu_p, n), carray(out_p, n)
    for i in range(n):
        out[i] = {{kernel}}(mu[i], phi)
    return 0.0
'''


def _of_mean(name: str, kernel: str) -> str:
    """:data:`_OF_MEAN` for the array kernel ``name`` of the scalar kernel ``kernel``."""
    return _OF_MEAN.replace("{{name}}", name).replace("{{kernel}}", kernel)


TEMPLATE = '''"""Array kernels of {family!r} with link {link!r}, written by glmmcore."""
{imports}
from numba import carray, cfunc, types

from glmmcore.objectives.family_kernels import run_sum

_P = types.CPointer(types.float64)


@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P, _P, _P, _P),
       cache={cache}, error_model="numpy")
def update(n, eta_p, y_p, wt_p, phi, mu_p, w_p, r_p, dev_p):
    eta, y, wt = carray(eta_p, n), carray(y_p, n), carray(wt_p, n)
    mu, w, r, dev = carray(mu_p, n), carray(w_p, n), carray(r_p, n), carray(dev_p, n)
    for i in range(n):
        m = linkinv(eta[i])
        mu[i] = m
{update_body}
    return run_sum(dev, 0, n)


''' + _summed("logpdf_vec", "logpdf") + '''

@cfunc(types.float64(types.int64, _P, _P),
       cache={cache}, error_model="numpy")
def linkinv_vec(n, eta_p, mu_p):
    eta, mu = carray(eta_p, n), carray(mu_p, n)
    for i in range(n):
        mu[i] = linkinv(eta[i])
    return 0.0


@cfunc(types.float64(types.int64, _P, _P),
       cache={cache}, error_model="numpy")
def linkfun_vec(n, mu_p, eta_p):
    mu, eta = carray(mu_p, n), carray(eta_p, n)
    for i in range(n):
        eta[i] = linkfun(mu[i])
    return 0.0


''' + _of_mean("variance_vec", "variance") + '''

''' + _summed("devres_vec", "dev_resid") + '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P),
       cache={cache}, error_model="numpy")
def loglik_eta_vec(n, y_p, eta_p, wt_p, phi, out_p):
    # no sum here: a floating-point sum in the loop would keep LLVM from vectorizing it
    y, eta, wt, out = carray(y_p, n), carray(eta_p, n), carray(wt_p, n), carray(out_p, n)
    for i in range(n):
        out[i] = {loglik_eta} if wt[i] != 0.0 else 0.0
    return 0.0
'''

OBSERVED_TEMPLATE = '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P, _P),
       cache={cache}, error_model="numpy")
def observed_weights(n, eta_p, y_p, wt_p, phi, mu_p, w_p):
    eta, y, wt = carray(eta_p, n), carray(y_p, n), carray(wt_p, n)
    mu, w = carray(mu_p, n), carray(w_p, n)
    for i in range(n):
        m = mu[i]
        me = mu_eta(eta[i], m)
        w[i] = -(d2logpdf_dmu2(y[i], m, wt[i], phi) * me * me
                 + dlogpdf_dmu(y[i], m, wt[i], phi) * mu_eta2(eta[i], m)
                 ) if wt[i] != 0.0 else 0.0
    return 0.0
'''

# Observations with zero weight get 0 through a conditional expression per output, not a
# ``continue``: LLVM vectorizes the loop then (a ``continue`` past several stores kept it
# scalar: the negative binomial's update_newton), and the kernels reading y still never
# run there.
# The Laplace gradient's per-observation terms (glmmcore.laplace_gradient): the score
# s = d log p / d eta, the weights W of log|M| (Fisher's or the observed information), the
# information H = -d s / d eta (which moves the mode) and, where the family gives the
# variance's derivative, dW / d eta (else 0: the gradient takes a central difference).
GRADIENT_TEMPLATE = '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P, _P, _P, _P),
       cache={cache}, error_model="numpy")
def laplace_weights(n, eta_p, y_p, wt_p, phi, s_p, w_p, h_p, dw_p):
    eta, y, wt = carray(eta_p, n), carray(y_p, n), carray(wt_p, n)
    s, w, h, dw = carray(s_p, n), carray(w_p, n), carray(h_p, n), carray(dw_p, n)
    for i in range(n):
        e = eta[i]
        m = linkinv(e)
        me = mu_eta(e, m)
        v = variance(m, phi)
        iv = 1.0 / v
        keep = wt[i] != 0.0{score_value}
        s[i] = {score} if keep else 0.0
        w[i] = {weight} if keep else 0.0
        h[i] = {information} if keep else 0.0
        dw[i] = {weight_slope} if keep else 0.0
    return 0.0
'''

# The score's and the weights' changes in phi, for the Laplace gradient's entry in log phi
# (central differences): s and W of laplace_weights at phi = up less their values at
# phi = down, in one pass (the link's kernels once, no H or dW / d eta); each by
# laplace_weights' expression, so the differences are the same bits as two passes of it.
PHI_WEIGHTS_TEMPLATE = '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, types.float64, _P, _P),
       cache={cache}, error_model="numpy")
def phi_weights(n, eta_p, y_p, wt_p, up, down, ds_p, dw_p):
    eta, y, wt = carray(eta_p, n), carray(y_p, n), carray(wt_p, n)
    ds, dw = carray(ds_p, n), carray(dw_p, n)
    for i in range(n):
        e = eta[i]
        m = linkinv(e)
        me = mu_eta(e, m)
        keep = wt[i] != 0.0
        phi = up
        v = variance(m, phi){score_value}
        s_up = {score}
        w_up = {weight}
        phi = down
        v = variance(m, phi){score_value}
        ds[i] = s_up - ({score}) if keep else 0.0
        dw[i] = w_up - ({weight}) if keep else 0.0
    return 0.0
'''

# PIRLS's update with Newton's steps fused with the terms they and the Laplace gradient
# need at the same eta: the information H = -d s / d eta (the observed information) and
# dW / d eta (0 where W is the observed information: the gradient differences it), from
# the link's kernels and the score ``sc`` evaluated once (probit: one erfc and one exp per
# observation, where the update, observed_weights and laplace_weights kernels in turn take
# two erfc and four exp; the Beta: two digamma, where update and observed_weights take
# four).  ``newton_terms`` is the same loop without the deviance (two
# logarithms per observation for the negative binomial and the binomial): for the
# evaluations whose objective value is not used (the Hessian's columns), whose PIRLS
# ends at its first update.  Each term is computed by the same expression in both, so
# the two give the same bits.
UPDATE_NEWTON_TEMPLATE = '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P, _P, _P, _P, _P, _P),
       cache={cache}, error_model="numpy")
def {name}(n, eta_p, y_p, wt_p, phi, mu_p, w_p, r_p, dev_p, h_p, dw_p):
    eta, y, wt = carray(eta_p, n), carray(y_p, n), carray(wt_p, n)
    mu, w, r, dev = carray(mu_p, n), carray(w_p, n), carray(r_p, n), carray(dev_p, n)
    h, dw = carray(h_p, n), carray(dw_p, n)
    for i in range(n):
        e = eta[i]
        m = linkinv(e)
        mu[i] = m
        keep = wt[i] != 0.0
        me = mu_eta(e, m)
        v = variance(m, phi)
        iv = 1.0 / v
        sc = dlogpdf_dmu(y[i], m, wt[i], phi) if keep else 0.0
        w[i] = wt[i] * me * me / v if keep else 0.0
        r[i] = {residual} if keep else 0.0{deviance}
        h[i] = {information} if keep else 0.0
        dw[i] = {weight_slope} if keep else 0.0
    return {total}
'''
NEWTON_DEVIANCE = "\n        dev[i] = dev_resid(y[i], m, wt[i], phi) if keep else 0.0"

DPHI_TEMPLATE = '''

@cfunc(types.float64(types.int64, _P, _P, _P, types.float64, _P),
       cache={cache}, error_model="numpy")
def dlogpdf_dphi_vec(n, y_p, mu_p, wt_p, phi, out_p):
    # the sum in a loop of its own (in order, as it was summed in this one): a floating-point
    # sum in the kernel's loop would keep LLVM from vectorizing it
    y, mu, wt, out = carray(y_p, n), carray(mu_p, n), carray(wt_p, n), carray(out_p, n)
    for i in range(n):
        out[i] = dlogpdf_dphi(y[i], mu[i], wt[i], phi) if wt[i] != 0.0 else 0.0
    total = 0.0
    for i in range(n):
        total += out[i]
    return total
'''
DVARIANCE_TEMPLATE = "\n\n" + _of_mean("dvariance_vec", "dvariance_dmu")
FISHER = "wt[i] * me * me / v"
OBSERVED = ("-(d2logpdf_dmu2(y[i], m, wt[i], phi) * me * me"
             " + dlogpdf_dmu(y[i], m, wt[i], phi) * mu_eta2(e, m))")
# OBSERVED with the score sc computed already (the same bits): a kernel's score, weights
# and information call dlogpdf_dmu once (the Beta's two digammas)
SCORE_CALL = "dlogpdf_dmu(y[i], m, wt[i], phi)"
SCORE_VALUE = "\n        sc = dlogpdf_dmu(y[i], m, wt[i], phi) if keep else 0.0"
OBSERVED_BY_SCORE = OBSERVED.replace(SCORE_CALL, "sc")
# H of an exponential-dispersion family (score wt (y - mu) mu_eta / V) from V'
# (``iv`` is 1 / v: one division where these took two; W keeps its ``/ v``, the bits of the
# update kernel's)
OBSERVED_BY_VARIANCE = ("wt[i] * me * me / v - wt[i] * (y[i] - m) * iv * (mu_eta2(e, m)"
                         " - me * me * dvariance_dmu(m, phi) * iv)")
FISHER_SLOPE = "wt[i] * me * iv * (2.0 * mu_eta2(e, m) - me * me * dvariance_dmu(m, phi) * iv)"


# log p(y | eta) up to a term free of eta, from the cumulant where it applies
LOGLIK_BY_CUMULANT = "wt[i] * (y[i] * eta[i] - cumulant(eta[i]))"
LOGLIK_BY_DEVIANCE = "-0.5 * dev_resid(y[i], linkinv(eta[i]), wt[i], phi)"
# The update kernel's loop body.  With the cumulant (and the plain working residual) it is
# arithmetic on eta and y, branch-free, so LLVM vectorizes the loop (Poisson: vexp, no
# log); its deviance is dev_resid's up to a term free of eta
# (glmmcore.objectives.pirls.deviance_offset).
# Otherwise observations with zero weight skip the family's kernels, as documented.
UPDATE_BY_CUMULANT = """
        me = mu_eta(eta[i], m)
        v = variance(m, phi)
        keep = wt[i] != 0.0
        w[i] = wt[i] * me * me / v if keep else 0.0
        r[i] = (y[i] - m) / me if keep else 0.0
        dev[i] = 2.0 * wt[i] * (cumulant(eta[i]) - y[i] * eta[i]) if keep else 0.0"""
UPDATE_BY_DEV_RESID = """
        if wt[i] == 0.0:
            w[i] = 0.0
            r[i] = 0.0
            dev[i] = 0.0
            continue
        me = mu_eta(eta[i], m)
        v = variance(m, phi)
        w[i] = wt[i] * me * me / v
        r[i] = {residual}
        dev[i] = dev_resid(y[i], m, wt[i], phi)"""

# every text above, in one string: part of each generated module's cache key
ALL = "".join((TEMPLATE, OBSERVED_TEMPLATE, GRADIENT_TEMPLATE, PHI_WEIGHTS_TEMPLATE,
               DPHI_TEMPLATE, DVARIANCE_TEMPLATE, UPDATE_NEWTON_TEMPLATE, NEWTON_DEVIANCE,
               FISHER, OBSERVED, FISHER_SLOPE, SCORE_VALUE, OBSERVED_BY_VARIANCE,
               LOGLIK_BY_CUMULANT, LOGLIK_BY_DEVIANCE, UPDATE_BY_CUMULANT,
               UPDATE_BY_DEV_RESID))
