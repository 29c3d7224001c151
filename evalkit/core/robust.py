"""Cluster-robust (sandwich) inference shared by meta-analysis and mixed models
(clubSandwich's CR0–CR2, Satterthwaite df and the HTZ test).

For cluster j with design ``X_j``, residuals ``e_j``, working covariance ``Θ_j`` (the
fitted model's marginal covariance) and weights ``W_j = Θ_j⁻¹``, the robust
covariance is ``Σ_j E_j e_j e_jᵀ E_jᵀ`` with ``E_j = M X_jᵀ W_j A_j`` and
``M = (Σ X_jᵀW_jX_j)⁻¹``. CR2 (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018)
uses ``A_j = Uᵀ G^{-1/2} U`` with ``U`` the upper Cholesky factor of ``Θ_j`` and
``G = U (Θ_j − X_j M X_jᵀ) Uᵀ``, as clubSandwich does.

Small-sample tests follow Tipton & Pustejovsky (2015): for constraints ``C`` (q × p)
let ``g_j = E_jᵀ Cᵀ``. Under the working model the contributions ``h_jᵀy`` have
covariances ``Q_ij = δ_ij g_iᵀΘ_i g_i − u_iᵀ M u_j`` with ``u_j = X_jᵀ g_j``, which is
all the Satterthwaite degrees of freedom (q = 1) and the Hotelling-T² (HTZ)
approximation need, without forming any N × N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg, stats

from evalkit.core.errors import EvalkitInputError
from evalkit.core.results import Dropped, ModelResults

RobustType = Literal["CR0", "CR1", "CR2"]
SMALL_DF = 4.0


@dataclass(frozen=True)
class RobustParts:
    """Per-cluster pieces kept for tests of several coefficients."""

    estimating: list[np.ndarray]  # E_j, p × n_j
    working: list[np.ndarray]  # Θ_j
    designs: list[np.ndarray]  # X_j
    bread: np.ndarray  # M
    outcomes: list[np.ndarray]  # y_j


@dataclass(frozen=True)
class RobustResults(ModelResults):
    """A meta-analytic fit with cluster-robust standard errors and Satterthwaite df."""

    vcov_type: str = "CR2"
    n_clusters: int = 0
    parts: RobustParts | None = field(default=None, repr=False)


EIGEN_FLOOR = 1e-12
"""Eigenvalues at or below this count as zero in G^{-1/2} (a pseudo-inverse, as in
clubSandwich): a cluster that alone determines a coefficient has leverage 1."""


def _inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    keep = values > EIGEN_FLOOR
    scaled = np.where(keep, 1.0 / np.sqrt(np.where(keep, values, 1.0)), 0.0)
    return np.asarray((vectors * scaled) @ vectors.T)


def sandwich(
    params: pd.Series,
    x: np.ndarray,
    y: np.ndarray,
    blocks: list[tuple[np.ndarray, np.ndarray]],
    *,
    type: RobustType,
    model: str,
    facts: dict[str, Any],
    warnings: tuple[str, ...],
    n_groups: dict[str, int],
    template: ModelResults | None = None,
) -> RobustResults:
    """Robust covariance, Satterthwaite df and test parts from per-cluster working
    covariances ``Θ_j`` (``blocks``: row indices and ``Θ_j``), for estimates
    ``params`` obtained by weighted least squares with ``W_j = Θ_j⁻¹``."""
    n_clusters = len(blocks)
    if n_clusters < 2:
        raise EvalkitInputError(
            f"robust variance estimation needs several clusters; got {n_clusters}."
        )
    beta = params.to_numpy()
    p = x.shape[1]
    info = np.zeros((p, p))
    weights = []
    for rows, theta in blocks:
        w = np.linalg.inv(theta)
        weights.append(w)
        info += x[rows].T @ w @ x[rows]
    bread = np.linalg.inv(info)
    estimating, designs, working, outcomes = [], [], [], []
    meat = np.zeros((p, p))
    scale = np.sqrt(n_clusters / (n_clusters - 1)) if type == "CR1" else 1.0
    for (rows, theta), w in zip(blocks, weights, strict=True):
        xj = x[rows]
        adjust = _adjustment(theta, xj, bread) if type == "CR2" else np.eye(rows.size)
        e_j = bread @ xj.T @ w @ adjust * scale
        contribution = e_j @ (y[rows] - xj @ beta)
        meat += np.outer(contribution, contribution)
        estimating.append(e_j)
        designs.append(xj)
        working.append(theta)
        outcomes.append(y[rows])
    parts = RobustParts(estimating, working, designs, bread, outcomes)
    terms = params.index
    df = np.array([_satterthwaite(np.eye(p)[[j]], parts) for j in range(p)])
    all_warnings = list(warnings)
    small = [str(t) for t, d in zip(terms, df, strict=True) if d < SMALL_DF]
    if small:
        all_warnings.append(
            f"Satterthwaite df below {SMALL_DF:g} for {', '.join(small)}: {type} t tests are "
            "unreliable there; prefer the cluster wild bootstrap (wild_bootstrap_test)"
        )
    facts = {**facts, "vcov_type": type, "n_clusters": n_clusters}
    return RobustResults(
        params=params,
        cov=pd.DataFrame(meat, index=terms, columns=terms),
        df=pd.Series(df, index=terms),
        nobs=int(y.size),
        model=model,
        backend="evalkit",
        n_groups={**n_groups, "robust_cluster": n_clusters},
        facts=facts,
        warnings=tuple(all_warnings),
        dropped=template.dropped if template is not None else Dropped(),
        formula=template.formula if template is not None else None,
        spec=template.spec if template is not None else None,
        variance_components=template.variance_components if template is not None else None,
        vcov_type=type,
        n_clusters=n_clusters,
        parts=parts,
    )


def _adjustment(theta: np.ndarray, xj: np.ndarray, bread: np.ndarray) -> np.ndarray:
    """CR2 adjustment ``A_j = Uᵀ G^{-1/2} U`` (clubSandwich's inverse-variance case)."""
    upper = linalg.cholesky(theta, lower=False)
    g = upper @ (theta - xj @ bread @ xj.T) @ upper.T
    return np.asarray(upper.T @ _inverse_sqrt(g) @ upper)


def _moments(
    constraints: np.ndarray, parts: RobustParts
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster ``a_j = g_jᵀΘ_j g_j`` (J × q × q) and ``u_j = X_jᵀ g_j`` (J × p × q)."""
    a, u = [], []
    for e_j, theta, xj in zip(parts.estimating, parts.working, parts.designs, strict=True):
        g = e_j.T @ constraints.T
        a.append(g.T @ theta @ g)
        u.append(xj.T @ g)
    a_arr, u_arr = np.array(a), np.array(u)
    omega = a_arr.sum(axis=0) - np.einsum("jpq,pr,jrs->qs", u_arr, parts.bread, u_arr)
    return a_arr, u_arr, omega


def total_variance(constraints: np.ndarray, parts: RobustParts) -> tuple[float, int]:
    """Σ_st Var(D_st) for D = Ω^{-1/2} C V^CR Cᵀ Ω^{-1/2} under the working model."""
    a, u, omega = _moments(constraints, parts)
    q = constraints.shape[0]
    if q == 1:
        return _total_variance_single(a[:, 0, 0], u[:, :, 0], float(omega[0, 0]), parts.bread), 1
    transform = _inverse_sqrt(omega)
    a_t = transform @ a @ transform
    lower = np.linalg.cholesky(parts.bread)
    k = np.einsum("pr,jpq,qs->jrs", lower, u, transform)  # K_j = Lᵀ U_j T
    flat = k.reshape(k.shape[0], -1)
    gram = flat @ flat.T  # <K_i, K_j> = tr(K_iᵀ K_j)
    trace_a = np.trace(a_t, axis1=1, axis2=2)
    first = gram**2
    first[np.diag_indices_from(first)] = (trace_a - np.diag(gram)) ** 2
    second = 0.0
    for s in range(q):
        for t in range(q):
            cross = k[:, :, s] @ k[:, :, t].T  # (K_iᵀK_j)_st
            second += float(np.sum(cross * cross.T))
    own = np.einsum("jps,jpt->jst", k, k)  # K_jᵀK_j
    second -= float(np.einsum("jst,jts->", own, own))
    diff = a_t - own
    second += float(np.einsum("jst,jts->", diff, diff))
    return float(first.sum()) + second, q


def _total_variance_single(a: np.ndarray, u: np.ndarray, omega: float, bread: np.ndarray) -> float:
    """The q = 1 case in O(J p²): with k_j = Lᵀu_j/√Ω, Q̃_ij = δ_ij a_j/Ω − k_iᵀk_j and
    Σ_ij Q̃_ij² = Σ_j (a_j/Ω)² − 2 Σ_j (a_j/Ω)|k_j|² + ‖KᵀK‖²_F."""
    lower = np.linalg.cholesky(bread)
    k = (u @ lower) / np.sqrt(omega)  # J × p, rows k_j
    scaled = a / omega
    gram = k.T @ k
    total = float(np.sum(scaled**2) - 2.0 * np.sum(scaled * np.sum(k**2, axis=1)) + np.sum(gram**2))
    return 2.0 * total


def _satterthwaite(constraint: np.ndarray, parts: RobustParts) -> float:
    total, q = total_variance(constraint, parts)
    return q * (q + 1) / total


@dataclass(frozen=True)
class WaldTest:
    """A test that several coefficients are zero."""

    terms: tuple[str, ...]
    statistic: float
    df_num: float
    df_denom: float
    p_value: float
    test: str

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the test."""
        return pd.DataFrame([{**self.__dict__, "terms": ", ".join(self.terms)}])


def wald_test(result: ModelResults, terms: list[str]) -> WaldTest:
    """Test that ``terms`` are all zero.

    For robust results this is the HTZ test (Tipton & Pustejovsky 2015): an F
    statistic with ``q`` and ``η − q + 1`` df, ``η`` from matching the total
    variance of the robust covariance to a Wishart distribution. For model-based
    results it is the chi-square Wald test (F with the residual df under t-based
    inference).
    """
    unknown = [t for t in terms if t not in result.params.index]
    if unknown or not terms:
        raise EvalkitInputError(f"terms not in the model: {', '.join(unknown) or '(none given)'}.")
    index = [int(np.flatnonzero(result.params.index == t)[0]) for t in terms]
    q = len(index)
    constraints = np.eye(result.params.size)[index]
    b = constraints @ result.params.to_numpy()
    cov = constraints @ result.cov.to_numpy() @ constraints.T
    quad = float(b @ np.linalg.solve(cov, b))
    if isinstance(result, RobustResults) and result.parts is not None:
        total, _ = total_variance(constraints, result.parts)
        eta = q * (q + 1) / total
        f_stat = (eta - q + 1) / (eta * q) * quad
        df_denom = eta - q + 1
        return WaldTest(
            tuple(terms), f_stat, q, df_denom, float(stats.f.sf(f_stat, q, df_denom)), "HTZ"
        )
    df_resid = float(result.df.to_numpy()[index[0]])
    if np.isinf(df_resid):
        return WaldTest(tuple(terms), quad, q, np.inf, float(stats.chi2.sf(quad, q)), "chi2")
    f_stat = quad / q
    return WaldTest(tuple(terms), f_stat, q, df_resid, float(stats.f.sf(f_stat, q, df_resid)), "F")
