"""The benchmark workloads: the seed models of ``lme4_seed.json`` and simulated large ones.

A :class:`Workload` says what to fit (formula, family, link, nAGQ, REML) and on which
data (a :class:`DataSource`, which knows how to build the data for Python and how R
reads and prepares the same data). Seed workloads keep lme4's exact call from the
reference file; simulated ones derive it from the formula.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLMMCORE_SHARED", REPO.parent / "shared"))
DATA_DIR = SHARED / "data"
REFERENCE = SHARED / "reference" / "lme4_seed.json"

SIZES = ("seed", "large", "huge")

# glmmcore family names a workload may need, with aliases a plugin could register
FAMILY_ALIASES = {"negative_binomial": ("negative_binomial", "negbinomial", "nbinom2", "nb"),
                  "gamma": ("gamma",)}


@dataclass(frozen=True)
class DataSource:
    """Where a workload's data come from.

    Attributes
    ----------
    key
        Short name; for seed data the name lme4's call gives the data frame.
    load
        Builds the data frame as glmmcore and mixedlm get it.
    csv
        The seed CSV R reads (None: R reads a CSV written from ``load()``).
    r_prep
        R statements preparing the data frame named ``key`` after ``read.csv``.
    """

    key: str
    load: Callable[[], pd.DataFrame]
    csv: Path | None = None
    r_prep: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workload:
    """One model to fit, with everything each engine needs.

    Attributes
    ----------
    name
        Unique name (``--only`` selects by name or prefix).
    formula
        lme4 formula, the same for every engine.
    source
        The data.
    family, link
        Family name as glmmcore names it, and a non-default link (or None).
    nAGQ, REML
        As in lme4 (REML only matters for gaussian models).
    size
        ``"seed"``, ``"large"`` or ``"huge"``.
    lme4_call
        Exact lme4 call (seed workloads); None: derived from the other fields.
    """

    name: str
    formula: str
    source: DataSource
    family: str = "gaussian"
    link: str | None = None
    nAGQ: int = 1
    REML: bool = True
    size: str = "seed"
    lme4_call: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_lmm(self) -> bool:
        """Gaussian with identity link: fitted by lmer."""
        return self.family == "gaussian" and self.link in (None, "identity")

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``glmmcore.fit`` besides formula and data."""
        kw: dict[str, Any] = {"family": self.family}
        if self.link is not None:
            kw["link"] = self.link
        if self.is_lmm:
            kw["REML"] = self.REML
        else:
            kw["nAGQ"] = self.nAGQ
        return kw

    def r_call(self) -> str:
        """The lme4 call, with the data frame named as :attr:`DataSource.key`."""
        if self.lme4_call is not None:
            return self.lme4_call
        data = self.source.key
        if self.is_lmm:
            reml = "" if self.REML else ", REML = FALSE"
            return f"lmer({self.formula}, data = {data}{reml})"
        fam = self.family if self.link is None else f"{self.family}(link = '{self.link}')"
        agq = "" if self.nAGQ == 1 else f", nAGQ = {self.nAGQ}"
        return f"glmer({self.formula}, data = {data}, family = {fam}{agq})"

    def family_available(self, families: list[str]) -> bool:
        """Whether glmmcore has this workload's family."""
        return any(a in families for a in FAMILY_ALIASES.get(self.family, (self.family,)))

    def glmmcore_family(self, families: list[str]) -> str:
        """The name under which glmmcore registered this workload's family."""
        for alias in FAMILY_ALIASES.get(self.family, (self.family,)):
            if alias in families:
                return alias
        return self.family


def grouping_columns(formula: str) -> list[str]:
    """Columns used as grouping factors: ``(1 | a/b) + (x || c:d)`` -> a, b, c, d."""
    names: list[str] = []
    for expr in re.findall(r"\|\|?\s*([^()|]+?)\s*\)", formula):
        for name in re.split(r"[:/]", expr):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


# -- seed data, prepared as tests/conftest.py and the reference script -------

_SEED_FILES = {"gpa": "gpa.csv", "pupils": "pupils.csv", "nurses": "nurses.csv",
               "socio": "sociometric.csv", "sd": "speed_dating.csv", "patents": "patents.csv"}

# as _meta.prep in lme4_seed.json
_SEED_FACTORS = {"gpa": ("student",), "pupils": ("primary_school_id", "secondary_school_id"),
                 "nurses": ("hospital", "wardid"), "socio": ("group", "sender", "receiver"),
                 "sd": (), "patents": ("subject",)}


@cache
def load_seed(key: str) -> pd.DataFrame:
    """A seed data set as tests/conftest.py prepares it."""
    frame = pd.read_csv(DATA_DIR / _SEED_FILES[key])
    if key == "sd":
        frame["decision"] = (frame["decision"] == "Yes").astype(float).where(
            frame["decision"].notna())
    if key == "patents":
        frame["yearf"] = frame["year"].astype(str)
    return frame


def _seed_source(key: str) -> DataSource:
    prep = [f"{key}${col} <- factor({key}${col})" for col in _SEED_FACTORS[key]]
    if key == "sd":
        prep.append('sd$decision <- as.integer(sd$decision == "Yes")')
    if key == "patents":
        prep.append("patents$yearf <- factor(patents$year)")
    return DataSource(key, lambda: load_seed(key), DATA_DIR / _SEED_FILES[key], tuple(prep))


@cache
def simulated(design: str, seed: int, sizes: tuple[tuple[str, int], ...]) -> Any:
    """``glmmcore.simulate(design, seed=seed, **sizes)`` (cached)."""
    import glmmcore
    return glmmcore.simulate(design, seed=seed, **dict(sizes))


# small sizes that give a design's formula and family without simulating the big data
_TINY = {"insteval": (("n_departments", 4), ("n_instructors", 20), ("n_obs", 200),
                      ("n_students", 20))}


def _simulated_workload(name: str, design: str, size: str, nAGQ: int = 1,
                        **sizes: int) -> Workload:
    key = tuple(sorted(sizes.items()))
    sim = simulated(design, 1, _TINY.get(design, ()))   # same formula and family, cheaply
    groups = grouping_columns(sim.formula)
    source = DataSource("simdata", lambda: simulated(design, 1, key).data, None,
                        tuple(f"simdata${g} <- factor(simdata${g})" for g in groups))
    return Workload(name, sim.formula, source, family=sim.family, nAGQ=nAGQ, size=size,
                    extra={"design": design, "seed": 1, **sizes})


# -- lme4 calls -> workloads ----------------------------------------------------

_CALL = re.compile(r"(lmer|glmer|glmer\.nb)\((.*?), data = (\w+)(.*)\)")


def from_lme4_call(name: str, call: str) -> Workload:
    """Translate an lme4 call of the reference file into a workload."""
    m = _CALL.fullmatch(call)
    if m is None:
        raise ValueError(f"{name}: cannot parse lme4 call {call!r}")
    fun, formula, data, rest = m.groups()
    family, link = "gaussian", None
    if fun == "glmer.nb":
        family = "negative_binomial"
    elif fun == "glmer":
        fm = re.search(r"family = (\w+)(?:\(link = '(\w+)'\))?", rest)
        if fm is None:
            raise ValueError(f"{name}: no family in {call!r}")
        family, link = fm.group(1).lower(), fm.group(2)
    agq = re.search(r"nAGQ = (\d+)", rest)
    return Workload(name, formula, _seed_source(data), family=family, link=link,
                    nAGQ=int(agq.group(1)) if agq else 1, REML="REML = FALSE" not in rest,
                    lme4_call=call)


SEED_LMMS = ("gpa_ri", "gpa_ri_ml", "gpa_rs", "gpa_uncorr", "gpa_cluster", "pupils_crossed",
             "nurses_nested", "nurses_slope", "nurses_slash", "socio_m4")
SEED_GLMMS = ("speed_laplace", "speed_agq9", "speed_slopes", "speed_crossed", "speed_nagq0",
              "patents_pois", "patents_pois_agq", "patents_pois_olre", "patents_opp",
              "patents_pois_sqrt", "speed_probit", "patents_nb", "gpa_gamma")


@cache
def reference() -> dict[str, Any]:
    """lme4's reference fits of the seed models."""
    with open(REFERENCE) as fh:
        return json.load(fh)


def all_workloads() -> list[Workload]:
    """Every registered workload, seed ones first."""
    ref = reference()
    out = [from_lme4_call(name, ref[name]["call"]) for name in SEED_LMMS + SEED_GLMMS]
    out.append(_simulated_workload("insteval", "insteval", "large"))
    out.append(_simulated_workload("crossed_binomial_100k", "speed_dating", "large",
                                   n_participants=5000, n_partners=200,
                                   dates_per_participant=20))
    out.append(_simulated_workload("crossed_binomial_1m", "speed_dating", "huge",
                                   n_participants=50_000, n_partners=2_000,
                                   dates_per_participant=20))
    return out


def select(workloads: list[Workload], only: str | None, quick: bool) -> list[Workload]:
    """Workloads named (or prefixed) by the comma-separated ``only``; ``quick`` keeps seed ones."""
    chosen = workloads
    if only:
        tokens = [t.strip() for t in only.split(",") if t.strip()]
        names = {w.name for w in workloads}
        # a token naming a workload selects it alone; any other token is a prefix
        chosen = [w for w in chosen if any(w.name == t if t in names else w.name.startswith(t)
                                           for t in tokens)]
        if not chosen:
            raise SystemExit(f"--only {only!r} matches no workload; known: "
                             f"{', '.join(sorted(names))}")
    if quick:
        chosen = [w for w in chosen if w.size == "seed"]
    return chosen
