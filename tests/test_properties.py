"""Property-based fits: random small designs, formulas and responses of every built-in family.

Whatever the data (constant responses, all zeros, one observation per group,
separation, extreme values), a fit either raises one of glmmcore's own typed
errors or returns a result; a result that says it converged has finite
estimates, and no optimizer ran past its evaluation limit.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glmmcore
from glmmcore.fitting.optimizers.lbfgsb import LBFGSB_MAXLS

MAXEVAL = 400
FORMULAS = ["y ~ 1 + (1 | g)", "y ~ x + (1 | g)", "y ~ x + (x | g)", "y ~ x + (1 | g) + (1 | h)",
            "y ~ x + z + (1 | g)"]
FAMILIES = ["gaussian", "binomial", "poisson", "gamma", "negative_binomial"]


@st.composite
def data_sets(draw, family: str) -> tuple[str, pd.DataFrame]:
    ngroups = draw(st.integers(2, 6))
    sizes = draw(st.lists(st.integers(1, 6), min_size=ngroups, max_size=ngroups))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    kind = draw(st.sampled_from(["random", "random", "random", "zeros", "constant",
                                 "extreme", "group"]))
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(ngroups), sizes)
    n = g.size
    x = np.round(rng.normal(size=n), draw(st.sampled_from([0, 1, 6])))
    data = pd.DataFrame({"g": g, "h": rng.integers(0, 3, size=n), "x": x,
                         "z": rng.normal(size=n) * draw(st.sampled_from([1.0, 1e-6, 1e6]))})
    data["y"] = _response(family, kind, rng, g, x)
    return draw(st.sampled_from(FORMULAS)), data


def _response(family: str, kind: str, rng: np.random.Generator, g: np.ndarray,
              x: np.ndarray) -> np.ndarray:
    n = g.size
    eta = 0.5 * x + rng.normal(size=g.max() + 1)[g]
    if kind == "zeros":
        return np.zeros(n) if family in ("binomial", "poisson", "negative_binomial",
                                         "gaussian") else np.full(n, 1e-3)
    if kind == "constant":
        return np.full(n, 1.0 if family == "binomial" else 3.0)
    if kind == "group":         # constant within every group
        return {"binomial": (g % 2).astype(float)}.get(family, (g % 3 + 1).astype(float))
    scale = 1e6 if kind == "extreme" else 1.0
    return {"gaussian": scale * (eta + rng.normal(size=n)),
            "binomial": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float),
            "poisson": rng.poisson(np.exp(np.clip(eta, -5, 5 if scale == 1 else 12))),
            "gamma": scale * rng.gamma(2.0, np.exp(eta) / 2.0) + 1e-300,
            "negative_binomial": rng.negative_binomial(2, 1 / (1 + np.exp(eta)))}[family]


def check_fit(formula: str, data: pd.DataFrame, family: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmmcore.GlmmWarning)
        try:
            fit = glmmcore.fit(formula, data, family=family, control={"maxeval": MAXEVAL})
        except glmmcore.GlmmError:
            return
    for message in fit.convergence.optimizer:
        for count in re.findall(r"after (\d+) evaluations", message):
            # L-BFGS-B checks its limit between iterations: one line search may follow
            assert int(count) <= MAXEVAL + LBFGSB_MAXLS, message
    if fit.converged:
        values = [fit.beta, fit.theta, [fit.sigma, fit.loglik], np.diag(fit.vcov_beta)]
        assert all(np.all(np.isfinite(v)) for v in values), fit.convergence.as_dict()
        assert np.all(np.diag(fit.vcov_beta) >= 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_fits_end_in_a_result_or_a_typed_error(family):
    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(data_sets(family))
    def run(case):
        check_fit(*case, family)

    run()
