"""Exact profiled (RE)ML for nested linear mixed models from sufficient statistics.

Write ``V = σ² M`` with ``M = I + Σ_l Z_l (I ⊗ Λ_l) Z_lᵀ`` and ``Λ_l = T_l T_lᵀ`` (the
relative covariance of level l's random effects, with lme4's parameter θ the
lower-triangular entries of the ``T_l``). For a lowest-level group,
``M_g = I + Z_g Λ Z_gᵀ`` and by Woodbury, for any columns U, W of ``D``,
``UᵀM_g⁻¹W = UᵀW − UᵀZ T C⁻¹ TᵀZᵀW`` with ``C = I + TᵀZᵀZT`` and
``log|M_g| = log|C|``. Summing the reduced cross-products of the children gives the
same quantities for ``B = blockdiag(M_g)`` at the parent level, where the next level's
``Z`` enters by the same update. After the top level the totals give ``XᵀM⁻¹X``,
``XᵀM⁻¹y``, ``yᵀM⁻¹y`` and ``log|M|``, hence lme4's profiled deviance:

REML: ``log|M| + log|XᵀM⁻¹X| + (n − p)(1 + log(2π r/(n − p)))``;
ML: ``log|M| + n(1 + log(2π r/n))``, with ``r = yᵀM⁻¹y − β̂ᵀXᵀM⁻¹y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from evalkit.multilevel.stats import SufficientStats


@dataclass(frozen=True)
class ThetaLayout:
    """Where each element of θ sits: (level, row, column) of that level's T."""

    entries: tuple[tuple[int, int, int], ...]
    q: tuple[int, ...]

    @classmethod
    def build(cls, blocks_per_level: list[list[int]]) -> ThetaLayout:
        """Lower triangles of the diagonal blocks of each level, column-major (as lme4)."""
        entries = []
        q = []
        for level, blocks in enumerate(blocks_per_level):
            start = 0
            for size in blocks:
                for col in range(size):
                    for row in range(col, size):
                        entries.append((level, start + row, start + col))
                start += size
            q.append(start)
        return cls(tuple(entries), tuple(q))

    @property
    def lower_bounds(self) -> list[float | None]:
        """Diagonal entries of T are non-negative; the rest are free."""
        return [0.0 if row == col else None for _, row, col in self.entries]

    def start(self) -> np.ndarray:
        """lme4's starting point: identity relative factors."""
        return np.array([1.0 if row == col else 0.0 for _, row, col in self.entries])

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """The T matrix of every level."""
        out = [np.zeros((size, size)) for size in self.q]
        for value, (level, row, col) in zip(theta, self.entries, strict=True):
            out[level][row, col] = value
        return out


@dataclass(frozen=True)
class Reduction:
    """Totals after the recursion, at one θ."""

    logdet: float
    xtmx: np.ndarray
    xtmy: np.ndarray
    ytmy: float


def reduce(stats: SufficientStats, factors: list[np.ndarray]) -> Reduction:
    """Run the recursive Woodbury reduction from the lowest level to the top."""
    cross = stats.cross
    logdet = 0.0
    last = len(factors) - 1
    for level, t in enumerate(factors):
        q = t.shape[0]
        zz = cross[:, :q, :q]
        zw = cross[:, :q, q:]
        c = np.eye(q) + t.T @ zz @ t
        chol = np.linalg.cholesky(c)
        logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        tw = t.T @ zw
        solved = np.linalg.solve(c, tw)
        cross = cross[:, q:, q:] - np.swapaxes(tw, 1, 2) @ solved
        if level < last:
            cross = np.add.reduceat(cross, stats.starts[level], axis=0)
    total = cross.sum(axis=0)
    p = stats.p
    return Reduction(logdet, total[:p, :p], total[:p, p], float(total[p, p]))


@dataclass(frozen=True)
class Profile:
    """Profiled quantities at θ: deviance, β̂, σ̂² and (XᵀM⁻¹X)⁻¹."""

    deviance: float
    beta: np.ndarray
    sigma2: float
    xtmx_inv: np.ndarray


def profile(stats: SufficientStats, factors: list[np.ndarray], *, reml: bool) -> Profile:
    """lme4's profiled deviance (REML criterion or −2 log-likelihood) at θ."""
    red = reduce(stats, factors)
    chol = np.linalg.cholesky(red.xtmx)
    beta = np.linalg.solve(red.xtmx, red.xtmy)
    rss = red.ytmy - float(beta @ red.xtmy)
    n, p = stats.n, stats.p
    if reml:
        dof = n - p
        logdet_x = 2.0 * float(np.log(np.diag(chol)).sum())
        deviance = red.logdet + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * rss / dof))
    else:
        dof = n
        deviance = red.logdet + n * (1.0 + np.log(2.0 * np.pi * rss / n))
    return Profile(float(deviance), beta, rss / dof, np.linalg.inv(red.xtmx))


@dataclass(frozen=True)
class Optimum:
    """The optimiser's result and the checks of it."""

    theta: np.ndarray
    deviance: float
    iterations: int
    gradient_norm: float
    converged: bool
    attempts: tuple[str, ...]


def optimise(stats: SufficientStats, layout: ThetaLayout, *, reml: bool) -> Optimum:
    """Minimise the profiled deviance over θ (bounded: diagonals of T ≥ 0).

    L-BFGS-B with central-difference gradients, then Newton steps with a
    finite-difference Hessian on the interior coordinates. The optimum is accepted
    when the projected gradient is below tolerance; otherwise the fit restarts from
    other points (lme4's allFit idea) and keeps the best, reporting every attempt.
    """

    def objective(theta: np.ndarray) -> float:
        return profile(stats, layout.factors(theta), reml=reml).deviance

    lower = np.array([-np.inf if low is None else low for low in layout.lower_bounds])
    bounds = [(low, None) for low in layout.lower_bounds]
    attempts: list[str] = []
    best_theta: np.ndarray | None = None
    best_value = np.inf
    iterations = 0
    norm = np.inf
    for start_scale in (1.0, 0.1, 3.0):
        start = layout.start() * start_scale
        first = optimize.minimize(
            objective, start, jac=lambda t: _gradient(objective, t, lower), method="L-BFGS-B",
            bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
        )  # fmt: skip
        theta, value, steps = _newton(objective, np.asarray(first.x), lower)
        iterations += int(first.nit) + steps
        norm = _projected_norm(_gradient(objective, theta, lower), theta, lower)
        attempts.append(f"start x{start_scale}: deviance {value:.10g}, gradient {norm:.1e}")
        if value < best_value - 1e-10:
            best_theta, best_value = theta, value
        if norm < GRADIENT_TOL:
            break
    assert best_theta is not None
    norm = _projected_norm(_gradient(objective, best_theta, lower), best_theta, lower)
    return Optimum(
        best_theta, float(best_value), iterations, norm, norm < GRADIENT_TOL, tuple(attempts)
    )


GRADIENT_TOL = 1e-3
"""Largest acceptable projected gradient of the deviance at the optimum."""


def _gradient(objective: object, theta: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Central differences (forward at a lower bound)."""
    grad = np.empty_like(theta)
    for k in range(theta.size):
        step = 1e-6 * max(1.0, abs(theta[k]))
        up = theta.copy()
        up[k] += step
        down = theta.copy()
        down[k] -= step
        if down[k] < lower[k]:
            grad[k] = (objective(up) - objective(theta)) / step  # type: ignore[operator]
        else:
            grad[k] = (objective(up) - objective(down)) / (2 * step)  # type: ignore[operator]
    return grad


def _projected_norm(grad: np.ndarray, theta: np.ndarray, lower: np.ndarray) -> float:
    """Gradient norm ignoring coordinates held at their bound by a positive slope."""
    held = (theta <= lower + 1e-10) & (grad > 0)
    return float(np.max(np.abs(np.where(held, 0.0, grad)), initial=0.0))


def _newton(
    objective: object, theta: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, float, int]:
    """Newton steps on the interior coordinates with a finite-difference Hessian."""
    value = float(objective(theta))  # type: ignore[operator]
    for step_count in range(1, 11):
        grad = _gradient(objective, theta, lower)
        free = ~((theta <= lower + 1e-10) & (grad > 0))
        if not free.any():
            return theta, value, step_count
        index = np.flatnonzero(free)
        hess = np.empty((index.size, index.size))
        for a, k in enumerate(index):
            h = 1e-4 * max(1.0, abs(theta[k]))
            up, down = theta.copy(), theta.copy()
            up[k] += h
            down[k] = max(lower[k], theta[k] - h)
            width = up[k] - down[k]
            hess[:, a] = (
                _gradient(objective, up, lower)[index] - _gradient(objective, down, lower)[index]
            ) / width
        hess = 0.5 * (hess + hess.T)
        try:
            np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return theta, value, step_count
        direction = np.zeros_like(theta)
        direction[index] = -np.linalg.solve(hess, grad[index])
        size = 1.0
        while size > 1e-6:
            candidate = np.maximum(theta + size * direction, lower)
            trial = float(objective(candidate))  # type: ignore[operator]
            if trial <= value:
                break
            size /= 2
        else:
            return theta, value, step_count
        change = float(np.max(np.abs(candidate - theta)))
        theta, value = candidate, trial
        if change < 1e-10:
            return theta, value, step_count
    return theta, value, 10
