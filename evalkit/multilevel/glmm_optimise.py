"""Maximum likelihood for a GLMM: the Laplace (or AGQ) deviance minimised over (θ, β).

As glmer's second stage (``nAGQ ≥ 1``), the optimiser works on θ and β together, the
random effects integrated out at every evaluation. L-BFGS-B with central-difference
gradients finds the neighbourhood; Newton steps with a Richardson-extrapolated Hessian
then settle the optimum, and the same Hessian gives the covariance of β̂
(``[2H⁻¹]_β``, lme4's ``vcov(use.hessian = TRUE)``). The optimum is accepted only when
the projected gradient is small and the Hessian on the free coordinates is positive
definite; otherwise the fit restarts from other values of θ and keeps the best,
reporting every attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from evalkit.multilevel.families import Family

Objective = Callable[[np.ndarray], float]

BETA_LIMIT = 1e4
"""Bound on |β| and |θ|: beyond it a logit coefficient means separation, not an estimate."""
DECREMENT_TOL = 1e-9
"""Newton decrement (deviance units) below which the optimum is accepted."""


@dataclass(frozen=True)
class GLMMOptimum:
    """The optimum of the (θ, β) deviance and the checks of it."""

    par: np.ndarray
    deviance: float
    gradient: np.ndarray
    hessian: np.ndarray
    free: np.ndarray
    evaluations: int
    converged: bool
    positive_definite: bool
    attempts: tuple[str, ...]

    @property
    def gradient_norm(self) -> float:
        """Largest |gradient| over the free coordinates."""
        return float(np.max(np.abs(self.gradient[self.free]))) if self.free.any() else 0.0


def glm_start(
    x: np.ndarray, y: np.ndarray, trials: np.ndarray, offset: np.ndarray, family: Family
) -> tuple[np.ndarray, bool]:
    """β of the fixed-effects GLM (Fisher scoring), the start of the mixed fit, and
    whether scoring converged: it does unless the GLM's estimate does not exist
    (separation), when some coefficients grow without end."""
    beta = np.zeros(x.shape[1])
    mean = (y.sum() + 0.5) / (trials.sum() + 1.0)
    if family.link == "log":
        beta_0 = np.log(max(mean, 1e-8)) - float(np.mean(offset))
    elif family.link == "logit":
        beta_0 = float(np.log(mean / (1 - mean)))
    else:
        beta_0 = 0.0
    intercept = np.flatnonzero(np.all(x == 1.0, axis=0))
    if intercept.size:
        beta[intercept[0]] = beta_0
    for _ in range(50):
        eta = offset + x @ beta
        terms = family.terms(eta, y, trials)
        info = x.T @ (terms.weight[:, None] * x)
        step = np.linalg.lstsq(info, x.T @ terms.score, rcond=None)[0]
        beta = np.clip(beta + step, -50.0, 50.0)
        if np.max(np.abs(step)) < 1e-8:
            return beta, True
    return beta, False


def steps_for(par: np.ndarray) -> np.ndarray:
    """Difference steps: 1e-3 relative, 1e-3 absolute near zero."""
    return 1e-3 * np.maximum(np.abs(par), 1.0)


def gradient(objective: Objective, par: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Central differences, Richardson-extrapolated (steps h and h/2) on free coordinates."""
    grad = np.zeros_like(par)
    steps = steps_for(par)
    for k in np.flatnonzero(free):
        estimates = []
        for h in (steps[k], steps[k] / 2):
            up, down = par.copy(), par.copy()
            up[k] += h
            down[k] -= h
            estimates.append((objective(up) - objective(down)) / (2 * h))
        grad[k] = (4 * estimates[1] - estimates[0]) / 3
    return grad


def hessian(objective: Objective, par: np.ndarray, free: np.ndarray, centre: float) -> np.ndarray:
    """Second differences of the deviance, Richardson-extrapolated, on free coordinates
    (zero rows and columns elsewhere)."""
    k = par.size
    out = np.zeros((k, k))
    index = np.flatnonzero(free)
    base = steps_for(par)
    levels = []
    for scale in (1.0, 0.5):
        h = base * scale
        part = np.zeros((k, k))
        for i in index:
            up, down = par.copy(), par.copy()
            up[i] += h[i]
            down[i] -= h[i]
            part[i, i] = (objective(up) - 2 * centre + objective(down)) / h[i] ** 2
        for a, i in enumerate(index):
            for j in index[a + 1 :]:
                values = []
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    point = par.copy()
                    point[i] += si * h[i]
                    point[j] += sj * h[j]
                    values.append(objective(point))
                part[i, j] = part[j, i] = (values[0] - values[1] - values[2] + values[3]) / (
                    4 * h[i] * h[j]
                )
        levels.append(part)
    out = (4 * levels[1] - levels[0]) / 3
    return out


def step_scale(start_gradient: np.ndarray) -> float:
    """The factor L-BFGS-B's deviance is multiplied by: its first step is the negative
    gradient (no curvature known yet), which on 200,000 rows moves a coefficient by
    thousands and sends PIRLS to fitted probabilities of 0 and 1; scaled so the
    largest gradient entry is 1, the first step moves each coordinate (θ, or a
    coefficient in SD units of its column) by at most 1."""
    largest = float(np.max(np.abs(start_gradient))) if start_gradient.size else 0.0
    return 1.0 / largest if np.isfinite(largest) and largest > 1.0 else 1.0


class Differences:
    """Derivatives of the deviance by differences of its values (any link, AGQ)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def value(self, par: np.ndarray) -> float:
        """The deviance."""
        return self.objective(par)

    def lbfgs(self, start: np.ndarray) -> dict[str, object]:
        """How L-BFGS-B gets the deviance and gradient: three-point differences on the
        deviance scaled as in :func:`step_scale`."""
        factor = step_scale(self.gradient(start, np.ones(start.size, dtype=bool)))

        def scaled(par: np.ndarray) -> float:
            return factor * self.objective(par)

        return {"fun": scaled, "jac": "3-point"}

    def gradient(self, par: np.ndarray, free: np.ndarray) -> np.ndarray:
        """The gradient on the free coordinates."""
        return gradient(self.objective, par, free)

    def hessian(self, par: np.ndarray, free: np.ndarray, centre: float) -> np.ndarray:
        """The Hessian on the free coordinates."""
        return hessian(self.objective, par, free, centre)


class ExactGradient(Differences):
    """An exact gradient: the Hessian from central differences of it (Richardson), in
    ``4k`` gradient evaluations instead of ``4k²`` deviances."""

    def __init__(self, fun_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> None:
        self.fun_and_grad = fun_and_grad
        super().__init__(lambda par: fun_and_grad(par)[0])

    def lbfgs(self, start: np.ndarray) -> dict[str, object]:
        """L-BFGS-B with the exact gradient, on the scaled deviance."""
        factor = step_scale(self.fun_and_grad(start)[1])

        def scaled(par: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = self.fun_and_grad(par)
            return factor * value, factor * grad

        return {"fun": scaled, "jac": True}

    def gradient(self, par: np.ndarray, free: np.ndarray) -> np.ndarray:
        """The exact gradient (zero on fixed coordinates)."""
        return np.where(free, self.fun_and_grad(par)[1], 0.0)

    def hessian(self, par: np.ndarray, free: np.ndarray, centre: float) -> np.ndarray:
        """Central differences of the gradient, Richardson-extrapolated, symmetrised."""
        k = par.size
        index = np.flatnonzero(free)
        base = steps_for(par)
        levels = []
        for scale in (1.0, 0.5):
            part = np.zeros((k, k))
            for i in index:
                h = base[i] * scale
                up, down = par.copy(), par.copy()
                up[i] += h
                down[i] -= h
                part[i, index] = (
                    self.fun_and_grad(up)[1][index] - self.fun_and_grad(down)[1][index]
                ) / (2 * h)
            levels.append(part)
        out = (4 * levels[1] - levels[0]) / 3
        return 0.5 * (out + out.T)


def minimise(
    derivatives: Differences,
    starts: list[tuple[str, np.ndarray]],
    lower: np.ndarray,
    counter: Callable[[], int],
) -> GLMMOptimum:
    """L-BFGS-B then Newton from each start until an optimum passes the checks."""
    objective = derivatives.value
    upper = np.full(lower.size, BETA_LIMIT)
    bounds = list(zip(np.maximum(lower, -BETA_LIMIT), upper, strict=True))
    attempts: list[str] = []
    best: GLMMOptimum | None = None
    queue = list(starts)
    while queue and len(attempts) < MAX_ATTEMPTS:
        label, start = queue.pop(0)
        result = optimize.minimize(
            x0=start, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 500}, **derivatives.lbfgs(start),
        )  # fmt: skip
        par = np.asarray(result.x)
        point = _newton(derivatives, par, objective(par), lower)
        par, value = point.par, point.value
        escape = _off_the_bound(objective, par, value, lower)
        if escape is not None:
            # θ on its bound is a stationary point of an even function of θ, not
            # necessarily a minimum: go on from the better interior point
            attempts.append(f"{label}: left the boundary θ = 0 (deviance {value:.10g})")
            queue.insert(0, (f"{label}, off the boundary", escape))
            continue
        free, grad, hess = point.free, point.gradient, point.hessian
        sub = hess[np.ix_(free, free)]
        try:
            np.linalg.cholesky(sub)
            definite = True
        except np.linalg.LinAlgError:
            definite = False
        norm = float(np.max(np.abs(grad[free]))) if free.any() else 0.0
        ok = definite and norm < gradient_tolerance(value)
        attempts.append(
            f"{label}: deviance {value:.10g}, gradient {norm:.1e}"
            + ("" if definite else ", Hessian not positive definite")
        )
        candidate = GLMMOptimum(par, value, grad, hess, free, counter(), ok, definite, ())
        if best is None or value < best.deviance - 1e-8:
            best = candidate
        if ok:
            break
    assert best is not None
    return GLMMOptimum(
        best.par, best.deviance, best.gradient, best.hessian, best.free, counter(),
        best.converged, best.positive_definite, tuple(attempts),
    )  # fmt: skip


MAX_ATTEMPTS = 8
"""Most optimiser runs (starts and moves off a bound) before giving up."""

BOUNDARY_PROBES = (0.01, 0.1, 0.3)
"""Values a bound coordinate of θ is moved to when checking that the bound is a minimum."""


def _off_the_bound(
    objective: Objective, par: np.ndarray, value: float, lower: np.ndarray
) -> np.ndarray | None:
    """A better point with a bound coordinate moved inside, or None. At θ_k = 0 the
    deviance has a zero derivative in θ_k whether or not 0 is its minimum, so a
    gradient test cannot tell; the deviance at a few interior values can."""
    best, best_value = None, value - 1e-9 * max(1.0, abs(value))
    for k in np.flatnonzero(par <= lower + 1e-7):
        for probe in BOUNDARY_PROBES:
            point = par.copy()
            point[k] = lower[k] + probe
            trial = objective(point)
            if trial < best_value:
                best, best_value = point, trial
    return best


def gradient_tolerance(deviance: float) -> float:
    """Largest acceptable |gradient| of the deviance at the optimum: 1e-4, or the
    rounding noise of differences on a large deviance (``1e-9·|deviance|``)."""
    return max(1e-4, 1e-9 * abs(deviance))


@dataclass(frozen=True)
class _Point:
    """A point with its deviance and derivatives on the free coordinates."""

    par: np.ndarray
    value: float
    gradient: np.ndarray
    hessian: np.ndarray
    free: np.ndarray


def _derivatives_at(
    derivatives: Differences, par: np.ndarray, value: float, lower: np.ndarray
) -> _Point:
    free = par > lower + 1e-7
    grad = derivatives.gradient(par, free)
    # a coordinate on its bound whose gradient points inside is free after all
    if not np.all(free):
        free = free | ((par <= lower + 1e-7) & (grad < 0))
        grad = derivatives.gradient(par, free)
    hess = derivatives.hessian(par, free, value)
    return _Point(par, value, grad, hess, free)


def _newton(derivatives: Differences, par: np.ndarray, value: float, lower: np.ndarray) -> _Point:
    """Newton steps on the free coordinates, halving the step until the deviance does
    not rise. Returns the last point with its derivatives: where the predicted gain of
    a further step (the Newton decrement) is below :data:`DECREMENT_TOL`, or where no
    step improves."""
    objective = derivatives.value
    point = _derivatives_at(derivatives, par, value, lower)
    for _ in range(20):
        index = np.flatnonzero(point.free)
        if index.size == 0:
            break
        hess = point.hessian[np.ix_(index, index)]
        try:
            np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            break
        direction = np.zeros_like(point.par)
        direction[index] = -np.linalg.solve(hess, point.gradient[index])
        decrement = float(-0.5 * point.gradient[index] @ direction[index])
        if decrement < DECREMENT_TOL:
            break
        size = 1.0
        while size > 1e-4:
            candidate = np.clip(point.par + size * direction, lower, BETA_LIMIT)
            trial = objective(candidate)
            if trial <= point.value:
                break
            size /= 2
        else:
            break
        point = _derivatives_at(derivatives, candidate, trial, lower)
    return point
