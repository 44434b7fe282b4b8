"""Data simulated from known mixed models: tests, examples and benchmarks.

Each design mimics one of the reference workloads (or MixedModels.jl's
InstEval benchmark) and returns the data with the true parameters of the
model that generated them, on the scale and with the names glmmcore reports::

    sim = simulate("gpa", n_students=400, seed=1)
    result = glmmcore.fit(sim.formula, sim.data, family=sim.family)
    result.fixef - sim.fixef

Designs (family; keywords besides ``fixef``, see :func:`design_parameters`):

- ``gpa``: longitudinal, correlated random intercept and slope (gaussian;
  n_students, n_occasions, sd_intercept, sd_slope, corr, sigma).
- ``pupils``: primary x secondary school cross-classified (gaussian; n_pupils,
  n_primary, n_secondary, sd_primary, sd_secondary, sigma).
- ``nurses``: wards nested in hospitals, cluster-randomized (gaussian;
  n_hospitals, wards_per_hospital, nurses_per_ward, sd_hospital, sd_ward, sigma).
- ``sociometric``: round robin in groups (gaussian; n_groups, group_size,
  sd_sender, sd_receiver, sd_group, sigma).
- ``speed_dating``: participants x partners crossed (binomial; n_participants,
  n_partners, dates_per_participant, sd_iid, sd_partner).
- ``patents``: citation counts by year (poisson; n_patents, n_years, sd_year).
- ``insteval``: students x instructors crossed, instructors in departments
  (gaussian; n_obs, n_students, n_instructors, n_departments, sd_s, sd_d,
  sd_dept, sigma).

Every design draws from one ``numpy.random.Generator``, so a seed fixes the
data.  ``fixef`` takes a mapping that overrides some true fixed effects.
Defaults are close to lme4's estimates on the seed data in ``../shared/data``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .linalg.dense import semidefinite_cholesky

INTERCEPT = "(Intercept)"


def _inverse_logit(eta: np.ndarray) -> np.ndarray:
    # numpy only: scipy.special would add ~80 ms to ``import glmmcore``
    return np.exp(-np.logaddexp(0.0, -eta))


@dataclass(eq=False)
class Simulation:
    """A simulated data set and the truth behind it.

    Attributes
    ----------
    design
        Name of the design.
    data
        One row per observation.
    formula
        lme4 formula of the generating model, ready for ``glmmcore.fit``.
    family
        ``"gaussian"``, ``"binomial"`` or ``"poisson"`` (canonical links).
    fixef
        True fixed effects, named as ``glmmcore.fit`` names them.
    theta
        True relative covariance parameters, in lme4's order.
    sigma
        Residual standard deviation (gaussian), else 1.
    varcorr
        True variance components, laid out as ``MixedModelResult.varcorr``.
    """

    design: str
    data: pd.DataFrame
    formula: str
    family: str
    fixef: pd.Series
    theta: np.ndarray
    sigma: float
    varcorr: pd.DataFrame

    def __repr__(self) -> str:
        return (f"<Simulation {self.design!r}: {len(self.data)} rows, {self.family}, "
                f"'{self.formula}'>")


@dataclass
class _Term:
    """A random-effects term of the truth: its factor, columns and covariance."""

    group: str
    names: list[str]
    cov: np.ndarray
    nlevels: int


# -- public entry points ----------------------------------------------------

def designs() -> list[str]:
    """Names of the available designs."""
    return list(_DESIGNS)


def simulate(design: str, *, seed: int = 0, **size_and_params: Any) -> Simulation:
    """Simulate a data set from one of the designs.

    Parameters
    ----------
    design
        One of :func:`designs`.
    seed
        Seed of ``numpy.random.default_rng``; the same seed gives the same data.
    **size_and_params
        Sizes and true parameters of the design (see ``design_parameters``).

    Returns
    -------
    Simulation

    Raises
    ------
    ValueError
        Unknown design, unknown keyword or invalid value.
    """
    if design not in _DESIGNS:
        raise ValueError(f"unknown design {design!r}; valid designs: {', '.join(_DESIGNS)}")
    valid = design_parameters(design)
    unknown = sorted(set(size_and_params) - set(valid))
    if unknown:
        raise ValueError(f"unknown keyword(s) {', '.join(map(repr, unknown))} for design "
                         f"{design!r}; valid keywords: {', '.join(valid)}")
    return _DESIGNS[design](np.random.default_rng(seed), **size_and_params)


def design_parameters(design: str) -> dict[str, Any]:
    """Keyword arguments of a design and their defaults."""
    if design not in _DESIGNS:
        raise ValueError(f"unknown design {design!r}; valid designs: {', '.join(_DESIGNS)}")
    params = inspect.signature(_DESIGNS[design]).parameters
    return {name: p.default for name, p in params.items() if name != "rng"}


# -- the designs --------------------------------------------------------------

def _gpa(rng: np.random.Generator, *, n_students: int = 200, n_occasions: int = 6,
         fixef: Mapping[str, float] | None = None, sd_intercept: float = 0.2,
         sd_slope: float = 0.07, corr: float = -0.15, sigma: float = 0.2) -> Simulation:
    """Students' GPA over semesters: correlated random intercept and slope."""
    _count("n_students", n_students, 2)
    _count("n_occasions", n_occasions, 2)
    beta = _fixef("gpa", {INTERCEPT: 2.4, "occasion": 0.1, "sex[T.male]": -0.12,
                          "highgpa": 0.09}, fixef)
    cov = _cov2("sd_intercept", sd_intercept, "sd_slope", sd_slope, corr)
    _sd("sigma", sigma, positive=True)
    student = np.repeat(np.arange(n_students), n_occasions)
    occasion = np.tile(np.arange(n_occasions), n_students)
    male = rng.random(n_students) < 0.5
    highgpa = np.clip(np.round(rng.normal(3.0, 0.6, n_students), 1), 2.0, 4.0)
    b = _draw(rng, cov, n_students)
    eta = (beta[INTERCEPT] + beta["occasion"] * occasion + beta["sex[T.male]"] * male[student]
           + beta["highgpa"] * highgpa[student] + b[student, 0] + b[student, 1] * occasion)
    data = pd.DataFrame({
        "student": student + 1,
        "occasion": occasion,
        "sex": _strings(male, ("female", "male"))[student],
        "highgpa": highgpa[student],
        "gpa": eta + rng.normal(0.0, sigma, eta.size),
    })
    terms = [_Term("student", [INTERCEPT, "occasion"], cov, n_students)]
    return _simulation("gpa", data, "gpa ~ occasion + sex + highgpa + (1 + occasion | student)",
                       "gaussian", beta, terms, sigma)


def _pupils(rng: np.random.Generator, *, n_pupils: int = 1000, n_primary: int = 50,
            n_secondary: int = 30, fixef: Mapping[str, float] | None = None,
            sd_primary: float = 0.41, sd_secondary: float = 0.25,
            sigma: float = 0.69) -> Simulation:
    """Pupils' achievement, primary and secondary school cross-classified."""
    _count("n_primary", n_primary, 2)
    _count("n_secondary", n_secondary, 2)
    _count("n_pupils", n_pupils, max(n_primary, n_secondary))
    beta = _fixef("pupils", {INTERCEPT: 6.0, "sex[T.male]": -0.26, "ses": 0.11}, fixef)
    _sd("sd_primary", sd_primary)
    _sd("sd_secondary", sd_secondary)
    _sd("sigma", sigma, positive=True)
    primary = np.sort(_cover(rng, n_pupils, n_primary))
    secondary = _cover(rng, n_pupils, n_secondary)
    male = rng.random(n_pupils) < 0.5
    # ses on 1 (lowest) .. 6 (highest), frequencies of the seed data
    ses = 1 + rng.choice(6, n_pupils, p=[0.058, 0.098, 0.147, 0.225, 0.329, 0.143])
    eta = (beta[INTERCEPT] + beta["sex[T.male]"] * male + beta["ses"] * ses
           + rng.normal(0.0, sd_primary, n_primary)[primary]
           + rng.normal(0.0, sd_secondary, n_secondary)[secondary])
    data = pd.DataFrame({
        "primary_school_id": primary + 1,
        "secondary_school_id": secondary + 1,
        "sex": _strings(male, ("female", "male")),
        "ses": ses,
        "achievement": eta + rng.normal(0.0, sigma, n_pupils),
    })
    terms = [_Term("primary_school_id", [INTERCEPT], _var(sd_primary), n_primary),
             _Term("secondary_school_id", [INTERCEPT], _var(sd_secondary), n_secondary)]
    formula = ("achievement ~ sex + ses + (1 | primary_school_id) "
               "+ (1 | secondary_school_id)")
    return _simulation("pupils", data, formula, "gaussian", beta, terms, sigma)


def _nurses(rng: np.random.Generator, *, n_hospitals: int = 25, wards_per_hospital: int = 4,
            nurses_per_ward: int = 10, fixef: Mapping[str, float] | None = None,
            sd_hospital: float = 0.46, sd_ward: float = 0.58,
            sigma: float = 0.51) -> Simulation:
    """Nurses' stress: wards nested in hospitals, training randomized per ward."""
    _count("n_hospitals", n_hospitals, 2)
    _count("wards_per_hospital", wards_per_hospital, 1)
    _count("nurses_per_ward", nurses_per_ward, 1)
    if n_hospitals * wards_per_hospital < 2:
        raise ValueError("nurses needs at least 2 wards in all")
    beta = _fixef("nurses", {INTERCEPT: 5.4, "age": 0.022, "experience": -0.06,
                             "treatment[T.Training]": -0.7}, fixef)
    _sd("sd_hospital", sd_hospital)
    _sd("sd_ward", sd_ward)
    _sd("sigma", sigma, positive=True)
    H, W, N = n_hospitals, wards_per_hospital, nurses_per_ward
    # half the wards of each hospital get the training (a coin decides an odd one)
    n_treated = W // 2 + ((W % 2 == 1) & (rng.random(H) < 0.5))
    rank = rng.random((H, W)).argsort(axis=1).argsort(axis=1)
    treated = (rank < n_treated[:, None]).ravel()
    ward_index = np.repeat(np.arange(H * W), N)
    hospital = ward_index // W
    n = ward_index.size
    # age and experience correlated about 0.8, as in the seed data
    age = np.clip(np.round(rng.normal(43.0, 12.0, n)), 23, 64)
    experience = np.clip(np.round(17.0 + 0.41 * (age - 43.0) + rng.normal(0.0, 3.5, n)),
                         1, age - 18)
    eta = (beta[INTERCEPT] + beta["age"] * age + beta["experience"] * experience
           + beta["treatment[T.Training]"] * treated[ward_index]
           + rng.normal(0.0, sd_hospital, H)[hospital]
           + rng.normal(0.0, sd_ward, H * W)[ward_index])
    data = pd.DataFrame({
        "hospital": hospital + 1,
        "ward": ward_index % W + 1,
        "wardid": ward_index + 1,
        "age": age.astype(np.int64),
        "experience": experience.astype(np.int64),
        "treatment": _strings(treated, ("Control", "Training"))[ward_index],
        "stress": eta + rng.normal(0.0, sigma, n),
    })
    terms = [_Term("hospital", [INTERCEPT], _var(sd_hospital), H),
             _Term("hospital:wardid", [INTERCEPT], _var(sd_ward), H * W)]
    formula = ("stress ~ age + experience + treatment + (1 | hospital) "
               "+ (1 | hospital:wardid)")
    return _simulation("nurses", data, formula, "gaussian", beta, terms, sigma)


def _sociometric(rng: np.random.Generator, *, n_groups: int = 20,
                 group_size: int | tuple[int, int] = (5, 10),
                 fixef: Mapping[str, float] | None = None, sd_sender: float = 0.31,
                 sd_receiver: float = 0.7, sd_group: float = 0.7,
                 sigma: float = 0.65) -> Simulation:
    """Round-robin ratings: every child rates every other child of its group."""
    _count("n_groups", n_groups, 2)
    sizes = (group_size, group_size) if np.ndim(group_size) == 0 else tuple(group_size)
    if len(sizes) != 2:
        raise ValueError(f"group_size must be an integer or a (smallest, largest) pair, "
                         f"not {group_size!r}")
    lo, hi = sizes
    _count("group_size (smallest)", lo, 2)
    _count("group_size (largest)", hi, lo)
    beta = _fixef("sociometric", {INTERCEPT: 0.5, "sexsend[T.Male]": 0.16,
                                  "sexrec[T.Male]": -0.73, "agesend": 0.24,
                                  "agerec": 0.23}, fixef)
    for name, value in [("sd_sender", sd_sender), ("sd_receiver", sd_receiver),
                        ("sd_group", sd_group)]:
        _sd(name, value)
    _sd("sigma", sigma, positive=True)
    size = rng.integers(lo, hi, size=n_groups, endpoint=True)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    member_group = np.repeat(np.arange(n_groups), size)
    n_members = member_group.size
    local = np.arange(n_members) - start[member_group]
    # children of a class are of similar age
    age = np.clip(np.round(rng.normal(9.9, 1.25, n_groups)[member_group]
                           + rng.normal(0.0, 0.9, n_members)), 6, 13)
    male = rng.random(n_members) < 0.5
    # sender s rates the other members of its group: k-th rating goes to local k or k+1
    snd = np.repeat(np.arange(n_members), size[member_group] - 1)
    first = np.concatenate([[0], np.cumsum(size[member_group] - 1)[:-1]])
    k = np.arange(snd.size) - first[snd]
    rec_local = k + (k >= local[snd])
    rec = start[member_group[snd]] + rec_local
    grp = member_group[snd]
    eta = (beta[INTERCEPT] + beta["sexsend[T.Male]"] * male[snd]
           + beta["sexrec[T.Male]"] * male[rec] + beta["agesend"] * age[snd]
           + beta["agerec"] * age[rec] + rng.normal(0.0, sd_sender, n_members)[snd]
           + rng.normal(0.0, sd_receiver, n_members)[rec]
           + rng.normal(0.0, sd_group, n_groups)[grp])
    sexes = _strings(male, ("Female", "Male"))
    data = pd.DataFrame({
        "group": grp + 1,
        "sender": local[snd] + 1,
        "receiver": rec_local + 1,
        "agesend": age[snd].astype(np.int64),
        "agerec": age[rec].astype(np.int64),
        "sexsend": sexes[snd],
        "sexrec": sexes[rec],
        "rating": eta + rng.normal(0.0, sigma, snd.size),
    })
    terms = [_Term("group:sender", [INTERCEPT], _var(sd_sender), n_members),
             _Term("group:receiver", [INTERCEPT], _var(sd_receiver), n_members),
             _Term("group", [INTERCEPT], _var(sd_group), n_groups)]
    formula = ("rating ~ sexsend + sexrec + agesend + agerec + (1 | group:sender) "
               "+ (1 | group:receiver) + (1 | group)")
    return _simulation("sociometric", data, formula, "gaussian", beta, terms, sigma)


def _speed_dating(rng: np.random.Generator, *, n_participants: int = 500,
                  n_partners: int = 550, dates_per_participant: int = 15,
                  fixef: Mapping[str, float] | None = None, sd_iid: float = 1.7,
                  sd_partner: float = 0.6) -> Simulation:
    """Speed-dating decisions (binomial), participants and partners crossed."""
    _count("n_participants", n_participants, 2)
    _count("n_partners", n_partners, 2)
    _count("dates_per_participant", dates_per_participant, 1)
    if dates_per_participant > n_partners:
        raise ValueError(f"dates_per_participant ({dates_per_participant}) cannot exceed "
                         f"n_partners ({n_partners})")
    beta = _fixef("speed_dating", {INTERCEPT: -0.7, "attractive_sc": 0.5, "sincere_sc": 0.1,
                                   "samerace[T.Yes]": 0.3}, fixef)
    _sd("sd_iid", sd_iid)
    _sd("sd_partner", sd_partner)
    d = dates_per_participant
    partner = _distinct(rng, n_participants, d, n_partners).ravel()
    iid = np.repeat(np.arange(n_participants), d)
    n = iid.size
    # ratings 0..10 of the partner (whose looks are partly their own), centred and
    # doubled as the seed data's *_sc columns; attractive and sincere correlate ~0.4
    z1 = 0.6 * rng.standard_normal(n_partners)[partner] + 0.8 * rng.standard_normal(n)
    z2 = 0.4 * z1 + np.sqrt(1.0 - 0.4 ** 2) * rng.standard_normal(n)
    attractive_sc = 2.0 * (np.clip(np.round(6.2 + 1.9 * z1), 0, 10) - 6.2)
    sincere_sc = 2.0 * (np.clip(np.round(7.2 + 1.7 * z2), 0, 10) - 7.2)
    samerace = rng.random(n) < 0.4
    eta = (beta[INTERCEPT] + beta["attractive_sc"] * attractive_sc
           + beta["sincere_sc"] * sincere_sc + beta["samerace[T.Yes]"] * samerace
           + rng.normal(0.0, sd_iid, n_participants)[iid]
           + rng.normal(0.0, sd_partner, n_partners)[partner])
    decision = (rng.random(n) < _inverse_logit(eta)).astype(np.int64)
    data = pd.DataFrame({
        "iid": iid + 1,
        "partner_id": partner + 1,
        "attractive_sc": attractive_sc,
        "sincere_sc": sincere_sc,
        "samerace": _strings(samerace, ("No", "Yes")),
        "decision": decision,
    })
    terms = [_Term("iid", [INTERCEPT], _var(sd_iid), n_participants),
             _Term("partner_id", [INTERCEPT], _var(sd_partner), _nlevels(partner, n_partners))]
    formula = ("decision ~ attractive_sc + sincere_sc + samerace + (1 | iid) "
               "+ (1 | partner_id)")
    return _simulation("speed_dating", data, formula, "binomial", beta, terms, None)


def _patents(rng: np.random.Generator, *, n_patents: int = 4800, n_years: int = 18,
             fixef: Mapping[str, float] | None = None, sd_year: float = 0.36) -> Simulation:
    """Citation counts (Poisson) of patents with a random year effect."""
    _count("n_years", n_years, 2)
    _count("n_patents", n_patents, n_years)
    beta = _fixef("patents", {INTERCEPT: 0.22, "opposition": 0.385, "biopharm": 0.126},
                  fixef)
    _sd("sd_year", sd_year)
    # more patents in later years; every year has at least one
    weights = np.arange(1.0, n_years + 1.0)
    year = np.sort(_cover(rng, n_patents, n_years, weights / weights.sum()))
    biopharm = (rng.random(n_patents) < 0.44).astype(np.int64)
    # biopharmaceutical patents are opposed more often (about 0.33 vs 0.51)
    p_opp = _inverse_logit(-0.7 + 0.74 * biopharm)
    opposition = (rng.random(n_patents) < p_opp).astype(np.int64)
    eta = (beta[INTERCEPT] + beta["opposition"] * opposition + beta["biopharm"] * biopharm
           + rng.normal(0.0, sd_year, n_years)[year])
    data = pd.DataFrame({
        "year": year + 1980,
        "opposition": opposition,
        "biopharm": biopharm,
        "ncit": rng.poisson(np.exp(eta)),
    })
    terms = [_Term("year", [INTERCEPT], _var(sd_year), n_years)]
    return _simulation("patents", data, "ncit ~ opposition + biopharm + (1 | year)", "poisson",
                       beta, terms, None)


def _insteval(rng: np.random.Generator, *, n_obs: int = 73_421, n_students: int = 2_972,
              n_instructors: int = 1_128, n_departments: int = 14,
              fixef: Mapping[str, float] | None = None, sd_s: float = 0.33,
              sd_d: float = 0.52, sd_dept: float = 0.08, sigma: float = 1.18) -> Simulation:
    """Lecture ratings: students and instructors crossed, instructors in departments."""
    _count("n_departments", n_departments, 2)
    _count("n_instructors", n_instructors, n_departments)
    _count("n_students", n_students, 2)
    _count("n_obs", n_obs, max(n_students, n_instructors))
    beta = _fixef("insteval", {INTERCEPT: 3.28, "service": -0.07}, fixef)
    for name, value in [("sd_s", sd_s), ("sd_d", sd_d), ("sd_dept", sd_dept)]:
        _sd(name, value)
    _sd("sigma", sigma, positive=True)
    dept_of = _cover(rng, n_instructors, n_departments)
    # students differ in how many lectures they rate, instructors in how many ratings
    # they get; every student and every instructor has at least one rating
    activity = rng.gamma(2.0, 1.0, n_students)
    popularity = rng.lognormal(0.0, 1.0, n_instructors)
    s = _cover(rng, n_obs, n_students, activity / activity.sum())
    d = _cover(rng, n_obs, n_instructors, popularity / popularity.sum())
    order = np.lexsort((d, s))
    s, d = s[order], d[order]
    dept = dept_of[d]
    service = (rng.random(n_obs) < 0.4).astype(np.int64)
    eta = (beta[INTERCEPT] + beta["service"] * service
           + rng.normal(0.0, sd_s, n_students)[s] + rng.normal(0.0, sd_d, n_instructors)[d]
           + rng.normal(0.0, sd_dept, n_departments)[dept])
    data = pd.DataFrame({"s": s + 1, "d": d + 1, "dept": dept + 1, "service": service,
                         "y": eta + rng.normal(0.0, sigma, n_obs)})
    terms = [_Term("s", [INTERCEPT], _var(sd_s), n_students),
             _Term("d", [INTERCEPT], _var(sd_d), n_instructors),
             _Term("dept", [INTERCEPT], _var(sd_dept), n_departments)]
    return _simulation("insteval", data, "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
                       "gaussian", beta, terms, sigma)


_DESIGNS: dict[str, Callable[..., Simulation]] = {
    "gpa": _gpa,
    "pupils": _pupils,
    "nurses": _nurses,
    "sociometric": _sociometric,
    "speed_dating": _speed_dating,
    "patents": _patents,
    "insteval": _insteval,
}


# -- the truth in glmmcore's terms ------------------------------------------

def _simulation(design: str, data: pd.DataFrame, formula: str, family: str,
                beta: dict[str, float], terms: list[_Term], sigma: float | None) -> Simulation:
    """Assemble a Simulation: theta and VarCorr in lme4's term order."""
    scale = 1.0 if sigma is None else float(sigma)
    # lme4 sorts terms by number of levels, decreasing; Python's sort is stable
    ordered = sorted(terms, key=lambda t: -t.nlevels)
    theta: list[float] = []
    rows: list[tuple[Any, ...]] = []
    for term in ordered:
        T = semidefinite_cholesky(term.cov) / scale
        p = len(term.names)
        theta.extend(T[r, c] for c in range(p) for r in range(c, p))
        sd = np.sqrt(np.diag(term.cov))
        for i, name in enumerate(term.names):
            rows.append((term.group, name, None, term.cov[i, i], sd[i]))
        for i in range(p):
            for j in range(i + 1, p):
                corr = term.cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((term.group, term.names[i], term.names[j], term.cov[i, j], corr))
    if sigma is not None:
        rows.append(("Residual", None, None, scale ** 2, scale))
    varcorr = pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])
    return Simulation(design=design, data=data, formula=formula, family=family,
                      fixef=pd.Series(beta, name="fixef", dtype=float),
                      theta=np.array(theta, dtype=float), sigma=scale, varcorr=varcorr)


# -- helpers -----------------------------------------------------------------

def _draw(rng: np.random.Generator, cov: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws (rows) from N(0, cov)."""
    return rng.standard_normal((n, cov.shape[0])) @ semidefinite_cholesky(cov).T


def _cover(rng: np.random.Generator, n: int, k: int, p: np.ndarray | None = None) -> np.ndarray:
    """``n`` codes in ``0..k-1``, each at least once, the rest drawn with probabilities p."""
    codes = np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=p)])
    return rng.permutation(codes)


def _distinct(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """``rows x k`` array, each row a sorted random k-subset of ``0..n-1``.

    Floyd's algorithm, vectorized over rows: a loop over k, not over rows.
    """
    out = np.empty((rows, k), dtype=np.int64)
    for i, j in enumerate(range(n - k, n)):
        t = rng.integers(0, j + 1, size=rows)
        taken = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(taken, j, t)
    out.sort(axis=1)
    return out


def _nlevels(codes: np.ndarray, k: int) -> int:
    """Number of the levels ``0..k-1`` that occur."""
    return int(np.count_nonzero(np.bincount(codes, minlength=k)))


def _strings(mask: np.ndarray, labels: tuple[str, str]) -> np.ndarray:
    """``labels[1]`` where mask is true, else ``labels[0]``."""
    return np.asarray(labels, dtype=object)[mask.astype(np.int64)]


def _var(sd: float) -> np.ndarray:
    return np.array([[float(sd) ** 2]])


def _cov2(name0: str, sd0: float, name1: str, sd1: float, corr: float) -> np.ndarray:
    _sd(name0, sd0)
    _sd(name1, sd1)
    if not -1.0 <= corr <= 1.0:
        raise ValueError(f"corr must lie in [-1, 1], not {corr!r}")
    c = corr * sd0 * sd1
    return np.array([[sd0 ** 2, c], [c, sd1 ** 2]], dtype=float)


def _fixef(design: str, defaults: dict[str, float],
           given: Mapping[str, float] | None) -> dict[str, float]:
    """The true fixed effects: the defaults, some overridden by ``given``."""
    beta = dict(defaults)
    if given is not None:
        unknown = [k for k in given if k not in beta]
        if unknown:
            raise ValueError(f"unknown fixed effect(s) {', '.join(map(repr, unknown))} for "
                             f"design {design!r}; valid: {', '.join(beta)}")
        beta.update({k: float(v) for k, v in given.items()})
    return beta


def _count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _sd(name: str, value: Any, positive: bool = False) -> None:
    ok = isinstance(value, (int, float, np.number)) and np.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
