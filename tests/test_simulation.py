"""Tests of glmmcore.simulate: reproducibility, layout, and recovery by glmmcore.fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore.simulation import Simulation, design_parameters, designs, simulate
from glmmcore.spec.fixed import fixed_design
from glmmcore.spec.formula import parse_formula
from glmmcore.spec.reterms import build_reterms

DESIGNS = ["gpa", "pupils", "nurses", "sociometric", "speed_dating", "patents", "insteval"]
GAUSSIAN = ["gpa", "pupils", "nurses", "sociometric", "insteval"]
RESPONSE = {"gpa": "gpa", "pupils": "achievement", "nurses": "stress",
            "sociometric": "rating", "speed_dating": "decision", "patents": "ncit",
            "insteval": "y"}


@pytest.fixture(scope="module")
def default_sims() -> dict[str, Simulation]:
    return {name: simulate(name) for name in DESIGNS}


# -- the API -----------------------------------------------------------------

def test_designs_listed():
    assert designs() == DESIGNS


def test_unknown_design_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown design 'gap'.*gpa, pupils"):
        simulate("gap")


def test_unknown_keyword_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'n_student'.*'gpa'.*n_students, n_occasions"):
        simulate("gpa", n_student=10)


def test_unknown_fixed_effect_is_an_error():
    with pytest.raises(ValueError, match=r"'sexmale'.*sex\[T.male\]"):
        simulate("gpa", fixef={"sexmale": 0.1})


@pytest.mark.parametrize(("design", "kwargs"), [
    ("gpa", {"n_students": 1}), ("gpa", {"n_occasions": 2.5}), ("gpa", {"sigma": 0.0}),
    ("gpa", {"corr": 1.5}), ("pupils", {"sd_primary": -1.0}), ("nurses", {"n_hospitals": 1}),
    ("sociometric", {"group_size": (6, 5)}), ("sociometric", {"group_size": 1}),
    ("speed_dating", {"n_partners": 10, "dates_per_participant": 11}),
    ("patents", {"n_patents": 5}), ("insteval", {"n_obs": 100}),
])
def test_invalid_values_are_errors(design, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        simulate(design, **kwargs)


def test_parameters_are_overridable():
    sim = simulate("gpa", n_students=30, fixef={"occasion": 0.5}, sd_slope=0.0, sigma=0.3)
    assert sim.fixef["occasion"] == 0.5
    assert sim.fixef["(Intercept)"] == 2.4
    assert sim.sigma == 0.3
    # a zero slope SD is allowed: its column of T is zero
    np.testing.assert_allclose(sim.theta, [0.2 / 0.3, 0.0, 0.0])
    assert set(design_parameters("gpa")) >= {"n_students", "n_occasions", "fixef", "sigma"}


# -- reproducibility -----------------------------------------------------------

@pytest.mark.parametrize("design", DESIGNS)
def test_same_seed_same_data(design, default_sims):
    again = simulate(design)
    pd.testing.assert_frame_equal(again.data, default_sims[design].data)
    np.testing.assert_array_equal(again.theta, default_sims[design].theta)


@pytest.mark.parametrize("design", DESIGNS)
def test_other_seed_other_data(design, default_sims):
    other = simulate(design, seed=1)
    response = RESPONSE[design]
    a, b = default_sims[design].data[response], other.data[response]
    assert len(a) != len(b) or not np.array_equal(a.to_numpy(), b.to_numpy())


# -- layout ----------------------------------------------------------------------

@pytest.mark.parametrize("design", DESIGNS)
def test_names_match_glmmcore(design, default_sims):
    """fixef, theta and varcorr are laid out as glmmcore lays out a fit of the formula."""
    sim = default_sims[design]
    parsed = parse_formula(sim.formula)
    fixed = fixed_design(parsed.fixed, sim.data, sim.formula)
    reterms = build_reterms(parsed, sim.data)
    assert list(sim.fixef.index) == fixed.names
    assert len(sim.theta) == reterms.ntheta
    groups = [t.label for t in reterms.terms]
    if sim.family == "gaussian":
        groups.append("Residual")
    assert list(dict.fromkeys(sim.varcorr.grp)) == groups
    assert list(sim.varcorr.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert sim.family in ("gaussian", "binomial", "poisson")
    assert (sim.sigma == 1.0) or sim.family == "gaussian"


@pytest.mark.parametrize("design", DESIGNS)
def test_theta_agrees_with_varcorr(design, default_sims):
    """sigma^2 T T' rebuilt from theta gives varcorr's variances and covariances."""
    sim = default_sims[design]
    vc = sim.varcorr[sim.varcorr.grp != "Residual"]
    pos = 0
    for grp in dict.fromkeys(vc.grp):
        rows = vc[vc.grp == grp]
        names = list(rows.var1[rows.var2.isna()])
        p = len(names)
        T = np.zeros((p, p))
        for c in range(p):
            for r in range(c, p):
                T[r, c] = sim.theta[pos]
                pos += 1
        S = sim.sigma ** 2 * T @ T.T
        for row in rows.itertuples():
            i = names.index(row.var1)
            j = i if pd.isna(row.var2) else names.index(row.var2)
            assert S[i, j] == pytest.approx(row.vcov, rel=1e-12, abs=1e-15)
    assert pos == len(sim.theta)


def test_gpa_layout():
    sim = simulate("gpa", n_students=7, n_occasions=4)
    d = sim.data
    assert list(d.columns) == ["student", "occasion", "sex", "highgpa", "gpa"]
    assert len(d) == 28 and d.student.nunique() == 7
    assert sorted(d.occasion.unique()) == [0, 1, 2, 3]
    assert set(d.sex) <= {"female", "male"}
    assert (d.groupby("student")[["sex", "highgpa"]].nunique() == 1).all().all()
    assert sim.formula == "gpa ~ occasion + sex + highgpa + (1 + occasion | student)"


def test_pupils_layout(default_sims):
    d = default_sims["pupils"].data
    assert list(d.columns) == ["primary_school_id", "secondary_school_id", "sex", "ses",
                               "achievement"]
    assert len(d) == 1000
    assert d.primary_school_id.nunique() == 50 and d.secondary_school_id.nunique() == 30
    assert pd.api.types.is_numeric_dtype(d.ses)


def test_nurses_layout(default_sims):
    d = default_sims["nurses"].data
    assert list(d.columns) == ["hospital", "ward", "wardid", "age", "experience",
                               "treatment", "stress"]
    assert len(d) == 25 * 4 * 10
    assert d.hospital.nunique() == 25 and d.wardid.nunique() == 100
    assert sorted(d.ward.unique()) == [1, 2, 3, 4]
    assert (d.groupby("wardid").hospital.nunique() == 1).all()
    assert (d.groupby("wardid").treatment.nunique() == 1).all()
    # two of the four wards of each hospital are trained
    per_hospital = d.drop_duplicates("wardid").groupby("hospital").treatment
    assert (per_hospital.apply(lambda t: (t == "Training").sum()) == 2).all()
    assert set(d.treatment) == {"Control", "Training"}


def test_sociometric_layout(default_sims):
    d = default_sims["sociometric"].data
    assert list(d.columns) == ["group", "sender", "receiver", "agesend", "agerec",
                               "sexsend", "sexrec", "rating"]
    assert d.group.nunique() == 20
    sizes = d.groupby("group").sender.nunique()
    assert sizes.between(5, 10).all()
    assert len(d) == int((sizes * (sizes - 1)).sum())
    assert not (d.sender == d.receiver).any()
    assert not d.duplicated(["group", "sender", "receiver"]).any()
    # a child's age and sex are the same as sender and as receiver
    send = d.drop_duplicates(["group", "sender"]).set_index(["group", "sender"])
    rec = d.drop_duplicates(["group", "receiver"]).set_index(["group", "receiver"])
    rec.index.names = ["group", "sender"]
    assert (send.agesend == rec.agerec.reindex(send.index)).all()
    assert (send.sexsend == rec.sexrec.reindex(send.index)).all()
    assert simulate("sociometric", group_size=4, n_groups=3).data.shape[0] == 3 * 12


def test_speed_dating_layout(default_sims):
    sim = default_sims["speed_dating"]
    d = sim.data
    assert list(d.columns) == ["iid", "partner_id", "attractive_sc", "sincere_sc",
                               "samerace", "decision"]
    assert len(d) == 500 * 15 and d.iid.nunique() == 500
    assert (d.groupby("iid").partner_id.nunique() == 15).all()
    assert d.partner_id.between(1, 550).all()
    assert set(d.decision) == {0, 1} and set(d.samerace) == {"No", "Yes"}
    assert sim.family == "binomial"
    # partner_id (550 levels) comes before iid (500) in lme4's order
    assert list(sim.varcorr.grp) == ["partner_id", "iid"]


def test_patents_layout(default_sims):
    sim = default_sims["patents"]
    d = sim.data
    assert list(d.columns) == ["year", "opposition", "biopharm", "ncit"]
    assert len(d) == 4800
    assert sorted(d.year.unique()) == list(range(1980, 1998))
    assert set(d.opposition) == {0, 1} and set(d.biopharm) == {0, 1}
    assert (d.ncit >= 0).all() and pd.api.types.is_integer_dtype(d.ncit)
    assert sim.family == "poisson" and sim.sigma == 1.0


def test_insteval_layout(default_sims):
    d = default_sims["insteval"].data
    assert list(d.columns) == ["s", "d", "dept", "service", "y"]
    assert len(d) == 73_421
    assert (d.s.nunique(), d.d.nunique(), d.dept.nunique()) == (2_972, 1_128, 14)
    assert (d.groupby("d").dept.nunique() == 1).all()
    assert set(d.service) == {0, 1}
    # students rate several instructors: s and d are crossed
    assert d.groupby("s").d.nunique().mean() > 10


@pytest.mark.slow
def test_speed_dating_million_rows():
    # speed and memory are measured in bench/, not asserted here
    sim = simulate("speed_dating", n_participants=50_000, n_partners=2_000,
                   dates_per_participant=20, seed=7)
    d = sim.data
    assert len(d) == 1_000_000
    assert d.iid.nunique() == 50_000 and d.partner_id.nunique() == 2_000
    assert not d.duplicated(["iid", "partner_id"]).any()
    # iid (50,000 levels) now comes first
    np.testing.assert_allclose(sim.theta, [1.7, 0.6])


# -- parameter recovery by glmmcore.fit ------------------------------------------
#
# The truths are the simulation's parameters, so tolerances come from sampling
# error.  Fixed effects: within 3 standard errors (the fit's own).  Variance
# components: within 4 approximate standard errors, from the one-way random-effects
# ANOVA: a level's mean is its effect plus noise of variance v_i (residual and the
# other terms' effects averaged over the level's rows), so the Fisher information
# for sd^2 is 1/2 sum (sd^2 + v_i)^-2 and se(sd) = se(sd^2) / (2 sd).  This ignores
# that the other parameters are estimated too.  A Monte Carlo check (40 to 100 seeds
# per design at these sizes) found the approximation within 25 % of the empirical SD
# of the estimates, 22 % under it at worst (gpa slope SD), so 4 approximate SEs are at
# least 3.1 true SEs; with about 20 components tested, a correct simulation and fit
# fail with a chance of a few in 1000.  The same check found REML estimates unbiased
# and fixed-effect z-scores with SD 0.8 to 1.1.  The seeds are fixed: deterministic.

def _se_sd(sd: float, noise: np.ndarray) -> float:
    info = 0.5 * np.sum((sd ** 2 + np.asarray(noise, dtype=float)) ** -2.0)
    return float(np.sqrt(1.0 / info) / (2.0 * sd))


def _se_residual(sim: Simulation) -> float:
    """se(sigma) = sigma / sqrt(2 df), df = n - p - number of random effects."""
    parsed = parse_formula(sim.formula)
    q = build_reterms(parsed, sim.data).q
    return sim.sigma / np.sqrt(2.0 * (len(sim.data) - len(sim.fixef) - q))


def _sd(sim: Simulation, grp: str, var1: str = "(Intercept)") -> float:
    vc = sim.varcorr
    return float(vc.sdcor[(vc.grp == grp) & (vc.var1 == var1) & vc.var2.isna()].iloc[0])


def _gpa_se(sim: Simulation) -> dict:
    s2 = sim.sigma ** 2
    t = np.arange(sim.data.occasion.nunique(), dtype=float)
    sxx = np.sum((t - t.mean()) ** 2)
    k = sim.data.student.nunique()
    # per-student least squares: var(intercept) = s2 (1/T + tbar^2/Sxx), var(slope) = s2/Sxx
    v_int = np.full(k, s2 * (1.0 / t.size + t.mean() ** 2 / sxx))
    v_slope = np.full(k, s2 / sxx)
    sd_i, sd_s = _sd(sim, "student"), _sd(sim, "student", "occasion")
    r = float(sim.varcorr.sdcor[sim.varcorr.var2.notna()].iloc[0])
    # se of a correlation of k pairs, (1 - r^2)/sqrt(k), inflated by the noise in the
    # per-student estimates (reliability about 2/3 for both: a factor 1.5)
    return {("student", "(Intercept)", None): _se_sd(sd_i, v_int),
            ("student", "occasion", None): _se_sd(sd_s, v_slope),
            ("student", "(Intercept)", "occasion"): 1.5 * (1 - r ** 2) / np.sqrt(k)}


def _counts(sim: Simulation, column: str | list[str]) -> np.ndarray:
    return sim.data.groupby(column).size().to_numpy(dtype=float)


def _pupils_se(sim: Simulation) -> dict:
    s2 = sim.sigma ** 2
    sp, ss = _sd(sim, "primary_school_id"), _sd(sim, "secondary_school_id")
    return {("primary_school_id", "(Intercept)", None):
            _se_sd(sp, (s2 + ss ** 2) / _counts(sim, "primary_school_id")),
            ("secondary_school_id", "(Intercept)", None):
            _se_sd(ss, (s2 + sp ** 2) / _counts(sim, "secondary_school_id"))}


def _nurses_se(sim: Simulation) -> dict:
    s2 = sim.sigma ** 2
    sh, sw = _sd(sim, "hospital"), _sd(sim, "hospital:wardid")
    n_ward = _counts(sim, "wardid")
    wards = sim.data.groupby("hospital").wardid.nunique().to_numpy(dtype=float)
    # a hospital's mean: its effect + the mean of its wards' effects and residuals
    v_hosp = (sw ** 2 + s2 / n_ward.mean()) / wards
    return {("hospital:wardid", "(Intercept)", None): _se_sd(sw, s2 / n_ward),
            ("hospital", "(Intercept)", None): _se_sd(sh, v_hosp)}


def _sociometric_se(sim: Simulation) -> dict:
    s2 = sim.sigma ** 2
    ss, sr, sg = (_sd(sim, g) for g in ("group:sender", "group:receiver", "group"))
    n_sent = _counts(sim, ["group", "sender"])
    m = sim.data.groupby("group").sender.nunique().to_numpy(dtype=float)
    return {("group:sender", "(Intercept)", None): _se_sd(ss, (s2 + sr ** 2) / n_sent),
            ("group:receiver", "(Intercept)", None): _se_sd(sr, (s2 + ss ** 2) / n_sent),
            ("group", "(Intercept)", None):
            _se_sd(sg, (ss ** 2 + sr ** 2) / m + s2 / (m * (m - 1)))}


def _insteval_se(sim: Simulation) -> dict:
    s2 = sim.sigma ** 2
    s_s, s_d, s_dept = _sd(sim, "s"), _sd(sim, "d"), _sd(sim, "dept")
    instructors = sim.data.groupby("dept").d.nunique().to_numpy(dtype=float)
    v_dept = s_d ** 2 / instructors + (s2 + s_s ** 2) / _counts(sim, "dept")
    return {("s", "(Intercept)", None): _se_sd(s_s, (s2 + s_d ** 2 + s_dept ** 2)
                                              / _counts(sim, "s")),
            ("d", "(Intercept)", None): _se_sd(s_d, (s2 + s_s ** 2) / _counts(sim, "d")),
            ("dept", "(Intercept)", None): _se_sd(s_dept, v_dept)}


RECOVERY = {
    "gpa": ({"n_students": 400}, _gpa_se),
    "pupils": ({"n_pupils": 4000, "n_primary": 200, "n_secondary": 100}, _pupils_se),
    "nurses": ({"n_hospitals": 100}, _nurses_se),
    "sociometric": ({"n_groups": 60}, _sociometric_se),
    "insteval": ({"n_obs": 20_000, "n_students": 1_000, "n_instructors": 400}, _insteval_se),
}


@pytest.mark.parametrize("design", GAUSSIAN)
def test_recovery_by_fit(design):
    kwargs, se_of = RECOVERY[design]
    sim = simulate(design, seed=2024, **kwargs)
    fit = glmmcore.fit(sim.formula, sim.data, family=sim.family)
    assert list(fit.fixef.index) == list(sim.fixef.index)
    assert fit.theta_names and len(fit.theta) == len(sim.theta)
    z = (fit.fixef - sim.fixef) / fit.stderr
    assert (z.abs() < 3.0).all(), z.to_dict()

    est, true = fit.varcorr, sim.varcorr
    for col in ("grp", "var1", "var2"):
        assert est[col].isna().tolist() == true[col].isna().tolist()
        assert est[col].dropna().tolist() == true[col].dropna().tolist()
    se = se_of(sim)
    se[("Residual", None, None)] = _se_residual(sim)
    for e, t in zip(est.itertuples(), true.itertuples()):
        key = (t.grp, None if pd.isna(t.var1) else t.var1, None if pd.isna(t.var2) else t.var2)
        assert abs(e.sdcor - t.sdcor) < 4.0 * se[key], (key, e.sdcor, t.sdcor, se[key])
