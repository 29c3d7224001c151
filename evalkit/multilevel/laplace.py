"""The Laplace approximation (and adaptive Gauss–Hermite quadrature) to the likelihood
of a nested generalized linear mixed model, at given θ and β.

With spherical random effects ``u`` (``b_l = T_l u_l`` per group of level l) and the
linear predictor ``η = offset + Xβ + Σ_l Z_l b_l``, the conditional mode ``û``
maximises ``Σ log p(y|η) − ‖u‖²/2``; penalised iteratively reweighted least squares
(Bates et al. 2015, §3.6 of the lme4 GLMM vignette; Fisher scoring, step-halving) finds
it. The Laplace deviance is glmer's:

``−2 log L ≈ −2 Σ log p(y|η̂) + ‖û‖² + log|H|``,  ``H = I + ΛᵀZᵀWZΛ``,

with W the Fisher weights at η̂. Because the levels are nested, H is block-sparse on
the tree of groups: each group of a level couples only to its ancestors. Eliminating
the lowest level's blocks first (their Schur complements summed into the parents), as
:mod:`evalkit.multilevel.engine` does for linear models, solves the Newton system and
gives ``log|H|`` in time linear in the number of groups; the only per-row work is the
linear predictor, the family's terms and the weighted sums per lowest group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.multilevel.engine import ThetaLayout
from evalkit.multilevel.families import Family, RowTerms

MODE_TOL = 1e-10
"""Largest Newton step (in the spherical units of u) accepted as the conditional mode:
one more step would move the Laplace deviance by about its square."""
MAX_STEPS = 60
ROUNDING = 1e-11
"""Relative rounding error of the PIRLS objective, a sum over all rows."""


@dataclass(frozen=True)
class GLMMRows:
    """The fitted rows, sorted so that every group's rows are contiguous (top level first).

    Attributes
    ----------
    x, y, trials, offset
        Fixed design, outcome (successes or counts), trials per row (1 for binary and
        Poisson rows) and the offset on the link scale.
    z
        Random-effect columns per level, lowest first.
    group
        Per level, the group of every row (groups numbered in sorted order).
    parent
        Per level except the top, the parent group of every group.
    bounds
        First row of every lowest-level group.
    starts
        Per level except the top, the first child of every parent group.
    order
        For every sorted row, its position in the model frame.
    """

    x: np.ndarray
    y: np.ndarray
    trials: np.ndarray
    offset: np.ndarray
    z: tuple[np.ndarray, ...]
    group: tuple[np.ndarray, ...]
    parent: tuple[np.ndarray, ...]
    bounds: np.ndarray
    starts: tuple[np.ndarray, ...]
    order: np.ndarray

    @classmethod
    def build(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        trials: np.ndarray,
        offset: np.ndarray,
        z: tuple[np.ndarray, ...],
        codes: tuple[np.ndarray, ...],
    ) -> GLMMRows:
        """Sort the rows by the hierarchy and number the groups of every level."""
        order = np.lexsort(tuple(codes))
        sorted_codes = [c[order] for c in codes]
        groups = []
        for level in range(len(codes)):
            # a new group starts wherever this level's code or any higher level's changes
            change = np.zeros(order.size, dtype=bool)
            change[0] = True
            for upper in sorted_codes[level:]:
                change[1:] |= upper[1:] != upper[:-1]
            groups.append((np.cumsum(change) - 1).astype(np.int32))
        bounds = np.flatnonzero(np.r_[True, np.diff(groups[0]) != 0])
        parents, starts = [], []
        for level in range(len(codes) - 1):
            first_rows = np.flatnonzero(np.r_[True, np.diff(groups[level]) != 0])
            parent = groups[level + 1][first_rows]
            parents.append(parent)
            starts.append(np.flatnonzero(np.r_[True, np.diff(parent) != 0]))
        if np.all(order[1:] > order[:-1]):
            # already sorted (files usually are): no copies

            def take(values: np.ndarray) -> np.ndarray:
                return values

        else:

            def take(values: np.ndarray) -> np.ndarray:
                if values.ndim and values.strides[0] == 0:  # a broadcast constant
                    return values
                return np.ascontiguousarray(values[order])

        return cls(
            x=take(x),
            y=take(y),
            trials=take(trials),
            offset=take(offset),
            z=tuple(take(zl) for zl in z),
            group=tuple(groups),
            parent=tuple(parents),
            bounds=bounds,
            starts=tuple(starts),
            order=order,
        )

    @property
    def n_groups(self) -> list[int]:
        """Number of groups per level, lowest first."""
        return [int(g[-1]) + 1 for g in self.group]


@dataclass(frozen=True)
class Mode:
    """The conditional mode at (θ, β) and the Laplace deviance there."""

    deviance: float
    u: tuple[np.ndarray, ...]
    eta: np.ndarray
    loglik: float
    logdet: float
    steps: int
    converged: bool


@dataclass(frozen=True)
class _Elimination:
    """Forward elimination of the Newton system: what back-substitution needs."""

    logdet: float
    solved_rhs: list[np.ndarray]
    solved_coupling: list[np.ndarray]
    inverse_blocks: list[np.ndarray]
    coupling: list[np.ndarray]


class LaplaceEngine:
    """Laplace deviance, conditional modes and conditional covariances of a nested GLMM.

    The last conditional mode is kept as the start of the next evaluation (nearby θ
    and β during optimisation), which saves PIRLS steps without changing the answer:
    every evaluation iterates to :data:`MODE_TOL`.
    """

    def __init__(self, rows: GLMMRows, layout: ThetaLayout, family: Family) -> None:
        self.rows = rows
        self.layout = layout
        self.family = family
        self.q = list(layout.q)
        self._intercept_only = [z.shape[1] == 1 and bool(np.all(z == 1.0)) for z in rows.z]
        self.intercepts_only = all(self._intercept_only)
        """Whether every level has a random intercept only (then Z is all ones and the
        per-row column products below are not stored)."""
        self.width = sum(self.q)
        self._pairs = [(a, b) for a in range(self.width) for b in range(a, self.width)]
        if self.intercepts_only:
            self.columns = np.empty((0, self.width))
            self._products = np.empty((0, len(self._pairs)))
        else:
            columns = np.hstack(rows.z)
            self.columns = columns
            self._products = np.column_stack(
                [columns[:, a] * columns[:, b] for a, b in self._pairs]
            )
        self._start = [np.zeros((n, q)) for n, q in zip(rows.n_groups, self.q, strict=True)]
        self._constant = family.constant(rows.y, rows.trials)
        self.evaluations = 0

    def linear_predictor(
        self,
        factors: list[np.ndarray],
        beta: np.ndarray,
        u: list[np.ndarray] | tuple[np.ndarray, ...],
    ) -> np.ndarray:
        """``η = offset + Xβ + Σ_l Z_l T_l u_l`` per row (sorted order)."""
        rows = self.rows
        return self.random_part(factors, u, start=rows.offset + rows.x @ beta)

    def random_part(
        self,
        factors: list[np.ndarray],
        u: list[np.ndarray] | tuple[np.ndarray, ...],
        *,
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """``Σ_l Z_l T_l u_l`` per row (sorted order), added to ``start`` (a new array
        the caller hands over) or to zeros."""
        rows = self.rows
        out = np.zeros(rows.y.size) if start is None else start
        for z, t, ul, group, ones in zip(
            rows.z, factors, u, rows.group, self._intercept_only, strict=True
        ):
            b = ul @ t.T
            if ones:
                out += b[group, 0]
            elif z.shape[1] == 1:
                out += z[:, 0] * b[group, 0]
            else:
                out += np.einsum("ij,ij->i", z, b[group])
        return out

    def mode(self, theta: np.ndarray, beta: np.ndarray) -> Mode:
        """PIRLS to the conditional mode, and the Laplace deviance there."""
        self.evaluations += 1
        factors = self.layout.factors(theta)
        rows = self.rows
        u = [s.copy() for s in self._start]
        eta = self.linear_predictor(factors, beta, u)
        terms = self.row_terms(eta)
        objective = -2.0 * float(terms.loglik.sum()) + _norm2(u)
        if not np.isfinite(objective):
            # the warm start overflows (θ or β moved far): start from u = 0
            u = [np.zeros_like(s) for s in self._start]
            eta = self.linear_predictor(factors, beta, u)
            terms = self.row_terms(eta)
            objective = -2.0 * float(terms.loglik.sum())
        steps = 0
        converged = False
        logdet = np.nan
        loglik = float(terms.loglik.sum())
        while steps < MAX_STEPS:
            elim = self.eliminate(factors, terms.weight, terms.score, u)
            del terms  # the row terms at u are not needed again: free them for the trial's
            logdet = elim.logdet
            delta = _back_substitute(elim, factors, rows.parent)
            size = max(float(np.max(np.abs(d))) if d.size else 0.0 for d in delta)
            if size < MODE_TOL * max(1.0, max(float(np.max(np.abs(x))) for x in u)):
                converged = True
                break
            steps += 1
            step = 1.0
            while True:
                trial = [ul + step * d for ul, d in zip(u, delta, strict=True)]
                trial_eta = self.linear_predictor(factors, beta, trial)
                trial_terms = self.row_terms(trial_eta)
                trial_loglik = float(trial_terms.loglik.sum())
                value = -2.0 * trial_loglik + _norm2(trial)
                # near the mode a Newton step changes φ by less than its rounding
                # (a sum over all rows): accept it then rather than halve on noise
                if value <= objective + ROUNDING * max(1.0, abs(objective)) or step < 1e-8:
                    break
                del trial_terms, trial_eta
                step /= 2.0
            if step < 1e-8:
                del trial_terms, trial_eta
                break
            u, eta, terms, objective, loglik = trial, trial_eta, trial_terms, value, trial_loglik
        self._start = [ul.copy() for ul in u]
        return Mode(objective + logdet, tuple(u), eta, loglik, logdet, steps, converged)

    def row_terms(self, eta: np.ndarray) -> RowTerms:
        """The family's per-row terms at η (sorted rows)."""
        return self.family.terms(eta, self.rows.y, self.rows.trials, self._constant)

    def deviance(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The Laplace approximation to −2 log-likelihood."""
        return self.mode(theta, beta).deviance

    def eliminate(
        self, factors: list[np.ndarray], weight: np.ndarray, score: np.ndarray, u: list[np.ndarray]
    ) -> _Elimination:
        """Forward elimination of ``H δ = ΛᵀZᵀs − u`` from the lowest level up."""
        rows = self.rows
        width = self.width
        if self.intercepts_only:
            # every column is 1: each cross-product is the group's sum of weights
            total = np.add.reduceat(weight, rows.bounds)
            cross = np.repeat(total, width * width).reshape(-1, width, width)
            rhs = np.repeat(np.add.reduceat(score, rows.bounds), width).reshape(-1, width)
        else:
            sums = np.add.reduceat(weight[:, None] * self._products, rows.bounds, axis=0)
            cross = np.empty((sums.shape[0], width, width))
            for k, (a, b) in enumerate(self._pairs):
                cross[:, a, b] = sums[:, k]
                cross[:, b, a] = sums[:, k]
            rhs = np.add.reduceat(score[:, None] * self.columns, rows.bounds, axis=0)
        logdet = 0.0
        solved_rhs, solved_coupling, inverse_blocks, couplings = [], [], [], []
        last = len(factors) - 1
        for level, t in enumerate(factors):
            q = t.shape[0]
            c = t.T @ cross[:, :q, :q] @ t + np.eye(q)
            chol = np.linalg.cholesky(c)
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            inverse = np.linalg.inv(c)
            coupling = t.T @ cross[:, :q, q:]
            own = rhs[:, :q] @ t - u[level]
            solved_r = np.einsum("gij,gj->gi", inverse, own)
            solved_c = inverse @ coupling
            solved_rhs.append(solved_r)
            solved_coupling.append(solved_c)
            inverse_blocks.append(inverse)
            couplings.append(coupling)
            if level == last:
                break
            reduced = cross[:, q:, q:] - np.swapaxes(coupling, 1, 2) @ solved_c
            reduced_rhs = rhs[:, q:] - np.einsum("gji,gj->gi", coupling, solved_r)
            cross = np.add.reduceat(reduced, rows.starts[level], axis=0)
            rhs = np.add.reduceat(reduced_rhs, rows.starts[level], axis=0)
        return _Elimination(logdet, solved_rhs, solved_coupling, inverse_blocks, couplings)

    def conditional(
        self, theta: np.ndarray, beta: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Conditional modes ``b̂ = T û`` per level (groups × effects) and their
        conditional covariances ``T (H⁻¹)_gg Tᵀ`` (groups × effects × effects), as lme4's
        ``ranef(condVar = TRUE)``."""
        mode = self.mode(theta, beta)
        factors = self.layout.factors(theta)
        terms = self.row_terms(mode.eta)
        elim = self.eliminate(factors, terms.weight, terms.score, list(mode.u))
        blocks, _ = selected_inverse(elim, factors, self.rows.parent)
        modes = [u @ t.T for u, t in zip(mode.u, factors, strict=True)]
        covariances = [t @ block @ t.T for block, t in zip(blocks, factors, strict=True)]
        return modes, covariances

    def quadrature(self, theta: np.ndarray, beta: np.ndarray, nodes: int) -> float:
        """Adaptive Gauss–Hermite approximation to −2 log-likelihood for one grouping
        factor with a random intercept (glmer's ``nAGQ``): per group, the integral over
        u is taken on ``nodes`` points centred at the conditional mode and scaled by the
        curvature ``1/√H_jj`` (Pinheiro & Bates 1995)."""
        mode = self.mode(theta, beta)
        factors = self.layout.factors(theta)
        t = float(factors[0][0, 0])
        rows = self.rows
        terms = self.row_terms(mode.eta)
        z = rows.z[0][:, 0]
        curvature = 1.0 + t * t * np.add.reduceat(terms.weight * z * z, rows.bounds)
        scale = np.sqrt(2.0 / curvature)
        points, weights = np.polynomial.hermite.hermgauss(nodes)
        center = mode.u[0][:, 0]
        group = rows.group[0]
        fixed = mode.eta - t * z * center[group]
        logs = np.empty((center.size, nodes))
        for k, (point, weight) in enumerate(zip(points, weights, strict=True)):
            value = center + scale * point
            eta = fixed + t * z * value[group]
            loglik = self.row_terms(eta).loglik
            per_group = np.add.reduceat(loglik, rows.bounds)
            logs[:, k] = np.log(weight) + point * point + per_group - 0.5 * value * value
        top = logs.max(axis=1)
        integral = top + np.log(np.exp(logs - top[:, None]).sum(axis=1))
        log_lik = integral + np.log(scale) - 0.5 * np.log(2.0 * np.pi)
        return -2.0 * float(log_lik.sum())


def _norm2(u: list[np.ndarray]) -> float:
    return float(sum(np.sum(ul * ul) for ul in u))


def _back_substitute(
    elim: _Elimination, factors: list[np.ndarray], parent: tuple[np.ndarray, ...]
) -> list[np.ndarray]:
    """The Newton step δ, from the top level down: ``δ_g = C⁻¹(r_g − K_g b_anc)``."""
    return back_substitute(elim.solved_rhs, elim.solved_coupling, factors, parent)


def back_substitute(
    solved: list[np.ndarray],
    solved_coupling: list[np.ndarray],
    factors: list[np.ndarray],
    parent: tuple[np.ndarray, ...],
) -> list[np.ndarray]:
    """Solution of the block system from its forward-eliminated right-hand sides
    ``C⁻¹r`` per level, from the top level down."""
    levels = len(factors)
    out: list[np.ndarray] = [np.empty(0)] * levels
    out[-1] = solved[-1]
    for level in range(levels - 2, -1, -1):
        ancestors = _ancestor_effects(out, factors, parent, level)
        out[level] = solved[level] - np.einsum("gij,gj->gi", solved_coupling[level], ancestors)
    return out


def solve(
    elim: _Elimination, factors: list[np.ndarray], rows: GLMMRows, rhs: np.ndarray
) -> list[np.ndarray]:
    """``H⁻¹ Λᵀ r`` for right-hand sides ``rhs`` given per lowest group in the raw Z
    columns (``Σ_i z_i r_i``), reusing a factorisation."""
    solved = []
    last = len(factors) - 1
    for level, t in enumerate(factors):
        q = t.shape[0]
        own = rhs[:, :q] @ t
        solved_r = np.einsum("gij,gj->gi", elim.inverse_blocks[level], own)
        solved.append(solved_r)
        if level == last:
            break
        reduced = rhs[:, q:] - np.einsum("gji,gj->gi", elim.coupling[level], solved_r)
        rhs = np.add.reduceat(reduced, rows.starts[level], axis=0)
    return back_substitute(solved, elim.solved_coupling, factors, rows.parent)


def _ancestor_effects(
    values: list[np.ndarray], factors: list[np.ndarray], parent: tuple[np.ndarray, ...], level: int
) -> np.ndarray:
    """For every group of ``level``: ``T_k v_k`` of its ancestor at every higher level k,
    side by side (the column order of the coupling blocks)."""
    pieces = []
    current = parent[level]
    for k in range(level + 1, len(factors)):
        pieces.append(values[k][current] @ factors[k].T)
        if k < len(factors) - 1:
            current = parent[k][current]
    return np.hstack(pieces)


def selected_inverse(
    elim: _Elimination, factors: list[np.ndarray], parent: tuple[np.ndarray, ...]
) -> tuple[list[np.ndarray], np.ndarray]:
    """The diagonal blocks of ``H⁻¹`` (spherical units) for every group, from the top
    down: with ``K_g = C_g⁻¹ B_g T_anc``, ``(H⁻¹)_gg = C_g⁻¹ + K_g Σ_anc K_gᵀ`` where
    ``Σ_anc`` is ``H⁻¹`` on the group's chain of ancestors (Takahashi's recursion; the
    elimination creates no fill outside the chains). Also returns, for every lowest
    group, ``H⁻¹`` on its whole chain (its own effects, then its ancestors')."""
    levels = len(factors)
    chain = elim.inverse_blocks[-1]  # (G_top, q, q): H⁻¹ on each top group's chain
    blocks: list[np.ndarray] = [np.empty(0)] * levels
    blocks[-1] = chain
    for level in range(levels - 2, -1, -1):
        scale = _block_diagonal([factors[k] for k in range(level + 1, levels)])
        k_g = elim.solved_coupling[level] @ scale  # (G, q, r_anc)
        sigma = chain[parent[level]]  # parent's chain = this group's ancestors
        cross = -k_g @ sigma
        own = elim.inverse_blocks[level] + k_g @ sigma @ np.swapaxes(k_g, 1, 2)
        blocks[level] = own
        top = np.concatenate([own, cross], axis=2)
        bottom = np.concatenate([np.swapaxes(cross, 1, 2), sigma], axis=2)
        chain = np.concatenate([top, bottom], axis=1)
    return blocks, chain


def _block_diagonal(matrices: list[np.ndarray]) -> np.ndarray:
    size = sum(m.shape[0] for m in matrices)
    out = np.zeros((size, size))
    start = 0
    for m in matrices:
        out[start : start + m.shape[0], start : start + m.shape[0]] = m
        start += m.shape[0]
    return out
