"""Kenward–Roger adjusted covariance and degrees of freedom (as pbkrtest computes them).

Kenward & Roger (1997, Biometrics 53) write ``V = Σ_i γ_i G_i`` — one ``G_i`` per
element of each random-effect covariance matrix (``Z E_i Zᵀ``) and the identity for
the residual — and, with ``Φ = (XᵀV⁻¹X)⁻¹``,
``P_i = −XᵀV⁻¹G_iV⁻¹X``, ``Q_ij = XᵀV⁻¹G_iV⁻¹G_jV⁻¹X`` and the REML information
``IE2_ij = tr(V⁻¹G_iV⁻¹G_j) − 2 tr(ΦQ_ij) + tr(ΦP_iΦP_j)``, ``W = 2 IE2⁻¹``,
adjust ``Φ_A = Φ + 2Φ[Σ_ij W_ij(Q_ij − P_iΦP_j)]Φ`` and derive the F test's
denominator df from ``A1``/``A2`` (Halekoh & Højsgaard 2014, J. Stat. Softw. 59(9)).
Every term is a sum over top-level clusters and is computed in the cluster's
``r_k``-dimensional random-effect space through :class:`~.frame.Marginal`, so no
``n × n`` matrix is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.multilevel.engine import ThetaLayout
from evalkit.multilevel.frame import Marginal, ModelFrame, clusters


@dataclass(frozen=True)
class KenwardRoger:
    """Φ, the adjusted Φ_A and the pieces the df need (P_i and W)."""

    phi: np.ndarray
    phi_adjusted: np.ndarray
    p_list: np.ndarray  # (m, p, p)
    w: np.ndarray  # (m, m)

    def df(self, contrasts: np.ndarray) -> tuple[float, float]:
        """Denominator df and F scaling for the rows of ``contrasts`` (pbkrtest's
        ``.KR_adjust``)."""
        lmat = np.atleast_2d(contrasts)
        phi = self.phi
        theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
        u = np.einsum("ab,kbc,cd->kad", theta @ phi, self.p_list, phi)
        traces = np.trace(u, axis1=1, axis2=2)
        a1 = float(traces @ self.w @ traces)
        products = np.einsum("iab,jba->ij", u, u)
        a2 = float(np.sum(self.w * products))
        q = float(np.linalg.matrix_rank(lmat))
        b = (a1 + 6 * a2) / (2 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denom = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
        v0 = 1 + c1 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1 - c2 * b, 1 - c3 * b
        ratio = (1 - a2 / q) / v1 if v1 != 0 else 0.0
        rho = ratio**2 * v0 / v2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 0.01 else df2 * (1 - a2 / q) / (df2 - 2)
        return float(df2), float(scaling)


def _parameters(layout: ThetaLayout) -> list[tuple[int, int, int]]:
    """(level, a, b) of every covariance element: lower triangles of each block."""
    return list(layout.entries)


def kenward_roger(
    frame: ModelFrame, layout: ThetaLayout, factors: list[np.ndarray], sigma2: float
) -> KenwardRoger:
    """Kenward–Roger pieces at the REML estimates (``factors`` are the T_l, σ²)."""
    params = _parameters(layout)
    m = len(params) + 1  # + residual
    p = frame.x.shape[1]
    info = np.zeros((p, p))
    p_list = np.zeros((m, p, p))
    q_list = np.zeros((m, m, p, p))
    ktrace = np.zeros((m, m))
    for cluster in clusters(frame):
        marginal = Marginal.at(cluster, factors, sigma2)
        z = cluster.z
        tt = marginal.solve(cluster.x)  # V⁻¹X
        vz = marginal.solve(z)  # V⁻¹Z
        ztt = z.T @ tt  # ZᵀV⁻¹X
        s = z.T @ vz  # ZᵀV⁻¹Z
        vtt = marginal.solve(tt)  # V⁻²X
        zvtt = z.T @ vtt  # ZᵀV⁻²X
        patterns = [cluster.pattern(*param) for param in params]
        info += cluster.x.T @ tt
        # O_i = G_i V⁻¹X in the Z space: E_i ZᵀV⁻¹X; the residual's is V⁻¹X itself.
        left = [e @ ztt for e in patterns]
        for i, e_i in enumerate(patterns):
            p_list[i] -= ztt.T @ left[i]
            for j, e_j in enumerate(patterns):
                q_list[i, j] += left[i].T @ s @ left[j]
                ktrace[i, j] += float(np.sum((e_i @ s) * (e_j @ s).T))
            q_list[i, m - 1] += left[i].T @ zvtt
            q_list[m - 1, i] += zvtt.T @ left[i]
            ktrace[i, m - 1] += float(np.sum(e_i * (vz.T @ vz)))
            ktrace[m - 1, i] = ktrace[i, m - 1]
        p_list[m - 1] -= tt.T @ tt
        q_list[m - 1, m - 1] += tt.T @ vtt
        zr = z.T @ z @ marginal.r
        ktrace[m - 1, m - 1] += (z.shape[0] - 2 * np.trace(zr) + np.sum(zr * zr.T)) / sigma2**2
    phi = np.linalg.inv(info)
    ie2 = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            ie2[i, j] = (
                ktrace[i, j]
                - 2 * np.sum(phi * q_list[i, j])
                + np.sum((phi @ p_list[i]) * (p_list[j] @ phi))
            )
    values = np.linalg.eigvalsh(0.5 * (ie2 + ie2.T))
    w = 2 * (np.linalg.inv(ie2) if np.min(np.abs(values)) > 1e-10 else np.linalg.pinv(ie2))
    u = np.zeros((p, p))
    for i in range(m):
        for j in range(m):
            u += w[i, j] * (q_list[i, j] - p_list[i] @ phi @ p_list[j])
    phi_adjusted = phi + 2 * phi @ u @ phi
    return KenwardRoger(phi, 0.5 * (phi_adjusted + phi_adjusted.T), p_list, w)
