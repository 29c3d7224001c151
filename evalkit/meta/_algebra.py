"""Weighted least squares and the heterogeneity estimators of univariate meta-analysis.

Notation follows metafor (Viechtbauer 2010): effects ``y`` with sampling variances
``v``, moderators ``X`` (k × p), weights ``w = 1/(v + τ²)`` and the residual-maker
``P = W − W X (XᵀWX)⁻¹ XᵀW``. Then ``QE(τ²) = yᵀPy``, ``P y = W e`` with ``e`` the
WLS residuals, and ``d/dτ² (yᵀPy) = −yᵀPPy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg, optimize

from evalkit.core import FloatArray

Tau2Method = Literal["DL", "REML", "ML", "PM", "EB", "HS", "SJ", "HE"]
ModelMethod = Literal["FE", "DL", "REML", "ML", "PM", "EB", "HS", "SJ", "HE"]
"""τ² estimators, plus ``"FE"`` for a fixed-effect model."""
ROOT_TOL = 1e-14


@dataclass(frozen=True)
class WLSFit:
    """Weighted least squares at a given τ²."""

    beta: FloatArray
    cov: FloatArray  # (XᵀWX)⁻¹
    residuals: FloatArray
    weights: FloatArray
    qe: float  # yᵀPy
    trace_p: float  # tr(P)
    ypp_y: float  # yᵀPPy
    logdet_xwx: float


def profiled_loglik(
    *, n: int, p: int, logdet: float, logdet_x: float, quad: float, logdet_xtx: float, reml: bool
) -> float:
    """The (restricted) log-likelihood with metafor's constants, from log|V|,
    log|XᵀV⁻¹X|, the GLS quadratic form and log|XᵀX| (REML adds ½ log|XᵀX|)."""
    if reml:
        return -0.5 * ((n - p) * np.log(2 * np.pi) + logdet + logdet_x + quad) + 0.5 * logdet_xtx
    return -0.5 * (n * np.log(2 * np.pi) + logdet + quad)


def wls(y: FloatArray, v: FloatArray, x: FloatArray, tau2: float) -> WLSFit:
    """WLS with weights ``1/(v + τ²)``, solved through a Cholesky factor of XᵀWX."""
    w = 1.0 / (v + tau2)
    xw = x * w[:, None]
    xtwx = x.T @ xw
    factor = linalg.cho_factor(xtwx, lower=True)
    beta = linalg.cho_solve(factor, xw.T @ y)
    cov = linalg.cho_solve(factor, np.eye(x.shape[1]))
    e = y - x @ beta
    we = w * e
    # tr(P) = Σw − tr((XᵀWX)⁻¹ XᵀW²X)
    trace_p = float(w.sum() - np.sum(cov * (xw.T @ xw)))
    logdet = float(2.0 * np.sum(np.log(np.diag(factor[0]))))
    return WLSFit(beta, cov, e, w, float(e @ we), trace_p, float(we @ we), logdet)


def _q(y: FloatArray, v: FloatArray, x: FloatArray, tau2: float) -> float:
    return wls(y, v, x, tau2).qe


def _upper_bracket(function: object, start: float) -> float:
    """Double ``start`` until ``function`` (decreasing) turns negative."""
    upper = max(start, 1e-4)
    for _ in range(200):
        if function(upper) < 0:  # type: ignore[operator]
            return upper
        upper *= 2.0
    raise RuntimeError("could not bracket the root of the heterogeneity equation")


def _root_on_positive(function: object, scale: float) -> float:
    """Root of a decreasing ``function`` on τ² ≥ 0; 0 when ``function(0) ≤ 0``."""
    if function(0.0) <= 0:  # type: ignore[operator]
        return 0.0
    upper = _upper_bracket(function, scale)
    return float(
        optimize.brentq(
            function, 0.0, upper, xtol=ROOT_TOL, rtol=4 * np.finfo(float).eps, maxiter=500
        )
    )


def estimate_tau2(y: FloatArray, v: FloatArray, x: FloatArray, method: Tau2Method) -> float:
    """Estimate the between-study variance τ² (truncated at zero) by ``method``.

    DL (DerSimonian–Laird), HE (Hedges), HS (Hunter–Schmidt), SJ (Sidik–Jonkman),
    PM (Paule–Mandel), EB (empirical Bayes; its estimating equation is the PM one,
    Viechtbauer et al. 2015), ML and REML (roots of the likelihood score). All
    follow metafor's ``rma.uni`` definitions, including for meta-regression.
    """
    k, p = x.shape
    scale = float(np.var(y)) + float(np.mean(v))
    if method in ("DL", "HS"):
        fixed = wls(y, v, x, 0.0)
        if method == "DL":
            return max(0.0, (fixed.qe - (k - p)) / fixed.trace_p)
        return max(0.0, (fixed.qe - k) / float(fixed.weights.sum()))
    if method == "HE":
        ols = wls(y, np.ones_like(v), x, 0.0)  # equal weights: OLS
        xtx_inv = ols.cov
        trace_pv = float(v.sum() - np.sum(xtx_inv * (x.T @ (x * v[:, None]))))
        return max(0.0, (float(ols.residuals @ ols.residuals) - trace_pv) / (k - p))
    if method == "SJ":
        tau2_0 = float(np.var(y, ddof=1) * (k - 1) / k)
        fit = wls(y, v, x, tau2_0)
        return tau2_0 * fit.qe / (k - p)
    if method in ("PM", "EB"):
        return _root_on_positive(lambda t: _q(y, v, x, t) - (k - p), scale)
    if method == "ML":
        return _root_on_positive(lambda t: _score(y, v, x, t, reml=False), scale)
    return _root_on_positive(lambda t: _score(y, v, x, t, reml=True), scale)


def _score(y: FloatArray, v: FloatArray, x: FloatArray, tau2: float, *, reml: bool) -> float:
    """Derivative of the (restricted) log-likelihood with respect to τ² (times 2)."""
    fit = wls(y, v, x, tau2)
    trace = fit.trace_p if reml else float(fit.weights.sum())
    return fit.ypp_y - trace


def log_likelihood(
    y: FloatArray, v: FloatArray, x: FloatArray, tau2: float, *, reml: bool
) -> float:
    """metafor's (restricted) log-likelihood, including ½log|XᵀX| for REML."""
    k, p = x.shape
    fit = wls(y, v, x, tau2)
    if not reml:
        return float(-0.5 * k * np.log(2 * np.pi) - 0.5 * np.sum(np.log(v + tau2)) - 0.5 * fit.qe)
    _, logdet_xtx = np.linalg.slogdet(x.T @ x)
    return float(
        -0.5 * (k - p) * np.log(2 * np.pi)
        + 0.5 * logdet_xtx
        - 0.5 * np.sum(np.log(v + tau2))
        - 0.5 * fit.logdet_xwx
        - 0.5 * fit.qe
    )


def q_profile_interval(
    y: FloatArray, v: FloatArray, x: FloatArray, level: float
) -> tuple[float, float]:
    """Q-profile confidence interval for τ² (Viechtbauer 2007), as metafor's ``confint``."""
    from scipy import stats

    k, p = x.shape
    df = k - p
    alpha = 1.0 - level
    upper_crit = stats.chi2.ppf(1 - alpha / 2, df)
    lower_crit = stats.chi2.ppf(alpha / 2, df)
    scale = float(np.var(y)) + float(np.mean(v))
    low = _root_on_positive(lambda t: _q(y, v, x, t) - upper_crit, scale)
    high = _root_on_positive(lambda t: _q(y, v, x, t) - lower_crit, scale)
    return low, high


def typical_variance(v: FloatArray, x: FloatArray) -> float:
    """metafor's 'typical' sampling variance ``(k − p) / tr(P₀)`` used for I² and H²."""
    k, p = x.shape
    return (k - p) / wls(np.zeros_like(v), v, x, 0.0).trace_p
