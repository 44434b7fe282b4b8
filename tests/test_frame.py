"""The model frame and the set-up stages' fast paths give what pandas' generic operations give.

``model_frame`` works column by column on arrays (missing masks, finiteness,
the kept rows); ``fixed_design``, ``grouping_factor`` and the formula scanner
have fast paths of their own.  Each is checked here against a plain reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmmcore.errors import DataError
from glmmcore.spec.fixed import independent_columns
from glmmcore.spec.formula import _top_level_positions, parse_formula
from glmmcore.spec.frame import formula_variables, model_frame
from glmmcore.spec.model_matrix import column_values, factorize, simple_model_matrix
from glmmcore.spec.reterms import grouping_factor

FORMULA = "y ~ x + s + c + i + f + o + p + b + (1 | g)"


def _data(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "s": rng.choice(["b", "a", "c"], n),                                  # arrow strings
        "c": pd.Categorical(rng.choice(["q", "p"], n), categories=["r", "q", "p"]),
        "i": pd.array(rng.integers(0, 5, n), dtype="Int64"),                  # nullable
        "f": pd.array(rng.normal(size=n), dtype="Float64"),
        "o": pd.Series(rng.choice(["u", "v"], n), dtype=object),
        "p": pd.array(rng.choice(["k", "j"], n), dtype=pd.StringDtype("python")),
        "b": rng.random(n) > 0.5,
        "g": np.repeat(np.arange(n // 4), 4),
        "unused": np.nan,
    })


def _reference(frame: pd.DataFrame, formula: str) -> tuple[pd.DataFrame, pd.Index, int]:
    """What ``model_frame`` did with DataFrame-wide operations: select, drop, renumber."""
    used = frame[formula_variables(parse_formula(formula))]
    keep = ~used.isna().any(axis=1).to_numpy()
    return used.loc[keep].reset_index(drop=True), frame.index[keep], int((~keep).sum())


def _with_holes(frame: pd.DataFrame) -> pd.DataFrame:
    holes = frame.copy()
    holes.loc[holes.index[[1, 7]], "x"] = np.nan
    holes.loc[holes.index[[2]], "s"] = None
    holes.loc[holes.index[[3]], "c"] = np.nan
    holes.loc[holes.index[[4]], "i"] = pd.NA
    holes.loc[holes.index[[5]], "f"] = pd.NA
    holes.loc[holes.index[[6]], "o"] = None
    holes.loc[holes.index[[7, 8]], "y"] = np.nan
    holes.loc[holes.index[[9]], "p"] = pd.NA
    return holes


INDEXES = {
    "default": lambda n: pd.RangeIndex(n),
    "shifted": lambda n: pd.RangeIndex(10, 10 + n),
    "labels": lambda n: pd.Index([f"r{k}" for k in range(n)]),
    "shuffled": lambda n: pd.Index(np.random.default_rng(3).permutation(n) * 7),
}


@pytest.mark.parametrize("index", INDEXES)
@pytest.mark.parametrize("holes", [False, True])
def test_kept_rows_labels_and_count_match_pandas(index, holes):
    frame = _data()
    frame.index = INDEXES[index](len(frame))
    if holes:
        frame = _with_holes(frame)
    mf = model_frame(parse_formula(FORMULA), frame)
    expected, labels, dropped = _reference(frame, FORMULA)
    pd.testing.assert_frame_equal(mf.data, expected, check_column_type=False)
    pd.testing.assert_index_equal(mf.row_labels, labels)
    assert mf.n_dropped == dropped == (9 if holes else 0)
    assert list(mf.data.dtypes) == list(frame[expected.columns].dtypes)   # object stays object


@pytest.mark.parametrize("holes", [False, True])
def test_column_table_reads_as_the_frame_does(holes):
    """The design builders read the model frame's columns as arrays: each is the
    DataFrame's column, a response read as a Series is the DataFrame's Series (object
    stays object), and the fixed-effects matrix built from either is the same."""
    frame = _with_holes(_data()) if holes else _data()
    mf = model_frame(parse_formula(FORMULA), frame)
    assert list(mf.table.columns) == list(mf.data.columns) and len(mf.table) == len(mf.data)
    for name in mf.table.columns:
        expected = mf.data[name]
        assert type(mf.table[name]) is type(column_values(expected))
        pd.testing.assert_series_equal(mf.table.series(name), expected)
    rhs = parse_formula(FORMULA).fixed
    spec, X, names = simple_model_matrix(rhs, mf.table)
    spec_df, X_df, names_df = simple_model_matrix(rhs, mf.data)
    np.testing.assert_array_equal(X, X_df)
    assert names == names_df and spec == spec_df


def test_model_data_do_not_share_memory_with_the_input():
    frame = _data()
    mf = model_frame(parse_formula(FORMULA), frame)
    before = mf.data.copy()
    frame.loc[0, "x"] = 99.0
    frame.loc[0, "s"] = "zz"
    frame.loc[0, "i"] = 42
    pd.testing.assert_frame_equal(mf.data, before)


def test_weights_and_offset_follow_the_kept_rows():
    frame = _with_holes(_data())
    w = np.arange(1.0, len(frame) + 1)
    off = np.linspace(0, 1, len(frame))
    off[10] = np.nan                           # a missing offset drops its row too
    mf = model_frame(parse_formula(FORMULA), frame, weights=w, offset=off)
    keep = ~frame[["y", "x", "s", "c", "i", "f", "o", "p", "b", "g"]].isna().any(axis=1).to_numpy()
    keep[10] = False
    np.testing.assert_array_equal(mf.weights, w[keep])
    np.testing.assert_array_equal(mf.offset, off[keep])
    assert mf.n_dropped == 10


def test_every_row_missing_names_the_column_missing_most():
    frame = _data()
    frame["x"] = np.nan
    frame.loc[:5, "s"] = None
    with pytest.raises(DataError, match=r"column 'x' alone is missing in 40 rows"):
        model_frame(parse_formula(FORMULA), frame)


@pytest.mark.parametrize("column, value", [("x", np.inf), ("f", -np.inf), ("y", np.inf)])
def test_infinite_values_name_the_column_and_first_kept_row(column, value):
    frame = _with_holes(_data())
    frame.index = INDEXES["labels"](len(frame))
    frame.loc[["r2", "r12", "r20"], column] = value          # r2 is dropped (missing s)
    with pytest.raises(DataError, match=rf"column '{column}' has an infinite value in row "
                                        rf"'r12' \(2 such rows\)"):
        model_frame(parse_formula(FORMULA), frame)


def test_a_repeated_column_label_is_a_data_error():
    frame = pd.concat([_data(), _data()[["x"]]], axis=1)
    with pytest.raises(DataError, match="'x' names 2 columns"):
        model_frame(parse_formula("y ~ x + (1 | g)"), frame)
    model_frame(parse_formula("y ~ s + (1 | g)"), frame)      # unused repeats are fine


@pytest.mark.parametrize("values", [
    np.array([5, -3, 7, 5, 10**15, -3]),                      # span too wide for a table
    np.array([-100, 100, 0, -100], dtype=np.int8),            # int8 differences overflow
    np.array([2**64 - 1, 2**64 - 3, 2**64 - 1], dtype=np.uint64),
    np.array([3, 1, 2, 3], dtype=np.uint16),
    np.array([True, False, True]),
    np.array([2.5, np.nan, 1.0, 2.5]),
    pd.array(["b", None, "a", "b"], dtype="str"),
    pd.array(["b", None, "a"], dtype=object),
    pd.array(["b", None, "a"], dtype=pd.StringDtype("python")),
    pd.array([3, None, 1], dtype="Int64"),
    pd.Categorical(["z", "x", None], categories=["z", "y", "x"]),
])
def test_grouping_factor_codes_and_levels_match_pandas(values):
    data = pd.DataFrame({"g": values})
    factor = grouping_factor(("g",), data)
    if isinstance(values, pd.Categorical):
        used = values.remove_unused_categories()
        codes, levels = used.codes, pd.Index(used.categories)
    else:
        codes, levels = pd.factorize(data["g"], sort=True)
    np.testing.assert_array_equal(factor.codes, codes)
    assert factor.codes.dtype == np.int64
    pd.testing.assert_index_equal(factor.levels, pd.Index(levels))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 2000)), min_size=1, max_size=40))
def test_interaction_of_integer_factors_sorts_as_pairs(rows):
    data = pd.DataFrame(rows, columns=["a", "b"])
    factor = grouping_factor(("a", "b"), data)
    pairs = sorted(set(rows))
    assert list(factor.levels) == [f"{a}:{b}" for a, b in pairs]
    np.testing.assert_array_equal(factor.codes, [pairs.index(r) for r in rows])


def test_arrow_strings_factorize_as_pandas_does():
    pa = pytest.importorskip("pyarrow")
    chunks = pa.chunked_array([pa.array(["b", None, "a"]), pa.array(["c", "b", None])])
    values = pd.array(pd.Series(pd.arrays.ArrowStringArray(chunks)))
    for sort in (False, True):
        codes, uniques = factorize(values, sort=sort)
        ref_codes, ref_uniques = pd.factorize(values, sort=sort)
        np.testing.assert_array_equal(codes, ref_codes)
        assert list(uniques) == list(ref_uniques)


def test_treatment_dummies_on_new_data_with_unseen_and_missing_levels():
    spec = simple_model_matrix("x + s + c", _data())[0]
    new = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0],
                        "s": pd.array(["c", "zz", None, "a"], dtype="str"),
                        "c": pd.Categorical(["p", "q", None, "p"], categories=["p", "q"])})
    X, names = spec.build(new)
    assert names == ["Intercept", "x", "s[T.b]", "s[T.c]", "c[T.q]", "c[T.p]"]
    expected = np.column_stack(
        [np.ones(4), new["x"]]
        + [(new["s"].to_numpy(dtype=object) == level).astype(float) for level in ("b", "c")]
        + [(new["c"].astype(object).to_numpy() == level).astype(float) for level in ("q", "p")])
    np.testing.assert_array_equal(X, expected)


def _gram_schmidt_keep(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """The rank rule written out: keep a column whose residual on the kept ones is not tiny."""
    keep = np.zeros(X.shape[1], dtype=bool)
    basis: list[np.ndarray] = []
    for j in range(X.shape[1]):
        col = X[:, j]
        resid = col.copy()
        for _ in range(2):
            for q in basis:
                resid -= q * (q @ resid)
        norm = np.linalg.norm(col)
        if norm > 0 and np.linalg.norm(resid) > tol * norm:
            keep[j] = True
            basis.append(resid / np.linalg.norm(resid))
    return keep


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-9, 1e-6, 1e-4, 1e-2, 1.0])
def test_independent_columns_agree_with_the_rank_rule(eps):
    rng = np.random.default_rng(7)
    base = np.column_stack([np.ones(60), rng.normal(size=(60, 3))])
    near = base[:, 1] + 2 * base[:, 2] + eps * rng.normal(size=60)
    X = np.column_stack([base, near, 1e6 * base[:, 3], np.zeros(60)])
    np.testing.assert_array_equal(independent_columns(X), _gram_schmidt_keep(X))


def test_independent_columns_of_raw_polynomials_agree_with_the_rank_rule():
    x = np.linspace(100, 110, 50)
    X = np.column_stack([np.ones(50), x, x ** 2, x ** 3, x ** 4])   # nearly collinear
    np.testing.assert_array_equal(independent_columns(X), _gram_schmidt_keep(X))


def _naive_top_level(text: str, chars: str) -> list[int]:
    out, depth, quote = [], 0, None
    for pos, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        else:
            if depth == 0 and ch in chars:
                out.append(pos)
            depth += (ch in "([{") - (ch in ")]}")
    return out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab ~|+-,()[]{}'\"`", max_size=30), st.sampled_from(["~", "|", "+-", ","]))
def test_formula_scanner_finds_the_top_level_characters(text, chars):
    assert list(_top_level_positions(text, chars)) == _naive_top_level(text, chars)


@pytest.mark.parametrize("third", [False, True])
def test_interaction_codes_and_labels_match_a_plain_reference(third):
    """``(1 | a:b)`` (and ``a:b:c``): levels are the combinations present, in the order of
    the components' sorted levels, labelled ``a:b``; built when first read."""
    rng = np.random.default_rng(4)
    n = 60
    data = pd.DataFrame({"a": rng.integers(0, 4, n), "b": rng.choice(["y", "x", "z"], n),
                         "c": rng.choice([2.0, 1.5], n)})
    names = ("a", "b", "c") if third else ("a", "b")
    factor = grouping_factor(names, data)
    keys = list(zip(*(data[name] for name in names)))
    combos = sorted(set(keys))
    expected = [":".join(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
                         for v in combo) for combo in combos]
    assert factor.nlevels == len(combos) and factor.name == ":".join(names)
    np.testing.assert_array_equal(factor.codes, [combos.index(k) for k in keys])
    pd.testing.assert_index_equal(factor.levels, pd.Index(expected, dtype=object))
