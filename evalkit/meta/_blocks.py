"""Block-diagonal marginal covariance for multilevel meta-analysis, evaluated in batches.

Effect sizes are grouped by their top-level cluster (study, district). Within a
cluster of ``n`` effects the marginal covariance is ``V_j = S_j + Σ_l σ²_l G_lj``,
with ``S_j`` the sampling covariance (diagonal, or with an imputed correlation ρ)
and ``G_lj`` the 0/1 matrix of "same level-l group". Clusters of equal size are
stacked so every likelihood evaluation is a handful of batched NumPy calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit._typing import FloatArray


@dataclass(frozen=True)
class SizeGroup:
    """All clusters with ``n`` effect sizes, stacked."""

    rows: np.ndarray  # (m, n) row indices
    sampling: FloatArray  # (m, n, n) S_j
    same: list[FloatArray]  # per level, (m, n, n) 0/1


@dataclass(frozen=True)
class Evaluation:
    """The (restricted) log-likelihood and everything derived at one θ."""

    loglik: float
    gradient: FloatArray
    beta: FloatArray
    cov: FloatArray  # (XᵀV⁻¹X)⁻¹


class Blocks:
    """The data of a multilevel meta-analysis arranged in batched blocks."""

    def __init__(
        self,
        y: FloatArray,
        v: FloatArray,
        x: FloatArray,
        cluster: np.ndarray,
        level_codes: list[np.ndarray],
        rho: float | None,
    ) -> None:
        self.y, self.v, self.x = y, v, x
        self.n_levels = len(level_codes)
        _, cluster_codes = np.unique(cluster, return_inverse=True)
        order = np.argsort(cluster_codes, kind="stable")
        bounds = np.flatnonzero(np.diff(cluster_codes[order])) + 1
        members = np.split(order, bounds)
        self.clusters = members
        by_size: dict[int, list[np.ndarray]] = {}
        for rows in members:
            by_size.setdefault(rows.size, []).append(rows)
        self.groups = [self._stack(np.array(rows), level_codes, rho) for rows in by_size.values()]
        _, self.logdet_xtx = np.linalg.slogdet(x.T @ x)

    def _stack(
        self, rows: np.ndarray, level_codes: list[np.ndarray], rho: float | None
    ) -> SizeGroup:
        sd = np.sqrt(self.v[rows])
        correlation = 0.0 if rho is None else rho
        sampling = correlation * sd[:, :, None] * sd[:, None, :]
        n = rows.shape[1]
        diag = np.arange(n)
        sampling[:, diag, diag] = self.v[rows]
        same = [
            (codes[rows][:, :, None] == codes[rows][:, None, :]).astype(np.float64)
            for codes in level_codes
        ]
        return SizeGroup(rows=rows, sampling=sampling, same=same)

    def marginal(self, group: SizeGroup, theta: FloatArray) -> FloatArray:
        """``V_j`` for every cluster of a size group."""
        v = group.sampling.copy()
        for weight, same in zip(theta, group.same, strict=True):
            v += weight * same
        return v

    def evaluate(self, theta: FloatArray, *, reml: bool) -> Evaluation:
        """Log-likelihood (metafor's constants), its gradient in θ, β and (XᵀV⁻¹X)⁻¹."""
        x, y = self.x, self.y
        p = x.shape[1]
        xtvx = np.zeros((p, p))
        xtvy = np.zeros(p)
        logdet = 0.0
        cache = []
        for group in self.groups:
            v = self.marginal(group, theta)
            chol = np.linalg.cholesky(v)
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            v_inv = np.linalg.inv(v)
            xg, yg = x[group.rows], y[group.rows]
            vi_x = v_inv @ xg
            xtvx += np.einsum("mnp,mnq->pq", xg, vi_x)
            xtvy += np.einsum("mnp,mn->p", vi_x, yg)
            cache.append((v_inv, xg, yg, vi_x))
        cov: FloatArray = np.asarray(np.linalg.inv(xtvx), dtype=np.float64)
        beta = cov @ xtvy
        quad = 0.0
        gradient = np.zeros(self.n_levels)
        for group, (v_inv, xg, yg, vi_x) in zip(self.groups, cache, strict=True):
            vi_r = np.einsum("mij,mj->mi", v_inv, yg - xg @ beta)
            quad += float(np.sum((yg - xg @ beta) * vi_r))
            for level, same in enumerate(group.same):
                trace = float(np.einsum("mij,mji->", v_inv, same))
                if reml:
                    inner = np.einsum("mnp,mnk,mkq->pq", vi_x, same, vi_x)
                    trace -= float(np.sum(cov * inner))
                score = float(np.einsum("mi,mij,mj->", vi_r, same, vi_r))
                gradient[level] += 0.5 * (score - trace)
        n = y.size
        if reml:
            _, logdet_xtvx = np.linalg.slogdet(xtvx)
            loglik = -0.5 * ((n - p) * np.log(2 * np.pi) + logdet + logdet_xtvx + quad)
            loglik += 0.5 * self.logdet_xtx
        else:
            loglik = -0.5 * (n * np.log(2 * np.pi) + logdet + quad)
        return Evaluation(float(loglik), gradient, beta, cov)

    def cluster_blocks(self, theta: FloatArray) -> list[tuple[np.ndarray, FloatArray]]:
        """Row indices and ``V_j`` of every cluster, for robust variance estimation."""
        out: list[tuple[np.ndarray, FloatArray]] = []
        for group in self.groups:
            v = self.marginal(group, theta)
            out.extend(zip(group.rows, v, strict=True))
        return out

    def sampling_quadratic(self) -> tuple[float, FloatArray]:
        """QE for residual heterogeneity: GLS with the sampling covariance alone."""
        zero = np.zeros(self.n_levels)
        fit = self.evaluate(zero, reml=False)
        quad = 0.0
        for group in self.groups:
            r = self.y[group.rows] - self.x[group.rows] @ fit.beta
            quad += float(
                np.einsum("mi,mi->", r, np.linalg.solve(group.sampling, r[..., None])[..., 0])
            )
        return quad, fit.beta
