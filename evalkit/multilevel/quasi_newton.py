"""Bounded quasi-Newton steps for a smooth function with an exact gradient, started
near the optimum (the crossed engine's EM start).

From a good start, a Hessian taken once by forward differences of the exact gradient
(k gradient evaluations) and then kept current by BFGS updates converges in two or
three steps; L-BFGS-B, which starts from the identity, spends twice the evaluations
finding the scale. With two parameters and a function value that costs about half a
gradient (the crossed engine: a factorisation without the inverse), the Hessian
comes from three values instead (second differences around the start). Coordinates
at their lower bound with an outward gradient are held fixed (the deviance is even in
each θ, so 0 is a stationary point of a boundary fit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FunAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class QuasiNewtonResult:
    """Where the steps ended and whether the gradient test was met."""

    theta: np.ndarray
    value: float
    gradient: np.ndarray
    evaluations: int
    converged: bool


def _free(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    return ~((theta <= lower + 1e-10) & (grad > 0))


def projected_norm(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> float:
    """Largest gradient component not held by its bound."""
    return float(np.max(np.abs(np.where(_free(theta, grad, lower), grad, 0.0)), initial=0.0))


def quasi_newton(
    fun_and_grad: FunAndGrad,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tolerance: Callable[[float], float],
    *,
    max_steps: int = 25,
    fun: Callable[[np.ndarray], float] | None = None,
) -> QuasiNewtonResult:
    """Minimise from ``start``; stop when the projected gradient is below
    ``tolerance(value)``. ``converged`` is False when it is not reached (the caller
    falls back to a global method). ``fun`` (the value alone), when given, is used for
    the first Hessian of a two-parameter problem whose start is away from the bounds."""
    theta = np.clip(np.asarray(start, dtype=float), lower, upper)
    value, grad = fun_and_grad(theta)
    evaluations = 1
    if not np.isfinite(value):
        return QuasiNewtonResult(theta, value, grad, evaluations, False)
    k = theta.size
    steps = 1e-3 * np.maximum(np.abs(theta), 1e-2)
    hess = None
    if fun is not None and k == 2 and np.all(theta - lower > 50 * steps):
        hess = _hessian_from_values(fun, theta, value, grad, steps)
        evaluations += 3
    if hess is None:
        hess = np.empty((k, k))
        for i in range(k):
            shifted = theta.copy()
            shifted[i] += steps[i]
            hess[:, i] = (fun_and_grad(shifted)[1] - grad) / steps[i]
            evaluations += 1
        hess = 0.5 * (hess + hess.T)
    for _ in range(max_steps):
        if projected_norm(theta, grad, lower) < tolerance(value):
            return QuasiNewtonResult(theta, value, grad, evaluations, True)
        free = _free(theta, grad, lower)
        sub = hess[np.ix_(free, free)]
        try:
            np.linalg.cholesky(sub)
            direction = np.zeros(k)
            direction[free] = -np.linalg.solve(sub, grad[free])
        except np.linalg.LinAlgError:
            return QuasiNewtonResult(theta, value, grad, evaluations, False)
        size = 1.0
        while True:
            candidate = np.clip(theta + size * direction, lower, upper)
            trial, trial_grad = fun_and_grad(candidate)
            evaluations += 1
            if np.isfinite(trial) and projected_norm(candidate, trial_grad, lower) < tolerance(
                trial
            ):
                # at the optimum: the values differ by rounding only (1e-14 relative
                # on large data), so the decrease test would reject the step on noise
                return QuasiNewtonResult(candidate, trial, trial_grad, evaluations, True)
            slack = 1e-13 * abs(value)
            if (
                np.isfinite(trial)
                and trial <= value + 1e-4 * size * float(grad @ direction) + slack
            ):
                break
            size /= 2
            if size < 1e-6:
                return QuasiNewtonResult(theta, value, grad, evaluations, False)
        s = candidate - theta
        y = trial_grad - grad
        if float(s @ y) > 1e-12 * float(s @ s):  # BFGS keeps the matrix positive definite
            hs = hess @ s
            hess = hess - np.outer(hs, hs) / float(s @ hs) + np.outer(y, y) / float(s @ y)
        theta, value, grad = candidate, trial, trial_grad
    converged = projected_norm(theta, grad, lower) < tolerance(value)
    return QuasiNewtonResult(theta, value, grad, evaluations, converged)


def _hessian_from_values(
    fun: Callable[[np.ndarray], float],
    theta: np.ndarray,
    value: float,
    grad: np.ndarray,
    steps: np.ndarray,
) -> np.ndarray | None:
    """The Hessian of a two-parameter function from its value and gradient at θ and
    three values nearby: ``f(θ + hᵢeᵢ)`` give the diagonal, ``f(θ + h₁e₁ + h₂e₂)`` the
    cross term (None if a value is not finite)."""
    h1, h2 = steps
    f1 = fun(theta + np.array([h1, 0.0]))
    f2 = fun(theta + np.array([0.0, h2]))
    f12 = fun(theta + steps)
    if not np.all(np.isfinite([f1, f2, f12])):
        return None
    d1 = 2.0 * (f1 - value - grad[0] * h1) / h1**2
    d2 = 2.0 * (f2 - value - grad[1] * h2) / h2**2
    cross = (f12 - value - grad @ steps - 0.5 * (d1 * h1**2 + d2 * h2**2)) / (h1 * h2)
    return np.array([[d1, cross], [cross, d2]])
