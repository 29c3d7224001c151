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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, sparse

from evalkit.multilevel.crossed import CrossedReducer, CrossedStats, em_start
from evalkit.multilevel.iterative import IterativeReducer, IterativeStats, find_root
from evalkit.multilevel.quasi_newton import projected_norm, quasi_newton
from evalkit.multilevel.stats import Reduction, SufficientStats

AnyStats = SufficientStats | CrossedStats | IterativeStats


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


PADDING = 1.5
"""Children of every parent are padded to the largest family when that adds at most
half again as many rows (see :class:`Reducer`)."""

EM_FLOOR = 0.05
"""Smallest starting θ taken from the EM start (see :func:`optimise`)."""

THETA_MAX = 1e4
"""Bound on |θ| (random-effect SD relative to the residual SD, 10⁴: a variance ratio of
10⁸). The profiled deviance flattens as a variance grows, and without a bound a
quasi-Newton step can fly to 10⁹, where XᵀM⁻¹X is no longer numerically definite."""


class Reducer:
    """The recursive reduction, with the θ-free work of the lowest level done once.

    When the lowest level has random intercepts only (q = 1), its update for group g
    is ``rest_g − w_g z_g z_gᵀ`` with the scalar ``w_g = t²/(1 + t² z_gz_g)``, so the
    parents' sums need only ``Σ rest_g`` (fixed) and ``Σ w_g z_g z_gᵀ``: the children
    of each parent are laid out as one padded block (zero rows add nothing) and the
    weighted sums are one batched product per evaluation, reading ``G × c`` numbers
    instead of ``G × c²``.
    """

    def __init__(self, stats: SufficientStats) -> None:
        self.stats = stats
        self.fast = stats.q[0] == 1 and len(stats.q) > 1
        if self.fast:
            cross = stats.cross
            g = cross.shape[0]
            starts = stats.starts[0]
            sizes = np.diff(np.r_[starts, g])
            parent = np.repeat(np.arange(starts.size), sizes)
            position = np.arange(g) - np.repeat(starts, sizes)
            self.width = width = cross.shape[1] - 1
            self.zz = cross[:, 0, 0].copy()
            self.rest = np.add.reduceat(cross[:, 1:, 1:], starts, axis=0)
            self.placement = (parent, position)
            self.padded = starts.size * int(sizes.max()) <= PADDING * g
            if self.padded:
                self.padded_zw = np.zeros((starts.size, int(sizes.max()), width))
                self.padded_zw[parent, position] = cross[:, 0, 1:]
            else:  # very unequal families: a parent-by-group sparse sum of z_g z_gᵀ
                zw = cross[:, 0, 1:]
                self.outer = (zw[:, :, None] * zw[:, None, :]).reshape(g, width * width)
                self.membership = sparse.csr_matrix(
                    (np.ones(g), (parent, np.arange(g))), shape=(starts.size, g)
                )

    def weighted_outer(self, weights: np.ndarray) -> np.ndarray:
        """``Σ_{g ∈ parent} weights_g z_g z_gᵀ`` for every parent (lowest-level groups'
        rows of cross-products ``z_g = cross[g, 0, 1:]``)."""
        if not self.padded:
            self.membership.data = weights  # groups are in parent order, as the CSR data
            summed = self.membership @ self.outer
            return np.asarray(summed).reshape(-1, self.width, self.width)
        padded = np.zeros(self.padded_zw.shape[:2])
        padded[self.placement] = weights
        scaled = self.padded_zw * padded[:, :, None]
        return np.matmul(np.swapaxes(scaled, 1, 2), self.padded_zw)

    def __call__(self, factors: list[np.ndarray]) -> Reduction:
        """Totals ``log|M|``, ``XᵀM⁻¹X``, ``XᵀM⁻¹y`` and ``yᵀM⁻¹y`` at the given T's."""
        stats = self.stats
        if self.fast:
            scale = float(factors[0][0, 0]) ** 2
            c = 1.0 + scale * self.zz
            logdet = float(np.log(c).sum())
            cross = self.rest - self.weighted_outer(scale / c)
            return _reduce_levels(cross, factors[1:], stats.starts[1:], stats.p, logdet)
        return _reduce_levels(stats.cross, factors, stats.starts, stats.p, 0.0)


def _reduce_levels(
    cross: np.ndarray, factors: list[np.ndarray], starts: list[np.ndarray], p: int, logdet: float
) -> Reduction:
    last = len(factors) - 1
    for level, t in enumerate(factors):
        q = t.shape[0]
        if q == 1:
            # Random intercepts: a rank-one update, done elementwise (no batched matmul).
            scale = float(t[0, 0]) ** 2
            c = 1.0 + scale * cross[:, 0, 0]
            logdet += float(np.log(c).sum())
            zw = cross[:, 0, 1:]
            if level == last:  # only the total is needed: one matrix product
                total = cross[:, 1:, 1:].sum(axis=0) - (zw * (scale / c)[:, None]).T @ zw
                return Reduction(logdet, total[:p, :p], total[:p, p], float(total[p, p]))
            cross = cross[:, 1:, 1:] - (scale / c)[:, None, None] * (
                zw[:, :, None] * zw[:, None, :]
            )
        else:
            zz = cross[:, :q, :q]
            zw = cross[:, :q, q:]
            c = np.eye(q) + t.T @ zz @ t
            chol = np.linalg.cholesky(c)
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            tw = t.T @ zw
            solved = np.linalg.solve(c, tw)
            cross = cross[:, q:, q:] - np.swapaxes(tw, 1, 2) @ solved
        if level < last:
            cross = np.add.reduceat(cross, starts[level], axis=0)
    total = cross.sum(axis=0)
    return Reduction(logdet, total[:p, :p], total[:p, p], float(total[p, p]))


AnyReducer = Reducer | CrossedReducer | IterativeReducer


def reducer_for(stats: AnyStats) -> AnyReducer:
    """The evaluator of ``log|M|`` and the ``M⁻¹`` cross-products for these statistics:
    the nested recursion, the blocked factorisation of a crossed design, or its
    iterative (conjugate-gradient) counterpart."""
    # the θ-free set-up is kept with the statistics: the optimiser, the results and
    # the df all reduce the same statistics (and a crossed reducer remembers its last
    # factorisation, which the results and the df at the optimum reuse)
    cached: AnyReducer | None = stats.__dict__.get("_reducer")
    if cached is None:
        if isinstance(stats, IterativeStats):
            cached = IterativeReducer(stats)
        elif isinstance(stats, CrossedStats):
            cached = CrossedReducer(stats)
        else:
            cached = Reducer(stats)
        object.__setattr__(stats, "_reducer", cached)
    return cached


def reduce(stats: SufficientStats, factors: list[np.ndarray]) -> Reduction:
    """Run the recursive Woodbury reduction from the lowest level to the top."""
    return _reduce_levels(stats.cross, factors, stats.starts, stats.p, 0.0)


@dataclass(frozen=True)
class Profile:
    """Profiled quantities at θ: deviance, β̂, σ̂² and (XᵀM⁻¹X)⁻¹."""

    deviance: float
    beta: np.ndarray
    sigma2: float
    xtmx_inv: np.ndarray


def profile(
    stats: AnyStats,
    factors: list[np.ndarray],
    *,
    reml: bool,
    reducer: AnyReducer | None = None,
) -> Profile:
    """lme4's profiled deviance (REML criterion or −2 log-likelihood) at θ."""
    red = (reducer or reducer_for(stats))(factors)
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
    monte_carlo: dict[str, Any] | None = None
    """For an iterative fit: the probes and the Monte Carlo errors of θ̂ and the
    deviance (``None`` for the exact engines)."""


FunAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


def optimise(
    stats: AnyStats,
    layout: ThetaLayout,
    *,
    reml: bool,
    start: np.ndarray | None = None,
) -> Optimum:
    """Minimise the profiled deviance over θ (bounded: diagonals of T ≥ 0).

    L-BFGS-B (exact gradients for random intercepts, central differences otherwise),
    then Newton steps with a finite-difference Hessian on the interior coordinates.
    The optimum is accepted when the projected gradient is below tolerance; otherwise
    the fit restarts from other points (lme4's allFit idea) and keeps the best,
    reporting every attempt. Crossed random intercepts first try quasi-Newton steps
    from an EM start (:func:`_crossed_start`).
    """
    reducer = reducer_for(stats)
    if isinstance(reducer, IterativeReducer):
        return _iterative_optimum(reducer, reml=reml)
    lower = np.array([-THETA_MAX if low is None else low for low in layout.lower_bounds])
    objective, fun_and_grad = _criterion(stats, layout, reml, reducer)
    exact = isinstance(reducer, CrossedReducer) and fun_and_grad is not None
    attempts: list[str] = []
    starts = [(f"start x{scale}", layout.start() * scale) for scale in (1.0, 0.1, 3.0)]
    if start is not None:  # a caller's guess (e.g. a simulation's true θ) goes first
        starts.insert(0, ("given start", np.clip(np.asarray(start, dtype=float), lower, None)))
    if exact:
        assert isinstance(stats, CrossedStats) and fun_and_grad is not None
        done, em_start = _crossed_start(stats, fun_and_grad, objective, lower, attempts)
        if done is not None:
            return done
        starts.insert(0, em_start)
    return _search(objective, fun_and_grad, starts, lower, exact=exact, attempts=attempts)


def _iterative_optimum(reducer: IterativeReducer, *, reml: bool) -> Optimum:
    """The root of the estimated gradient, with its Monte Carlo errors."""
    found = find_root(reducer, reml=reml)
    monte_carlo = {
        "probes": reducer.stats.probes,
        "theta_se": np.sqrt(np.maximum(np.diag(found.theta_mc_cov), 0.0)),
        "theta_cov": found.theta_mc_cov,
        "deviance_se": found.deviance_mc_se,
        "evaluations": found.evaluations,
        "cg_iterations": found.cg_iterations,
    }
    return Optimum(
        found.theta,
        found.deviance,
        found.evaluations,
        found.gradient_norm,
        found.converged,
        found.attempts,
        monte_carlo,
    )


def _criterion(
    stats: AnyStats,
    layout: ThetaLayout,
    reml: bool,
    reducer: AnyReducer,
) -> tuple[Callable[[np.ndarray], float], FunAndGrad | None]:
    """The profiled deviance of θ, and (random intercepts) deviance with exact gradient."""
    from evalkit.multilevel.gradient import intercepts_only, value_and_gradient

    def objective(theta: np.ndarray) -> float:
        try:
            return profile(stats, layout.factors(theta), reml=reml, reducer=reducer).deviance
        except np.linalg.LinAlgError:  # XᵀM⁻¹X lost definiteness numerically: far off
            return np.inf

    if not intercepts_only(layout.q):
        return objective, None
    last: dict[bytes, tuple[float, np.ndarray]] = {}

    def fun_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.asarray(theta, dtype=float).tobytes()
        if key in last:  # the optimiser asks again for the point it started from
            return last[key]
        try:
            if isinstance(reducer, (CrossedReducer, IterativeReducer)):
                out = reducer.value_and_gradient(theta, reml=reml)
            else:
                out = value_and_gradient(reducer, theta, reml=reml)
        except np.linalg.LinAlgError:
            out = (np.inf, np.zeros_like(theta))
        last.clear()
        last[key] = out
        return out

    return objective, fun_and_grad


def _crossed_start(
    stats: CrossedStats,
    fun_and_grad: FunAndGrad,
    objective: Callable[[np.ndarray], float],
    lower: np.ndarray,
    attempts: list[str],
) -> tuple[Optimum | None, tuple[str, np.ndarray]]:
    """EM sweeps on the cross-products put the start near the optimum (away from 0,
    where the deviance, even in each θ, has a zero gradient); quasi-Newton steps from
    a difference Hessian of the exact gradient then take about half the evaluations of
    L-BFGS-B. Returns the optimum when they reach it, and the start to go on from."""
    start = np.maximum(em_start(stats), EM_FLOOR)
    upper = np.full(lower.size, THETA_MAX)
    quick = quasi_newton(fun_and_grad, start, lower, upper, exact_tolerance, fun=objective)
    if quick.converged:
        norm = projected_norm(quick.theta, quick.gradient, lower)
        attempts.append(f"EM start, quasi-Newton: deviance {quick.value:.10g}, gradient {norm:.1e}")
        optimum = Optimum(quick.theta, quick.value, quick.evaluations, norm, True, tuple(attempts))
        return optimum, ("EM start", start)
    attempts.append(f"EM start, quasi-Newton: stopped at deviance {quick.value:.10g}")
    if np.isfinite(quick.value):
        return None, ("EM start, then quasi-Newton", quick.theta)
    return None, ("EM start", start)


def _search(
    objective: Callable[[np.ndarray], float],
    fun_and_grad: FunAndGrad | None,
    starts: list[tuple[str, np.ndarray]],
    lower: np.ndarray,
    *,
    exact: bool,
    attempts: list[str],
) -> Optimum:
    """L-BFGS-B from each start, Newton and derivative-free polish, until accepted."""
    bounds = [(float(low), THETA_MAX) for low in lower]
    if fun_and_grad is not None:
        grad_of = fun_and_grad

        def gradient(theta: np.ndarray) -> np.ndarray:
            return grad_of(theta)[1]

        lbfgs_fun: object = fun_and_grad
        lbfgs_jac: object = True
    else:

        def gradient(theta: np.ndarray) -> np.ndarray:
            return _gradient(objective, theta, lower)

        lbfgs_fun, lbfgs_jac = objective, gradient
    best_theta: np.ndarray | None = None
    best_value = np.inf
    best_ok = False
    iterations = 0
    for label, start in starts:
        options = {"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000}
        if exact and fun_and_grad is not None:
            # Exact gradients whose rounding noise is about 1e-9 of the deviance: stop
            # there instead of letting the line search cycle on noise.
            options["gtol"] = exact_tolerance(float(fun_and_grad(start)[0]))
        first = optimize.minimize(
            lbfgs_fun, start, jac=lbfgs_jac, method="L-BFGS-B", bounds=bounds, options=options
        )
        if exact:
            norm = projected_norm(np.asarray(first.x), np.asarray(first.jac), lower)
            if norm < exact_tolerance(float(first.fun)):
                iterations += int(first.nit)
                attempts.append(f"{label}: deviance {first.fun:.10g}, gradient {norm:.1e}")
                theta = np.asarray(first.x)
                return Optimum(theta, float(first.fun), iterations, norm, True, tuple(attempts))
        exact_gradient = fun_and_grad is not None
        theta, value, steps, decrement = _newton(
            objective, np.asarray(first.x), lower, gradient, exact=exact_gradient
        )
        iterations += int(first.nit) + steps
        gain = 0.0
        if decrement > DECREMENT_TOL * 1e-3:
            # Newton did not settle to a tiny decrement (finite-difference noise on large
            # data, or a boundary): a derivative-free polish checks the point.
            theta, value, polish_steps, gain = _polish(objective, theta, value, bounds)
            iterations += polish_steps
        if gain > DECREMENT_TOL:
            # The derivative-free polish found a better point: re-run Newton from it.
            theta, value, steps, decrement = _newton(
                objective, theta, lower, gradient, exact=exact_gradient
            )
            theta, value, polish_steps, gain = _polish(objective, theta, value, bounds)
            iterations += steps + polish_steps
        decrement = max(decrement, gain)
        norm = projected_norm(theta, gradient(theta), lower)
        attempts.append(
            f"{label}: deviance {value:.10g}, gradient {norm:.1e}, decrement {decrement:.1e}"
        )
        if value < best_value - 1e-10:
            best_theta, best_value, best_ok = theta, value, _accepted(norm, decrement, value)
        if _accepted(norm, decrement, value):
            break
    assert best_theta is not None
    norm = projected_norm(best_theta, gradient(best_theta), lower)
    return Optimum(best_theta, float(best_value), iterations, norm, best_ok, tuple(attempts))


def _polish(
    objective: object, theta: np.ndarray, value: float, bounds: list[tuple[float, float]]
) -> tuple[np.ndarray, float, int, float]:
    """Nelder–Mead from a small simplex around θ: it compares deviances only, so it is
    not misled by the noise of finite-difference gradients on large data. Returns the
    point, its deviance, the iterations and how much it improved on ``value``."""
    simplex = [theta]
    for k in range(theta.size):
        vertex = theta.copy()
        vertex[k] += 1e-3 * max(1.0, abs(theta[k]))
        simplex.append(vertex)
    result = optimize.minimize(
        objective, theta, method="Nelder-Mead", bounds=bounds,
        options={"initial_simplex": np.array(simplex), "xatol": 1e-9, "fatol": 1e-9, "maxiter": 400 * theta.size},
    )  # fmt: skip
    if result.fun < value:
        return np.asarray(result.x), float(result.fun), int(result.nit), value - float(result.fun)
    return theta, value, int(result.nit), 0.0


DECREMENT_TOL = 1e-6
"""Largest acceptable Newton decrement (deviance units) at the optimum."""

ROUNDING = 1e-13
"""Relative rounding of a profiled deviance summed over many groups."""


def _accepted(norm: float, decrement: float, deviance: float) -> bool:
    """An optimum: the projected gradient is small, or a further Newton step could
    improve the deviance by less than ``DECREMENT_TOL`` (scale-free, and robust to the
    finite-difference noise of large data)."""
    return norm < gradient_tolerance(deviance) or decrement < DECREMENT_TOL


def gradient_tolerance(deviance: float) -> float:
    """Largest acceptable projected gradient at the optimum.

    1e-3 in absolute terms; for large data the floor is set by finite-difference
    noise, about ``1e-15·|deviance| / 1e-6`` (rounding in the deviance over the
    difference step), so the tolerance is five times that: ``5e-9·|deviance|``.
    """
    return max(1e-3, 5e-9 * abs(deviance))


def exact_tolerance(deviance: float) -> float:
    """Largest acceptable projected gradient when the gradient is exact (crossed
    random intercepts): its rounding noise, about ``1e-9·|deviance|``, with a margin."""
    return 1e-8 + 5e-9 * abs(deviance)


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


def _newton(
    objective: object,
    theta: np.ndarray,
    lower: np.ndarray,
    gradient: object = None,
    *,
    exact: bool = False,
) -> tuple[np.ndarray, float, int, float]:
    """Newton steps on the interior coordinates with a finite-difference Hessian.

    Returns θ, the deviance, the number of steps and the last Newton decrement
    ``gᵀH⁻¹g/2``: the deviance improvement a further step could still bring. With an
    ``exact`` gradient the steps go on past a negligible decrement until θ stops
    moving (to ~1e-13): the root of the exact gradient is determined to rounding, so
    the same data summed in another order (in memory, or by a database) give the
    same optimum to ~1e-15 instead of wherever a deviance test stopped.
    """
    value = float(objective(theta))  # type: ignore[operator]
    if gradient is None:

        def gradient(point: np.ndarray) -> np.ndarray:
            return _gradient(objective, point, lower)

    decrement = np.inf
    for step_count in range(1, 11):
        grad = gradient(theta)  # type: ignore[operator]
        free = ~((theta <= lower + 1e-10) & (grad > 0))
        if not free.any():
            return theta, value, step_count, 0.0
        index = np.flatnonzero(free)
        hess = np.empty((index.size, index.size))
        for a, k in enumerate(index):
            h = 1e-4 * max(1.0, abs(theta[k]))
            up, down = theta.copy(), theta.copy()
            up[k] += h
            down[k] = max(lower[k], theta[k] - h)
            width = up[k] - down[k]
            hess[:, a] = (
                gradient(up)[index] - gradient(down)[index]  # type: ignore[operator]
            ) / width
        hess = 0.5 * (hess + hess.T)
        try:
            np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return theta, value, step_count, decrement
        direction = np.zeros_like(theta)
        direction[index] = -np.linalg.solve(hess, grad[index])
        decrement = float(-0.5 * grad[index] @ direction[index])
        negligible = decrement < DECREMENT_TOL * 1e-3
        # a step whose gain is below the deviance's rounding is judged by the gradient
        slack = ROUNDING * abs(value) if exact and negligible else 0.0
        size = 1.0
        while size > 1e-6:
            candidate = np.clip(theta + size * direction, lower, THETA_MAX)
            trial = float(objective(candidate))  # type: ignore[operator]
            if trial <= value + slack:
                break
            size /= 2
        else:
            return theta, value, step_count, decrement
        change = float(np.max(np.abs(candidate - theta)))
        theta, value = candidate, min(trial, value) if slack else trial
        if exact and negligible:
            if change <= 1e-13 * (1.0 + float(np.max(np.abs(theta)))):
                return theta, float(objective(theta)), step_count, decrement  # type: ignore[operator]
        elif change < 1e-10 or negligible:
            return theta, value, step_count, decrement
    return theta, value, 10, decrement
