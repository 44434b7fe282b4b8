"""The fast model matrices of simple formulas are formulaic's, column for column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix as formulaic_model_matrix
from hypothesis import given, settings
from hypothesis import strategies as st

from glmmcore.spec.model_matrix import parse_simple, simple_model_matrix, simple_variables

rng = np.random.default_rng(0)
N = 40
DATA = pd.DataFrame({
    "x": rng.normal(size=N), "z": rng.integers(0, 5, N), "flag": rng.random(N) > 0.5,
    "f": rng.choice(["b", "a", "c"], N), "g": rng.choice(["u", "v", "w", "t"], N),
    "c": pd.Categorical(rng.choice(["q", "p"], N), categories=["r", "q", "p"]),
    "h.2": rng.choice(["lo", "hi"], N),
})
VARS = list(DATA.columns)


@st.composite
def simple_formula(draw):
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        a, b = draw(st.sampled_from(VARS)), draw(st.sampled_from(VARS))
        op = draw(st.sampled_from(["", ":", "*"]))
        pieces.append(a if not op or a == b else f"{a}{op}{b}")
    start = draw(st.sampled_from(["", "1 + ", "0 + ", "-1 + "]))
    tail = draw(st.sampled_from(["", " - 1", " + 0"]))
    return start + " + ".join(pieces) + tail


@settings(max_examples=300, deadline=None)
@given(simple_formula())
def test_simple_matrices_equal_formulaic(formula):
    simple = simple_model_matrix(formula, DATA)
    reference = formulaic_model_matrix(formula, DATA)
    if simple is None:     # declined: formulaic builds it
        return
    spec, X, names = simple
    assert names == [str(c) for c in reference.columns], formula
    np.testing.assert_array_equal(X, reference.to_numpy(dtype=float))
    X_new, names_new = spec.build(DATA)      # the path for new data gives the same
    assert names_new == names
    np.testing.assert_array_equal(X_new, X)


@pytest.mark.parametrize("formula", ["x + f", "1 + x*f", "f*g + x", "0 + x + z", "x:z + x + z",
                                     "c + x", "x + flag + f + f:x"])
def test_common_formulas_take_the_fast_path(formula):
    assert simple_model_matrix(formula, DATA) is not None


@pytest.mark.parametrize("formula", ["C(z)", "np.log(x)", "I(x**2)", "f:g", "0 + f", "a*b*c",
                                     "x + (f)", "x:f:g", "f:x + x:f"])
def test_anything_else_goes_to_formulaic(formula):
    assert simple_model_matrix(formula, DATA.assign(a=1.0, b=1.0)) is None


def test_variables_and_parse():
    assert simple_variables("x*f + z") == ["x", "f", "z"]
    assert parse_simple("x - 1") == (False, (("x",),))
    assert parse_simple("np.log(x)") is None
