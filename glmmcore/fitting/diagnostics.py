"""What the data cannot identify: checks, flags with codes, and the warnings.

Degenerate data is refused with a typed error before any fitting where lme4
refuses it too, or where no estimate exists to report (a constant GLMM
response: lme4's "Response is constant"; REML with as many fixed effects as
observations).  Otherwise the fit is returned with
:class:`Flag` strings on ``fit.convergence.flags`` saying what is wrong, and
one warning per kind and fit (lme4 warns on the same fits): an
:class:`~glmmcore.errors.IdentifiabilityWarning` for the flags in
:data:`IDENTIFIABILITY`, a :class:`~glmmcore.errors.ConvergenceWarning` for a
failed check, a :class:`~glmmcore.errors.SingularFitWarning` for a boundary
fit.  Every check here is O(n p) at most and runs once per fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import (
    ConvergenceWarning,
    DataError,
    IdentifiabilityWarning,
    ModelSpecError,
    ResponseError,
    SingularFitWarning,
    show,
    warn,
)

FLAG_CODES = {
    "perfect_fit": "the fixed effects fit the response exactly (no residual variance)",
    "constant_within_groups": "the response is constant within every level of a "
                              "grouping factor (the random effects fit it exactly)",
    "zero_residual_variance": "the residual variance is estimated as numerically 0",
    "confounded_term": "a random-effects term lies in the span of the fixed effects",
    "unidentifiable_term": "one level per observation in a 0/1 binomial model",
    "saturated": "as many fixed effects as observations",
    "separation": "fitted probabilities numerically 0 or 1 (separation)",
    "separated_groups": "every level of a grouping factor has only failures or only successes",
    "no_finite_mode": "PIRLS found no finite mode (estimates drift to infinity)",
    "zero_count_levels": "levels with no successes or counts at all",
    "pirls_failures": "PIRLS failed at trial parameters the optimizer then avoided",
}
# flags that mean the data cannot identify part of the model: warned about
IDENTIFIABILITY = frozenset({"perfect_fit", "constant_within_groups", "zero_residual_variance",
                             "confounded_term", "unidentifiable_term", "saturated",
                             "separation", "separated_groups", "no_finite_mode"})
# flags whose likelihood has no maximum (it grows without bound): not converged
NO_MAXIMUM = frozenset({"perfect_fit", "constant_within_groups", "zero_residual_variance",
                        "separated_groups"})
NO_MAXIMUM_REASON = "the data cannot identify the model: the likelihood has no maximum"
EXACT_TOL = 1e-9        # residuals this small relative to the response: an exact fit
ZERO_SIGMA_TOL = 1e-6   # a residual SD this small relative to the response's: none left


class Flag(str):
    """A diagnostic message (the string itself) with a machine-readable ``code``
    (a key of :data:`FLAG_CODES`)."""

    code: str

    def __new__(cls, code: str, message: str) -> Flag:
        obj = super().__new__(cls, message)
        obj.code = code
        return obj

    def __getnewargs__(self) -> tuple[str, str]:
        return self.code, str(self)


def has(flags: list, code: str) -> bool:
    """Whether ``flags`` hold one with ``code``."""
    return any(getattr(f, "code", None) == code for f in flags)


# -- before fitting -----------------------------------------------------------

def check_response_varies(response: Any) -> None:
    """A GLMM's response must vary (lme4's ``check.response.not.const``)."""
    y = response.y
    if y.size > 1 and np.all(y == y[0]):
        raise ResponseError(
            f"response '{response.name}' is constant (every value is {show(y[0])}): a "
            f"{response.family.name} model has nothing to estimate and its fixed effects "
            "would be infinite or unidentified (lme4: 'Response is constant'); check the "
            "data or the subset")


def check_not_saturated(predictor: Any) -> None:
    """A GLMM with as many fixed effects as observations has nothing left for its random
    effects, and PIRLS's system is singular there (lme4: "Downdated VtV is not positive
    definite")."""
    n, p = predictor.n, predictor.p
    if p >= n:
        raise ModelSpecError(f"{p} fixed effects for {n} observations: the fixed effects "
                             "alone fit every observation, leaving nothing to estimate the "
                             "random effects from; remove fixed effects")


def check_lmm_weights(w: np.ndarray) -> None:
    """A linear mixed model's prior weights must be positive."""
    bad = np.flatnonzero(w <= 0)
    if bad.size:
        raise DataError(f"weights of a linear mixed model must be positive; observation "
                        f"{bad[0]} has weight {show(w[bad[0]])}")


def check_identifiable(predictor: Any, reml: bool = False) -> None:
    """lme4's checks that a residual variance is left for an LMM; REML needs residual
    degrees of freedom (lme4: "objective in x0 returns NA")."""
    n, p = predictor.n, predictor.p
    if reml and p >= n:
        raise ModelSpecError(
            f"{p} fixed-effect columns for {n} observations leave no residual degrees of "
            "freedom, so the REML criterion is undefined; remove fixed effects or fit by "
            "ML (REML=False), where the fit is flagged as exact")
    for term in predictor.reterms.terms:
        block = predictor.reterms.blocks[term.block]
        if block.nlevels >= n:
            raise ModelSpecError(f"grouping factor '{block.factor.name}' has {block.nlevels} "
                                 f"levels for {n} observations; in a linear mixed model the "
                                 "levels must be fewer than the observations, or no residual "
                                 "variance is left")
        q = block.nlevels * len(term.colnames)
        if q >= n:
            raise ModelSpecError(f"term '{term.label}' ({', '.join(term.colnames)}) has {q} "
                                 f"random effects for {n} observations; its variances and the "
                                 "residual variance are not identifiable")


def structure_flags(predictor: Any, response: Any, spread: float | None = None) -> list[Flag]:
    """Flags that the design and response show before fitting (O(n p)); ``spread`` is
    :func:`target_spread` of ``y - offset`` if known."""
    flags = []
    n, p = predictor.n, predictor.p
    if p >= n:
        flags.append(Flag("saturated", f"{p} fixed effects for {n} observations: the fixed "
                                       "effects alone can fit every observation"))
    target = response.y - response.offset
    if spread is None:
        spread = target_spread(target)
    bounds = response.family.mean_bounds
    for block in predictor.reterms.blocks:
        if not response.family.is_gaussian_identity:
            if (block.nlevels == n and response.family.name == "binomial"
                    and np.all(response.weights == 1)):
                flags.append(Flag("unidentifiable_term", (
                    f"'{block.factor.name}' has one level per observation: with 0/1 "
                    "responses its variance cannot be told from the binomial variance")))
            elif (bounds is not None and "(Intercept)" in block.colnames
                  and _separated_levels(response.y, block, bounds)):
                flags.append(Flag("separated_groups", (
                    f"every level of '{block.factor.name}' has only failures or only "
                    "successes: its random intercepts separate the responses, their variance "
                    "grows without bound and the likelihood has no maximum")))
            continue
        if "(Intercept)" in block.colnames and spread > 0 and _constant_within(
                target, block.factor.codes, block.nlevels, spread):
            flags.append(Flag("constant_within_groups", (
                f"the response is constant within every level of '{block.factor.name}': "
                "its random intercepts fit it exactly, the residual variance goes to 0 and "
                "the likelihood has no maximum")))
    return flags


def _separated_levels(y: np.ndarray, block: Any, bounds: tuple[float, float]) -> bool:
    """Whether every level's responses sit on one bound of the mean's range."""
    codes, nlevels = block.factor.codes, block.nlevels
    low = np.bincount(codes, weights=(y <= bounds[0]), minlength=nlevels)
    high = np.bincount(codes, weights=(y >= bounds[1]), minlength=nlevels)
    counts = np.bincount(codes, minlength=nlevels)
    return bool(np.all((low == counts) | (high == counts)))


def target_spread(values: np.ndarray) -> float:
    """The scale of a response for the exact-fit tolerances: its SD (its RMS if constant)."""
    sd = float(np.std(values))
    return sd if sd > 0 else float(np.sqrt(np.mean(values ** 2)))


def _constant_within(values: np.ndarray, codes: np.ndarray, nlevels: int,
                     spread: float) -> bool:
    counts = np.bincount(codes, minlength=nlevels)
    means = np.bincount(codes, weights=values, minlength=nlevels) / np.maximum(counts, 1)
    return bool(np.max(np.abs(values - means[codes])) <= EXACT_TOL * spread)


def confounded_flags(predictor: Any, weights: np.ndarray) -> list[Flag]:
    """Random-effects blocks whose columns lie in the span of X.

    A random vector's weighted least-squares residual on X is orthogonal to
    every column of X; its sums over the levels of a block (times the block's
    columns) then vanish for every level almost surely only if the block's
    columns are in the span of X.
    """
    X, n = predictor.X, predictor.n
    if predictor.p == 0:
        return []
    r = np.random.default_rng(20240607).standard_normal(n)
    sw = np.sqrt(weights)
    coef = np.linalg.lstsq(X * sw[:, None], r * sw, rcond=None)[0]
    resid = (r - X @ coef) * weights
    scale = np.sqrt(np.sum(resid ** 2))
    flags = []
    for block in predictor.reterms.blocks:
        sums = [np.bincount(block.factor.codes, weights=resid * block.X[:, j],
                            minlength=block.nlevels) for j in range(block.p)]
        if np.max(np.abs(sums)) <= 1e-8 * scale:
            flags.append(Flag("confounded_term", (
                f"the random effects on '{block.factor.name}' "
                f"({', '.join(block.colnames)}) are confounded with the fixed effects (every "
                "level's columns are fixed-effect columns too): their variance cannot be "
                "estimated; remove one of the two")))
    return flags


# -- after fitting ------------------------------------------------------------

def exact_fit(residuals: np.ndarray, target: np.ndarray, spread: float | None = None) -> bool:
    """Whether residuals are round-off of the response (an exact fit); ``spread`` is
    :func:`target_spread` of ``target`` if known."""
    if spread is None:
        spread = target_spread(target)
    return bool(np.sqrt(np.mean(residuals ** 2)) <= EXACT_TOL * spread)


def zero_sigma(sigma: float, target: np.ndarray, spread: float | None = None) -> bool:
    """Whether a residual SD is numerically 0 for this response (``spread`` as in
    :func:`exact_fit`)."""
    if spread is None:
        spread = target_spread(target)
    return bool(sigma <= ZERO_SIGMA_TOL * spread)


def apply_flags(conv: Any, flags: list[Flag]) -> None:
    """Add ``flags`` to ``conv``; a likelihood without maximum is not converged."""
    conv.flags.extend(flags)
    unbounded = [f for f in flags if f.code in NO_MAXIMUM]
    if unbounded and conv.converged:
        conv.converged = False
        conv.reason = f"{NO_MAXIMUM_REASON} ({unbounded[0].code}: see the flags)"


def report(conv: Any, control: Any) -> None:
    """The fit's warnings: at most one per kind (``control.warn = False``: none)."""
    if not getattr(control, "warn", True):
        return
    trouble = [str(f) for f in conv.flags if f.code in IDENTIFIABILITY]
    failed = ([] if conv.converged or conv.reason.startswith(NO_MAXIMUM_REASON)
              else [conv.reason])
    if trouble:
        warn("; ".join(trouble + failed), IdentifiabilityWarning)
    elif failed:
        warn("; ".join(failed), ConvergenceWarning)
    if conv.is_singular:
        warn("boundary (singular) fit: a variance component is estimated as 0 (or a "
             "correlation as +-1); see fit.is_singular and fit.varcorr", SingularFitWarning)
