"""The factorizations against dense linear algebra on a design with every kind of block."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from glmmcore.design.predictor import build_predictor
from glmmcore.linalg.blocked import _coupling, _factor_first
from glmmcore.linalg.dense import DPOTRF, chol_lower
from glmmcore.linalg.keys import TABLE_RANGE_MIN, unique_inverse
from glmmcore.linalg.scalar_first import one_pass_applies
from glmmcore.linalg.schur import schur_init, schur_update, update_rest_rows
from glmmcore.objectives.lmm import LmmDeviance, normal_equations
from glmmcore.spec.fixed import fixed_design
from glmmcore.spec.formula import parse_formula
from glmmcore.spec.frame import model_frame
from glmmcore.spec.reterms import build_reterms

FORMULA = "y ~ x + (1 + x | g) + (1 | h) + (x || k) + (1 | g:h)"
# scalar terms only take their own compiled paths in the blocked factor
FORMULAS = {"mixed": FORMULA, "scalars": "y ~ x + (1 | g) + (1 | h) + (1 | k)"}


# small: the dense parts stay in compiled loops; large: the dense Schur complement of the
# blocked factor goes to LAPACK; waves: g and h cross only within 20 waves, so the
# reordered rest levels give D a small envelope (its compiled loop), k borders it
SIZES = {"small": (240, 30, 8), "large": (900, 160, 110), "waves": (900, 160, 120)}


def simulate_frame(size: str) -> pd.DataFrame:
    n, g_levels, h_levels = SIZES[size]
    rng = np.random.default_rng(7)
    g, h = rng.integers(0, g_levels, n), rng.integers(0, h_levels, n)
    if size == "waves":    # level labels shuffled: sorted order is not the waves' order
        wave = rng.integers(0, 20, n)
        g = rng.permutation(g_levels)[wave * (g_levels // 20) + g % (g_levels // 20)]
        h = rng.permutation(h_levels)[wave * (h_levels // 20) + h % (h_levels // 20)]
    df = pd.DataFrame({"g": g, "h": h, "k": rng.integers(0, 5, n), "x": rng.normal(size=n)})
    df["y"] = 1 + df["x"] + rng.normal(size=g_levels)[df["g"]] + rng.normal(size=n)
    return df


@pytest.fixture(scope="module", params=list(SIZES))
def frame(request) -> pd.DataFrame:
    return simulate_frame(request.param)


def parts(frame: pd.DataFrame, backend: str, formula: str = FORMULA):
    parsed = parse_formula(formula)
    mf = model_frame(parsed, frame)
    fixed = fixed_design(parsed.fixed, mf.data, formula)
    reterms = build_reterms(parsed, mf.data)
    return build_predictor(fixed, reterms, backend)


def dense_Z_Lambda(predictor, theta):
    """Dense Z and Lambda in the block, level-major order the factors use."""
    cols, lams = [], []
    for block, T in zip(predictor.reterms.blocks, predictor.reterms.T_matrices(theta)):
        Zk = np.zeros((predictor.n, block.q))
        for i, level in enumerate(block.factor.codes):
            Zk[i, level * block.p:(level + 1) * block.p] = block.X[i]
        cols.append(Zk)
        lams.append(np.kron(np.eye(block.nlevels), T))
    from scipy.linalg import block_diag
    return np.hstack(cols), block_diag(*lams)


THETA = np.array([0.9, 0.3, 0.4, 0.7, 0.5, 0.8, 0.6, 0.2])


@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
@pytest.mark.parametrize("backend", ["blocked", "sparse"])
def test_factor_matches_dense_algebra(frame, backend, formula):
    pred = parts(frame, backend, formula)
    theta = THETA[:pred.reterms.ntheta]
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, pred.n)
    y = frame["y"].to_numpy()
    Y = np.column_stack([pred.X, y])
    fac = pred.new_factor(Y.shape[1])
    fac.crossprod(w, Y)
    assert fac.factor(theta)
    assert_factor_is_dense_algebra(pred, fac, theta, w, y)


def assert_factor_is_dense_algebra(pred, fac, theta, w, y):
    """``fac`` (made with ``[X y]`` and weights ``w``, factored at ``theta``) against dense
    algebra: log|M|, the solve for (u, beta) and the diagonal blocks of M^{-1}."""
    Z, Lam = dense_Z_Lambda(pred, theta)
    ZL = Z @ Lam
    M = ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])
    assert fac.logdet_re == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12)

    full = np.block([[M, ZL.T @ (w[:, None] * pred.X)],
                     [pred.X.T @ (w[:, None] * ZL), pred.X.T @ (w[:, None] * pred.X)]])
    rhs = np.concatenate([ZL.T @ (w * y), pred.X.T @ (w * y)])
    sol = np.linalg.solve(full, rhs)
    u, beta = fac.solve(pred.p)
    np.testing.assert_allclose(beta, sol[-pred.p:], rtol=1e-10)
    np.testing.assert_allclose(u, sol[:-pred.p], rtol=1e-9, atol=1e-12)

    Minv = np.linalg.inv(M)
    start = 0
    for block, V in zip(pred.reterms.blocks, fac.inverse_diag_blocks()):
        for level in range(block.nlevels):
            sl = slice(start + level * block.p, start + (level + 1) * block.p)
            np.testing.assert_allclose(V[level], Minv[sl, sl], rtol=1e-9, atol=1e-14)
        start += block.q


@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
def test_schur_update_blocks_of_rows_agree(frame, formula):
    """Blocks of one row, of a few rows and all of D at once subtract the same sums."""
    pred = parts(frame, "blocked", formula)
    Y = np.column_stack([pred.X, frame["y"].to_numpy()])
    fac = pred.new_factor(Y.shape[1])
    fac.crossprod(np.random.default_rng(5).uniform(0.5, 2.0, pred.n), Y)
    assert fac.factor(THETA[:pred.reterms.ntheta])
    s = fac.s
    results = []
    for block in (1, 7, s.q_r):
        schur_init(fac.tbuf, s.toff, s.rest_p, s.row_term, s.row_start, s.rr_row, s.rr_col,
                   s.rr_rterm, s.rr_cterm, s.rr_voff, fac.rrv, fac.ArY, fac.AYY, fac.D,
                   fac.first_min)
        before = np.tril(fac.D[:s.q_r, :s.q_r]).copy()
        update_rest_rows(s.flat_row, s.flat_ptr, fac.L21v, s.p1, fac.D, s.q_r, block)
        results.append(np.tril(fac.D[:s.q_r, :s.q_r]))
        assert not np.allclose(results[-1], before)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(results[0], results[2], rtol=1e-12, atol=1e-13)


def test_one_pass_scalar_factor_is_the_four_pass_one(frame):
    """Scalar terms: the fused pass over the first block's levels gives the factor that the
    diagonal, coupling and Schur update passes give."""
    pred = parts(frame, "blocked", FORMULAS["scalars"])
    Y = np.column_stack([pred.X, frame["y"].to_numpy()])
    fac = pred.new_factor(Y.shape[1])
    fac.crossprod(np.random.default_rng(9).uniform(0.5, 2.0, pred.n), Y)
    s = fac.s
    assert one_pass_applies(s.p1, s.rest_p, s.q_r)
    theta = THETA[:pred.reterms.ntheta]
    assert fac.factor(theta)
    fused = [a.copy() for a in (fac.L11, fac.L21v, fac.LY1, np.tril(fac.D))]
    T1 = fac.tbuf[:1].reshape(1, 1)
    assert _factor_first(T1, fac.A11, fac.L11)
    _coupling(T1, fac.tbuf, s.toff, s.rest_p, s.r1_ptr, s.r1_term, s.r1_voff, fac.r1v,
              fac.A1Y, fac.L11, fac.L21v, fac.LY1)
    schur_init(fac.tbuf, s.toff, s.rest_p, s.row_term, s.row_start, s.rr_row, s.rr_col,
               s.rr_rterm, s.rr_cterm, s.rr_voff, fac.rrv, fac.ArY, fac.AYY, fac.D, fac.first_min)
    schur_update(s.flat_row, s.flat_ptr, fac.L21v, fac.LY1, fac.D)
    assert chol_lower(DPOTRF, fac.D, fac.first, fac.first_min)
    for a, b in zip(fused, (fac.L11, fac.L21v, fac.LY1, np.tril(fac.D))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    logdet = 2 * np.sum(np.log(fac.L11)) + 2 * np.sum(np.log(np.diag(fac.D)[:s.q_r]))
    assert fac.logdet_re == pytest.approx(logdet, rel=1e-13)


@pytest.mark.parametrize("size", [5_000, 50 * TABLE_RANGE_MIN], ids=["table", "sort"])
def test_unique_keys_and_inverse_are_numpys(size):
    """Both routes of ``unique_inverse`` (a table over the range, or a sort) give
    ``np.unique``'s keys and inverse, for a 2-D array of keys with gaps and repeats."""
    keys = np.random.default_rng(3).integers(0, size // 3, size=(800, 3)) * 3
    uniq, inverse = unique_inverse(keys, size)
    expected, expected_inverse = np.unique(keys.ravel(), return_inverse=True)
    np.testing.assert_array_equal(uniq, expected)
    np.testing.assert_array_equal(inverse, expected_inverse.ravel())
    assert uniq.dtype == inverse.dtype == np.int64


@pytest.mark.parametrize("collinear", [False, True])
def test_least_squares_shift_is_the_weighted_fit(collinear):
    """The LMM's response shift: the weighted least-squares coefficients, by the normal
    equations or, when X is collinear to round-off, by the SVD's minimum-norm solution."""
    rng = np.random.default_rng(4)
    X = np.column_stack([np.ones(300), rng.normal(size=300), rng.normal(size=300)])
    if collinear:
        X[:, 2] = 2.0 * X[:, 1]
    y, w = rng.normal(size=300), rng.uniform(0.5, 2.0, 300)
    sw = np.sqrt(w)
    expected = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    np.testing.assert_allclose(normal_equations(X, w).solve(X, y, w), expected, rtol=1e-10,
                               atol=1e-12)


def test_profiled_deviance_equals_the_marginal_likelihood(frame):
    pred = parts(frame, "blocked")
    theta = THETA[:pred.reterms.ntheta]
    y = frame["y"].to_numpy()
    dev = LmmDeviance(pred, y, np.ones(pred.n), np.zeros(pred.n), reml=False)
    value = dev(theta)
    sol = dev.solution(theta)
    Z, Lam = dense_Z_Lambda(pred, theta)
    ZL = Z @ Lam
    cov = sol.sigma ** 2 * (np.eye(pred.n) + ZL @ ZL.T)
    loglik = multivariate_normal(mean=pred.X @ sol.beta, cov=cov).logpdf(y)
    assert value == pytest.approx(-2 * loglik, rel=1e-10)


def test_reml_criterion_equals_the_restricted_likelihood(frame):
    pred = parts(frame, "sparse")
    theta = THETA[:pred.reterms.ntheta]
    y = frame["y"].to_numpy()
    dev = LmmDeviance(pred, y, np.ones(pred.n), np.zeros(pred.n), reml=True)
    value = dev(theta)
    sigma = dev.solution(theta).sigma
    Z, Lam = dense_Z_Lambda(pred, theta)
    ZL = Z @ Lam
    V = sigma ** 2 * (np.eye(pred.n) + ZL @ ZL.T)
    Vi = np.linalg.inv(V)
    X = pred.X
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    n, p = X.shape
    restricted = (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r
                  + (n - p) * np.log(2 * np.pi))
    assert value == pytest.approx(restricted, rel=1e-10)


@pytest.mark.parametrize("border", [0, 1, 8])
def test_envelope_cholesky_with_a_dense_border_matches_lapack(border):
    """Banded rows and ``border`` dense ones below them (the blocked system's ``D`` with its
    ``Y`` rows), some with leading zeros: the border's columns taken all rows at once give
    LAPACK's factor and the row-by-row loop's, with exact zeros before each envelope."""
    from glmmcore.linalg.dense import chol_envelope, envelope

    rng = np.random.default_rng(3)
    n = 90
    band = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= 4
    bordered = band | (np.arange(n) >= n - 8)[:, None] | (np.arange(n) >= n - 8)[None, :]
    bordered[n - 3, :40] = bordered[:40, n - 3] = False       # a border row's leading zeros
    B = rng.normal(size=(n, n)) * bordered
    A = np.where(bordered, B + B.T, 0.0) + 4 * n * np.eye(n)
    first = np.empty(n, dtype=np.int64)
    envelope(A, first)
    assert first[n - 3] == 40
    rows, by_rows = A.copy(), A.copy()
    assert chol_envelope(rows, first, border)
    assert chol_envelope(by_rows, first, 0)
    np.testing.assert_allclose(np.tril(rows), np.linalg.cholesky(A), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.tril(rows), np.tril(by_rows), rtol=1e-14, atol=1e-15)
    assert np.all(rows[n - 3, :40] == 0.0)
    assert not chol_envelope(-A.copy(), first, border)


@pytest.mark.parametrize("structure", ["dense", "blocks_and_border", "banded"])
def test_small_cholesky_matches_lapack_on_envelopes(structure):
    """The compiled Cholesky skips each row's leading zeros and still gives LAPACK's factor."""
    from glmmcore.linalg.dense import chol_lower_small

    rng = np.random.default_rng(11)
    n = 120
    mask = np.ones((n, n), dtype=bool)
    if structure == "blocks_and_border":   # nested: groups of 10 plus 15 dense rows at the end
        group = np.minimum(np.arange(n) // 10, 10)
        mask = (group[:, None] == group[None, :]) | (np.arange(n) >= 105)[:, None]
        mask |= mask.T
    elif structure == "banded":
        mask = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= 6
    B = rng.normal(size=(n, n)) * mask
    A = np.where(mask, B + B.T, 0.0) + 4 * n * np.eye(n)   # diagonally dominant
    L = A.copy()
    assert chol_lower_small(L)
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(A), rtol=1e-12, atol=1e-12)
    assert not chol_lower_small(-A.copy())
    # the dispatcher: LAPACK for the dense matrix; the envelope loop for the band and for
    # the blocks, whose 15 dense border rows of 120 hold 8% of the dense work (below the
    # measured crossover at this size, 16%; above the 5% floor of large matrices)
    from glmmcore.linalg.dense import (
        DPOTRF,
        ENVELOPE_MAX_WORK,
        chol_lower,
        envelope,
        envelope_max_work,
        uses_lapack,
    )
    first = np.empty(n, dtype=np.int64)
    work = envelope(A, first)
    assert (work > ENVELOPE_MAX_WORK) == (structure != "banded")
    assert envelope_max_work(n) == pytest.approx(0.3 * 0.4 ** 0.66)
    assert uses_lapack(first) == (structure == "dense")
    L = A.copy()
    assert chol_lower(DPOTRF, L, first, np.zeros(n, dtype=np.int64))
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(A), rtol=1e-12, atol=1e-12)
    for i in range(n):              # the factor keeps the envelope, with exact zeros before it
        assert not np.any(L[i, :first[i]]) and (first[i] == i or L[i, first[i]] != 0.0)
    assert not chol_lower(DPOTRF, -A.copy(), first, np.zeros(n, dtype=np.int64))


def test_rest_levels_ordered_into_the_waves():
    """Crossing within waves makes D block diagonal once the rest levels are reordered."""
    from glmmcore.linalg.dense import ENVELOPE_MAX_WORK, envelope

    pred = parts(simulate_frame("waves"), "blocked", "y ~ x + (1 | g) + (1 | h)")
    fac = pred.new_factor(1)
    fac.crossprod(np.ones(pred.n), pred.X[:, :1])
    assert fac.factor(np.array([0.8, 0.6]))
    s = fac.s
    D = fac.D[:s.q_r, :s.q_r].copy()
    first = np.empty(s.q_r, dtype=np.int64)
    assert envelope(D, first) < ENVELOPE_MAX_WORK
    assert np.all(np.diff(np.unique(s.rest_perm)) == 1) and s.rest_perm.size == s.q_r
    assert not np.array_equal(s.rest_perm, np.arange(s.q_r))
    # the same factor without the reordering: no envelope to speak of
    order = np.argsort(s.rest_perm)
    full = np.tril(D) + np.tril(D, -1).T
    shuffled = np.linalg.cholesky(full[np.ix_(order, order)])
    assert envelope(shuffled, first) > 10 * ENVELOPE_MAX_WORK


@pytest.mark.parametrize("with_beta", [False, True], ids=["u", "u_and_beta"])
@pytest.mark.parametrize("formula", list(FORMULAS.values()), ids=list(FORMULAS))
def test_solve_with_a_vector_right_hand_side(frame, formula, with_beta):
    """solve_rhs gives (Lambda'Z'WZLambda + I)^{-1} b with the factor in place; with the
    fixed-effect rows (nsolve = p) it solves the system of [Z Lambda, X] (PIRLS with beta)."""
    from glmmcore.linalg.rhs_solve import solve_rhs

    pred = parts(frame, "blocked", formula)
    theta = THETA[:pred.reterms.ntheta]
    rng = np.random.default_rng(4)
    w = rng.uniform(0.5, 2.0, pred.n)
    X = pred.X if with_beta else np.zeros((pred.n, 0))
    fac = pred.new_factor(X.shape[1] + 1)
    fac.crossprod(w, np.column_stack([X, rng.normal(size=pred.n)]))
    assert fac.factor(theta)
    Z, Lam = dense_Z_Lambda(pred, theta)
    A = np.hstack([Z @ Lam, X])
    M = A.T @ (w[:, None] * A)
    M[:pred.reterms.q, :pred.reterms.q] += np.eye(pred.reterms.q)
    b = rng.normal(size=M.shape[0])
    x = np.empty_like(b)
    solve_rhs(X.shape[1], *fac.solve_args(), b, x)
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-9, atol=1e-12)



def test_coupling_pattern_is_the_incidence_products_pattern():
    """Levels sharing a first-block level or an observation: the pattern of B1'B1 + B0'B0."""
    import scipy.sparse as sp

    from glmmcore.linalg.ordering import coupling_pattern
    rng = np.random.default_rng(11)
    n, l1, levels = 400, 60, np.array([25, 7])
    codes1 = rng.integers(0, l1, n)
    nodes = np.column_stack([rng.integers(0, levels[0], n),
                             levels[0] + rng.integers(0, levels[1], n)]).astype(np.int64)
    order = np.argsort(codes1, kind="stable")
    level_ptr = np.concatenate([[0], np.cumsum(np.bincount(codes1, minlength=l1))])
    indptr, indices = coupling_pattern(np.ascontiguousarray(nodes[order]), level_ptr, nodes,
                                       int(levels.sum()))
    ones, nnodes = np.ones(2 * n), int(levels.sum())
    by_obs = sp.csr_matrix((ones, nodes.ravel(), np.arange(n + 1) * 2), shape=(n, nnodes))
    by_first = sp.csr_matrix((ones, (np.repeat(codes1, 2), nodes.ravel())), shape=(l1, nnodes))
    expected = ((by_first.T @ by_first + by_obs.T @ by_obs) != 0).toarray()
    got = np.zeros_like(expected)
    for a in range(expected.shape[0]):
        got[a, indices[indptr[a]:indptr[a + 1]]] = True
        assert np.all(np.diff(indices[indptr[a]:indptr[a + 1]]) > 0)
    np.testing.assert_array_equal(got, expected)
