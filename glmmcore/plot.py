"""Pictures of a fit: random effects, residuals, likelihood profiles, batch volcano plots.

Each plot is drawn from a tidy table that a public function returns as well
(:meth:`MixedModelResult.ranef_frame`, :func:`residual_frame`,
:meth:`MixedModelResult.profile`, a batch result's ``coefs``), so the same
pictures can be drawn with seaborn or plotnine.  Each function takes ``ax=``
(a new figure's axes if ``None``) and returns the Axes.  matplotlib is the
optional extra ``glmmcore[plot]``; the tables need only pandas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError


def _normal_quantile(p: Any) -> Any:
    # imported here: scipy.stats loads scipy.linalg and scipy.optimize, which
    # `import glmmcore` and a fit avoid
    from scipy.stats import norm
    return norm.ppf(p)

PLOT_EXTRA = 'pip install "glmmcore[plot]"'


def residual_frame(result: Any) -> pd.DataFrame:
    """Fitted values and residuals, one row per observation used: ``fitted``,
    ``residual`` (response scale) and ``pearson`` (Pearson residuals, scaled by
    sigma for an LMM, as lme4's ``plot(fit)`` shows them)."""
    pearson = result.residuals("pearson")
    if result.is_lmm:
        pearson = pearson / result.sigma
    return pd.DataFrame({"fitted": result.fitted().to_numpy(),
                         "residual": result.residuals("response").to_numpy(),
                         "pearson": pearson.to_numpy()}, index=result.response_index)


def caterpillar(result: Any, group: str, *, term: str | None = None, level: float = 0.95,
                ax: Any = None) -> Any:
    """Conditional modes of one grouping factor's random effects with their intervals,
    sorted (lme4's ``dotplot(ranef(fit, condVar = TRUE))``).

    Parameters
    ----------
    result
        A fitted model.
    group
        The grouping factor (a key of ``result.ranef``).
    term
        The random-effect column (default: the factor's first, usually the
        intercept).
    level
        Coverage of the intervals ``mode +- z * conditional sd``.
    ax
        matplotlib Axes to draw on.
    """
    table = _ranef_part(result, group, term).sort_values("condval")
    z = _normal_quantile(0.5 + level / 2)
    ax = _axes(ax)
    position = np.arange(len(table))
    ax.errorbar(table["condval"].to_numpy(), position, xerr=z * table["condsd"].to_numpy(),
                fmt="o", ms=3,
                color="C0", ecolor="0.6", elinewidth=1)
    ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(position)
    ax.set_yticklabels(table["grp"].tolist(), fontsize="x-small" if len(table) > 30 else None)
    ax.set_xlabel(f"conditional mode ({level:.0%} interval)")
    ax.set_ylabel(group)
    ax.set_title(f"{table['term'].iloc[0]} | {group}")
    return ax


def qq_ranef(result: Any, group: str, *, term: str | None = None, ax: Any = None) -> Any:
    """Normal quantile plot of one grouping factor's conditional modes (standardized
    by their standard deviation), with the line of slope 1."""
    table = _ranef_part(result, group, term, cond_var=False)
    values = np.sort(table["condval"].to_numpy())
    spread = values.std(ddof=1) if values.size > 1 else 1.0
    standardized = (values - values.mean()) / (spread if spread > 0 else 1.0)
    n = values.size
    theoretical = _normal_quantile((np.arange(1, n + 1) - 0.5) / n)
    ax = _axes(ax)
    ax.plot(theoretical, standardized, "o", ms=3, color="C0")
    ax.axline((0.0, 0.0), slope=1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel("standardized conditional modes")
    ax.set_title(f"{table['term'].iloc[0]} | {group}")
    return ax


def resid_fitted(result: Any, *, ax: Any = None) -> Any:
    """Pearson residuals against fitted values (lme4's ``plot(fit)``), from
    :func:`residual_frame`."""
    table = residual_frame(result)
    ax = _axes(ax)
    ax.plot(table["fitted"].to_numpy(), table["pearson"].to_numpy(), "o", ms=2.5, alpha=0.6,
            color="C0")
    ax.axhline(0.0, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel("fitted values")
    ax.set_ylabel("Pearson residuals")
    return ax


def profile_zeta(profile: pd.DataFrame, *, parameter: str | None = None, level: float = 0.95,
                 ax: Any = None) -> Any:
    """zeta against one parameter's value (lme4's ``xyplot(profile(fit))``), from
    :meth:`MixedModelResult.profile`'s table; the horizontal lines at ``-+z`` meet
    the profile at the profile confidence interval.

    ``parameter`` may be left out when the table holds one parameter.
    """
    names = list(dict.fromkeys(profile["parameter"]))
    if parameter is None:
        if len(names) != 1:
            raise ArgumentError(f"the profile holds {len(names)} parameters; name one with "
                                f"parameter= ({', '.join(names)})")
        parameter = names[0]
    if parameter not in names:
        raise ArgumentError(f"parameter {parameter!r} is not in the profile ({', '.join(names)})")
    part = profile[profile["parameter"] == parameter].sort_values("value")
    z = _normal_quantile(0.5 + level / 2)
    ax = _axes(ax)
    ax.plot(part["value"].to_numpy(), part["zeta"].to_numpy(), "-o", ms=3, color="C0")
    for h in (-z, z):
        ax.axhline(h, color="0.5", lw=0.8, ls="--")
    ax.axhline(0.0, color="0.3", lw=0.6)
    ax.set_xlabel(parameter)
    ax.set_ylabel("zeta")
    return ax


def volcano(batch_result: Any, term: str, *, alpha: float = 0.05, ax: Any = None) -> Any:
    """Estimates against ``-log10(p)`` of one term across a batch of fits.

    ``batch_result`` is a batch result (its ``coefs`` table) or any table with
    the columns ``feature, term, estimate, p_value`` and optionally
    ``p_adjusted``; features whose adjusted p-value (else p-value) is below
    ``alpha`` are drawn in a second colour.
    """
    table = getattr(batch_result, "coefs", batch_result)
    if not isinstance(table, pd.DataFrame):
        raise ArgumentError("volcano takes a batch result or a table of coefficients, not "
                            f"{type(batch_result).__name__}")
    missing = {"term", "estimate", "p_value"} - set(table.columns)
    if missing:
        raise ArgumentError(f"the coefficient table lacks the columns {sorted(missing)}")
    part = table[table["term"] == term]
    if part.empty:
        raise ArgumentError(f"term {term!r} is not in the table (terms: "
                            f"{', '.join(map(str, pd.unique(table['term'])))})")
    p = part["p_adjusted" if "p_adjusted" in part.columns else "p_value"].to_numpy(float)
    height = -np.log10(part["p_value"].to_numpy(float))
    hit = p < alpha
    ax = _axes(ax)
    ax.plot(part["estimate"].to_numpy(float)[~hit], height[~hit], "o", ms=3, color="0.6",
            label="not significant")
    ax.plot(part["estimate"].to_numpy(float)[hit], height[hit], "o", ms=3, color="C3",
            label=f"adjusted p < {alpha:g}")
    ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(f"estimate of {term}")
    ax.set_ylabel("-log10(p)")
    ax.legend(loc="best", fontsize="small")
    return ax


def _ranef_part(result: Any, group: str, term: str | None, cond_var: bool = True
                ) -> pd.DataFrame:
    if group not in result.ranef:
        raise ArgumentError(f"no grouping factor {group!r}; the model's are "
                            f"{', '.join(result.ranef)}")
    columns = list(result.ranef[group].columns)
    term = columns[0] if term is None else term
    if term not in columns:
        raise ArgumentError(f"no random effect {term!r} for {group!r}; its columns are "
                            f"{', '.join(columns)}")
    table = result.ranef_frame(cond_var=cond_var)
    return table[(table["grpvar"] == group) & (table["term"] == term)]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"glmmcore.plot needs matplotlib: {PLOT_EXTRA}") from None
    return plt.subplots(figsize=(5.5, 4.0))[1]
