"""The likelihood of a p-value selection model and its maximisation.

For effect i with mean x_iβ, total variance s_i² = v_i + τ² and p-value p_i, the
weighted density is w(p_i) φ((y_i − x_iβ)/s_i)/s_i / A_i with A_i = E[w(p(Y_i))]
(Hedges 1992; Vevea & Hedges 1995). The estimates are maximum likelihood; standard
errors come from the observed information (as metafor, from a numerical Hessian of
the log-likelihood in (β, τ², δ)) or, for dependent effects, from the sandwich
H⁻¹(Σ_c g_c g_cᵀ)H⁻¹ over clusters c of the composite likelihood that treats every
effect as if it were independent (Pustejovsky, Citkowicz & Joshi 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import optimize

from evalkit.meta._numeric import gradient, newton_ascent
from evalkit.meta._selection_functions import SelectionFunction, p_values

_LOG_ROOT_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class Problem:
    """Data and selection function of one fit; ``case_weights`` are bootstrap counts."""

    y: np.ndarray
    v: np.ndarray
    x: np.ndarray
    selection: SelectionFunction
    heterogeneity: bool
    case_weights: np.ndarray

    @property
    def p(self) -> int:
        return self.x.shape[1]

    @cached_property
    def pvals(self) -> np.ndarray:
        """Each effect's p-value (computed once per problem)."""
        return p_values(self.y, self.v, self.selection.alternative)

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """(β, τ², δ) from the full parameter vector."""
        p = self.p
        return theta[:p], float(theta[p]), theta[p + 1 :]

    def terms(self, theta: np.ndarray) -> np.ndarray:
        """Each effect's contribution to the log-likelihood."""
        beta, tau2, delta = self.split(theta)
        mu = self.x @ beta
        s2 = self.v + max(tau2, 0.0)
        s = np.sqrt(s2)
        sel = self.selection
        area = sel.normaliser(mu, s, self.v, delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (
                sel.log_weight(self.pvals, delta)
                - 0.5 * (self.y - mu) ** 2 / s2
                - np.log(s)
                - _LOG_ROOT_2PI
                - np.log(area)
            )
        return np.where(np.isnan(out), -np.inf, out)

    def scores(self, theta: np.ndarray) -> np.ndarray | None:
        """Each effect's analytic score in (β, τ², δ) for step functions; ``None`` for
        the continuous functions (differentiated numerically)."""
        sel = self.selection
        if sel.type != "step":
            return None
        beta, tau2, delta = self.split(theta)
        mu = self.x @ beta
        s2 = self.v + max(tau2, 0.0)
        s = np.sqrt(s2)
        area, d_mu, d_tau2, d_delta = sel.step_scores(mu, s, self.v, delta)
        r = self.y - mu
        group = np.minimum(
            np.searchsorted(np.asarray(sel.steps), self.pvals, side="left"), sel.n_delta - 1
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            score_mu = r / s2 - d_mu / area
            score_tau2 = 0.5 * (r**2 / s2**2 - 1.0 / s2) - d_tau2 / area
            score_delta = np.eye(sel.n_delta)[group] / delta - d_delta / area[:, None]
        return np.column_stack([self.x * score_mu[:, None], score_tau2, score_delta])

    def gradient(self, theta: np.ndarray) -> np.ndarray | None:
        scores = self.scores(theta)
        if scores is None:
            return None
        used = self.case_weights > 0
        return np.sum(self.case_weights[used, None] * scores[used], axis=0)

    def loglik(self, theta: np.ndarray) -> float:
        used = self.case_weights > 0
        value = float(np.sum(self.case_weights[used] * self.terms(theta)[used]))
        return value if np.isfinite(value) else -np.inf

    def scales(self) -> np.ndarray:
        """Typical magnitudes of β, τ² and δ (step sizes and optimiser scaling)."""
        spread = float(np.var(self.y) + np.mean(self.v))
        return np.concatenate(
            [np.full(self.p, np.sqrt(spread)), [spread], np.ones(self.selection.n_delta)]
        )


@dataclass(frozen=True)
class Optimum:
    theta: np.ndarray
    loglik: float
    converged: bool
    gradient_norm: float


def _bounds(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper bounds and which coordinates are held at their start."""
    sel = problem.selection
    lower = np.concatenate([np.full(problem.p, -np.inf), [0.0], sel.lower])
    upper = np.concatenate([np.full(problem.p, np.inf), [np.inf], sel.upper])
    held = np.concatenate([np.zeros(problem.p, dtype=bool), [not problem.heterogeneity], sel.fixed])
    return lower, upper, held


def difference_steps(problem: Problem, theta: np.ndarray) -> np.ndarray:
    """Steps that stay inside the parameter space (half a positive parameter at most)."""
    steps = 1e-3 * np.maximum(np.abs(theta), problem.scales())
    positive = np.arange(theta.size) >= problem.p
    room = np.where(positive & (theta > 0), 0.5 * theta, np.inf)
    return np.minimum(steps, room)


def maximise(problem: Problem, starts: list[np.ndarray], *, polish: bool = True) -> Optimum:
    """Bounded quasi-Newton from each start, then (with ``polish``) Newton steps on the
    interior coordinates until the gradient vanishes; the best optimum is kept."""
    best: Optimum | None = None
    for start in starts:
        found = _from(problem, start, polish)
        if best is None or found.loglik > best.loglik + 1e-10:
            best = found
    assert best is not None
    return best


def _from(problem: Problem, start: np.ndarray, polish: bool) -> Optimum:
    lower, upper, held = _bounds(problem)
    scale = problem.scales()
    theta0 = np.clip(start, lower, upper)
    free = ~held

    def full(u: np.ndarray) -> np.ndarray:
        theta = theta0.copy()
        theta[free] = u * scale[free]
        return theta

    def objective(u: np.ndarray) -> float:
        value = problem.loglik(full(u))
        return -value if np.isfinite(value) else 1e300

    def grad(u: np.ndarray) -> np.ndarray:
        theta = full(u)
        exact = problem.gradient(theta)
        if exact is not None and np.all(np.isfinite(exact)):
            return -exact[free] * scale[free]
        g = gradient(
            lambda t: -problem.loglik(t),
            theta,
            free,
            difference_steps(problem, theta),
            richardson=False,
        )
        return g[free] * scale[free]

    box = list(zip(lower[free] / scale[free], upper[free] / scale[free], strict=True))
    box = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in box]
    options = {
        "maxiter": 5000,
        "ftol": 1e-15 if polish else 1e-11,
        "gtol": 1e-10 if polish else 1e-7,
    }
    u = theta0[free] / scale[free]
    # L-BFGS-B can stop on a flat stretch with the gradient far from 0 (its curvature
    # memory misleads the line search); restarting from where it stopped resets it.
    for _ in range(20):
        fit = optimize.minimize(
            objective, u, jac=grad, method="L-BFGS-B", bounds=box, options=options
        )
        moved = np.max(np.abs(fit.x - u), initial=0.0)
        u = fit.x
        projected = _projected_gradient(grad(u), u, box)
        if np.max(np.abs(projected), initial=0.0) < (1e-6 if polish else 1e-4) or moved < 1e-12:
            break
    theta = full(fit.x)
    if not polish:
        return Optimum(theta, -float(fit.fun), bool(fit.success), np.nan)
    return _polish(problem, theta, lower, upper, held)


def _projected_gradient(
    g: np.ndarray, u: np.ndarray, box: list[tuple[float | None, float | None]]
) -> np.ndarray:
    """The (minimisation) gradient with components pushing out of the box removed."""
    out = g.copy()
    for j, (low, high) in enumerate(box):
        if low is not None and u[j] <= low and g[j] > 0:
            out[j] = 0.0
        if high is not None and u[j] >= high and g[j] < 0:
            out[j] = 0.0
    return out


def _polish(
    problem: Problem, theta: np.ndarray, lower: np.ndarray, upper: np.ndarray, held: np.ndarray
) -> Optimum:
    """Newton steps on the coordinates that are not at a bound."""
    scale = problem.scales()
    theta, current, _ = newton_ascent(
        problem.loglik,
        theta,
        free_at=lambda t: ~held & (t > lower + 1e-12 * scale) & (t < upper),
        steps_at=lambda t: difference_steps(problem, t),
        scale=scale,
        tolerance=1e-9,
        lower=lower,
        upper=upper,
        iterations=20,
    )
    gfree = ~held & ~((theta <= lower) | (theta >= upper))
    g_all = gradient(problem.loglik, theta, gfree, difference_steps(problem, theta))
    norm = float(np.max(np.abs(g_all * problem.scales()), initial=0.0))
    return Optimum(theta, current, norm < 1e-5, norm)
