"""Formula parsing: lme4 syntax, expansion rules and errors that point at the culprit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmmcore.errors import FormulaError
from glmmcore.spec.formula import parse_formula


def test_parts_of_a_full_formula():
    f = parse_formula("y ~ x*z + C(f) + I(x**2) + np.log(w) + (1 + x | g) + (x || h)"
                      " + (1 | a/b) + offset(np.log(t))")
    assert f.response == ("y",)
    assert f.fixed == "x*z + C(f) + I(x**2) + np.log(w)"
    assert f.offsets == ("np.log(t)",)
    groups = [(t.expr, t.group, t.uncorrelated) for t in f.random]
    assert groups == [("1 + x", ("g",), False), ("x", ("h",), True),
                      ("1", ("a",), False), ("1", ("b", "a"), False)]


def test_nested_three_levels_expand_like_lme4():
    f = parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [t.group_name for t in f.random] == ["a", "b:a", "c:b:a"]


def test_intercept_removal_and_default_fixed_part():
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_formula("y ~ -1 + x + (1 | g)").fixed == "-1 + x"
    assert parse_formula("y ~ x - 1 + (1 | g)").fixed == "x - 1"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_cbind_response_and_interaction_groups():
    f = parse_formula("cbind(s, n - s) ~ x + (1 | a:b)")
    assert f.response == ("s", "n - s")
    assert f.random[0].group == ("a", "b")
    assert f.random[0].group_name == "a:b"


def test_scientific_notation_is_not_a_term_boundary():
    assert parse_formula("y ~ I(x > 1e-3) + (1 | g)").fixed == "I(x > 1e-3)"


@pytest.mark.parametrize("text, message, culprit", [
    ("y ~ x + (1 + x |)", "no grouping factor", "(1 + x |)"),
    ("y ~ x + ( | g)", "nothing before the bar", "( | g)"),
    ("y ~ x + 1 | g", "must be in parentheses", "1 | g"),
    ("y ~ x +", "missing an argument", "+"),
    ("y ~ x + (1 | g", "unclosed '('", "("),
    ("y ~ x + (1 | 2g)", "is not a name", "(1 | 2g)"),
    ("y ~ x - (1 | g)", "cannot be subtracted", "(1 | g)"),
    ("~ x + (1 | g)", "no response", "~"),
    ("y x (1 | g)", "exactly one '~'", None),
    ("y ~ x ~ z", "exactly one '~'", "~"),
    ("y ~ x + (1 | g | h)", "one '|' or '||'", "(1 | g | h)"),
    ("y ~ x + offset()", "needs an expression", "offset()"),
    ("y ~ x + )", "unbalanced ')'", ")"),
])
def test_errors_quote_the_formula_and_underline_the_culprit(text, message, culprit):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    err = info.value
    assert message in str(err)
    assert err.formula == text
    assert text in str(err)
    if culprit is not None:
        start, end = err.span
        assert text[start:end] == culprit


NAMES = st.sampled_from(["x", "z", "age", "sex", "x2", "dose.1"])
GROUPS = st.sampled_from(["g", "h", "school", "class_id"])


@st.composite
def random_term(draw):
    cols = draw(st.lists(NAMES, max_size=2, unique=True))
    intercept = draw(st.sampled_from(["1", "0", ""]))
    parts = ([intercept] if intercept else []) + cols
    expr = " + ".join(parts) if parts else "1"
    nest = draw(st.lists(GROUPS, min_size=1, max_size=3, unique=True))
    sep = draw(st.sampled_from(["/", ":"]))
    bar = draw(st.sampled_from(["|", "||"]))
    return expr, nest, sep, bar


@st.composite
def valid_formula(draw):
    fixed = draw(st.lists(st.sampled_from(
        ["x", "z", "x*z", "x:z", "C(sex)", "I(x**2)", "np.log(age)", "0", "-1"]),
        min_size=0, max_size=3))
    terms = draw(st.lists(random_term(), min_size=1, max_size=3))
    pieces = []
    for piece in fixed:
        if piece == "-1":
            pieces.append(" - 1" if pieces else "-1")
        else:
            pieces.append(f" + {piece}" if pieces else piece)
    text = "".join(pieces)
    for expr, nest, sep, bar in terms:
        rand = f"({expr} {bar} {sep.join(nest)})"
        text = f"{text} + {rand}" if text else rand
    return f"y ~ {text}", fixed, terms


@settings(max_examples=200, deadline=None)
@given(valid_formula())
def test_generated_formulas_parse_into_their_parts(case):
    text, fixed, terms = case
    parsed = parse_formula(text)
    expected = []
    for expr, nest, sep, bar in terms:
        if sep == ":":
            expected.append((expr, tuple(nest), bar == "||"))
        else:
            for depth in range(1, len(nest) + 1):
                expected.append((expr, tuple(reversed(nest[:depth])), bar == "||"))
    assert [(t.expr, t.group, t.uncorrelated) for t in parsed.random] == expected
    assert parsed.response == ("y",)
    if not fixed:
        assert parsed.fixed == "1"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="yx~+-*:()|/ 01gC.,", max_size=30))
def test_any_text_parses_or_raises_formula_error(text):
    try:
        parsed = parse_formula(text)
    except FormulaError as err:
        assert str(err)
    else:
        assert parsed.response
        assert all(t.group for t in parsed.random)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["x", "y", "zz"]),
                          st.booleans()), min_size=1, max_size=30))
def test_interaction_factor_levels_and_codes(rows):
    """``a:b:c`` levels: the observed combinations, sorted by the factors' sorted levels."""
    import pandas as pd

    from glmmcore.spec.reterms import grouping_factor

    data = pd.DataFrame(rows, columns=["a", "b", "c"])
    factor = grouping_factor(("b", "a", "c"), data)
    combos = sorted(set(zip(data["b"], data["a"], data["c"])))
    assert list(factor.levels) == [f"{b}:{a}:{c}" for b, a, c in combos]
    row_labels = [f"{b}:{a}:{c}" for b, a, c in zip(data["b"], data["a"], data["c"])]
    assert list(factor.levels[factor.codes]) == row_labels
