"""The batch's block-at-once pieces against their per-feature computations: the block's
fits, the covariances' positive-definiteness test, the zero-count flags, the p-values and
the tables built from the chunks' columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmcore
from glmmcore.batch.rows import ChunkTables, frame
from glmmcore.fitting.scalar_block import fit_block
from glmmcore.fitting.scalar_fast import fast_fitter, positive_definite

FORMULA = "count ~ cond + offset(lsf) + (1 | subject)"
REDUCED = "count ~ offset(lsf) + (1 | subject)"


@pytest.fixture(scope="module")
def design() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    subject = np.repeat(np.arange(10), 6)
    return pd.DataFrame({"cond": (subject % 2).astype(float),
                         "lsf": np.log(rng.uniform(0.5, 2.0, subject.size)),
                         "subject": [f"s{s}" for s in subject]})


@pytest.fixture(scope="module")
def Y(design) -> np.ndarray:
    """Poisson counts; in column 1 a subject with zero counts only."""
    rng = np.random.default_rng(6)
    codes = pd.factorize(design["subject"])[0]
    out = np.empty((len(design), 9))
    for j in range(out.shape[1]):
        eta = (rng.normal(1.0, 0.3) + rng.normal(0, 0.4) * design["cond"].to_numpy()
               + rng.normal(0, 0.5, 10)[codes] + design["lsf"].to_numpy())
        out[:, j] = rng.poisson(np.exp(eta))
    out[codes == 3, 1] = 0.0
    return out


@pytest.fixture(scope="module")
def model(design, Y):
    return glmmcore.MixedModel(FORMULA, design.assign(count=Y[:, 0]), family="poisson")


def test_block_fits_equal_each_columns_own(model, Y):
    fitter = fast_fitter(model)
    block = fitter.fit_columns(Y)
    for j in range(Y.shape[1]):
        one = fitter.fit_columns(Y[:, [j]])
        for name in ("status", "theta", "beta", "loglik", "vcov", "gradient", "hessian",
                     "nevals"):
            np.testing.assert_array_equal(getattr(block, name)[j], getattr(one, name)[0],
                                          err_msg=name)


def test_positive_definite_is_each_matrix_cholesky():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(6, 3, 3))
    H = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(3)
    H[[1, 4], 2, 2] = -5.0                       # two of them indefinite

    def one(M):
        try:
            np.linalg.cholesky(M)
            return True
        except np.linalg.LinAlgError:
            return False
    every = np.arange(6)
    np.testing.assert_array_equal(positive_definite(H, every),
                                  [j for j in every if one(H[j])])
    np.testing.assert_array_equal(positive_definite(H, np.array([0, 2, 5])), [0, 2, 5])
    assert positive_definite(H, np.array([], dtype=np.int64)).size == 0


def test_zero_count_flags_are_each_levels_sum(model, Y):
    fitter = fast_fitter(model)
    block = fit_block(model, Y)
    sums = np.zeros((fitter.G, Y.shape[1]))
    np.add.at(sums, fitter.codes, Y * fitter.weights[:, None])
    expected = np.any(sums == 0, axis=0)
    assert expected[1] and expected.sum() == 1
    for j in range(Y.shape[1]):
        assert ("zero_count_levels" in block.flags[j]) == expected[j]
        fit = model.fit(Y[:, j])
        assert ("zero_count_levels" in [f.code for f in fit.convergence.flags]) == expected[j]


def test_p_values_are_scipy_stats(design, Y):
    out = glmmcore.fit_many(FORMULA, design, Y, family="poisson", reduced=REDUCED,
                            chunk_size=4, progress=False)
    z = out.coefs["statistic"].to_numpy()
    np.testing.assert_array_equal(out.coefs["p_value"], 2 * stats.norm.sf(np.abs(z)))
    lrt = np.maximum(out.fits["lrt_statistic"].to_numpy(), 0.0)
    np.testing.assert_array_equal(out.fits["lrt_p_value"], stats.chi2.sf(lrt, 1))


def test_tables_from_columns_equal_concatenated_tables():
    rng = np.random.default_rng(8)

    def chunk(k, n):
        fits = {"feature": np.array([f"f{k}.{i}" for i in range(n)], dtype=object),
                "converged": rng.random(n) > 0.3, "loglik": rng.normal(size=n),
                "n_evaluations": rng.integers(5, 30, n).astype(float),
                "error": np.array([None] * (n - 1) + ["DataError: x"], dtype=object)}
        coefs = {"feature": np.repeat(fits["feature"], 2),
                 "term": np.tile(np.array(["a", "b"], dtype=object), n),
                 "estimate": rng.normal(size=2 * n)}
        return ChunkTables(index=k, fits=fits, coefs=coefs)
    chunks = [chunk(k, n) for k, n in enumerate((3, 1, 4))]
    for kind in ("fits", "coefs"):
        expected = pd.concat([pd.DataFrame(getattr(t, kind)) for t in chunks],
                             ignore_index=True)
        pd.testing.assert_frame_equal(frame(chunks, kind), expected, check_exact=True)
    again = [ChunkTables.from_frames(t.index, pd.DataFrame(t.fits), pd.DataFrame(t.coefs))
             for t in chunks]
    pd.testing.assert_frame_equal(frame(again, "fits"), frame(chunks, "fits"),
                                  check_exact=True)
    assert [len(t) for t in chunks] == [3, 1, 4]


def test_level_sums_are_sums_in_the_rows_order():
    from glmmcore.fitting.scalar_block import _level_sums
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 7, 200)
    codes[codes == 5] = 6                        # a level without rows
    values = rng.normal(size=(200, 4)) * 10.0 ** rng.integers(-8, 8, (200, 4))
    expected = np.zeros((7, 4))
    np.add.at(expected, codes, values)
    np.testing.assert_array_equal(_level_sums(codes, 7, values), expected)
    np.testing.assert_array_equal(_level_sums(codes, 7, np.asfortranarray(values)), expected)


def test_lmm_block_covariances_are_each_features(design, Y):
    from glmmcore.objectives import scalar_lmm
    logs = np.log1p(Y)
    model = glmmcore.MixedModel("count ~ cond + (1 | subject)", design.assign(count=logs[:, 0]))
    fitter = fast_fitter(model)
    fits = fitter.fit_columns(logs)
    a, c, XtX = scalar_lmm.model_sums(fitter.X, fitter.codes, fitter.G, fitter.z,
                                      fitter.weights)
    assert np.all(fits.status == 0)
    for j in range(logs.shape[1]):
        f = fits.theta[j, 0] ** 2 / (1.0 + fits.theta[j, 0] ** 2 * a)
        expected = fits.sigma[j] ** 2 * np.linalg.inv(XtX - (c * f[:, None]).T @ c)
        np.testing.assert_allclose(fits.vcov[j], expected, rtol=1e-13, atol=0)
        fit = model.fit(logs[:, j])
        np.testing.assert_allclose(fits.vcov[j], fit.vcov_beta, rtol=1e-13, atol=0)
