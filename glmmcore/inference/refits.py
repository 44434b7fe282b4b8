"""Fits that inference needs beside the one given: the ML refit of a REML fit."""

from __future__ import annotations

import copy
from typing import Any


def refit_ml(result: Any) -> Any:
    """The maximum-likelihood fit of a REML fit's model and response (lme4's ``refitML``);
    other fits are returned as they are.

    The model is copied with ``REML=False`` (its design, layout and compiled
    parts shared, nothing refactored) and fitted from the REML estimates of
    theta, which are close to the ML ones.
    """
    if result.method != "REML":
        return result
    model = copy.copy(result.model)
    model.reml = False
    model.__dict__.pop("_fast_fitter", None)     # the REML model's compiled fitter
    return model.fit_response(result.response, start=result.theta)
