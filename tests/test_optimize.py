"""Finite-difference derivatives and the Newton polish after the optimizer."""

from __future__ import annotations

import numpy as np
import pytest

import glmmcore
from glmmcore.fitting.checks import (
    FD_STEP,
    HESSIAN_STEP,
    KEEP_HESSIAN_TOL,
    fd_derivatives,
    gradient_hessian,
    newton_polish,
    polished_and_checked,
)
from glmmcore.fitting.optimizers.bobyqa import bobyqa
from glmmcore.fitting.optimizers.lbfgsb import LBFGSB_GTOL, _minimize_lbfgsb, lbfgsb, run_lbfgsb

A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]])
CENTER = np.array([1.5, 0.7, 2.0])


def quadratic(x: np.ndarray) -> float:
    d = x - CENTER
    return 10.0 + 0.5 * d @ A @ d + 0.1 * d[0] ** 3


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


def test_fd_derivatives_of_a_cubic_are_second_order_accurate():
    x = CENTER + np.array([0.3, -0.2, 0.1])
    f = Counted(quadratic)
    grad, hess = fd_derivatives(f, x, np.full(3, -np.inf))
    d = x - CENTER
    exact_grad = A @ d + np.array([0.3 * d[0] ** 2, 0.0, 0.0])
    exact_hess = A + np.diag([0.6 * d[0], 0.0, 0.0])
    np.testing.assert_allclose(grad, exact_grad, atol=1e-7)
    np.testing.assert_allclose(hess, exact_hess, atol=1e-5)
    assert f.calls == 3 ** 2 + 3 + 1


def test_hessian_from_gradient_steps_and_accuracy():
    """Forward differences of the cubic's exact gradient: ``n + 1`` gradients, error
    ``O(step)`` at ``HESSIAN_STEP`` as at ``FD_STEP``; a coordinate
    within ``FD_STEP`` of its bound takes ``FD_STEP`` even so.

    Only the cubic term has a third derivative: the error is ``0.3 h`` in one entry."""
    def gradient(x):
        d = x - CENTER
        return 0.0, A @ d + np.array([0.3 * d[0] ** 2, 0.0, 0.0])
    x = CENTER + np.array([0.3, -0.2, 0.1])
    exact_hess = A + np.diag([0.6 * (x - CENTER)[0], 0.0, 0.0])
    fg = Counted(gradient)
    for step in (FD_STEP, HESSIAN_STEP):
        fg.calls = 0
        _, hess = gradient_hessian(fg, x, np.full(3, -np.inf), step=step)
        assert fg.calls == 3 + 1
        err = np.abs(hess - exact_hess)     # 0.3 h in d2/dx0^2 of 0.1 d0^3 alone
        assert err[0, 0] == pytest.approx(0.3 * step * abs(x[0]), rel=1e-3)
        np.testing.assert_allclose(err.ravel()[1:], 0.0, atol=1e-9)    # round-off: eps |g| / h
    steps = []
    gradient_hessian(lambda xx: steps.append(xx.copy()) or gradient(xx), x,
                     np.array([x[0] - 0.5 * FD_STEP * x[0], -np.inf, -np.inf]),
                     step=HESSIAN_STEP)
    shifts = np.array([s - x for s in steps[1:]])
    assert shifts[0, 0] == pytest.approx(FD_STEP * x[0], rel=1e-9)
    assert shifts[1, 1] == pytest.approx(HESSIAN_STEP, rel=1e-9)


def test_polish_takes_the_newton_step_to_the_optimum():
    x = CENTER + np.array([1e-3, -2e-3, 5e-4])
    lower = np.full(3, -np.inf)
    grad, hess = fd_derivatives(quadratic, x, lower)
    new_x, value = newton_polish(quadratic, x, quadratic(x), lower, grad, hess)
    np.testing.assert_allclose(new_x, CENTER, atol=1e-8)
    assert value == pytest.approx(10.0, abs=1e-12) and value < quadratic(x)


def test_polish_is_not_tried_when_its_predicted_gain_is_negligible():
    x = CENTER + 1e-9
    lower = np.full(3, -np.inf)
    grad, hess = A @ (x - CENTER), A
    f = Counted(quadratic)
    assert newton_polish(f, x, quadratic(x), lower, grad, hess) is None
    assert f.calls == 0


def exact_gradient(x: np.ndarray) -> np.ndarray:
    d = x - CENTER
    return A @ d + np.array([0.3 * d[0] ** 2, 0.0, 0.0])


def exact_derivatives(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return exact_gradient(x), A + np.diag([0.6 * (x[0] - CENTER[0]), 0.0, 0.0])


@pytest.mark.parametrize("offset", [3e-3, 0.05])
def test_after_a_polish_the_hessian_is_kept_only_where_its_model_held(offset):
    """Near the optimum the Newton step lands where the quadratic model said (the scaled
    gradient there far below lme4's tolerance): the Hessian is kept and only the gradient
    taken; farther out, where the cubic term bends the model, both are taken again."""
    x = CENTER + np.array([offset, 0.0, 0.0])
    lower = np.full(3, -np.inf)
    derivatives, gradient = Counted(exact_derivatives), Counted(exact_gradient)
    messages: list[str] = []
    new_x, conv = polished_and_checked(quadratic, x, None, lower, derivatives,
                                       np.zeros(0, dtype=bool), 0, messages,
                                       polish_first=False, gradient=gradient)
    assert conv.converged and quadratic(new_x) < quadratic(x)
    kept = offset < 0.01
    assert gradient.calls == 1 and derivatives.calls == (1 if kept else 2)
    assert ("the Hessian from before the step is kept (its model held)" in messages) == kept
    np.testing.assert_array_equal(conv.gradient, exact_gradient(new_x))
    expected_hess = exact_derivatives(x if kept else new_x)[1]
    np.testing.assert_array_equal(conv.hessian, expected_hess)
    if kept:
        assert np.max(np.abs(conv.scaled_gradient)) < KEEP_HESSIAN_TOL


def test_joint_stage_coordinates_are_unit_and_uncorrelated():
    """beta = beta1 + C z with C C' = vcov; theta and log phi pass through unchanged."""
    from glmmcore.fitting.whitening import Whitening

    vcov = np.array([[4.0, 1.9], [1.9, 1.0]])     # correlation 0.95
    beta1 = np.array([1.0, -2.0])
    white = Whitening(1, beta1, vcov)
    z0 = np.array([0.7, 0.0, 0.0, -0.3])
    x0 = white.to_x(z0)
    np.testing.assert_array_equal(x0, [0.7, 1.0, -2.0, -0.3])
    C = np.column_stack([white.to_x(z0 + np.eye(4)[k])[1:3] - beta1 for k in (1, 2)])
    np.testing.assert_allclose(C @ C.T, vcov, rtol=1e-12)
    z1 = np.array([0.2, 0.5, -1.5, 0.1])
    np.testing.assert_allclose(white.to_z(white.to_x(z1)), z1, rtol=1e-12)
    # the gradient over z by the chain rule: that of a function of x, through C
    g_x = np.array([0.3, 2.0, -1.0, 0.5])
    fg_z = white.value_and_gradient(lambda x: (float(g_x @ x), g_x.copy()))
    value, g_z = fg_z(z1)
    assert value == pytest.approx(g_x @ white.to_x(z1))
    np.testing.assert_allclose(g_z, [0.3, *(C.T @ g_x[1:3]), 0.5], rtol=1e-12)
    # a covariance that is not positive definite falls back to the standard errors
    flat = Whitening(1, beta1, np.array([[4.0, 3.0], [3.0, 1.0]]))
    np.testing.assert_allclose(flat.to_x(np.array([0.0, 1.0, 1.0, 0.0]))[1:3],
                               beta1 + np.array([2.0, 1.0]))


def test_theta_scaling_makes_the_profiled_curvature_two():
    """On a quadratic deviance whose beta block is ``2 vcov^-1``, theta's columns by
    forward differences give ``K = -H_bb^-1 H_bt`` and scales (powers of 2) under
    which the Hessian over ``z`` is ``2`` on theta's diagonal, with no theta-beta
    coupling; the start maps to itself exactly, and an unusable parameter stays."""
    from glmmcore.fitting.whitening import Whitening

    vcov = np.array([[0.5, 0.1], [0.1, 0.25]])
    H = np.zeros((5, 5))
    H[2:4, 2:4] = 2.0 * np.linalg.inv(vcov)
    H[:2, :2] = [[4051.0, 20.0], [20.0, 515.0]]
    H[0, 2:4] = H[2:4, 0] = [60.0, 48.0]
    H[1, 2:4] = H[2:4, 1] = [-2.6, 28.6]
    H[4, 4] = 3.0
    x1 = np.array([0.7, 0.05, 1.0, -2.0, 0.3])
    grad = lambda x: H @ (x - x1) + 1.0               # noqa: E731
    white = Whitening(2, x1[2:4], vcov)
    taken = white.scale_theta(lambda x: (0.0, grad(x)), x1, grad(x1),
                              np.array([True, True]), 1e-4)
    assert taken == 2
    K = -np.linalg.solve(H[2:4, 2:4], H[2:4, :2])
    np.testing.assert_allclose(white.K, K, rtol=1e-9)
    profiled = np.diag(H[:2, :2] + H[:2, 2:4] @ K)
    assert np.all(np.log2(white.scale) == np.round(np.log2(white.scale)))
    z_curvature = white.scale ** 2 * profiled
    assert np.all((z_curvature > 2.0 / np.sqrt(2.0)) & (z_curvature < 2.0 * np.sqrt(2.0)))
    T = np.column_stack([white.to_x(np.eye(5)[k]) - white.to_x(np.zeros(5))
                         for k in range(5)])
    Hz = T.T @ H @ T
    np.testing.assert_allclose(Hz[:2, 2:4], 0.0, atol=1e-9)
    np.testing.assert_allclose(Hz[2:4, 2:4], 2.0 * np.eye(2), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(white.to_x(white.to_z(x1)), x1)
    # the gradient over z is T' times that over x
    fg_z = white.value_and_gradient(lambda x: (0.0, grad(x)))
    z = np.array([0.3, -1.0, 0.2, 0.4, 0.1])
    np.testing.assert_allclose(fg_z(z)[1], T.T @ grad(white.to_x(z)), rtol=1e-12)
    np.testing.assert_array_equal(white.lower_z(np.array([0.0, -np.inf, -np.inf, -np.inf,
                                                           -np.inf]))[:2], [0.0, -np.inf])
    # a parameter left out keeps s = 1, K = 0; so does one whose curvature is negative
    kept = Whitening(2, x1[2:4], vcov)
    kept.scale_theta(lambda x: (0.0, grad(x)), x1, grad(x1), np.array([False, True]), 1e-4)
    assert kept.scale[0] == 1.0 and np.all(kept.K[:, 0] == 0.0) and kept.scale[1] != 1.0
    H[1, 1] = -5.0
    flat = Whitening(2, x1[2:4], vcov)
    flat.scale_theta(lambda x: (0.0, grad(x)), x1, grad(x1), np.array([True, True]), 1e-4)
    assert flat.scale[1] == 1.0 and np.all(flat.K[:, 1] == 0.0)


def test_lbfgsb_driver_takes_scipys_path_exactly():
    """The direct loop around scipy's compiled L-BFGS-B gives ``minimize``'s iterates bit
    for bit: a Rosenbrock valley with one bound active at the optimum and one not."""
    def rosenbrock(x):
        a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
        f = float(np.sum(100.0 * a ** 2 + b ** 2))
        g = np.zeros_like(x)
        g[:-1] = -400.0 * x[:-1] * a - 2.0 * b
        g[1:] += 200.0 * a
        return f, g

    lower = np.array([-np.inf, 1.2, -np.inf, -np.inf])
    paths = []
    for driver in (run_lbfgsb, _minimize_lbfgsb):
        seen = []

        def objective(x, seen=seen):
            seen.append(x.copy())
            return rosenbrock(x)
        message = driver(objective, np.array([-1.0, 1.5, 0.5, 2.0]), lower, 1e-12, 1e-5, 10_000)
        paths.append((message, np.array(seen)))
    (message, path), (scipy_message, scipy_path) = paths
    assert message == scipy_message and message.startswith("convergence")
    assert path.shape == scipy_path.shape and np.array_equal(path, scipy_path)
    assert path[-1][1] == pytest.approx(1.2) and path.shape[0] > 10, path.shape


@pytest.mark.parametrize("grain", [1e-6, 1e-8])
def test_lbfgsb_stops_where_the_gradient_vanishes_within_round_off_of_the_best(grain):
    """A value flat to round-off near the optimum: scipy's line search rejects points that
    are not lower; the driver stops at the first whose projected gradient is below pgtol."""
    def fg(x):
        d = x - CENTER
        return 10.0 + np.ceil(0.5 * d @ A @ d / grain) * grain, A @ d

    opt = lbfgsb(fg, np.zeros(3), np.full(3, -np.inf))
    assert opt.message.endswith("within round-off of the best value")
    assert np.max(np.abs(A @ (opt.x - CENTER))) <= LBFGSB_GTOL
    assert opt.fun <= 10.0 + grain


def test_bobyqa_starts_on_a_bound_its_start_is_within_round_off_of():
    """nlopt's BOBYQA moves a start closer to its bound than the initial step to bound +
    step; a start 1e-16 above the bound (L-BFGS-B's arithmetic) is taken on it."""
    seen = []

    def f(x):
        seen.append(x.copy())
        return float(np.sum((x - 1.0) ** 2))
    bobyqa(f, np.array([1.0, 1e-16, 0.05]), np.zeros(3), maxeval=1)
    np.testing.assert_array_equal(seen[0], [1.0, 0.0, 0.1])


def test_a_fit_imports_neither_scipy_linalg_nor_scipy_optimize():
    """Their packages cost ~1.2 s of a fresh process's first fit; glmmcore loads the three
    compiled modules it needs on their own (glmmcore.linalg.scipy_ext), L-BFGS-B included."""
    import subprocess
    import sys
    code = ("import sys, numpy as np, pandas as pd, glmmcore\n"
            "rng = np.random.default_rng(1)\n"
            "g = np.repeat(np.arange(30), 10); x = rng.normal(size=300)\n"
            "y = x + rng.normal(size=30)[g] + rng.normal(scale=0.5, size=30)[g] * x"
            " + rng.normal(size=300)\n"
            "fit = glmmcore.fit('y ~ x + (1 + x | g)', pd.DataFrame(dict(y=y, x=x, g=g)),"
            " control={'optimizer': 'lbfgsb'})\n"
            "assert 'L-BFGS-B' in fit.convergence.optimizer[0]\n"
            "print(sorted(m for m in ('scipy.linalg', 'scipy.optimize', 'scipy.sparse')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_registered_optimizer_fits_the_model(monkeypatch):
    """An optimizer is a function and a registry entry: Nelder-Mead registered by name
    fits an LMM and a GLMM's joint stage to the default optimum, its message in the fit."""
    from scipy.optimize import minimize

    from glmmcore.fitting.optimizers import OPTIMIZERS, Optimizer, OptimResult

    def nelder_mead(f, x0, lower, *, rel_tol, x_tol, maxeval, initial_step=None):
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(f, x0, method="Nelder-Mead", bounds=bounds,
                       options={"xatol": 1e-9, "fatol": 1e-12, "maxfev": maxeval})
        return OptimResult(np.asarray(res.x), float(res.fun), int(res.nfev), "done")

    monkeypatch.setitem(OPTIMIZERS, "nelder_mead", Optimizer("nelder_mead", nelder_mead, False))
    sim = glmmcore.simulate("gpa", n_students=60, seed=3)
    default = glmmcore.fit(sim.formula, sim.data)
    fit = glmmcore.fit(sim.formula, sim.data, control={"optimizer": "nelder_mead"})
    assert fit.loglik == pytest.approx(default.loglik, rel=1e-7)
    assert fit.convergence.optimizer[0].startswith("nelder_mead: done after")
    pois = glmmcore.simulate("patents", n_patents=600, seed=1)
    base = glmmcore.fit(pois.formula, pois.data, family="poisson")
    other = glmmcore.fit(pois.formula, pois.data, family="poisson",
                         control={"optimizer": "nelder_mead"})
    assert other.loglik == pytest.approx(base.loglik, rel=1e-7)
    assert any(m.startswith("stage 2 (nAGQ=1) nelder_mead") for m in other.convergence.optimizer)
    with pytest.raises(glmmcore.ArgumentError, match="nelder_mead"):
        monkeypatch.delitem(OPTIMIZERS, "nelder_mead")
        glmmcore.fit(sim.formula, sim.data, control={"optimizer": "nelder_mead"})
