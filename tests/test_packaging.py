"""The installed package holds every subpackage of the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_installation():
    """pyproject's explicit package list (setuptools installs nothing else) names every
    folder of glmmcore/ with an __init__.py, and the families."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "glmmcore").rglob("__init__.py") if p.parent.name != "families"}
    assert found <= listed, sorted(found - listed)
    assert "glmmcore.families" in listed
