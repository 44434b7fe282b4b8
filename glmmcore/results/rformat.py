"""Numbers laid out as R prints them: ``format()``, ``format.pval`` and ``printCoefmat``.

lme4's ``print(summary(fit))`` formats its coefficient table with R's
``printCoefmat(coefs, digits = 4)``: the estimates and standard errors share
one format (the same decimals, chosen so that every number shows ``digits``
significant digits, fixed or scientific notation by width), the test
statistics are rounded to ``digits - 1`` decimals and formatted together,
and p-values follow ``format.pval`` (``< 2e-16`` below machine epsilon).
This module reproduces those rules so that our tables read like lme4's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EPS = float(np.finfo(float).eps)
STAR_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
_KP_MAX = 22


def _digits_of(x: float, digits: int) -> tuple[int, int, int, bool]:
    """Sign, exponent, significant digits needed, and R's 'rounding widens' flag.

    ``nsig`` is the number of significant digits of ``x`` rounded to
    ``digits`` of them, trailing zeros dropped (R's ``scientific()``).
    """
    if x == 0:
        return 0, 0, 1, False
    r = abs(x)
    mantissa, exponent = f"{r:.{digits - 1}e}".split("e")
    kpower = int(exponent)
    nsig = max(1, len(mantissa.replace(".", "").rstrip("0")))
    # 9996 to 3 digits is 1.00e+04 in scientific notation but keeps 4 digits left of the
    # point in fixed notation
    rgt = min(max(digits - kpower, 0), _KP_MAX)
    widens = 0 < kpower <= _KP_MAX and r < 10.0 ** kpower - 0.5 / 10.0 ** rgt
    return int(x < 0), kpower, nsig, widens


def format_numbers(values: Sequence[float], digits: int = 7) -> list[str]:
    """R's ``format(x, digits = digits)`` of a numeric vector: one common format.

    Fixed notation with as many decimals as the element needing most of them
    (to show ``digits`` significant digits), unless scientific notation is
    narrower.  Every string is padded on the left to a common width; NaN
    prints as ``NaN`` and infinities as ``Inf``/``-Inf``.
    """
    xs = [float(v) for v in values]
    finite = [v for v in xs if math.isfinite(v)]
    if not finite:
        return _pad([_nonfinite(v) for v in xs])
    neg = rgt = mxsl = mxns = 0
    mxl, mnl, rgt = -(10 ** 9), 10 ** 9, -(10 ** 9)
    mxe, mne = -(10 ** 9), 10 ** 9
    for v in finite:
        sgn, kpower, nsig, widens = _digits_of(v, digits)
        left = kpower + 1 - int(widens)
        neg = max(neg, sgn)
        rgt = max(rgt, nsig - left)
        mxl, mnl = max(mxl, left), min(mnl, left)
        mxsl = max(mxsl, sgn + max(left, 1))
        mxns = max(mxns, nsig)
        mxe, mne = max(mxe, kpower), min(mne, kpower)
    if mxl < 0:
        mxsl = 1 + neg
    rgt = max(rgt, 0)
    width_fixed = mxsl + rgt + (rgt != 0)
    exp_digits = 3 if (mxe >= 100 or mne <= -99) else 2
    width_sci = neg + (mxns > 1) + (mxns - 1) + 2 + exp_digits + 1
    if width_fixed <= width_sci:
        out = [f"{v:.{rgt}f}" if math.isfinite(v) else _nonfinite(v) for v in xs]
    else:
        out = [_sci(v, mxns - 1, exp_digits) if math.isfinite(v) else _nonfinite(v)
               for v in xs]
    return _pad(out)


def _sci(v: float, decimals: int, exp_digits: int) -> str:
    mantissa, exponent = f"{v:.{decimals}e}".split("e")
    sign, power = exponent[0], exponent[1:].lstrip("0") or "0"
    return f"{mantissa}e{sign}{power.zfill(exp_digits)}"


def _nonfinite(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return "Inf" if v > 0 else "-Inf"


def _pad(strings: list[str]) -> list[str]:
    width = max((len(s) for s in strings), default=0)
    return [s.rjust(width) for s in strings]


def round_half_even(values: np.ndarray, decimals: int) -> np.ndarray:
    """R's ``round(x, decimals)`` (IEC 60559: halves to even, as numpy rounds)."""
    return np.round(np.asarray(values, dtype=float), decimals)


def zapsmall(values: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall`` (R 4.2): round to ``digits - log10(max |x|)`` decimals, that count
    rounded to the nearest integer as ``round()`` takes it, at least 0."""
    x = np.asarray(values, dtype=float)
    finite = np.abs(x[np.isfinite(x)])
    largest = float(finite.max()) if finite.size else 0.0
    if not largest > 0:
        return x.copy()
    decimals = max(0, math.floor(digits - math.log10(largest) + 0.5))
    return np.round(x, decimals)


def format_pvalues(pvalues: Sequence[float], digits: int = 3, eps: float = EPS) -> list[str]:
    """R's ``format.pval(pv, digits, eps)``.

    P-values below ``eps`` print as ``< 2e-16`` (``<2e-16`` when the others
    are at most 6 characters wide); those of at least 1e-4 share one format
    (fixed notation, as a rule), smaller ones another (scientific).
    """
    pv = np.asarray(pvalues, dtype=float)
    out = ["NA"] * pv.size
    small = [i for i in range(pv.size) if not np.isnan(pv[i]) and pv[i] < eps]
    rest = [i for i in range(pv.size) if not np.isnan(pv[i]) and pv[i] >= eps]
    # fixed notation from 1e-4 up (1e-3 when digits is 1)
    fixed = [i for i in rest if math.floor(math.log10(pv[i])) >= (-4 if digits > 1 else -3)]
    for group in (fixed, [i for i in rest if i not in fixed]):
        for i, text in zip(group, format_numbers(pv[group], digits)):
            out[i] = text
    if small:
        eps_digits = max(1, digits - 2)
        sep = " "
        if rest:
            nc = max(len(out[i]) for i in rest)
            if eps_digits > 1 and eps_digits + 6 > nc:
                eps_digits = max(1, nc - 7)
            sep = "" if eps_digits == 1 and nc <= 6 else " "
        elif eps_digits == 1:
            sep = ""
        label = "<" + sep + format_numbers([eps], eps_digits)[0]
        for i in small:
            out[i] = label
    return out


def significance_stars(pvalues: Sequence[float]) -> list[str]:
    """R's ``symnum`` codes of p-values: ``***`` < 0.001 < ``**`` < 0.01 < ``*`` < 0.05 < ``.``
    < 0.1 < `` ``."""
    marks = []
    for p in pvalues:
        mark = " "
        for cut, symbol in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
            if p <= cut:
                mark = symbol
                break
        marks.append(mark)
    return marks


def format_coef_columns(estimate: np.ndarray, std_error: np.ndarray, statistic: np.ndarray,
                        pvalue: np.ndarray | None, digits: int = 4,
                        stars: bool = True, df: np.ndarray | None = None) -> list[list[str]]:
    """The formatted columns of R's ``printCoefmat`` (estimate, SE[, df], statistic[, p, stars]).

    Estimates and standard errors (and lmerTest's degrees of freedom ``df``,
    which ``printCoefmat`` counts among them) are rounded to ``max(1, digits - d)``
    decimals (``d``: digits left of the point of the smallest nonzero absolute
    value) and formatted together; statistics are rounded to ``dig.tst =
    max(1, min(5, digits - 1))`` decimals; a nonzero estimate or error that
    would print as zero is formatted alone with ``digits - 1`` digits.
    """
    dig_tst = max(1, min(5, digits - 1))
    cs = np.column_stack([estimate, std_error] + ([] if df is None else [df])).astype(float)
    acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
    digmin = 1 + (math.floor(math.log10(acs.min())) if acs.size else 0)
    joint = format_numbers(round_half_even(cs.T.ravel(), max(1, digits - digmin)), digits)
    n = len(estimate)
    columns = [joint[k * n:(k + 1) * n] for k in range(cs.shape[1])]
    for col, raw in zip(columns, cs.T):
        for i, text in enumerate(col):
            if math.isfinite(raw[i]) and raw[i] != 0 and float(text) == 0:
                col[i] = format_numbers([raw[i]], max(1, digits - 1))[0]
    columns.append(format_numbers(round_half_even(statistic, dig_tst), digits))
    # printCoefmat prints every missing value (NA or NaN) as NA
    raws = (*cs.T, np.asarray(statistic, dtype=float))
    for col, raw in zip(columns, raws):
        for i in np.flatnonzero(np.isnan(raw)):
            col[i] = "NA"
    if pvalue is not None:
        columns.append(format_pvalues(pvalue, dig_tst))
        finite = [p for p in pvalue if not np.isnan(p)]
        if stars and any(p < 0.1 for p in finite):
            columns.append(_left_justify(significance_stars(pvalue)))
    return columns


def _left_justify(strings: list[str]) -> list[str]:
    width = max((len(s) for s in strings), default=0)
    return [s.ljust(width) for s in strings]


def print_matrix(rownames: Sequence[str], colnames: Sequence[str],
                 columns: Sequence[Sequence[str]]) -> str:
    """A character matrix as R's ``print(quote = FALSE, right = TRUE)`` shows it.

    Row names left-aligned, each column right-aligned to the widest of its
    header and entries, one space between columns; no trailing spaces.
    """
    namew = max((len(r) for r in rownames), default=0)
    widths = [max(len(h), *(len(s) for s in col)) for h, col in zip(colnames, columns)]
    lines = [" ".join([" " * namew, *(h.rjust(w) for h, w in zip(colnames, widths))])]
    for i, name in enumerate(rownames):
        cells = [col[i].rjust(w) for col, w in zip(columns, widths)]
        lines.append(" ".join([name.ljust(namew), *cells]))
    return "\n".join(line.rstrip() for line in lines)


def print_coefmat(rownames: Sequence[str], estimate: np.ndarray, std_error: np.ndarray,
                  statistic: np.ndarray, stat_name: str, pvalue: np.ndarray | None = None,
                  p_name: str = "Pr(>|z|)", digits: int = 4, stars: bool = True,
                  df: np.ndarray | None = None) -> str:
    """The text of R's ``printCoefmat`` for a coefficient table (legend included); ``df``
    adds lmerTest's degrees of freedom column."""
    columns = format_coef_columns(np.asarray(estimate, float), np.asarray(std_error, float),
                                  np.asarray(statistic, float),
                                  None if pvalue is None else np.asarray(pvalue, float),
                                  digits, stars, None if df is None else np.asarray(df, float))
    names = ["Estimate", "Std. Error"] + ([] if df is None else ["df"]) + [stat_name]
    if pvalue is not None:
        names.append(p_name)
    has_stars = len(columns) > len(names)
    if has_stars:
        names.append("")
    text = print_matrix(list(rownames), names, columns)
    if has_stars:
        text += "\n---\n" + STAR_LEGEND
    return text
