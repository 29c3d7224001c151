"""Multilevel meta-analysis: three-level and correlated-and-hierarchical-effects models.

The equivalent of metafor's ``rma.mv(yi, V, random = ~ 1 | study/es_id)`` for nested
random intercepts, with the within-study sampling covariance either diagonal or
imputed from a correlation ρ (the CHE working model of Pustejovsky & Tipton 2022).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from evalkit.core import (
    EvalkitInputError,
    VarianceComponents,
    check_correlation,
    check_option,
    describe_rows,
    require_columns,
    variance_key,
)
from evalkit.meta._algebra import wls
from evalkit.meta._blocks import Blocks
from evalkit.meta._input import MetaData
from evalkit.meta._results import MetaResults

LikelihoodMethod = Literal["REML", "ML"]
BOUNDARY = 1e-8


def level_codes(data: pd.DataFrame, levels: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels of the top-level cluster and codes of each nested level (outer/inner combinations)."""
    if not levels:
        raise EvalkitInputError("levels needs at least one grouping column, outermost first.")
    require_columns(data, list(levels))
    for name in levels:
        missing = data[name].isna().to_numpy()
        if missing.any():
            raise EvalkitInputError(
                f"level {name!r} has missing IDs at {describe_rows(list(data.index), missing)}."
            )
    codes = [
        data.groupby(list(levels[: depth + 1]), sort=False, dropna=False).ngroup().to_numpy()
        for depth in range(len(levels))
    ]
    return data[levels[0]].to_numpy(), codes


def refit_multilevel(result: MetaResults, data: MetaData, keep: np.ndarray | None) -> MetaResults:
    """Refit a multilevel model to new effects (rows ``keep`` of the original, or the
    original rows when ``keep`` is None), starting from its variance components."""
    blocks_old, theta_old = result.structure
    if keep is None:
        if data.y.size != blocks_old.y.size:
            raise EvalkitInputError("multilevel refits need the original rows or a subset of them.")
        keep = np.ones(data.y.size, dtype=bool)
    cluster = blocks_old.cluster_labels[keep]
    codes = [c[keep] for c in blocks_old.level_codes]
    blocks = Blocks(data.y, data.v, data.x, cluster, codes, blocks_old.rho)
    reml = result.method == "REML"
    single = single_group_levels(codes)
    start = np.where(single, 0.0, np.maximum(theta_old, 1e-6 * variance_scale(data.y, data.v)))
    convergence = _optimise(blocks, reml=reml, start=start, held=single)
    final = blocks.evaluate(convergence.theta, reml=reml)
    terms = pd.Index(data.terms)
    return MetaResults(
        params=pd.Series(final.beta, index=terms),
        cov=pd.DataFrame(final.cov, index=terms, columns=terms),
        df=pd.Series(np.inf, index=terms),
        nobs=data.y.size,
        model=result.model,
        backend="evalkit",
        method=result.method,
        test="z",
        level=result.level,
        tau2=float(convergence.theta.sum()),
        y=data.y,
        v=data.v,
        x=data.x,
        variance_components=_components(blocks_levels(result), convergence.theta),
        structure=(blocks, convergence.theta),
    )


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
    if rho is not None:
        check_correlation("rho", rho)
    cluster, codes = level_codes(data, levels)
    if rho is not None and rho >= 1.0 and pd.Series(cluster).duplicated().any():
        raise EvalkitInputError(
            "rho = 1 makes the sampling covariance matrix of every study with several effect "
            "sizes singular (each is then a single number seen twice); use a value below 1, "
            "such as 0.8, and check the sensitivity with rho_sensitivity()."
        )
    y, v, x = meta_data.y, meta_data.v, meta_data.x
    blocks = Blocks(y, v, x, cluster, codes, rho)
    reml = method == "REML"
    single = single_group_levels(codes)
    start = np.where(single, 0.0, variance_scale(y, v) / (len(levels) + 1))
    convergence = _optimise(blocks, reml=reml, start=start, held=single)
    theta = convergence.theta
    final = blocks.evaluate(theta, reml=reml)
    k, p = x.shape
    terms = pd.Index(meta_data.terms)
    params = pd.Series(final.beta, index=terms)
    cov = final.cov
    qe, _ = blocks.sampling_quadratic()
    facts = _facts(meta_data, blocks, convergence, final.loglik, qe, levels, method, rho)
    if single.any():
        _recount(facts, int(single.sum()), k=y.size, p=x.shape[1], reml=reml)
    warnings = _warnings(convergence, levels, variance_scale(y, v), single)
    warnings.extend(_unidentified(levels, codes))
    warnings.extend(
        f"the level {name} has a single group: its variance is not identified and is fixed "
        "at 0 (as metafor does for single-level factors)"
        for name, one in zip(levels, single, strict=True)
        if one
    )
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
        variance_components=_components(list(levels), theta),
        structure=(blocks, theta),
        labels=meta_data.labels,
        data=data,
    )


def _facts(
    meta_data: MetaData,
    blocks: Blocks,
    convergence: Convergence,
    loglik: float,
    qe: float,
    levels: Sequence[str],
    method: str,
    rho: float | None,
) -> dict[str, object]:
    """What ``glance()`` reports: I² by level (Cheung 2014: each component's share of
    the total, with metafor's typical sampling variance (k − p)/tr(P) from inverse
    sampling-variance weights), fit statistics, QE and convergence."""
    v, x = meta_data.v, meta_data.x
    k, p = x.shape
    theta = convergence.theta
    typical = (k - p) / wls(np.zeros_like(v), v, x, 0.0).trace_p
    total = float(theta.sum()) + typical
    facts: dict[str, object] = {
        "method": method,
        "k": k,
        "n_clusters": len(blocks.clusters),
        "rho": rho,
    }
    for name, t in zip(levels, theta, strict=True):
        facts[f"I2_{name}"] = 100.0 * float(t) / total
    n_params = p + len(levels)
    n_bic = k - p if method == "REML" else k
    facts.update(
        logLik=loglik,
        AIC=-2 * loglik + 2 * n_params,
        BIC=-2 * loglik + n_params * np.log(n_bic),
        Q=qe,
        Q_df=k - p,
        Q_p=float(stats.chi2.sf(qe, k - p)),
        iterations=convergence.iterations,
        gradient_norm=convergence.gradient_norm,
        converged=convergence.converged,
    )
    return facts


def _recount(facts: dict[str, object], n_fixed: int, *, k: int, p: int, reml: bool) -> None:
    """AIC and BIC without the variance components held at 0 (metafor counts only
    estimated parameters)."""
    n_bic = k - p if reml else k
    facts["AIC"] = float(facts["AIC"]) - 2 * n_fixed  # type: ignore[arg-type]
    facts["BIC"] = float(facts["BIC"]) - n_fixed * np.log(n_bic)  # type: ignore[arg-type]


def _warnings(
    convergence: Convergence, levels: Sequence[str], variance_y: float, held: np.ndarray
) -> list[str]:
    """Components at their boundary and an optimiser that did not converge."""
    warnings = [
        f"variance component {name} estimated at its boundary (0)"
        for name, t, fixed in zip(levels, convergence.theta, held, strict=True)
        if t < BOUNDARY * variance_y and not fixed
    ]
    if not convergence.converged:
        warnings.append(
            f"the optimiser did not converge in {convergence.iterations} iterations "
            f"(gradient norm {convergence.gradient_norm:.2g})"
        )
    return warnings


def _unidentified(levels: Sequence[str], codes: list[np.ndarray]) -> list[str]:
    """Adjacent levels with as many groups as each other (every outer group holds one
    inner group: one effect size per study, say) have variance components that only
    their sum identifies; the split reported is arbitrary, as in metafor."""
    out = []
    for depth in range(1, len(levels)):
        if np.unique(codes[depth]).size == np.unique(codes[depth - 1]).size:
            out.append(
                f"the variance components of {levels[depth - 1]} and {levels[depth]} are not "
                f"separately identified (each {levels[depth - 1]} has one {levels[depth]}): only "
                "their sum is estimated, and the split between them is arbitrary"
            )
    return out


def single_group_levels(codes: list[np.ndarray]) -> np.ndarray:
    """Levels with one group in the data: their variance is confounded with the
    intercept, so it is held at 0 (metafor's rule for single-level factors)."""
    return np.array([np.unique(c).size < 2 for c in codes])


def variance_scale(y: np.ndarray, v: np.ndarray) -> float:
    """The data's scale in squared effect units (variance of the effects plus their mean
    sampling variance): tolerances and start values are relative to it, so the fit does
    not depend on the units of the effects."""
    return float(np.var(y) + np.mean(v))


def _components(levels: Sequence[str], theta: np.ndarray) -> VarianceComponents:
    return VarianceComponents.from_variances(
        {name: float(t) for name, t in zip(levels, theta, strict=True)}
    )


def blocks_levels(result: MetaResults) -> list[str]:
    """The grouping levels of a multilevel fit, outermost first."""
    assert result.variance_components is not None
    return list(result.variance_components.levels)


@dataclass(frozen=True)
class Convergence:
    """How the optimiser ended."""

    theta: np.ndarray
    iterations: int
    gradient_norm: float
    converged: bool


def _optimise(
    blocks: Blocks,
    *,
    reml: bool,
    start: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> Convergence:
    """Maximise the (restricted) likelihood over σ² ≥ 0 by Newton–Raphson.

    Uses the analytic Hessian when it is negative definite on the free components
    and Fisher scoring otherwise, halves steps until the likelihood does not fall,
    and keeps components at 0 whose gradient points below zero (the boundary).
    Components flagged in ``held`` stay at their starting values (for profiling).
    """
    scale = variance_scale(blocks.y, blocks.v)
    theta = (
        np.full(blocks.n_levels, scale / (blocks.n_levels + 1)) if start is None else start.copy()
    )
    fixed = np.zeros(blocks.n_levels, dtype=bool) if held is None else held
    current = blocks.evaluate(theta, reml=reml, hessian=True)
    for iteration in range(1, 201):
        gradient = current.gradient
        free = ~fixed & ~((theta <= 0.0) & (gradient <= 0.0))
        if not free.any():
            return Convergence(theta, iteration, 0.0, True)
        hess = current.hessian[np.ix_(free, free)]  # type: ignore[index]
        try:
            np.linalg.cholesky(-hess)
            direction = np.linalg.solve(-hess, gradient[free])
        except np.linalg.LinAlgError:
            info = current.information[np.ix_(free, free)]  # type: ignore[index]
            # Components that enter the likelihood only through their sum (a level
            # with one group per group above it) leave the information singular: take
            # the minimum-norm step, which keeps their split where it started.
            direction = np.linalg.lstsq(info, gradient[free], rcond=None)[0]
        step = np.zeros_like(theta)
        step[free] = direction
        size = 1.0
        while True:
            candidate = np.maximum(theta + size * step, 0.0)
            trial = blocks.evaluate(candidate, reml=reml, hessian=True)
            if trial.loglik >= current.loglik - 1e-12 * abs(current.loglik) or size < 1e-8:
                break
            size /= 2.0
        change = np.abs(candidate - theta)
        theta, current = candidate, trial
        if np.all(change <= 1e-13 * scale + 1e-10 * theta):
            projected = np.where(
                fixed | ((theta <= 0.0) & (current.gradient <= 0.0)), 0.0, current.gradient
            )
            norm = float(np.max(np.abs(projected)) * scale)
            return Convergence(theta, iteration, norm, True)
    projected = np.where((theta <= 0.0) & (current.gradient <= 0.0), 0.0, current.gradient)
    return Convergence(theta, 200, float(np.max(np.abs(projected)) * scale), False)


def profile_intervals(result: MetaResults, *, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood confidence intervals for the variance components.

    For each component the bounds are where twice the drop in the (restricted)
    log-likelihood, maximised over the other components, equals the χ²₁ quantile;
    a bound at 0 means the likelihood never drops that far inside the parameter
    space (as metafor's ``confint.rma.mv``).
    """
    if result.structure is None:
        raise EvalkitInputError(
            "profile_intervals needs a multilevel model; univariate fits carry Q-profile intervals."
        )
    if not 0.0 < level < 1.0:
        raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
    if not isinstance(result.structure, tuple):
        from evalkit.meta._multivariate import profile_outcomes

        return profile_outcomes(result.structure, level=level)
    blocks, theta_hat = result.structure
    reml = result.method == "REML"
    best = blocks.evaluate(theta_hat, reml=reml).loglik
    crit = stats.chi2.ppf(level, 1) / 2.0
    rows = []
    for index, name in enumerate(blocks_levels(result)):
        held = np.zeros(theta_hat.size, dtype=bool)
        held[index] = True

        def drop(value: float, index: int = index, held: np.ndarray = held) -> float:
            start = theta_hat.copy()
            start[index] = value
            profile = _optimise(blocks, reml=reml, start=start, held=held)
            return best - blocks.evaluate(profile.theta, reml=reml).loglik - crit

        estimate = float(theta_hat[index])
        low = (
            0.0
            if drop(0.0) <= 0
            else optimize.brentq(drop, 0.0, estimate, xtol=1e-12 * max(estimate, 1e-12))
        )
        upper = max(estimate, 1e-4 * variance_scale(blocks.y, blocks.v))
        while drop(upper) < 0:
            upper *= 2.0
        high = optimize.brentq(drop, estimate, upper, xtol=1e-12 * upper)
        rows.append(
            {"parameter": variance_key(name), "estimate": estimate, "ci_low": low, "ci_high": high}
        )
    return pd.DataFrame(rows)
