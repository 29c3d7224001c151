"""Satterthwaite degrees of freedom for linear mixed models, as lmerTest computes them.

lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13)) works in
the variance parameters ``φ = (θ, σ)``: the asymptotic covariance of φ̂ is
``A = 2 H⁻¹`` with H the Hessian of the unprofiled deviance at the optimum, and for
a contrast ``l`` with ``v = lᵀ C(φ) l`` (``C = σ²(XᵀM⁻¹X)⁻¹``) the df are
``2 v² / (∇vᵀ A ∇v)``. H and the Jacobian of C are taken numerically (central
differences with Richardson extrapolation, as numDeriv does) from the same
sufficient statistics the optimiser uses, so the cost does not grow with the rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evalkit.multilevel.crossed import CrossedReducer, Derivatives
from evalkit.multilevel.engine import AnyStats, Reducer, ThetaLayout, reducer_for
from evalkit.multilevel.gradient import derivatives as nested_derivatives
from evalkit.multilevel.iterative import IterativeReducer

EIGEN_TOL = 1e-6
"""Eigenvalues of H below this are treated as zero (lmerTest's tolerance)."""


@dataclass(frozen=True)
class VarparInference:
    """The pieces of Satterthwaite's method: ``A`` and ``∂C/∂φ_i``."""

    vcov_varpar: np.ndarray
    jacobian: np.ndarray  # (k, p, p)
    cov: np.ndarray  # C at φ̂
    negative_eigenvalues: int

    def df(self, contrast: np.ndarray) -> float:
        """Satterthwaite df of one contrast ``l`` (length p)."""
        var = float(contrast @ self.cov @ contrast)
        grad = np.einsum("p,kpq,q->k", contrast, self.jacobian, contrast)
        denom = float(grad @ self.vcov_varpar @ grad)
        return 2.0 * var**2 / denom if denom > 0 else float("inf")

    def df_multi(self, contrasts: np.ndarray) -> tuple[float, int]:
        """Denominator df and rank of a joint F test of the rows of ``contrasts``
        (lmerTest's eigen-decomposition method)."""
        v = contrasts @ self.cov @ contrasts.T
        values, vectors = np.linalg.eigh(v)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        keep = values > max(np.sqrt(np.finfo(float).eps) * values[0], 0.0)
        rotated = vectors[:, keep].T @ contrasts
        nu = np.array([self.df(row) for row in rotated])
        q = int(keep.sum())
        if q == 1 or np.all(np.abs(np.diff(nu)) < 1e-8):
            return float(np.mean(nu)), q
        if np.any(nu <= 2):
            return 2.0, q
        e = float(np.sum(nu / (nu - 2)))
        return 2 * e / (e - q), q


def varpar_functions(
    stats: AnyStats, layout: ThetaLayout, *, reml: bool
) -> tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
    """The unprofiled deviance and ``C(φ)`` as functions of ``φ = (θ, σ)``."""
    reducer = reducer_for(stats)
    n, p = stats.n, stats.p
    # The reduction depends on θ only; the finite differences in σ (and the mixed ones)
    # revisit the same θ, so each distinct θ is reduced once (about half the work).
    reduced: dict[bytes, tuple[float, float, np.ndarray, float]] = {}

    def parts(vp: np.ndarray) -> tuple[float, float, np.ndarray, float, float]:
        key = np.asarray(vp[:-1], dtype=np.float64).tobytes()
        if key not in reduced:
            red = reducer(layout.factors(vp[:-1]))
            chol = np.linalg.cholesky(red.xtmx)
            beta = np.linalg.solve(red.xtmx, red.xtmy)
            rss = red.ytmy - float(beta @ red.xtmy)
            logdet_x = 2.0 * float(np.log(np.diag(chol)).sum())
            if len(reduced) > 256:
                reduced.clear()
            reduced[key] = (red.logdet, logdet_x, red.xtmx, rss)
        logdet, logdet_x, xtmx, rss = reduced[key]
        return logdet, logdet_x, xtmx, rss, float(vp[-1]) ** 2

    def deviance(vp: np.ndarray) -> float:
        logdet, logdet_x, _, rss, sigma2 = parts(vp)
        if reml:
            return logdet + logdet_x + rss / sigma2 + (n - p) * np.log(2 * np.pi * sigma2)
        return logdet + rss / sigma2 + n * np.log(2 * np.pi * sigma2)

    def covbeta(vp: np.ndarray) -> np.ndarray:
        _, _, xtmx, _, sigma2 = parts(vp)
        return np.asarray(sigma2 * np.linalg.inv(xtmx))

    return deviance, covbeta


def _steps(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) > 1e-4, 0.1 * np.abs(x), 1e-4)


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, levels: int = 4) -> np.ndarray:
    """Hessian by central differences, Richardson-extrapolated over halved steps."""
    k = x.size
    base = _steps(x)
    f0 = f(x)
    tables = []
    for level in range(levels):
        h = base / 2**level
        out = np.empty((k, k))
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h[i]
            out[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h[j]
                value = f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
                out[i, j] = out[j, i] = value / (4 * h[i] * h[j])
        tables.append(out)
    return _richardson(tables)


def jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, levels: int = 4) -> np.ndarray:
    """Derivatives of a matrix-valued function, one slice per coordinate of x."""
    base = _steps(x)
    slices = []
    for i in range(x.size):
        tables = []
        for level in range(levels):
            step = np.zeros(x.size)
            step[i] = base[i] / 2**level
            tables.append((f(x + step) - f(x - step)) / (2 * step[i]))
        slices.append(_richardson(tables))
    return np.array(slices)


def _richardson(tables: list[np.ndarray]) -> np.ndarray:
    """Eliminate the h², h⁴, … error terms of estimates at steps h, h/2, h/4, …"""
    current = list(tables)
    power = 4.0
    while len(current) > 1:
        current = [
            (power * fine - coarse) / (power - 1) for coarse, fine in itertools.pairwise(current)
        ]
        power *= 4.0
    return current[0]


def varpar_inference(
    stats: AnyStats,
    layout: ThetaLayout,
    theta: np.ndarray,
    sigma: float,
    *,
    reml: bool,
) -> VarparInference:
    """``A = 2H⁻¹`` (positive eigen-directions only) and the Jacobian of C at φ̂."""
    deviance, covbeta = varpar_functions(stats, layout, reml=reml)
    # Differentiate in (θ, σ/σ̂): θ is already relative to σ, and σ/σ̂ makes the finite
    # differences (and the eigenvalue cut-off) independent of the outcome's units.
    units = np.r_[np.ones(theta.size), sigma]
    point = np.r_[theta, 1.0]
    h = hessian(lambda u: deviance(u * units), point)
    values, vectors = np.linalg.eigh(0.5 * (h + h.T))
    positive = values > EIGEN_TOL
    inverse = (vectors[:, positive] / values[positive]) @ vectors[:, positive].T
    slices = jacobian(lambda u: covbeta(u * units), point)
    return VarparInference(
        vcov_varpar=2.0 * inverse * np.outer(units, units),
        jacobian=slices / units[:, None, None],
        cov=covbeta(point * units),
        negative_eigenvalues=int(np.sum(values < -EIGEN_TOL)),
    )


def varpar_inference_exact(
    reducer: CrossedReducer | IterativeReducer | Reducer,
    theta: np.ndarray,
    sigma: float,
    *,
    reml: bool,
) -> VarparInference:
    """The same pieces from exact gradients (random intercepts, crossed or nested).

    The unprofiled deviance is ``D = log|Ω_S| + r²/σ² + ν log(2πσ²)`` (ν = n − p for
    REML, n for ML): its σ-derivatives are analytic, its θ-gradient exact, so the
    Hessian needs central differences of the gradient in θ only (Richardson over two
    step sizes), 4k evaluations instead of the ~(2k²) a Hessian of values needs —
    on InstEval (k = 2) eight evaluations instead of about eighty.
    """
    k = theta.size
    n, p = reducer.stats.n, reducer.stats.p
    dof = n - p if reml else n
    sigma2 = sigma**2

    def parts_at(point: np.ndarray) -> Derivatives:
        if isinstance(reducer, (CrossedReducer, IterativeReducer)):
            return reducer.derivatives(point, reml=reml)
        return nested_derivatives(reducer, point, reml=reml)

    def at(point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = parts_at(point)
        return parts.dlogdet + parts.drss / sigma2, np.linalg.inv(parts.xtmx)

    base = parts_at(theta)
    inv_xtmx = np.linalg.inv(base.xtmx)
    hess = np.zeros((k + 1, k + 1))
    slices = np.zeros((k + 1, *inv_xtmx.shape))
    for i in range(k):
        step = 0.02 * abs(theta[i]) if abs(theta[i]) > 5e-3 else 1e-4
        tables = []
        for h in (step, step / 2):
            shift = np.zeros(k)
            shift[i] = h
            g_up, c_up = at(theta + shift)
            g_down, c_down = at(theta - shift)
            tables.append((np.r_[(g_up - g_down) / (2 * h)], sigma2 * (c_up - c_down) / (2 * h)))
        hess[i, :k] = _richardson([t[0] for t in tables])
        slices[i] = _richardson([t[1] for t in tables])
    hess[:k, :k] = 0.5 * (hess[:k, :k] + hess[:k, :k].T)
    hess[:k, k] = hess[k, :k] = -2.0 * base.drss / sigma**3
    hess[k, k] = 6.0 * base.rss / sigma2**2 - 2.0 * dof / sigma2
    slices[k] = 2.0 * sigma * inv_xtmx
    units = np.r_[np.ones(k), sigma]
    scaled = hess * np.outer(units, units)
    values, vectors = np.linalg.eigh(scaled)
    positive = values > EIGEN_TOL
    inverse = (vectors[:, positive] / values[positive]) @ vectors[:, positive].T
    return VarparInference(
        vcov_varpar=2.0 * inverse * np.outer(units, units),
        jacobian=slices,
        cov=sigma2 * inv_xtmx,
        negative_eigenvalues=int(np.sum(values < -EIGEN_TOL)),
    )
