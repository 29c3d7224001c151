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

from evalkit.multilevel.engine import Reducer, ThetaLayout
from evalkit.multilevel.stats import SufficientStats

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
    stats: SufficientStats, layout: ThetaLayout, *, reml: bool
) -> tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
    """The unprofiled deviance and ``C(φ)`` as functions of ``φ = (θ, σ)``."""
    reducer = Reducer(stats)
    n, p = stats.n, stats.p

    def parts(vp: np.ndarray) -> tuple[float, float, np.ndarray, float, float]:
        red = reducer(layout.factors(vp[:-1]))
        chol = np.linalg.cholesky(red.xtmx)
        beta = np.linalg.solve(red.xtmx, red.xtmy)
        rss = red.ytmy - float(beta @ red.xtmy)
        logdet_x = 2.0 * float(np.log(np.diag(chol)).sum())
        return red.logdet, logdet_x, red.xtmx, rss, float(vp[-1]) ** 2

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
    stats: SufficientStats, layout: ThetaLayout, theta: np.ndarray, sigma: float, *, reml: bool
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
