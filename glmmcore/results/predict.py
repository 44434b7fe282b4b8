"""Prediction and simulation from a fitted model, on its own data or on new data.

:func:`predict` follows lme4's ``predict.merMod``: ``re_form`` chooses the
random-effects terms included (all, none, or those named), ``new_levels`` what
unseen levels of a grouping factor get (lme4's ``allow.new.levels = TRUE`` is
``"population"``: random effects of zero).  :func:`simulate` follows lme4's
``simulate.merMod``: by default new random effects are drawn from their fitted
distribution (``re.form = NA``); with ``re_form=None`` the conditional modes
are kept.  Responses are drawn by the family's own ``simulate`` (the plugin
interface), so every family, a third-party one included, simulates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..design.newdata import NewDesign, new_design
from ..errors import DataError, MissingValueWarning, ModelSpecError, warn
from ..spec.formula import parse_formula
from ..spec.reterms import CovarianceTerm, term_source

NEW_LEVELS = ("population", "error", "nan")
TYPES = ("response", "link")


def selected_terms(fit: Any, re_form: Any) -> list[CovarianceTerm]:
    """The random-effects terms ``re_form`` includes (lme4's ``re.form``).

    ``None``: every term; ``"~0"``, ``"NA"`` or NaN: none; ``"~(1 | g) + ..."``:
    the terms named, each one of the model's own.
    """
    terms = fit.predictor.reterms.terms
    if re_form is None:
        return list(terms)
    if isinstance(re_form, float) and math.isnan(re_form):
        return []
    if not isinstance(re_form, str):
        raise ModelSpecError(f"re_form must be None, '~0', 'NA' or a one-sided formula of "
                             f"random-effects terms, not {re_form!r}")
    text = "".join(re_form.split())
    if text in ("NA", "~0", "0", "~-1"):
        return []
    if not text.startswith("~"):
        raise ModelSpecError(f"re_form must be a one-sided formula such as '~(1 | g)', "
                             f"not {re_form!r}")
    wanted = parse_formula("y" + re_form.strip()).random
    if not wanted:
        raise ModelSpecError(f"re_form {re_form!r} names no random-effects term; "
                             "use '~0' for none")
    chosen = []
    for term in wanted:
        matches = [t for t in terms if t.source == term_source(term)]
        if not matches:
            known = sorted({_show_source(t.source) for t in terms})
            raise ModelSpecError(f"re_form term '{term.text}' is not a term of the model "
                                 f"(its terms: {', '.join(known)})")
        chosen.extend(t for t in matches if t not in chosen)
    return chosen


def predict(fit: Any, newdata: Any = None, *, re_form: Any = None,
            new_levels: str = "population", type: str = "response",
            offset: Any = None) -> pd.Series:
    """Predictions of a fitted model (see :meth:`MixedModelResult.predict`)."""
    _check_choice(new_levels, NEW_LEVELS, "new_levels")
    _check_choice(type, TYPES, "type")
    terms = selected_terms(fit, re_form)
    if newdata is None:
        if offset is not None:
            raise ModelSpecError("offset= gives the offset of newdata; without newdata the "
                                 "model's own offset is used")
        eta = fit.eta if len(terms) == len(fit.predictor.reterms.terms) else _own_eta(fit, terms)
        index = fit.response_index
    else:
        frame = newdata if isinstance(newdata, pd.DataFrame) else None
        design = new_design(fit.model, newdata, offset)
        eta_rows = design.X @ fit.beta + design.offset
        for term in terms:
            eta_rows += _term_effect(fit, term, design, new_levels)
        eta = np.full(design.complete.shape[0], np.nan)
        eta[design.complete] = eta_rows
        index = frame.index if frame is not None else pd.RangeIndex(eta.size)
        _report_incomplete(design)
    values = eta if type == "link" or fit.is_lmm else fit.family.linkinv_array(eta)
    return pd.Series(values, index=index, name="prediction")


def simulate(fit: Any, nsim: int = 1, *, seed: Any = None, newdata: Any = None,
             re_form: Any = "~0") -> pd.DataFrame:
    """Responses drawn from a fitted model (see :meth:`MixedModelResult.simulate`)."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ModelSpecError(f"nsim must be a positive integer, not {nsim!r}")
    rng = np.random.default_rng(seed)
    out, index = simulate_draws(fit, [rng] * nsim, newdata=newdata, re_form=re_form)
    return pd.DataFrame(out, index=index, columns=[f"sim_{j + 1}" for j in range(nsim)])


def simulate_draws(fit: Any, generators: list[np.random.Generator], *, newdata: Any = None,
                   re_form: Any = "~0") -> tuple[np.ndarray, pd.Index]:
    """Draw ``j`` of :func:`simulate` from ``generators[j]`` (one generator repeated
    draws as :func:`simulate`), and the rows' index; what the draws share is made once."""
    nsim = len(generators)
    kept = {id(t) for t in selected_terms(fit, re_form)}
    blocks = fit.predictor.reterms.blocks
    if newdata is None:
        X, offset, weights = fit.predictor.X, fit.response.offset, fit.response.weights
        block_X = [b.X for b in blocks]
        codes = [b.factor.codes for b in blocks]
        complete, index = None, fit.response_index
    else:
        design = new_design(fit.model, newdata, None)
        X, offset, block_X = design.X, design.offset, design.block_X
        weights = np.ones(X.shape[0])
        codes = [_with_new_level_numbers(design, k, b.nlevels) for k, b in enumerate(blocks)]
        complete = design.complete
        index = (newdata.index if isinstance(newdata, pd.DataFrame)
                 else pd.RangeIndex(complete.size))
        _report_incomplete(design)
    base = X @ fit.beta + offset
    phi = fit.sigma ** 2 if fit.is_lmm else fit.extra.get("phi", 1.0)
    scale = fit.sigma if fit.is_lmm else 1.0     # an LMM's random effects scale with sigma
    Ts = fit.predictor.reterms.T_matrices(fit.theta)
    fitted_b = _fitted_b(fit)
    out = np.full((index.size, nsim), np.nan)
    nlevels = [max(int(c.max(initial=-1)) + 1, block.nlevels) for c, block in zip(codes, blocks)]
    for j, rng in enumerate(generators):
        eta = base.copy()
        for k, block in enumerate(blocks):
            b = scale * rng.standard_normal((nlevels[k], block.p)) @ Ts[k].T
            for term in fit.predictor.reterms.terms:
                if term.block == k and id(term) in kept:
                    b[:block.nlevels, term.cols] = fitted_b[k][:, term.cols]
            eta += np.einsum("ij,ij->i", block_X[k], b[codes[k]])
        mu = eta if fit.is_lmm else fit.family.linkinv_array(eta)
        draws = fit.family.simulate(mu, weights, phi, rng)
        if complete is None:
            out[:, j] = draws
        else:
            out[complete, j] = draws
    return out, index


def _own_eta(fit: Any, terms: list[CovarianceTerm]) -> np.ndarray:
    """The linear predictor of the fit's own rows with only ``terms``' random effects."""
    eta = fit.predictor.X @ fit.beta + fit.response.offset
    fitted_b = _fitted_b(fit)
    for term in terms:
        block = fit.predictor.reterms.blocks[term.block]
        b = fitted_b[term.block][block.factor.codes][:, term.cols]
        eta += np.einsum("ij,ij->i", block.X[:, term.cols], b)
    return eta


def _term_effect(fit: Any, term: CovarianceTerm, design: NewDesign,
                 new_levels: str) -> np.ndarray:
    """One term's random effects on the new rows, by the ``new_levels`` rule."""
    block = fit.predictor.reterms.blocks[term.block]
    codes = design.block_codes[term.block]
    unseen = codes < 0
    if unseen.any() and new_levels == "error":
        labels = design.unseen_levels(term.block)
        shown = ", ".join(repr(v) for v in labels[:10])
        more = f" and {len(labels) - 10} more" if len(labels) > 10 else ""
        raise DataError(f"newdata has {len(labels)} level(s) of '{block.factor.name}' the "
                        f"fit never saw ({shown}{more}); use new_levels='population' to give "
                        "them random effects of zero, or 'nan'")
    b = _fitted_b(fit)[term.block][np.maximum(codes, 0)][:, term.cols]
    effect = np.einsum("ij,ij->i", design.block_X[term.block][:, term.cols], b)
    effect[unseen] = np.nan if new_levels == "nan" else 0.0
    return effect


def _fitted_b(fit: Any) -> list[np.ndarray]:
    """The conditional modes as one ``levels x p`` array per block."""
    out, start = [], 0
    for block in fit.predictor.reterms.blocks:
        out.append(fit.b[start:start + block.q].reshape(block.nlevels, block.p))
        start += block.q
    return out


def _with_new_level_numbers(design: NewDesign, block: int, nlevels: int) -> np.ndarray:
    """A block's codes with unseen levels numbered after the fit's, one per distinct label."""
    codes = design.block_codes[block]
    unseen = codes < 0
    if not unseen.any():
        return codes
    number = {label: nlevels + i for i, label in enumerate(design.unseen_levels(block))}
    out = codes.copy()
    out[unseen] = [number[k] for k in design.block_keys[block][unseen]]
    return out


def _report_incomplete(design: NewDesign) -> None:
    missing = int((~design.complete).sum())
    if missing:
        warn(f"{missing} row(s) of newdata have a missing value in a variable the model "
             "needs; their predictions are NaN", MissingValueWarning)


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ModelSpecError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                             f"not {value!r}")


def _show_source(source: tuple) -> str:
    expr, group, uncorrelated = source
    return f"({expr} {'||' if uncorrelated else '|'} {':'.join(group)})"
