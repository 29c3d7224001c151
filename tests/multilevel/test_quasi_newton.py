"""The bounded quasi-Newton steps used from the crossed engine's EM start."""

from __future__ import annotations

import numpy as np

from evalkit.multilevel.quasi_newton import projected_norm, quasi_newton


def _quadratic(center: np.ndarray, matrix: np.ndarray):  # type: ignore[no-untyped-def]
    def fun_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x - center
        return float(d @ matrix @ d), 2 * matrix @ d

    return fun_and_grad


def test_reaches_an_interior_minimum_in_few_evaluations() -> None:
    matrix = np.array([[3.0, 1.0], [1.0, 2.0]])
    fg = _quadratic(np.array([0.3, 0.7]), matrix)
    result = quasi_newton(fg, np.array([0.35, 0.6]), np.zeros(2), np.full(2, 10.0), lambda v: 1e-10)
    assert result.converged
    np.testing.assert_allclose(result.theta, [0.3, 0.7], atol=1e-9)
    assert result.evaluations <= 6  # 1 + 2 (difference Hessian) + a Newton step or two


def test_holds_a_coordinate_at_its_bound() -> None:
    """The minimum of the unconstrained quadratic has x0 < 0: the answer is on the bound."""
    matrix = np.eye(2)
    fg = _quadratic(np.array([-0.5, 0.4]), matrix)
    result = quasi_newton(fg, np.array([0.2, 0.2]), np.zeros(2), np.full(2, 10.0), lambda v: 1e-10)
    assert result.converged
    np.testing.assert_allclose(result.theta, [0.0, 0.4], atol=1e-9)
    assert projected_norm(result.theta, result.gradient, np.zeros(2)) < 1e-10


def test_reports_failure_instead_of_a_false_optimum() -> None:
    """A concave start (negative curvature) is not a minimum: converged is False, so the
    engine falls back to its global method."""

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(-(x @ x)), -2 * x

    result = quasi_newton(fg, np.array([0.5, 0.5]), np.zeros(2), np.full(2, 10.0), lambda v: 1e-10)
    assert not result.converged


def test_hessian_from_values_is_the_hessian_of_a_quadratic() -> None:
    """Two parameters with a value function: three values replace the two gradient
    evaluations of the difference Hessian, and the steps still land on the minimum."""
    matrix = np.array([[3.0, 1.0], [1.0, 2.0]])
    fg = _quadratic(np.array([0.3, 0.7]), matrix)
    values: list[np.ndarray] = []

    def fun(x: np.ndarray) -> float:
        values.append(x)
        return fg(x)[0]

    result = quasi_newton(
        fg, np.array([0.35, 0.6]), np.zeros(2), np.full(2, 10.0), lambda v: 1e-10, fun=fun
    )
    assert result.converged
    assert len(values) == 3
    np.testing.assert_allclose(result.theta, [0.3, 0.7], atol=1e-9)
    # a quadratic's second differences are exact: one Newton step reaches the minimum
    assert result.evaluations == 1 + 3 + 1


def test_values_are_not_used_next_to_a_bound() -> None:
    """Within 50 difference steps of a bound the gradient differences are used (second
    differences of a flat deviance near 0 are noise)."""
    matrix = np.eye(2)
    fg = _quadratic(np.array([0.3, 0.4]), matrix)
    calls: list[float] = []

    def fun(x: np.ndarray) -> float:
        calls.append(1.0)
        return fg(x)[0]

    quasi_newton(fg, np.array([1e-6, 0.5]), np.zeros(2), np.full(2, 10.0), lambda v: 1e-10, fun=fun)
    assert not calls
