"""``MixedModel``: built once, fitted many times, from several threads, pickled."""

from __future__ import annotations

import pickle
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore import MixedModel, MixedModelResult
from glmmcore.errors import DataError, ModelSpecError


def identical(a: MixedModelResult, b: MixedModelResult) -> None:
    """Two results equal bit for bit in every estimate and statistic."""
    for name in ("theta", "beta", "u", "b", "vcov_beta", "eta"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("sigma", "loglik", "deviance", "nparams", "method"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.response.y, b.response.y)
    assert a.convergence.converged == b.convergence.converged


@pytest.fixture(scope="module")
def gpa_sim():
    return glmmcore.simulate("gpa", seed=4)


@pytest.fixture(scope="module")
def pois_sim():
    return glmmcore.simulate("patents", seed=1, n_patents=400)


def test_fit_is_the_model_fitted_to_its_own_response(gpa_sim, pois_sim):
    model = MixedModel(gpa_sim.formula, gpa_sim.data)
    identical(model.fit(), glmmcore.fit(gpa_sim.formula, gpa_sim.data))
    pmodel = MixedModel(pois_sim.formula, pois_sim.data, family="poisson")
    identical(pmodel.fit(), glmmcore.fit(pois_sim.formula, pois_sim.data, family="poisson"))
    assert model.fit().model is model


def test_a_new_response_equals_a_fresh_fit_of_the_data_with_it(gpa_sim):
    data = gpa_sim.data.copy()
    data.loc[[3, 40], "occasion"] = np.nan          # two rows the model drops
    model = MixedModel(gpa_sim.formula, data)
    assert model.n_dropped == 2 and model.nrows == len(data)
    y = glmmcore.simulate("gpa", seed=5).data["gpa"].to_numpy().copy()
    y[3] = np.nan                                   # missing in a dropped row: fine
    got = model.fit(y)
    want = glmmcore.fit(gpa_sim.formula, data.assign(gpa=y))
    assert got.loglik == pytest.approx(want.loglik, rel=1e-12)
    np.testing.assert_allclose(got.theta, want.theta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got.fixef, want.fixef, rtol=1e-9)
    assert got.n_dropped == 2 and got.nobs == len(data) - 2


def test_a_new_response_is_checked(gpa_sim):
    model = MixedModel(gpa_sim.formula, gpa_sim.data)
    with pytest.raises(DataError, match=rf"one value per row of the model's data "
                                        rf"\({len(gpa_sim.data)}\)"):
        model.fit(np.zeros(len(gpa_sim.data) - 1))
    y = gpa_sim.data["gpa"].to_numpy().copy()
    y[7] = np.nan
    with pytest.raises(DataError, match="missing value in row 7"):
        model.fit(y)
    with pytest.raises(ModelSpecError, match="start must have 3 values"):
        model.fit(start=[1.0])
    with pytest.raises(ModelSpecError, match="backend"):
        model.fit(control={"backend": "sparse"})


def test_a_start_at_a_similar_fit_reaches_the_same_optimum(gpa_sim):
    model = MixedModel(gpa_sim.formula, gpa_sim.data)
    first = model.fit()
    y = glmmcore.simulate("gpa", seed=6).data["gpa"]
    default, started = model.fit(y), model.fit(y, start=first.theta)
    assert started.loglik == pytest.approx(default.loglik, rel=1e-10)
    np.testing.assert_allclose(started.theta, default.theta, rtol=1e-5, atol=1e-7)


def test_binomial_counts_take_a_two_column_response():
    sim = glmmcore.simulate("speed_dating", seed=3, n_participants=40, n_partners=10,
                            dates_per_participant=6)
    data = sim.data.assign(yes=sim.data["decision"].astype(int),
                           no=1 - sim.data["decision"].astype(int))
    model = MixedModel("cbind(yes, no) ~ attractive_sc + (1 | iid)", data, family="binomial")
    flipped = 1 - data[["yes", "no"]].to_numpy()
    got = model.fit(flipped)
    want = glmmcore.fit("cbind(yes, no) ~ attractive_sc + (1 | iid)",
                        data.assign(yes=flipped[:, 0], no=flipped[:, 1]), family="binomial")
    identical(got, want)


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_threads_fit_one_model_as_serial_fits_do(family, gpa_sim, pois_sim):
    sim = gpa_sim if family == "gaussian" else pois_sim
    model = MixedModel(sim.formula, sim.data, family=family)
    column = sim.formula.split("~")[0].strip()
    rng = np.random.default_rng(0)
    base = sim.data[column].to_numpy()
    if family == "gaussian":
        ys = [base + rng.normal(0, 0.2, base.size) for _ in range(8)]
    else:
        ys = [rng.poisson(np.maximum(base, 0.5)) for _ in range(8)]
    serial = [model.fit(y) for y in ys]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(model.fit, ys))
    for a, b in zip(serial, threaded):
        identical(a, b)


def _same_result_fields(a: MixedModelResult, b: MixedModelResult) -> None:
    for f in fields(MixedModelResult):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "model":
            assert (x.formula, x.nobs, x.reml, x.nagq, repr(x.family)) == \
                   (y.formula, y.nobs, y.reml, y.nagq, repr(y.family))
        elif f.name == "response":
            for part in ("y", "weights", "offset"):
                np.testing.assert_array_equal(getattr(x, part), getattr(y, part))
            assert x.name == y.name and repr(x.family) == repr(y.family)
        elif f.name == "convergence":
            assert repr(x.as_dict()) == repr(y.as_dict())
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert repr(x) == repr(y), f.name
    pd.testing.assert_series_equal(a.fixef, b.fixef)
    pd.testing.assert_frame_equal(a.varcorr, b.varcorr)
    for name, table in a.ranef.items():
        pd.testing.assert_frame_equal(table, b.ranef[name])
    for name, v in a.condvar.items():
        np.testing.assert_allclose(v, b.condvar[name], rtol=1e-10)
    assert a.summary() == b.summary()


@pytest.mark.parametrize("case", ["lmm", "poisson", "sparse"])
def test_models_and_results_pickle(case, gpa_sim, pois_sim):
    if case == "lmm":
        model = MixedModel(gpa_sim.formula, gpa_sim.data)
    elif case == "poisson":
        model = MixedModel(pois_sim.formula, pois_sim.data, family="poisson")
    else:
        model = MixedModel(gpa_sim.formula, gpa_sim.data, control={"backend": "sparse"})
    result = model.fit()
    again = pickle.loads(pickle.dumps(result))
    _same_result_fields(result, again)
    # the unpickled model fits again, to the same numbers
    model2 = pickle.loads(pickle.dumps(model))
    identical(model2.fit(), result)


def test_results_hold_no_workspace(pois_sim):
    """A result's own memory (beyond the shared model) is a few of its n-vectors:
    10,000 results of a 600-row Poisson GLMM stay well under 300 MB."""
    sim = glmmcore.simulate("patents", seed=2, n_patents=600)
    model = MixedModel(sim.formula, sim.data, family="poisson")
    rng = np.random.default_rng(1)
    ys = [rng.poisson(np.maximum(sim.data["ncit"].to_numpy(), 0.5)) for _ in range(40)]
    model.fit(ys[0])
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [model.fit(y) for y in ys]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_result = held / len(kept)
    assert per_result * 10_000 < 300e6, per_result
    assert per_result < 8 * 600 * 8        # eight n-vectors of float64 at most


def test_lbfgsb_on_a_face_of_the_bounds_is_not_the_answer():
    """Responses drawn from a sleepstudy-like fit where L-BFGS-B (and BOBYQA from its
    point) ended on the face T11 = 0, 0.2 below the optimum: BOBYQA from the start then
    finds it, and the fit is at least lme4's path's optimum.  The regular path is the one
    without the vector-term fast path, whose optimum is at least as good."""
    from bench.refit_speed import sleepstudy_like
    data = sleepstudy_like()
    model = MixedModel("Reaction ~ Days + (Days | Subject)", data)
    draws = model.fit().simulate(20, seed=7).to_numpy().T
    for y in draws[[10, 19]]:
        bobyqa = model.fit(y, control={"optimizer": "bobyqa"})
        default = model.fit(y, control={"fast_path": False})
        assert default.converged and bobyqa.converged
        assert default.loglik >= bobyqa.loglik - 1e-6 * abs(bobyqa.loglik)
        assert "bobyqa from the start" in " ".join(default.convergence.optimizer)
        fast = model.fit(y)
        assert fast.extra.get("fast_path") and fast.converged
        assert fast.loglik >= default.loglik - 1e-8 * abs(default.loglik)
