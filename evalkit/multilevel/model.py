"""``lmm()``: nested linear mixed models with lme4's formula syntax."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from formulaic import Formula

from evalkit._errors import EvalkitInputError
from evalkit._validate import check_option, collinear_terms, describe_rows, require_columns
from evalkit.multilevel.engine import ThetaLayout, optimise, profile
from evalkit.multilevel.formula import RandomTerm, parse_formula
from evalkit.multilevel.stats import build, group_codes, nesting_order
from evalkit.results import Dropped, ModelResults

EstimationMethod = Literal["REML", "ML"]
MissingPolicy = Literal["drop", "raise"]
SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on the diagonal of the relative factors


@dataclass(frozen=True)
class Level:
    """A grouping level: its random-effect columns and uncorrelated block sizes."""

    name: str
    grouping: tuple[str, ...]
    columns: tuple[str, ...]
    blocks: tuple[int, ...]


@dataclass(frozen=True)
class LMMResults(ModelResults):
    """A fitted linear mixed model (fixed effects on the results contract).

    ``variance_components`` maps each level to the covariance matrix of its random
    effects (with the residual variance under ``"residual"``); ``theta`` is lme4's
    relative-factor parameter at the optimum.
    """

    method: str = "REML"
    theta: np.ndarray = field(default_factory=lambda: np.empty(0))
    variance_components: dict[str, pd.DataFrame] = field(default_factory=dict)
    sigma2: float = float("nan")
    levels: tuple[Level, ...] = ()


def _levels(terms: tuple[RandomTerm, ...]) -> list[Level]:
    by_grouping: dict[tuple[str, ...], list[RandomTerm]] = {}
    for term in terms:
        by_grouping.setdefault(term.grouping, []).append(term)
    out = []
    for grouping, group_terms in by_grouping.items():
        columns: list[str] = []
        blocks: list[int] = []
        for term in group_terms:
            repeated = [c for c in term.columns if c in columns]
            if repeated:
                raise EvalkitInputError(
                    f"random effect(s) {', '.join(repeated)} appear twice for {':'.join(grouping)}."
                )
            columns.extend(term.columns)
            blocks.append(len(term.columns))
        out.append(Level(":".join(grouping), grouping, tuple(columns), tuple(blocks)))
    return out


def _complete_rows(
    data: pd.DataFrame, columns: list[str], missing: str
) -> tuple[pd.DataFrame, Dropped]:
    present = data[columns].notna()
    incomplete = ~present.all(axis=1)
    if not incomplete.any():
        return data, Dropped()
    if missing == "raise":
        first = next(c for c in columns if data[c].isna().any())
        rows = describe_rows(list(data.index), data[first].isna().to_numpy())
        raise EvalkitInputError(f"column {first!r} has missing values at {rows} (missing='raise').")
    reasons = tuple(
        f"missing {present.columns[~row].tolist()[0]}" for row in present[incomplete].to_numpy()
    )
    return data.loc[~incomplete], Dropped(rows=tuple(data.index[incomplete]), reasons=reasons)


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    method: EstimationMethod = "REML",
    missing: MissingPolicy = "drop",
) -> LMMResults:
    """Fit a nested linear mixed model by exact profiled REML or ML.

    Parameters
    ----------
    formula
        lme4 syntax: ``"achievement ~ prior + coached * leadership + (1 | school) +
        (1 | school:teacher)"``; ``(1 + x | g)`` correlated, ``(x || g)`` uncorrelated,
        ``(1 | school/teacher)`` nested.
    data
        One row per observation.
    method
        ``"REML"`` (default) or ``"ML"``.
    missing
        ``"drop"``: listwise deletion, reported per column on ``result.dropped`` and
        in table notes; ``"raise"``: an error naming the column and rows.

    Returns
    -------
    LMMResults
        Fixed effects with Wald SEs ``σ̂²(XᵀM⁻¹X)⁻¹`` as lme4 computes them (z-based
        here; small-sample df arrive with the inference module), variance components,
        the REML criterion or deviance exactly as lme4 defines it, and convergence
        facts (iterations, gradient norm, singular fit).
    """
    check_option("method", method, EstimationMethod)
    check_option("missing", missing, MissingPolicy)
    parsed = parse_formula(formula)
    fixed_formula = Formula(parsed.fixed)
    levels = _levels(parsed.random)
    random_columns = sorted({c for lv in levels for c in lv.columns if c != "1"})
    grouping_columns = sorted({g for lv in levels for g in lv.grouping})
    used = sorted(
        {str(v) for v in fixed_formula.required_variables}
        | set(random_columns)
        | set(grouping_columns)
    )
    require_columns(data, used)
    complete, dropped = _complete_rows(data, used, missing)
    model_y, model_x = fixed_formula.get_model_matrix(complete)
    y = np.asarray(model_y, dtype=np.float64).ravel()
    x = np.asarray(model_x, dtype=np.float64)
    terms = [str(c) for c in model_x.columns]
    if np.ptp(y) == 0:
        raise EvalkitInputError(f"the outcome {parsed.response!r} has no variance.")
    _check_rank(x, terms)
    order = nesting_order(complete, [lv.grouping for lv in levels])
    ordered = [levels[i] for i in order]
    z_blocks = []
    for level in ordered:
        for column in level.columns:
            if column == "1":
                z_blocks.append(np.ones(len(complete)))
            else:
                if not pd.api.types.is_numeric_dtype(complete[column]):
                    raise EvalkitInputError(f"random slope column {column!r} must be numeric.")
                z_blocks.append(complete[column].to_numpy(dtype=np.float64))
    design = np.column_stack([*z_blocks, x, y])
    codes = [group_codes(complete, level.grouping) for level in ordered]
    stats = build(design, codes, [len(lv.columns) for lv in ordered], x.shape[1])
    layout = ThetaLayout.build([list(lv.blocks) for lv in ordered])
    reml = method == "REML"
    optimum = optimise(stats, layout, reml=reml)
    factors = layout.factors(optimum.theta)
    fit = profile(stats, factors, reml=reml)
    index = pd.Index(terms)
    cov = fit.sigma2 * fit.xtmx_inv
    components: dict[str, pd.DataFrame] = {}
    facts: dict[str, Any] = {"method": method}
    singular = False
    for level, t in zip(ordered, factors, strict=True):
        matrix = fit.sigma2 * t @ t.T
        names = list(level.columns)
        components[level.name] = pd.DataFrame(matrix, index=names, columns=names)
        for k, column in enumerate(names):
            facts[f"var_{level.name}_{'intercept' if column == '1' else column}"] = float(
                matrix[k, k]
            )
        singular |= bool(np.any(np.abs(np.diag(t)) < SINGULAR_TOL))
    components["residual"] = pd.DataFrame([[fit.sigma2]], index=["residual"], columns=["residual"])
    n_params = x.shape[1] + optimum.theta.size + 1
    loglik = -0.5 * optimum.deviance
    facts.update(
        {
            ("reml_criterion" if reml else "deviance"): optimum.deviance,
            "sigma2": fit.sigma2,
            "logLik": loglik,
            "AIC": optimum.deviance + 2 * n_params,
            "BIC": optimum.deviance + n_params * np.log(stats.n),
            "iterations": optimum.iterations,
            "gradient_norm": optimum.gradient_norm,
            "converged": optimum.converged,
            "singular": singular,
        }
    )
    warnings = []
    if singular:
        warnings.append(
            "singular fit: a random-effect variance (or correlation) is on its boundary"
        )
    if not optimum.converged:
        warnings.append(
            f"the optimiser did not reach an optimum (gradient norm {optimum.gradient_norm:.2g}); "
            f"attempts: {'; '.join(optimum.attempts)}"
        )
    if dropped.n:
        warnings.append(dropped.describe().rstrip("."))
    return LMMResults(
        params=pd.Series(fit.beta, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(np.inf, index=index),
        nobs=stats.n,
        model=f"linear mixed model ({method})",
        backend="evalkit",
        n_groups={lv.name: n for lv, n in zip(ordered, stats.n_groups, strict=True)},
        facts=facts,
        warnings=tuple(warnings),
        dropped=dropped,
        formula=formula,
        spec=model_x.model_spec,
        method=method,
        theta=optimum.theta,
        variance_components=components,
        sigma2=fit.sigma2,
        levels=tuple(ordered),
    )


def _check_rank(x: np.ndarray, terms: list[str]) -> None:
    collinear = collinear_terms(x, terms)
    if collinear:
        raise EvalkitInputError(
            f"fixed effects are collinear: {', '.join(collinear)} add nothing to the terms before them."
        )
