"""Multilevel meta-analysis: three-level and correlated-and-hierarchical-effects models.

The equivalent of metafor's ``rma.mv(yi, V, random = ~ 1 | study/es_id)`` for nested
random intercepts, with the within-study sampling covariance either diagonal or
imputed from a correlation ρ (the CHE working model of Pustejovsky & Tipton 2022).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from evalkit._errors import EvalkitInputError
from evalkit._validate import check_option, describe_rows, require_columns
from evalkit.meta._algebra import wls
from evalkit.meta._blocks import Blocks
from evalkit.meta._input import MetaData
from evalkit.meta._results import MetaResults

LikelihoodMethod = Literal["REML", "ML"]
BOUNDARY = 1e-8


def level_codes(data: pd.DataFrame, levels: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Codes of the top-level cluster and of each nested level (outer/inner combinations)."""
    if not levels:
        raise EvalkitInputError("levels needs at least one grouping column, outermost first.")
    require_columns(data, list(levels))
    for name in levels:
        missing = data[name].isna().to_numpy()
        if missing.any():
            raise EvalkitInputError(
                f"level {name!r} has missing IDs at {describe_rows(list(data.index), missing)}."
            )
    codes = []
    for depth in range(len(levels)):
        keys = data[list(levels[: depth + 1])].astype(str).agg("\x1f".join, axis=1)
        codes.append(pd.factorize(keys)[0])
    return codes[0], codes


def fit_multilevel(
    meta_data: MetaData,
    data: pd.DataFrame,
    *,
    levels: Sequence[str],
    rho: float | None,
    method: LikelihoodMethod,
    level: float,
    formula: str | None,
) -> MetaResults:
    """Fit by (restricted) maximum likelihood; variance components bounded at zero."""
    check_option("method", method, LikelihoodMethod)
    if rho is not None and not 0.0 <= rho <= 1.0:
        raise EvalkitInputError(f"rho must lie in [0, 1], got {rho!r}.")
    cluster, codes = level_codes(data, levels)
    y, v, x = meta_data.y, meta_data.v, meta_data.x
    blocks = Blocks(y, v, x, cluster, codes, rho)
    reml = method == "REML"
    theta = _optimise(blocks, reml=reml)
    final = blocks.evaluate(theta, reml=reml)
    k, p = x.shape
    terms = pd.Index(meta_data.terms)
    params = pd.Series(final.beta, index=terms)
    cov = final.cov
    qe, _ = blocks.sampling_quadratic()
    components = {f"sigma2_{name}": float(t) for name, t in zip(levels, theta, strict=True)}
    # I² by level (Cheung 2014): share of total variance, with metafor's typical
    # sampling variance (k − p) / tr(P) from inverse sampling-variance weights.
    typical = (k - p) / wls(np.zeros_like(v), v, x, 0.0).trace_p
    total = float(theta.sum()) + typical
    facts: dict[str, object] = {
        "method": method,
        "k": k,
        "n_clusters": len(blocks.clusters),
        "rho": rho,
    }
    facts.update(components)
    for name, t in zip(levels, theta, strict=True):
        facts[f"I2_{name}"] = 100.0 * float(t) / total
    n_params = p + len(levels)
    n_bic = k - p if reml else k
    facts.update(
        logLik=final.loglik,
        AIC=-2 * final.loglik + 2 * n_params,
        BIC=-2 * final.loglik + n_params * np.log(n_bic),
        Q=qe,
        Q_df=k - p,
        Q_p=float(stats.chi2.sf(qe, k - p)),
        iterations=int(theta.size),
    )
    warnings = [
        f"variance component {name} estimated at its boundary (0)"
        for name, t in zip(levels, theta, strict=True)
        if t < BOUNDARY * max(1.0, float(np.var(y)))
    ]
    from evalkit.meta._univariate import _omnibus

    qm, qm_df, qm_p = _omnibus(final.beta, cov, meta_data.has_intercept, "z", k - p)
    if not np.isnan(qm):
        facts.update(QM=qm, QM_p=qm_p)
    return MetaResults(
        params=params,
        cov=pd.DataFrame(cov, index=terms, columns=terms),
        df=pd.Series(np.inf, index=terms),
        nobs=k,
        model=f"multilevel meta-analysis ({method}; levels {' / '.join(levels)}"
        + (f"; CHE with rho = {rho}" if rho is not None else "")
        + ")",
        backend="evalkit",
        n_groups={name: int(np.unique(c).size) for name, c in zip(levels, codes, strict=True)},
        facts=facts,
        warnings=tuple(warnings),
        formula=formula,
        spec=meta_data.spec,
        method=method,
        test="z",
        level=level,
        tau2=float(theta.sum()),
        q=qe,
        q_df=k - p,
        q_p=float(stats.chi2.sf(qe, k - p)),
        qm=qm,
        qm_df=qm_df,
        qm_p=qm_p,
        y=y,
        v=v,
        x=x,
        variance_components=components,
        structure=(blocks, theta),
    )


def _optimise(blocks: Blocks, *, reml: bool) -> np.ndarray:
    """Maximise the (restricted) likelihood over σ² ≥ 0 (L-BFGS-B, analytic gradient)."""
    scale = float(np.var(blocks.y)) + 1e-12
    start = np.full(blocks.n_levels, scale / (blocks.n_levels + 1))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        evaluation = blocks.evaluate(theta, reml=reml)
        return -evaluation.loglik / scale, -evaluation.gradient

    result = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * blocks.n_levels,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000},
    )
    theta = np.maximum(result.x, 0.0)
    return theta
