"""Numerical derivatives for likelihoods without closed-form ones (selection and
multivariate models): central differences with one Richardson extrapolation, accurate
to O(h⁴) as numDeriv's default (Gilbert & Varadhan, numDeriv 2019) with r = 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Function = Callable[[np.ndarray], float]


def gradient(
    fun: Function,
    theta: np.ndarray,
    free: np.ndarray,
    steps: np.ndarray,
    *,
    richardson: bool = True,
) -> np.ndarray:
    """Central differences over the free coordinates, with one Richardson extrapolation
    unless ``richardson`` is False (half the evaluations, O(h²) error: enough to steer
    an optimiser whose result is then polished)."""
    f = fun
    g = np.zeros(theta.size)
    for j in np.flatnonzero(free):
        h = steps[j]
        e = np.zeros(theta.size)
        e[j] = h
        d1 = (f(theta + e) - f(theta - e)) / (2 * h)
        if not richardson:
            g[j] = d1
            continue
        d2 = (f(theta + e / 2) - f(theta - e / 2)) / h
        with np.errstate(invalid="ignore"):
            g[j] = (4 * d2 - d1) / 3
    return g


def hessian(fun: Function, theta: np.ndarray, free: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Second differences with one Richardson extrapolation (as numDeriv's, to O(h⁴))."""
    f = fun
    idx = np.flatnonzero(free)
    out = np.zeros((idx.size, idx.size))

    def second(a: Any, b: Any, scale: float) -> float:
        ea = np.zeros(theta.size)
        eb = np.zeros(theta.size)
        ea[a] = steps[a] * scale
        eb[b] = steps[b] * scale
        if a == b:
            return float((f(theta + ea) - 2 * f(theta) + f(theta - ea)) / ea[a] ** 2)
        return float(
            (f(theta + ea + eb) - f(theta + ea - eb) - f(theta - ea + eb) + f(theta - ea - eb))
            / (4 * ea[a] * eb[b])
        )

    for i, a in enumerate(idx):
        for j, b in enumerate(idx[: i + 1]):
            value = (4 * second(a, b, 0.5) - second(a, b, 1.0)) / 3
            out[i, j] = out[j, i] = value
    return out


def newton_ascent(
    loglik: Function,
    theta: np.ndarray,
    *,
    free_at: Callable[[np.ndarray], np.ndarray],
    steps_at: Callable[[np.ndarray], np.ndarray],
    scale: np.ndarray,
    tolerance: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    iterations: int = 30,
) -> tuple[np.ndarray, float, float]:
    """Newton steps with step halving on the coordinates ``free_at(theta)`` until the
    largest scaled gradient falls below ``tolerance`` (or the Hessian stops being
    negative definite); returns θ, ℓ(θ) and that largest scaled gradient."""
    low = np.full(theta.size, -np.inf) if lower is None else lower
    high = np.full(theta.size, np.inf) if upper is None else upper
    current = loglik(theta)
    norm = np.inf
    for _ in range(iterations):
        free = free_at(theta)
        if not free.any():
            return theta, current, 0.0
        steps = steps_at(theta)
        g = gradient(loglik, theta, free, steps)[free]
        norm = float(np.max(np.abs(g * scale[free])))
        if norm < tolerance:
            break
        h = hessian(loglik, theta, free, steps)
        try:
            if np.all(np.linalg.eigvalsh(-h) > 0):
                move = np.linalg.solve(-h, g)
            else:  # not concave here: a scaled gradient step, with the line search below
                move = g * scale[free] ** 2 / max(float(np.max(np.abs(g * scale[free]))), 1e-300)
        except np.linalg.LinAlgError:
            break
        size = 1.0
        while size > 1e-6:
            trial = theta.copy()
            trial[free] += size * move
            trial = np.clip(trial, low, high)
            value = loglik(trial)
            if value >= current - 1e-12 * abs(current):
                theta, current = trial, value
                break
            size /= 2
        else:
            break
    return theta, current, norm
