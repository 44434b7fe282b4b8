"""glmmcore.plot: every picture rendered with Agg to PNG, and what it draws checked."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmcore
from glmmcore import plot

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def gpa_rs(datasets):
    return glmmcore.fit("gpa ~ occasion + (1 + occasion | student)", datasets["gpa"])


def _render(ax, tmp_path):
    path = tmp_path / "figure.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(ax.figure)


def test_caterpillar_draws_every_level_sorted_with_intervals(gpa_rs, tmp_path):
    ax = plot.caterpillar(gpa_rs, "student", term="occasion")
    table = gpa_rs.ranef_frame(cond_var=True)
    part = table[(table["grpvar"] == "student") & (table["term"] == "occasion")]
    points = ax.lines[0].get_xdata()
    assert len(points) == 200
    np.testing.assert_allclose(points, np.sort(part["condval"].to_numpy()))
    # the interval bars: 1.96 conditional sds either side of each mode
    segments = ax.collections[0].get_segments()
    widths = np.array([s[1][0] - s[0][0] for s in segments])
    order = np.argsort(part["condval"].to_numpy())
    np.testing.assert_allclose(widths, 2 * stats.norm.ppf(0.975)
                               * part["condsd"].to_numpy()[order], rtol=1e-10)
    assert ax.get_ylabel() == "student" and ax.get_title() == "occasion | student"
    _render(ax, tmp_path)


def test_ranef_frame_condsd_is_the_conditional_variance(gpa_rs):
    table = gpa_rs.ranef_frame(cond_var=True)
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(table) == 400
    first = table[table["term"] == "(Intercept)"]
    np.testing.assert_allclose(first["condval"], gpa_rs.ranef["student"]["(Intercept)"])
    np.testing.assert_allclose(first["condsd"] ** 2, gpa_rs.condvar["student"][:, 0, 0])


def test_qq_and_residual_plots(gpa_rs, tmp_path):
    ax = plot.qq_ranef(gpa_rs, "student")
    x, y = ax.lines[0].get_data()
    assert len(x) == 200 and np.all(np.diff(y) >= 0)
    assert x[0] == pytest.approx(stats.norm.ppf(0.5 / 200))
    assert ax.get_xlabel() == "standard normal quantiles"
    _render(ax, tmp_path)
    ax = plt.subplots()[1]
    assert plot.resid_fitted(gpa_rs, ax=ax) is ax
    x, y = ax.lines[0].get_data()
    frame = plot.residual_frame(gpa_rs)
    assert len(x) == gpa_rs.nobs == len(frame)
    np.testing.assert_allclose(y, (gpa_rs.response.y - gpa_rs.mu) / gpa_rs.sigma)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("fitted values", "Pearson residuals")
    _render(ax, tmp_path)


def test_profile_zeta(gpa_rs, tmp_path):
    profile = gpa_rs.profile("occasion")
    ax = plot.profile_zeta(profile)
    y = ax.lines[0].get_ydata()
    np.testing.assert_allclose(y, profile["zeta"])
    assert ax.get_xlabel() == "occasion" and ax.get_ylabel() == "zeta"
    # lines at -z, z and 0
    levels = sorted(line.get_ydata()[0] for line in ax.lines[1:])
    np.testing.assert_allclose(levels, [-1.959964, 0, 1.959964], atol=1e-6)
    _render(ax, tmp_path)
    with pytest.raises(glmmcore.ArgumentError, match="sigma"):
        plot.profile_zeta(profile, parameter="sigma")


def test_volcano_from_a_coefficient_table(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    p = rng.uniform(size=n) ** 3
    table = pd.DataFrame({
        "feature": [f"g{i}" for i in range(n)] * 2,
        "term": ["x"] * n + ["(Intercept)"] * n,
        "estimate": np.concatenate([rng.normal(size=n), rng.normal(size=n)]),
        "std_error": 1.0, "statistic": 0.0,
        "p_value": np.concatenate([p, np.full(n, 0.5)]),
        "p_adjusted": np.concatenate([np.minimum(p * 10, 1), np.full(n, 0.5)])})
    ax = plot.volcano(table, "x")
    grey, red = ax.lines[0], ax.lines[1]
    assert len(red.get_xdata()) == int(np.sum(np.minimum(p * 10, 1) < 0.05))
    assert len(grey.get_xdata()) + len(red.get_xdata()) == n
    np.testing.assert_allclose(np.sort(np.concatenate([grey.get_ydata(), red.get_ydata()])),
                               np.sort(-np.log10(p)))
    assert ax.get_ylabel() == "-log10(p)"
    _render(ax, tmp_path)
    with pytest.raises(glmmcore.ArgumentError, match="term 'z'"):
        plot.volcano(table, "z")


def test_argument_errors(gpa_rs):
    with pytest.raises(glmmcore.ArgumentError, match="grouping factor"):
        plot.caterpillar(gpa_rs, "school")
    with pytest.raises(glmmcore.ArgumentError, match="random effect"):
        plot.caterpillar(gpa_rs, "student", term="age")


def test_missing_matplotlib_names_the_extra(gpa_rs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'glmmcore\[plot\]'):
        plot.resid_fitted(gpa_rs)
