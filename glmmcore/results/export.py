"""A fit as plain data: the JSON result of ``glmm fit --json`` and ``result.to_dict()``.

The layout is versioned (:data:`SCHEMA_VERSION`) and described by the JSON
Schema shipped as ``glmmcore/schema/result.schema.json`` (:func:`schema`).
Only public attributes of the result are read.  Missing and non-finite
numbers (NaN, infinities) become ``null``, as JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import numpy as np

SCHEMA_NAME = "glmmcore.result"
SCHEMA_VERSION = "1.1"


def result_to_dict(fit: Any, *, condvar: bool = False) -> dict[str, Any]:
    """Everything a fit reports, as JSON-ready data (see ``docs/usage.md``).

    Parameters
    ----------
    fit
        A :class:`~glmmcore.results.result.MixedModelResult`.
    condvar
        Include the conditional covariances of the random effects (one
        ``p x p`` matrix per level, which can be large).
    """
    from .. import __version__
    from .summary import coef_table
    table = coef_table(fit)
    out = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "glmmcore_version": __version__,
        "formula": fit.formula, "data": fit.data_label, "response": fit.response.name,
        "success_level": fit.response.info.get("success"),
        "family": fit.family.name, "link": fit.family.link.name, "method": fit.method,
        "nagq": fit.nagq, "reml": bool(fit.reml),
        "nobs": fit.nobs, "n_dropped": fit.n_dropped, "ngroups": dict(fit.ngroups),
        "fit_statistics": _statistics(fit),
        "family_params": dict(fit.extra.get("family_params", {})),
        "coefficients": _coefficients(table),
        "vcov": {"names": list(fit.vcov.index), "matrix": fit.vcov.to_numpy()},
        "dropped_columns": list(fit.predictor.fixed.dropped),
        "varcorr": fit.varcorr.to_dict(orient="records"),
        "theta": {"names": fit.theta_names, "values": fit.theta},
        "ranef": {name: _table(frame) for name, frame in fit.ranef.items()},
        "condvar": _condvar(fit) if condvar else None,
        "scaled_residuals": _scaled_residuals(fit),
        "diagnostics": _diagnostics(fit),
    }
    return _plain(out)


def result_to_json(fit: Any, *, condvar: bool = False, indent: int | None = 2) -> str:
    """:func:`result_to_dict` as JSON text (strict: no NaN)."""
    return json.dumps(result_to_dict(fit, condvar=condvar), indent=indent, allow_nan=False)


def schema() -> dict[str, Any]:
    """The JSON Schema of :func:`result_to_dict`'s output."""
    text = resources.files("glmmcore").joinpath("schema/result.schema.json").read_text()
    return json.loads(text)


def _statistics(fit: Any) -> dict[str, Any]:
    return {"loglik": fit.loglik, "aic": fit.aic, "bic": fit.bic, "deviance": fit.deviance,
            "reml_criterion": fit.reml_criterion if fit.reml else None,
            "df_resid": fit.nobs - fit.nparams, "nparams": fit.nparams, "sigma": fit.sigma}


def _coefficients(table: Any) -> dict[str, Any]:
    stat = table.columns[2]
    p = table["Pr(>|z|)"] if "Pr(>|z|)" in table else [None] * len(table)
    rows = [{"term": term, "estimate": est, "std_error": se, "statistic": z, "p_value": pv}
            for term, est, se, z, pv in zip(table.index, table["Estimate"],
                                            table["Std. Error"], table[stat], p)]
    return {"statistic": stat.split()[0], "rows": rows}


def _table(frame: Any) -> dict[str, Any]:
    return {"levels": [str(v) for v in frame.index], "columns": [str(c) for c in frame.columns],
            "values": frame.to_numpy()}


def _condvar(fit: Any) -> dict[str, Any]:
    out = {}
    for name, frame in fit.ranef.items():
        out[name] = {"levels": [str(v) for v in frame.index],
                     "columns": [str(c) for c in frame.columns], "values": fit.condvar[name]}
    return out


def _scaled_residuals(fit: Any) -> dict[str, float]:
    r = fit.residuals("pearson").to_numpy()
    if fit.is_lmm:
        r = r / fit.sigma
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1])
    return dict(zip(("min", "q1", "median", "q3", "max"), q))


def _diagnostics(fit: Any) -> dict[str, Any]:
    details = fit.convergence.as_dict()
    flags = details.pop("flags", [])
    for key in ("converged", "is_singular", "reason", "optimizer"):
        details.pop(key, None)
    return {"converged": fit.converged, "singular": fit.is_singular,
            "reason": fit.convergence.reason, "flags": [f["message"] for f in flags],
            "flag_codes": [f["code"] for f in flags],
            "optimizer": list(fit.convergence.optimizer), "details": details}


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy values to Python, non-finite numbers to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
