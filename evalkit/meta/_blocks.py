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

from evalkit.core import FloatArray
from evalkit.meta._algebra import profiled_loglik


@dataclass(frozen=True)
class SizeGroup:
    """All clusters with ``n`` effect sizes, stacked."""

    rows: np.ndarray  # (m, n) row indices
    sampling: FloatArray  # (m, n, n) S_j
    same: list[FloatArray]  # per level, (m, n, n) 0/1
    x: FloatArray  # (m, n, p)
    y: FloatArray  # (m, n)


@dataclass(frozen=True)
class Evaluation:
    """The (restricted) log-likelihood and everything derived at one θ."""

    loglik: float
    gradient: FloatArray
    beta: FloatArray
    cov: FloatArray  # (XᵀV⁻¹X)⁻¹
    hessian: FloatArray | None = None  # observed: ∂²ℓ/∂θ∂θ
    information: FloatArray | None = None  # expected: E[−∂²ℓ/∂θ∂θ]


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
        self.cluster_labels = np.asarray(cluster)
        self.level_codes = level_codes
        self.rho = rho
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
        return SizeGroup(rows=rows, sampling=sampling, same=same, x=self.x[rows], y=self.y[rows])

    def marginal(self, group: SizeGroup, theta: FloatArray) -> FloatArray:
        """``V_j`` for every cluster of a size group."""
        v = group.sampling.copy()
        for weight, same in zip(theta, group.same, strict=True):
            v += weight * same
        return v

    def evaluate(self, theta: FloatArray, *, reml: bool, hessian: bool = False) -> Evaluation:
        """Log-likelihood (metafor's constants), its gradient in θ, β and (XᵀV⁻¹X)⁻¹.

        With ``hessian``, also the observed second derivatives of the profiled
        (restricted) log-likelihood, ``½ tr(Q G_l Q G_m) − yᵀP G_l P G_m P y`` with
        ``Q = P`` (REML) or ``V⁻¹`` (ML), and the expected information
        ``½ tr(Q G_l Q G_m)``.
        """
        p = self.x.shape[1]
        xtvx = np.zeros((p, p))
        xtvy = np.zeros(p)
        logdet = 0.0
        cache = []
        for group in self.groups:
            v = self.marginal(group, theta)
            chol = np.linalg.cholesky(v)
            logdet += 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
            v_inv = np.linalg.inv(v)
            vi_x = v_inv @ group.x
            xtvx += np.einsum("mnp,mnq->pq", group.x, vi_x)
            xtvy += np.einsum("mnp,mn->p", vi_x, group.y)
            cache.append((v_inv, vi_x))
        cov: FloatArray = np.asarray(np.linalg.inv(xtvx), dtype=np.float64)
        beta = cov @ xtvy
        levels = self.n_levels
        quad = 0.0
        gradient = np.zeros(levels)
        inner = np.zeros((levels, p, p))  # Σ XᵀV⁻¹G_lV⁻¹X
        tr_vv = np.zeros((levels, levels))  # Σ tr(V⁻¹G_lV⁻¹G_m)
        cross = np.zeros((levels, levels, p, p))  # Σ XᵀV⁻¹G_lV⁻¹G_mV⁻¹X
        av = np.zeros((levels, levels))  # Σ a_lᵀV⁻¹a_m, a_l = G_l V⁻¹ r
        xva = np.zeros((levels, p))  # Σ XᵀV⁻¹a_l
        for group, (v_inv, vi_x) in zip(self.groups, cache, strict=True):
            residual = group.y - group.x @ beta
            vi_r = np.einsum("mij,mj->mi", v_inv, residual)
            quad += float(np.sum(residual * vi_r))
            products = [v_inv @ same for same in group.same] if hessian else []
            spread = [np.einsum("mij,mj->mi", same, vi_r) for same in group.same]
            for level, same in enumerate(group.same):
                trace = float(np.einsum("mij,mji->", v_inv, same))
                same_vi_x = same @ vi_x
                inner[level] += np.einsum("mnp,mnq->pq", vi_x, same_vi_x)
                score = float(np.sum(vi_r * spread[level]))
                gradient[level] += 0.5 * (score - trace)
                if not hessian:
                    continue
                vi_a = np.einsum("mij,mj->mi", v_inv, spread[level])
                xva[level] += np.einsum("mnp,mn->p", group.x, vi_a)
                for other in range(levels):
                    tr_vv[level, other] += float(
                        np.einsum("mij,mji->", products[level], products[other])
                    )
                    av[level, other] += float(np.sum(vi_a * spread[other]))
                    if reml:
                        cross[level, other] += np.einsum(
                            "mnp,mnq->pq", same_vi_x, products[other] @ vi_x
                        )
        if reml:
            gradient += 0.5 * np.einsum("pq,lpq->l", cov, inner)
        loglik = profiled_loglik(
            n=self.y.size, p=p, logdet=logdet, logdet_x=float(np.linalg.slogdet(xtvx)[1]),
            quad=quad, logdet_xtx=self.logdet_xtx, reml=reml,
        )  # fmt: skip
        if not hessian:
            return Evaluation(float(loglik), gradient, beta, cov)
        trace_qq = tr_vv.copy()
        if reml:
            for level in range(levels):
                for other in range(levels):
                    trace_qq[level, other] += -2.0 * float(
                        np.sum(cov * cross[level, other])
                    ) + float(np.sum((cov @ inner[level]) * (cov @ inner[other]).T))
        quadratic = av - xva @ cov @ xva.T
        information = 0.5 * trace_qq
        observed = 0.5 * trace_qq - quadratic
        return Evaluation(float(loglik), gradient, beta, cov, observed, information)

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
