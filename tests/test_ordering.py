"""The rest levels' order in the blocked factorization: reverse Cuthill-McKee, borders,
interleaved blocks, and the structural envelope the factorization scans from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_linalg import FORMULAS, THETA, assert_factor_is_dense_algebra, parts, simulate_frame

from glmmcore.linalg.dense import envelope, envelope_work
from glmmcore.linalg.ordering import reverse_cuthill_mckee


def csr(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate([[0], np.cumsum(adjacency.sum(axis=1))]).astype(np.int32)
    return indptr, np.nonzero(adjacency)[1].astype(np.int32)


def bandwidth(adjacency: np.ndarray, order: np.ndarray) -> int:
    rows, cols = np.nonzero(adjacency[np.ix_(order, order)])
    return int(np.max(np.abs(rows - cols)))


def test_reverse_cuthill_mckee_finds_a_shuffled_band():
    """A band of width 3 with its nodes shuffled: the order is a permutation that gives
    the band back, and it covers every component."""
    rng = np.random.default_rng(5)
    n = 60
    band = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 3
    band[30:, :30] = band[:30, 30:] = False          # two components
    shuffle = rng.permutation(n)
    graph = band[np.ix_(shuffle, shuffle)]
    assert bandwidth(graph, np.arange(n)) > 20
    order = reverse_cuthill_mckee(*csr(graph), np.zeros(n, dtype=bool))
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    assert bandwidth(graph, order) == 3


def test_border_nodes_go_last_in_index_order():
    """Nodes coupled to everything are left out of the search and follow it."""
    n = 40
    graph = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1
    graph[[7, 21], :] = graph[:, [7, 21]] = True
    border = np.zeros(n, dtype=bool)
    border[[21, 7]] = True
    order = reverse_cuthill_mckee(*csr(graph), border)
    np.testing.assert_array_equal(order[-2:], [7, 21])
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    assert bandwidth(graph[np.ix_(order[:-2], order[:-2])], np.arange(n - 2)) <= 2


def nested_frame(groups: int = 12, size: int = 7) -> pd.DataFrame:
    """A round robin like ``socio_m4``'s: within each group every member rates every other."""
    rng = np.random.default_rng(2)
    rows = [(g, s, r) for g in range(groups) for s in range(size) for r in range(size) if s != r]
    df = pd.DataFrame(rows, columns=["group", "sender", "receiver"])
    df["x"] = rng.normal(size=len(df))
    df["y"] = df["x"] + rng.normal(size=groups)[df["group"]] + rng.normal(size=len(df))
    return df


NESTED = "y ~ x + (1 | group:sender) + (1 + x | group:receiver) + (1 | group)"


def test_nested_levels_interleave_and_factor_as_dense_algebra():
    """Each group's row follows its receivers' (rows of two blocks interleaved, pairs in
    written transposed, a block of two columns); the factor, solve and inverse blocks are
    those of dense algebra, and the envelope is a fraction of the blocks-in-turn one."""
    frame = nested_frame()
    pred = parts(frame, "blocked", NESTED)
    s = pred.layout
    assert list(s.rest_p) == [2, 1]
    assert np.any(np.diff(s.row_term) < 0)               # blocks interleaved
    assert np.any(s.rr_row < s.rr_col)                  # pairs written transposed
    theta = np.array([0.8, 0.9, -0.3, 0.5, 0.7])
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, pred.n)
    y = frame["y"].to_numpy()
    fac = pred.new_factor(pred.p + 1)
    fac.crossprod(w, np.column_stack([pred.X, y]))
    assert fac.factor(theta)
    assert_factor_is_dense_algebra(pred, fac, theta, w, y)
    # the blocks in turn (rows in the terms' order) have a wider envelope
    q_r = s.q_r
    L = np.tril(fac.D[:q_r, :q_r])
    in_turn = np.argsort(s.rest_perm)
    first = np.empty(q_r, dtype=np.int64)
    assert envelope_work(fac.first[:q_r]) < 0.5 * envelope(
        np.ascontiguousarray((L @ L.T)[np.ix_(in_turn, in_turn)]), first)


CASES = [(size, formula) for size in ("small", "waves") for formula in FORMULAS.values()]


@pytest.mark.parametrize(("size", "formula"), [*CASES, ("nested", NESTED)])
def test_structural_envelope_bounds_the_numerical_one(size, formula):
    """Left of ``d_first`` every row of D is an exact zero at any theta, so the scan for the
    envelope may start there; the Y rows start at column 0."""
    frame = nested_frame() if size == "nested" else simulate_frame(size)
    pred = parts(frame, "blocked", formula)
    fac = pred.new_factor(2)
    rng = np.random.default_rng(8)
    fac.crossprod(rng.uniform(0.5, 2.0, pred.n), rng.normal(size=(pred.n, 2)))
    q_r = pred.layout.q_r
    assert np.all(fac.first_min[q_r:] == 0)
    for theta in (THETA[:pred.reterms.ntheta], rng.uniform(-1.0, 2.0, pred.reterms.ntheta)):
        theta = np.where(pred.reterms.theta_lower == 0, np.abs(theta), theta)
        assert fac.factor(theta)
        for i in range(q_r):
            assert not np.any(fac.D[i, :fac.first_min[i]])
        scanned = np.empty_like(fac.first)
        envelope(np.tril(fac.D), scanned)
        np.testing.assert_array_equal(fac.first, scanned)
