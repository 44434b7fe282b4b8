"""Shared fixtures: the seed data sets and lme4's reference fits in ../shared."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

# the suite compiles in process, so that a test's path does not depend on what earlier
# tests compiled; the cold path (glmmcore.fitting.cold_path) has its own tests
os.environ["GLMMCORE_COLD_START"] = "0"
os.environ["GLMMCORE_BACKGROUND_COMPILE"] = "0"

SHARED = Path(os.environ.get("GLMMCORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference" / "lme4_seed.json"

# the name each lme4 call gives its data, and how lme4's script prepared it (see _meta.prep)
_FILES = {"gpa": "gpa.csv", "pupils": "pupils.csv", "nurses": "nurses.csv",
          "socio": "sociometric.csv", "sd": "speed_dating.csv", "patents": "patents.csv"}


def load_data(name: str) -> pd.DataFrame:
    """A seed data set as the reference script prepared it."""
    frame = pd.read_csv(DATA / _FILES[name])
    if name == "sd":
        frame["decision"] = (frame["decision"] == "Yes").astype(float).where(
            frame["decision"].notna())
    if name == "patents":
        frame["yearf"] = frame["year"].astype(str)
    return frame


def lme4_name(name: str) -> str:
    """lme4's coefficient name for a glmmcore name: 'sex[T.male]' -> 'sexmale'."""
    return re.sub(r"\[T\.(.*?)\]", r"\1", name)


@pytest.fixture(scope="session")
def reference() -> dict:
    """lme4's fits of the seed models."""
    with open(REFERENCE) as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def datasets() -> dict[str, pd.DataFrame]:
    """The seed data sets by the name the lme4 calls use."""
    return {name: load_data(name) for name in _FILES}
