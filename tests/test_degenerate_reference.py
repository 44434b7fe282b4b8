"""Degenerate inputs against lme4 (tests/data/lme4_degenerate.json, written by
tests/data/r/degenerate.R): where lme4 stops we raise a typed error; where it warns we flag
and warn; where it fits cleanly we fit as well, with a log-likelihood at least lme4's."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.errors import (
    ConvergenceWarning,
    IdentifiabilityWarning,
    ModelSpecError,
    ResponseError,
    SingularFitWarning,
)

DATA = Path(__file__).parent / "data" / "lme4_degenerate.json"
CASES = json.loads(DATA.read_text())["cases"]
# lme4 stops: the error we raise instead
ERRORS = {("p_equals_n_ml", "reml"): ModelSpecError,
          ("binomial_all_zero", "laplace"): ResponseError,
          ("binomial_all_zero", "intercept"): ResponseError,
          ("poisson_all_zero", "laplace"): ResponseError,
          ("poisson_all_zero", "intercept"): ResponseError,
          ("one_level", "lmm"): ModelSpecError, ("one_level", "glmm"): ModelSpecError,
          ("levels_equal_rows", "lmm"): ModelSpecError}
# lme4 returns a fit that the data cannot identify (with warnings, or, for the intercept-only
# model constant within groups, silently at theta 1.7e7): the flags we set
FLAGGED = {("exact_fixed", "reml"): {"perfect_fit"}, ("exact_fixed", "ml"): {"perfect_fit"},
           ("constant_within_groups", "intercept"): {"constant_within_groups"},
           ("constant_within_groups", "slope"): {"constant_within_groups"},
           ("p_equals_n_ml", "ml"): {"perfect_fit", "saturated"},
           ("complete_separation", "laplace"): {"separation"}}
ALL = [(case, name) for case in CASES for name in CASES[case]["fits"]]


def run(case: str, name: str):
    """Our fit of lme4's call on the case's data, and the glmmcore warnings it emitted."""
    ref = CASES[case]["fits"][name]
    data = pd.DataFrame(CASES[case]["data"])
    m = re.fullmatch(r"(g?lmer)\((.*?) ~ (.*), data = d(?:, family = (\w+))?"
                     r"(?:, REML = (FALSE))?\)", ref["call"])
    assert m, ref["call"]
    _, lhs, rhs, family, ml = m.groups()
    if lhs == "round(exp(y))":
        data["y"] = np.round(np.exp(data["y"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmmcore.fit(f"y ~ {rhs}", data, family=family or "gaussian", REML=ml is None)
    return ref, fit, [w for w in caught if issubclass(w.category, glmmcore.GlmmWarning)]


@pytest.mark.parametrize("case, name", ALL)
def test_degenerate_case_as_lme4(case, name):
    ref = CASES[case]["fits"][name]
    if (case, name) in ERRORS:
        assert ref["error"], "lme4 stops here"
        with pytest.raises(ERRORS[case, name]):
            run(case, name)
        return
    assert ref["error"] is None
    ref, fit, caught = run(case, name)
    codes = {f.code for f in fit.convergence.flags}
    if (case, name) in FLAGGED:
        assert FLAGGED[case, name] <= codes
        assert len([w for w in caught if w.category is IdentifiabilityWarning]) == 1
        for coef, value in ref["fixef"].items():      # the exact fits' unique fixed effects
            if case in ("exact_fixed", "p_equals_n_ml"):
                assert fit.fixef[coef] == pytest.approx(value, rel=1e-8, abs=1e-10), coef
        return
    assert not codes & {"perfect_fit", "constant_within_groups", "zero_residual_variance"}
    assert fit.loglik >= ref["logLik"] - 1e-6 * abs(ref["logLik"])
    if ref["is_singular"]:
        assert fit.is_singular
        assert [w.category for w in caught] == [SingularFitWarning]
    if not ref["warnings"]:
        # lme4 converged cleanly: the same optimum
        assert fit.converged, fit.convergence.reason
        assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), rtol=2e-3,
                                   atol=1e-4)
        for coef, value in ref["fixef"].items():
            assert fit.fixef[coef] == pytest.approx(value, rel=1e-3, abs=1e-4), coef
        assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
