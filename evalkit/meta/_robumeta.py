"""Robust variance estimation with the weights of Hedges, Tipton & Johnson (2010).

The correlated-effects (CE) and hierarchical-effects (HE) models of robumeta: method-
of-moments estimates of the between-study variance τ² (and, for HE, the within-study
ω²), approximately inverse-variance weights, and robust standard errors with
Tipton's (2015) small-sample correction — which is the CR2 estimator with the
working covariance ``Θ_j = diag(1/w_ij)`` and Satterthwaite degrees of freedom.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from evalkit.core import (
    EvalkitInputError,
    RobustResults,
    check_correlation,
    check_option,
    describe_rows,
    require_columns,
    sandwich,
)
from evalkit.meta._input import prepare

WeightModel = Literal["CE", "HE"]


def robumeta(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    study: str,
    moderators: str | None = None,
    weights: WeightModel = "CE",
    rho: float = 0.8,
) -> RobustResults:
    """Meta-regression with robust variance estimation as in robumeta's ``robu()``.

    Parameters
    ----------
    data
        One row per effect size.
    variance
        Column of sampling variances.
    study
        Column identifying studies (the clusters).
    effect
        Column of effect sizes.
    moderators
        A formulaic right-hand side, ``"dosage + C(format)"``; omit for the
        intercept-only model.
    weights
        ``"CE"`` (correlated effects: ``w_ij = 1 / (k_j (v̄_j + τ²))``) or ``"HE"``
        (hierarchical effects: ``w_ij = 1 / (v_ij + τ² + ω²)``).
    rho
        Assumed within-study correlation of effects for the CE τ² estimator.

    Returns
    -------
    RobustResults
        Coefficients with CR2 (Tipton 2015) standard errors and Satterthwaite df;
        ``glance()`` reports τ² (and ω² or I²).
    """
    check_option("weights", weights, WeightModel)
    check_correlation("rho", rho)
    require_columns(data, [study])
    missing = data[study].isna().to_numpy()
    if missing.any():
        raise EvalkitInputError(
            f"{study} has missing IDs at {describe_rows(list(data.index), missing)}."
        )
    prepared = prepare(data, effect=effect, variance=variance, moderators=moderators)
    order = np.argsort(pd.factorize(data[study], sort=True)[0], kind="stable")
    y, v, x = prepared.y[order], prepared.v[order], prepared.x[order]
    labels = data[study].to_numpy()[order]
    codes = pd.factorize(labels, sort=True)[0]
    n_studies = int(codes.max()) + 1
    if n_studies < 2:
        raise EvalkitInputError(
            f"robust variance estimation needs several studies; {study!r} has {n_studies}."
        )
    groups = [np.flatnonzero(codes == j) for j in range(n_studies)]
    k = np.array([g.size for g in groups], dtype=float)
    mean_v = np.array([v[g].mean() for g in groups])
    if weights == "CE":
        final, facts = _correlated(y, v, x, groups, k, mean_v, codes, rho)
    else:
        final, facts = _hierarchical(y, v, x, groups, codes)
    w = final
    beta = np.linalg.solve(x.T @ (x * w[:, None]), x.T @ (w * y))  # WLS with the RVE weights
    terms = pd.Index(prepared.terms)
    blocks = [(g, np.diag(1.0 / w[g])) for g in groups]
    label = "correlated effects" if weights == "CE" else "hierarchical effects"
    return sandwich(
        pd.Series(beta, index=terms),
        x,
        y,
        blocks,
        type="CR2",
        model=f"RVE, {label} weights (Hedges, Tipton & Johnson 2010), CR2 small-sample correction",
        facts={"weights": weights, "k": int(y.size), **facts},
        warnings=(),
        n_groups={"study": n_studies},
    )


def _correlated(
    y: np.ndarray,
    v: np.ndarray,
    x: np.ndarray,
    groups: list[np.ndarray],
    k: np.ndarray,
    mean_v: np.ndarray,
    codes: np.ndarray,
    rho: float,
) -> tuple[np.ndarray, dict[str, float]]:
    """CE weights with the method-of-moments τ² of Hedges, Tipton & Johnson (2010)."""
    w0 = 1.0 / (k * mean_v)[codes]
    xw = x * w0[:, None]
    bread = np.linalg.inv(x.T @ xw)
    e = y - x @ (bread @ (xw.T @ y))
    qe = float(np.sum(w0 * e**2))
    sum_xwjwx = sum(np.outer(xw[g].sum(axis=0), xw[g].sum(axis=0)) for g in groups)
    wk = w0 / k[codes]
    matrix_wk = x.T @ (x * wk[:, None])
    matrix_jx = sum(
        wk[g[0]] * (np.outer(x[g].sum(axis=0), x[g].sum(axis=0)) - x[g].T @ x[g]) for g in groups
    )
    denom = float(w0.sum() - np.trace(bread @ sum_xwjwx))
    term_a = float(np.trace(bread @ matrix_wk))
    term_b = float(np.trace(bread @ matrix_jx))
    n_studies = len(groups)
    tau2 = max(0.0, (qe - n_studies + term_a) / denom + rho * term_b / denom)
    df = n_studies - term_a - rho * term_b
    i2 = max(0.0, 100.0 * (qe - df) / qe) if qe > 0 else 0.0
    return 1.0 / (k[codes] * (mean_v[codes] + tau2)), {"tau2": tau2, "I2": i2, "rho": rho, "Q": qe}


def _hierarchical(
    y: np.ndarray, v: np.ndarray, x: np.ndarray, groups: list[np.ndarray], codes: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """HE weights with the method-of-moments τ² and ω² of Hedges, Tipton & Johnson (2010)."""
    w = 1.0 / v
    xw = x * w[:, None]
    bread = np.linalg.inv(x.T @ xw)
    e = y - x @ (bread @ (xw.T @ y))
    qe = float(np.sum(w * e**2))
    qa = float(sum(e[g].sum() ** 2 for g in groups))
    sum_xjx = sum(np.outer(x[g].sum(axis=0), x[g].sum(axis=0)) for g in groups)
    sum_xwjwx = sum(np.outer(xw[g].sum(axis=0), xw[g].sum(axis=0)) for g in groups)
    p = x.shape[1]
    sum_xjjwx = np.zeros((p, p))
    sum_xwjx = np.zeros((p, p))
    for g in groups:
        sum_xjjwx += g.size * np.outer(x[g].sum(axis=0), xw[g].sum(axis=0))
        sum_xwjx += np.outer(xw[g].sum(axis=0), x[g].sum(axis=0))
    sum_xwwx = x.T @ (x * (w**2)[:, None])
    trace_jj = float(sum(g.size**2 for g in groups))
    n = y.size
    a1 = (
        trace_jj
        - np.trace(bread @ sum_xjjwx)
        - np.trace(bread @ sum_xjjwx.T)
        + np.trace(bread @ sum_xjx @ bread @ sum_xwjwx)
    )
    b1 = (
        n
        - np.trace(bread @ sum_xwjx)
        - np.trace(bread @ sum_xwjx.T)
        + np.trace(bread @ sum_xjx @ bread @ sum_xwwx)
    )
    c1 = float(v.sum() - np.trace(bread @ sum_xjx))
    a2 = float(w.sum() - np.trace(bread @ sum_xwjwx))
    b2 = float(w.sum() - np.trace(bread @ sum_xwwx))
    c2 = float(n - p)
    omega2 = max(0.0, float(((qa - c1) * a2 - (qe - c2) * a1) / (b1 * a2 - b2 * a1)))
    tau2 = max(0.0, float((qe - c2) / a2 - omega2 * b2 / a2))
    return 1.0 / (v + tau2 + omega2), {"tau2": tau2, "omega2": omega2, "Q": qe}
