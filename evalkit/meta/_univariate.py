"""Fixed-effect and random-effects models and meta-regression (metafor's ``rma.uni``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, VarianceComponents, check_option
from evalkit.meta._algebra import (
    ModelMethod,
    estimate_tau2,
    log_likelihood,
    q_profile_interval,
    typical_variance,
    wls,
)
from evalkit.meta._input import MetaData
from evalkit.meta._results import MetaResults

STUDY_LEVEL = "study"
"""Level name of τ² in a univariate model's variance components."""

TestMethod = Literal["z", "knha"]


def fit(
    data: MetaData,
    *,
    method: ModelMethod,
    test: TestMethod,
    level: float,
    formula: str | None,
) -> MetaResults:
    """Fit the model and compute every statistic a MARS-style report needs."""
    check_option("method", method, ModelMethod)
    check_option("test", test, TestMethod)
    if not 0.0 < level < 1.0:
        raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
    y, v, x = data.y, data.v, data.x
    k, p = x.shape
    if method != "FE" and k < 2:
        raise EvalkitInputError(
            "a random-effects model needs at least two effect sizes; use fixed_effect()."
        )
    # τ² is estimated on effects scaled to unit typical SE, where the estimators'
    # tolerances are meant to work, and scaled back: the fit is scale-invariant.
    unit = effect_scale(v)
    tau2 = 0.0 if method == "FE" else estimate_tau2(y / unit, v / unit**2, x, method) * unit**2
    weighted = wls(y, v, x, tau2)
    fixed = wls(y, v, x, 0.0)
    q_df = k - p
    cov = weighted.cov
    df_value = np.inf
    if test == "knha":
        if q_df < 1:
            raise EvalkitInputError("Knapp–Hartung needs more effect sizes than coefficients.")
        cov = cov * (weighted.qe / q_df)
        df_value = float(q_df)
    terms = pd.Index(data.terms)
    params = pd.Series(weighted.beta, index=terms)
    qm, qm_df, qm_p = _omnibus(weighted.beta, cov, data.has_intercept, test, q_df)
    spread = _heterogeneity(data, method, tau2, fixed.qe, level)
    facts = _facts(data, method, test, tau2, fixed.qe, spread)
    r2 = _r_squared(data, method, tau2) if (formula and data.has_intercept and p > 1) else np.nan
    if not np.isnan(qm):
        facts.update(QM=qm, QM_p=qm_p)
    if not np.isnan(r2):
        facts["R2"] = r2
    warnings = []
    if test == "knha" and weighted.qe <= 1e-12 * q_df:
        warnings.append(
            "Knapp–Hartung: the weighted residual variation is zero (the effects are "
            "identical), so the scaled SEs are zero and the CIs have no width; use test='z'"
        )
    if method != "FE" and tau2 == 0.0:
        warnings.append("τ² estimated at its boundary (0): no heterogeneity beyond sampling error")
    return MetaResults(
        params=params,
        cov=pd.DataFrame(cov, index=terms, columns=terms),
        df=pd.Series(df_value, index=terms),
        nobs=k,
        model="fixed-effect meta-analysis"
        if method == "FE"
        else f"random-effects meta-analysis ({method})",
        backend="evalkit",
        facts=facts,
        warnings=tuple(warnings),
        formula=formula,
        spec=data.spec,
        method=method,
        test=test,
        level=level,
        tau2=tau2,
        tau2_ci=spread.tau2_ci,
        i2=spread.i2,
        i2_ci=spread.i2_ci,
        h2=spread.h2,
        h2_ci=spread.h2_ci,
        q=fixed.qe,
        q_df=q_df,
        q_p=facts["Q_p"],
        qm=qm,
        qm_df=qm_df,
        qm_p=qm_p,
        r2=r2,
        weights=pd.Series(100.0 * weighted.weights / weighted.weights.sum(), index=data.labels),
        variance_components=None
        if method == "FE"
        else VarianceComponents.from_variances({STUDY_LEVEL: tau2}),
        y=y,
        v=v,
        x=x,
        labels=data.labels,
        data=data.source,
    )


def effect_scale(v: np.ndarray) -> float:
    """A typical standard error (the root of the median sampling variance): dividing
    effects by it puts every meta-analysis on the scale its estimators' tolerances
    assume, whatever the units of the effects."""
    return float(np.sqrt(np.median(v)))


def _facts(
    data: MetaData, method: str, test: str, tau2: float, q_fixed: float, spread: Heterogeneity
) -> dict[str, Any]:
    """Heterogeneity, Q and the likelihood-based fit statistics for ``glance()``."""
    k, p = data.x.shape
    q_df = k - p
    reml = method == "REML"
    loglik = log_likelihood(data.y, data.v, data.x, tau2, reml=reml)
    n_params = p + (0 if method == "FE" else 1)
    n_bic = k - p if reml else k
    return {
        "method": method,
        "test": test,
        "k": k,
        "I2": spread.i2,
        "H2": spread.h2,
        "Q": q_fixed,
        "Q_df": q_df,
        "Q_p": float(stats.chi2.sf(q_fixed, q_df)) if q_df > 0 else np.nan,
        "logLik": loglik,
        "AIC": -2 * loglik + 2 * n_params,
        "BIC": -2 * loglik + n_params * np.log(n_bic),
    }


@dataclass(frozen=True)
class Heterogeneity:
    """I² and H² (Higgins & Thompson 2002) with intervals from the Q-profile τ² interval."""

    i2: float
    h2: float
    tau2_ci: tuple[float, float]
    i2_ci: tuple[float, float]
    h2_ci: tuple[float, float]


def _heterogeneity(
    data: MetaData, method: str, tau2: float, q_fixed: float, level: float
) -> Heterogeneity:
    """I² = τ²/(τ² + ṽ) with metafor's typical sampling variance ṽ; for a fixed-effect
    model the Q-based I² = (Q − df)/Q and H² = Q/df."""
    k, p = data.x.shape
    q_df = k - p
    none = (np.nan, np.nan)
    if method == "FE":
        i2 = max(0.0, 100.0 * (q_fixed - q_df) / q_fixed) if q_fixed > 0 else 0.0
        return Heterogeneity(i2, q_fixed / q_df if q_df > 0 else np.nan, none, none, none)
    unit = effect_scale(data.v)
    vt = typical_variance(data.v / unit**2, data.x) * unit**2 if q_df > 0 else np.nan
    if q_df >= 1:
        scaled = q_profile_interval(data.y / unit, data.v / unit**2, data.x, level)
        tau2_ci = (scaled[0] * unit**2, scaled[1] * unit**2)
    else:
        tau2_ci = none
    low, high = tau2_ci
    return Heterogeneity(
        i2=100.0 * tau2 / (tau2 + vt),
        h2=(tau2 + vt) / vt,
        tau2_ci=tau2_ci,
        i2_ci=(100.0 * low / (low + vt), 100.0 * high / (high + vt)),
        h2_ci=((low + vt) / vt, (high + vt) / vt),
    )


def _omnibus(
    beta: np.ndarray, cov: np.ndarray, has_intercept: bool, test: str, q_df: int
) -> tuple[float, tuple[int, ...], float]:
    """Wald test that all coefficients but the intercept are zero (QM)."""
    idx = np.arange(1 if has_intercept else 0, beta.size)
    if idx.size == 0:
        return np.nan, (), np.nan
    b = beta[idx]
    qm = float(b @ np.linalg.solve(cov[np.ix_(idx, idx)], b))
    if test == "knha":
        f_value = qm / idx.size
        return f_value, (idx.size, q_df), float(stats.f.sf(f_value, idx.size, q_df))
    return qm, (idx.size,), float(stats.chi2.sf(qm, idx.size))


def _r_squared(data: MetaData, method: str, tau2: float) -> float:
    """Share of τ² accounted for by the moderators, against the intercept-only model.

    For a fixed-effect model there is no τ²; as metafor (3.8) does, R² is then the
    proportional reduction in H² = Q/(k − p), the excess of variability over
    sampling error.
    """
    if method == "FE":
        k, p = data.x.shape
        h2_model = wls(data.y, data.v, data.x, 0.0).qe / (k - p)
        h2_null = wls(data.y, data.v, np.ones((k, 1)), 0.0).qe / (k - 1)
        return max(0.0, 100.0 * (h2_null - h2_model) / h2_null)
    tau2_null = estimate_tau2(data.y, data.v, np.ones((data.y.size, 1)), method)  # type: ignore[arg-type]
    if tau2_null <= 0:
        return 0.0
    return max(0.0, 100.0 * (tau2_null - tau2) / tau2_null)
