"""Formula expressions read as R reads them, checked against the same model on precomputed columns.

lme4 evaluates the response, ``cbind()``'s arguments, ``offset()``, ``I()`` and
function calls as code on the data.  Each form here is fitted twice: written
as an expression, and written with the expression's values precomputed as a
data column.  The two must give the same fit (a mathematical identity: the
same numbers go into the same computation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import glmmcore
from glmmcore.design.newdata import new_design
from glmmcore.errors import (
    DataError,
    FormulaError,
    MissingColumnError,
    MissingValueWarning,
)
from glmmcore.spec.formula import parse_formula

REL = 1e-10


def _data(n_groups: int = 12, per: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * per
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n)
    trials = rng.integers(3, 12, n)
    s = rng.binomial(trials, 1 / (1 + np.exp(-(-0.3 + 0.6 * x + rng.normal(size=n_groups)[g]))))
    return pd.DataFrame({
        "y": 1 + 0.5 * x + rng.normal(size=n_groups)[g] + rng.normal(scale=0.5, size=n),
        "m": rng.normal(size=n), "x": x, "g": g, "N": trials, "s": s,
        "t": rng.uniform(0.5, 3.0, n), "k": rng.poisson(2.0, n),
        "age": rng.normal(40, 6, n), "h": np.array(["a", "b", "c"])[g % 3],
    })


def same_fit(a, b) -> None:
    assert a.loglik == pytest.approx(b.loglik, rel=REL)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=REL, atol=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, rtol=REL, atol=1e-12)
    assert a.nobs == b.nobs


def test_cbind_arguments_are_arithmetic_not_formula_syntax():
    d = _data()
    expr = glmmcore.fit("cbind(s, N - s) ~ x + (1 | g)", d, family="binomial")
    pre = glmmcore.fit("cbind(s, f) ~ x + (1 | g)", d.assign(f=d.N - d.s), family="binomial")
    same_fit(expr, pre)
    assert expr.response.weights.tolist() == d.N.astype(float).tolist()   # trials = N


def test_response_arithmetic_and_functions():
    d = _data()
    same_fit(glmmcore.fit("y - m ~ x + (1 | g)", d),
             glmmcore.fit("r ~ x + (1 | g)", d.assign(r=d.y - d.m)))
    for expr in ("np.log(t)", "log(t)", "I(np.log(t))"):
        same_fit(glmmcore.fit(f"{expr} ~ x + (1 | g)", d),
                 glmmcore.fit("r ~ x + (1 | g)", d.assign(r=np.log(d.t))))


def test_offset_expressions_keep_their_arithmetic():
    d = _data()
    pre = glmmcore.fit("k ~ x + offset(o) + (1 | g)", d.assign(o=np.log(d.t) - 1),
                       family="poisson")
    for form in ("offset(np.log(t) - 1)", "offset(log(t)) + offset(-1 + 0 * t)"):
        same_fit(glmmcore.fit(f"k ~ x + {form} + (1 | g)", d, family="poisson"), pre)
    as_argument = glmmcore.fit("k ~ x + (1 | g)", d, family="poisson",
                               offset="np.log(t) - 1")
    same_fit(as_argument, pre)


def test_dotted_and_backquoted_names_are_columns_not_code():
    d = _data()
    plain = glmmcore.fit("k ~ x + offset(np.log(t)) + (1 | g)", d, family="poisson")
    dotted = d.rename(columns={"k": "k.obs", "t": "log.t"}).assign(**{"log.t": np.log(d.t)})
    same_fit(glmmcore.fit("k.obs ~ x + offset(log.t) + (1 | g)", dotted, family="poisson"),
             plain)
    quoted = d.rename(columns={"k": "k obs"})
    same_fit(glmmcore.fit("`k obs` ~ x + offset(np.log(t)) + (1 | g)", quoted,
                          family="poisson"), plain)
    with pytest.raises(MissingColumnError, match=r"'k\.ob'"):
        glmmcore.fit("k.ob ~ x + (1 | g)", dotted, family="poisson")


def test_boolean_response_expression_for_binomial():
    d = _data()
    same_fit(glmmcore.fit("k > 1 ~ x + (1 | g)", d, family="binomial"),
             glmmcore.fit("b ~ x + (1 | g)", d.assign(b=(d.k > 1).astype(float)),
                          family="binomial"))


def test_weights_expression_is_evaluated_on_the_data():
    d = _data()
    same_fit(glmmcore.fit("y ~ x + (1 | g)", d, weights="N / 10"),
             glmmcore.fit("y ~ x + (1 | g)", d, weights=d.N / 10))
    with pytest.raises(MissingColumnError, match="'trials'"):
        glmmcore.fit("y ~ x + (1 | g)", d, weights="trials / 2")


@pytest.mark.parametrize("expr, values", [
    ("scale(age)", lambda d: (d.age - d.age.mean()) / d.age.std()),
    ("center(age)", lambda d: d.age - d.age.mean()),
    ("np.sqrt(t)", lambda d: np.sqrt(d.t)),
    ("sqrt(t)", lambda d: np.sqrt(d.t)),
    ("I(x ** 2)", lambda d: d.x ** 2),
])
def test_columns_inside_any_function_reach_the_frame(expr, values):
    d = _data()
    fit = glmmcore.fit(f"y ~ {expr} + (1 | g)", d)
    same_fit(fit, glmmcore.fit("y ~ v + (1 | g)", d.assign(v=values(d))))
    assert list(fit.fixef.index) == ["(Intercept)", expr]


def test_transforms_inside_random_terms():
    d = _data()
    z = (d.x - d.x.mean()) / d.x.std()
    same_fit(glmmcore.fit("y ~ x + (0 + scale(x) | g) + (1 | h)", d),
             glmmcore.fit("y ~ x + (0 + z | g) + (1 | h)", d.assign(z=z)))
    fit = glmmcore.fit("y ~ x + (1 + center(age) || g)", d)
    same_fit(fit, glmmcore.fit("y ~ x + (1 + c || g)", d.assign(c=d.age - d.age.mean())))
    poly = glmmcore.fit("y ~ x + (0 + poly(age, 2) | g)", d)
    assert poly.predictor.reterms.blocks[0].colnames == ["poly(age, 2)[1]", "poly(age, 2)[2]"]


def test_unknown_function_names_the_remedy():
    for formula in ("y ~ myfun(x) + (1 | g)", "myfun(y) ~ x + (1 | g)"):
        with pytest.raises(FormulaError, match=r"myfun.*add other values to the data"):
            glmmcore.fit(formula, _data())


def test_poly_keeps_its_columns():
    d = _data()
    fit = glmmcore.fit("y ~ poly(x, 2) + (1 | g)", d, REML=False)
    assert list(fit.fixef.index) == ["(Intercept)", "poly(x, 2)[1]", "poly(x, 2)[2]"]
    # orthogonal polynomials span what x and x**2 span: the same ML fit
    raw = glmmcore.fit("y ~ x + I(x**2) + (1 | g)", d, REML=False)
    assert fit.loglik == pytest.approx(raw.loglik, rel=1e-9)


def test_nan_from_a_transform_drops_rows_as_missing():
    d = _data()
    with pytest.warns(MissingValueWarning, match=r"'np.log\(x\)' of the fixed effects in "
                                                 r"\d+ rows"):
        fit = glmmcore.fit("y ~ np.log(x) + (1 | g)", d)
    positive = d[d.x > 0]
    assert fit.n_dropped == len(d) - len(positive)
    assert fit.model.nan_dropped == {"column 'np.log(x)' of the fixed effects":
                                        fit.n_dropped}
    same_fit(fit, glmmcore.fit("y ~ lx + (1 | g)", positive.assign(lx=np.log(positive.x))))
    assert f"({fit.n_dropped} observations deleted due to missingness)" in str(fit.summary())


@pytest.mark.parametrize("formula", [
    "np.log(x + 1) ~ age + (1 | g)",                  # response
    "y ~ age + offset(np.sqrt(x)) + (1 | g)",          # offset
    "y ~ age + (0 + np.log(x + 1) | g)",               # random-effects term
])
def test_nan_anywhere_drops_the_same_rows(formula):
    d = _data()
    with pytest.warns(MissingValueWarning):
        fit = glmmcore.fit(formula, d)
    kept = d[d.x > 0] if "sqrt" in formula else d[d.x > -1]
    assert fit.nobs == len(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingValueWarning)
        same_fit(fit, glmmcore.fit(formula, kept))


def test_stateful_transforms_learn_from_the_rows_used():
    d = _data()
    d.loc[[0, 5], "x"] = -2.0
    with pytest.warns(MissingValueWarning):
        fit = glmmcore.fit("y ~ np.log(x + 1) + scale(age) + (1 | g)", d)
    kept = d[d.x > -1]
    z = (kept.age - kept.age.mean()) / kept.age.std()
    same_fit(fit, glmmcore.fit("y ~ lx + z + (1 | g)", kept.assign(lx=np.log(kept.x + 1), z=z)))


@pytest.mark.parametrize("formula, culprit", [
    ("y ~ I(1 / x0) + (1 | g)", r"column 'I\(1 / x0\)' of the fixed effects is infinite "
                                r"in row 3 \(1 such row\)"),
    ("y ~ I(x * 1e200 * 1e200) + (1 | g)", "is infinite in row 0"),
    ("y ~ x + offset(np.log(x0 ** 2)) + (1 | g)", r"offset\(np.log\(x0 \*\* 2\)\) is "
                                                  "infinite in row 3"),
    ("np.log(x0 ** 2) ~ x + (1 | g)", r"response 'np.log\(x0 \*\* 2\)' is infinite"),
])
def test_infinite_values_are_errors_naming_the_term(formula, culprit):
    d = _data().assign(x0=lambda f: np.where(np.arange(len(f)) == 3, 0.0, f.x))
    with pytest.raises(DataError, match=culprit):
        glmmcore.fit(formula, d)


@pytest.mark.parametrize("formula, culprit", [
    ("y ~ I(x * 1e200) + (1 | g)", r"column 'I\(x \* 1e\+200\)' of the fixed effects reaches "
                                   r"\d.*e\+200 in magnitude: its squares overflow"),
    ("y ~ tiny + (1 | g)", "column 'tiny' of the fixed effects .* underflow"),
    ("y ~ x + (big | g)", r"column 'big' of random-effects term '\(big \| g\)'"),
    ("I(y * 1e120) ~ x + (1 | g)", r"the response 'I\(y \* 1e120\)' reaches"),
    ("y ~ x + offset(big) + (1 | g)", "the offset reaches"),
])
def test_values_whose_squares_overflow_are_refused(formula, culprit):
    d = _data().assign(big=lambda f: f.x * 1e200, tiny=lambda f: f.x * 1e-200)
    with pytest.raises(DataError, match=culprit):
        glmmcore.fit(formula, d)


def test_nan_in_every_row_is_an_error_naming_the_term():
    d = _data()
    with pytest.raises(DataError, match=r"'np.log\(-t\)' of the fixed effects is NaN"):
        glmmcore.fit("y ~ np.log(-t) + (1 | g)", d)


@pytest.mark.parametrize("formula, message", [
    ("y ~ I(N^2) + (1 | g)", "exclusive-or"),
    ("y^2 ~ x + (1 | g)", "exclusive-or"),
    ("y ~ x + offset(t^2) + (1 | g)", "exclusive-or"),
    ("y ~ . + (1 | g)", "every other column"),
    ("y ~ x + (1 | g + h)", "is not a name"),
    ("cbind(s, N - ) ~ x + (1 | g)", "not a valid expression"),
])
def test_forms_that_would_be_silently_wrong_are_refused(formula, message):
    with pytest.raises(FormulaError, match=message):
        glmmcore.fit(formula, _data())


def test_transformed_grouping_factors():
    d = _data()
    plain = glmmcore.fit("y ~ x + (1 | g)", d)
    called = glmmcore.fit("y ~ x + (1 | C(g))", d)
    same_fit(called, plain)
    assert list(called.ranef) == ["C(g)"]
    binned = glmmcore.fit("y ~ x + (1 | np.floor(age / 5))", d)
    same_fit(binned, glmmcore.fit("y ~ x + (1 | b)", d.assign(b=np.floor(d.age / 5))))
    assert binned.ranef["np.floor(age / 5)"].index.dtype.kind == "i"   # 7, not 7.0
    nested = glmmcore.fit("y ~ x + (1 | h/C(g))", d)
    assert nested.ngroups == {"C(g):h": 12, "h": 3}


def test_grouping_factor_levels_outside_c_levels_are_missing():
    d = _data()
    with pytest.warns(MissingValueWarning, match="grouping factor"):
        fit = glmmcore.fit("y ~ x + (1 | C(h, levels=['c', 'a']))", d)
    assert fit.nobs == int((d.h != "b").sum())
    assert list(fit.ranef["C(h, levels=['c', 'a'])"].index) == ["c", "a"]


def test_non_ascii_and_backquoted_grouping_names():
    d = _data()
    plain = glmmcore.fit("y ~ x + (1 | g)", d)
    same_fit(glmmcore.fit("y ~ x + (1 | grüppe)", d.rename(columns={"g": "grüppe"})), plain)
    fit = glmmcore.fit("y ~ x + (1 | `my group`)", d.rename(columns={"g": "my group"}))
    same_fit(fit, plain)
    assert list(fit.ranef) == ["my group"]


def test_float_grouping_levels_print_as_the_data_values():
    d = _data()
    holes = d.assign(g=d.g.astype(float) + 1)
    holes.loc[4, "g"] = np.nan                       # a missing value makes the column float
    fit = glmmcore.fit("y ~ x + (1 | g)", holes)
    assert list(fit.ranef["g"].index) == list(range(1, 13))
    assert fit.ranef["g"].index.dtype.kind == "i"
    assert "1.0" not in str(fit.ranef["g"].index.tolist())
    half = glmmcore.fit("y ~ x + (1 | g)", holes.assign(g=holes.g / 2))
    assert list(half.ranef["g"].index)[:2] == [0.5, 1.0]        # not whole: left as they are


def test_a_column_named_intercept_keeps_its_name():
    d = _data().assign(Intercept=lambda f: f.m)
    for formula in ("y ~ Intercept + (1 | g)", "y ~ Intercept + np.log(t) + (1 | g)"):
        fit = glmmcore.fit(formula, d)
        assert list(fit.fixef.index)[:2] == ["(Intercept)", "Intercept"]
    same_fit(glmmcore.fit("y ~ Intercept + (1 | g)", d), glmmcore.fit("y ~ m + (1 | g)", d))


def test_a_column_named_like_the_intercept_is_refused():
    d = _data().assign(**{"(Intercept)": lambda f: f.m})
    with pytest.raises(FormulaError, match="both named '\\(Intercept\\)'; rename"):
        glmmcore.fit("y ~ `(Intercept)` + (1 | g)", d)


def test_c_with_levels_gets_the_variable_name():
    d = _data()
    fit = glmmcore.fit("y ~ C(h, levels=['c', 'b', 'a']) + (1 | g)", d)
    assert list(fit.fixef.index) == ["(Intercept)", "h[T.b]", "h[T.a]"]
    pre = glmmcore.fit("y ~ h + (1 | g)", d.assign(h=pd.Categorical(d.h, ["c", "b", "a"])))
    same_fit(fit, pre)
    assert list(pre.fixef.index) == list(fit.fixef.index)
    inter = glmmcore.fit("y ~ x:C(h, levels=['c', 'b', 'a']) + (1 | g)", d)
    assert list(inter.fixef.index)[1:] == ["x:h[c]", "x:h[b]", "x:h[a]"]
    # C() without arguments says how the variable was coded: kept
    assert "C(h)[T.b]" in glmmcore.fit("y ~ C(h) + (1 | g)", d).fixef.index
    # shortening must not create two equal names: the long one stays
    both = glmmcore.fit("y ~ C(h, levels=['c', 'b', 'a']) + h:x + (1 | g)", d)
    assert len(set(both.fixef.index)) == len(both.fixef)


def test_parsed_forms():
    parsed = parse_formula("cbind(s, N - s) ~ x + offset(np.log(t) - 1) + (1 | C(g):h)")
    assert parsed.response == ("s", "N - s")
    assert parsed.offsets == ("np.log(t) - 1",)
    assert parsed.random[0].group == ("C(g)", "h")
    assert parsed.random[0].calls == frozenset({"C(g)"})
    assert parse_formula("y ~ (1 | a/np.floor(x / 2))").random[1].group == \
        ("np.floor(x / 2)", "a")


def test_new_design_reproduces_the_fit_and_keeps_transform_state():
    d = _data()
    fit = glmmcore.fit("k ~ scale(age) + h + offset(np.log(t)) + (0 + scale(x) | g) + (1 | h)"
                       " + (1 | C(g):h)", d, family="poisson", nAGQ=0)
    model = fit.model
    nd = new_design(model, d)
    np.testing.assert_allclose(nd.X, fit.predictor.fixed.X, rtol=1e-14)
    for Z, codes, block in zip(nd.block_X, nd.block_codes, fit.predictor.reterms.blocks):
        np.testing.assert_allclose(Z, block.X, rtol=1e-14)
        np.testing.assert_array_equal(codes, block.factor.codes)
    np.testing.assert_allclose(nd.offset, fit.response.offset, rtol=1e-14)
    new = d.iloc[:3].assign(g=[0, 99, np.nan])
    nd = new_design(model, new)
    assert nd.complete.tolist() == [True, True, False]
    # the training mean and standard deviation, not the new rows'
    expected = (new.age - d.age.mean()) / d.age.std()
    np.testing.assert_allclose(nd.X[:, 1], expected[:2], rtol=1e-12)
    g_block = [b.factor.name for b in fit.predictor.reterms.blocks].index("g")
    assert nd.block_codes[g_block].tolist() == [0, -1]
    with pytest.raises(DataError, match="level"):
        new_design(model, d.iloc[:3].assign(h="zz"))
    # prediction at the training rows is the fit's linear predictor
    np.testing.assert_allclose(fit.predict(d, type="link"), fit.eta, rtol=1e-10)


def _counts(seed: int, n_groups: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * 5
    g = np.repeat(np.arange(n_groups), 5)
    x = rng.normal(size=n)
    trials = rng.integers(1, 8, n)
    u = rng.normal(scale=0.7, size=n_groups)[g]
    s = rng.binomial(trials, 1 / (1 + np.exp(-(0.2 + 0.5 * x + u))))
    t = rng.uniform(0.5, 4.0, n)
    return pd.DataFrame({"x": x, "g": g, "N": trials, "s": s, "t": t,
                         "k": rng.poisson(t * np.exp(0.3 * x + u)),
                         "y": x + u + rng.normal(size=n), "m": rng.normal(size=n)})


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_groups=st.integers(6, 10),
       shift=st.floats(-2.0, 2.0), scale=st.floats(0.5, 3.0))
def test_expressions_equal_precomputed_columns(seed, n_groups, shift, scale):
    d = _counts(seed, n_groups)
    same_fit(glmmcore.fit("cbind(s, N - s) ~ x + (1 | g)", d, family="binomial"),
             glmmcore.fit("cbind(s, f) ~ x + (1 | g)", d.assign(f=d.N - d.s),
                          family="binomial"))
    same_fit(glmmcore.fit(f"k ~ x + offset(np.log(t) - {shift}) + (1 | g)", d,
                          family="poisson"),
             glmmcore.fit("k ~ x + offset(o) + (1 | g)", d.assign(o=np.log(d.t) - shift),
                          family="poisson"))
    same_fit(glmmcore.fit(f"y - {scale} * m ~ x + (1 | g)", d),
             glmmcore.fit("r ~ x + (1 | g)", d.assign(r=d.y - scale * d.m)))
