"""``lmm()``: nested linear mixed models with lme4's formula syntax."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
from formulaic import Formula

from evalkit._errors import EvalkitInputError
from evalkit._validate import check_option, describe_rows, require_columns
from evalkit.multilevel.containment import containment_df
from evalkit.multilevel.engine import ThetaLayout, optimise, profile
from evalkit.multilevel.formula import RandomTerm, parse_formula
from evalkit.multilevel.frame import ModelFrame
from evalkit.multilevel.kenward_roger import KenwardRoger, kenward_roger
from evalkit.multilevel.satterthwaite import VarparInference, varpar_inference
from evalkit.multilevel.sm_engine import fit_statsmodels
from evalkit.multilevel.stats import (
    SufficientStats,
    build,
    check_nested_ids,
    group_labels,
    nesting_order,
)
from evalkit.multilevel.summaries import icc, prv, r_squared
from evalkit.results import Dropped, ModelResults

EstimationMethod = Literal["REML", "ML"]
MissingPolicy = Literal["drop", "raise"]
Engine = Literal["evalkit", "statsmodels"]
DfMethod = Literal["satterthwaite", "kenward-roger", "containment", "residual", "none"]
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
    df_method: str = "satterthwaite"
    frame: ModelFrame | None = field(default=None, repr=False)
    stats: SufficientStats | None = field(default=None, repr=False)
    layout: ThetaLayout | None = field(default=None, repr=False)
    inference: VarparInference | KenwardRoger | None = field(default=None, repr=False)
    rows_used: np.ndarray | None = field(default=None, repr=False)

    @cached_property
    def group_labels(self) -> tuple[np.ndarray, ...]:
        """For each level (lowest first), the label of each integer group code."""
        if self.data is None or self.frame is None or self.rows_used is None:
            return ()
        rows = self.data.iloc[self.rows_used]
        return tuple(
            group_labels(rows, level.grouping, codes)
            for level, codes in zip(self.levels, self.frame.codes, strict=True)
        )

    data: pd.DataFrame | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def refit(self, **changes: Any) -> LMMResults:
        """Fit the same formula to the same data with some options changed
        (``method``, ``df_method``, ``missing``, ``reference``)."""
        if self.data is None or self.formula is None:
            raise EvalkitInputError("this fit kept no data to refit.")
        return lmm(self.formula, self.data, **{**self.options, **changes})

    @property
    def factors(self) -> list[np.ndarray]:
        """The relative factors ``T_l`` of every level (lowest first)."""
        assert self.layout is not None
        return self.layout.factors(self.theta)


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


@overload
def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    method: EstimationMethod = ...,
    missing: MissingPolicy = ...,
    df_method: DfMethod = ...,
    reference: LMMResults | None = ...,
    engine: Literal["evalkit"] = ...,
) -> LMMResults: ...


@overload
def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    method: EstimationMethod = ...,
    missing: MissingPolicy = ...,
    df_method: DfMethod = ...,
    reference: LMMResults | None = ...,
    engine: Literal["statsmodels"],
) -> ModelResults: ...


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    method: EstimationMethod = "REML",
    missing: MissingPolicy = "drop",
    df_method: DfMethod = "satterthwaite",
    reference: LMMResults | None = None,
    engine: Engine = "evalkit",
) -> LMMResults | ModelResults:
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
    df_method
        Degrees of freedom of the t and F tests: ``"satterthwaite"`` (lmerTest's
        default), ``"kenward-roger"`` (pbkrtest; REML only, and the SEs become the
        Kenward–Roger adjusted ones), ``"containment"`` (nlme's between–within rule,
        HLM's ``J − q − 1``), ``"residual"`` (``n − p``) or ``"none"`` (z tests, as
        lme4's summary).
    reference
        A fit of the same outcome (usually the null model) against which
        ``glance()`` reports the proportional reduction in variance per level.
    engine
        ``"evalkit"`` (default) or ``"statsmodels"``: the same formula through
        statsmodels' MixedLM as a second opinion (one level, or two nested levels
        with random intercepts below the top), returned on the plain results
        contract. MixedLM's SEs come from the full Hessian of the likelihood, lme4's
        and evalkit's from ``σ̂²(XᵀV̂⁻¹X)⁻¹`` (the variance parameters held at their
        estimates), so SEs differ slightly even at the same optimum.

    Returns
    -------
    LMMResults
        Fixed effects with Wald SEs ``σ̂²(XᵀM⁻¹X)⁻¹`` as lme4 computes them and df by
        ``df_method``, variance components,
        the REML criterion or deviance exactly as lme4 defines it, and convergence
        facts (iterations, gradient norm, singular fit).
    """
    check_option("method", method, EstimationMethod)
    check_option("missing", missing, MissingPolicy)
    check_option("df_method", df_method, DfMethod)
    check_option("engine", engine, Engine)
    if df_method == "kenward-roger" and method != "REML":
        raise EvalkitInputError("df_method='kenward-roger' needs a REML fit (method='REML').")
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
    for upper, lower in parsed.nested:
        check_nested_ids(complete, upper, lower)
    if engine == "statsmodels":
        order, _ = nesting_order(complete, [lv.grouping for lv in levels])
        return fit_statsmodels(
            parsed.fixed, [levels[i] for i in order], complete, method=method, dropped=dropped
        )
    order, all_codes = nesting_order(complete, [lv.grouping for lv in levels])
    ordered = [levels[i] for i in order]
    frame, design, spec = _model_frame(
        fixed_formula, complete, ordered, [all_codes[i] for i in order]
    )
    terms = [str(c) for c in spec.column_names]
    _check_finite(frame, terms, parsed.response, complete.index)
    if np.ptp(frame.y) == 0:
        raise EvalkitInputError(f"the outcome {parsed.response!r} has no variance.")
    q_total = sum(len(lv.columns) for lv in ordered)
    p = len(terms)
    stats = build(design, list(frame.codes), [len(lv.columns) for lv in ordered], p)
    del design
    xtx = stats.cross[:, q_total : q_total + p, q_total : q_total + p].sum(axis=0)
    _check_rank(xtx, terms)
    x = frame.x
    layout = ThetaLayout.build([list(lv.blocks) for lv in ordered])
    reml = method == "REML"
    optimum = optimise(stats, layout, reml=reml)
    factors = layout.factors(optimum.theta)
    fit = profile(stats, factors, reml=reml)
    index = pd.Index(terms)
    cov = fit.sigma2 * fit.xtmx_inv
    df, inference = _degrees_of_freedom(
        df_method, stats, layout, optimum.theta, fit.sigma2, frame, reml
    )
    if isinstance(inference, KenwardRoger):
        cov = inference.phi_adjusted
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
    result = LMMResults(
        params=pd.Series(fit.beta, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(df, index=index),
        nobs=stats.n,
        model=f"linear mixed model ({method})",
        backend="evalkit",
        n_groups={lv.name: n for lv, n in zip(ordered, stats.n_groups, strict=True)},
        facts=facts,
        warnings=tuple(warnings),
        dropped=dropped,
        formula=formula,
        spec=spec,
        method=method,
        theta=optimum.theta,
        variance_components=components,
        sigma2=fit.sigma2,
        levels=tuple(ordered),
        df_method=df_method,
        frame=frame,
        stats=stats,
        layout=layout,
        inference=inference,
        rows_used=np.flatnonzero(data[used].notna().all(axis=1).to_numpy()),
        data=data,
        options={"method": method, "missing": missing, "df_method": df_method},
    )
    return _with_summaries(result, reference)


def _with_summaries(result: LMMResults, reference: LMMResults | None) -> LMMResults:
    """Add ICCs, R² and (against ``reference``) proportional reductions in variance."""
    facts = dict(result.facts)
    for name, value in icc(result).items():
        facts[f"icc_{name}"] = value
    r2 = r_squared(result)
    facts["r2_marginal"] = r2["marginal"]
    facts["r2_conditional"] = r2["conditional"]
    if reference is not None:
        for name, value in prv(result, reference).items():
            facts[f"prv_{name}"] = value
    facts["df_method"] = result.df_method
    return replace(result, facts=facts)


def _degrees_of_freedom(
    df_method: str,
    stats: SufficientStats,
    layout: ThetaLayout,
    theta: np.ndarray,
    sigma2: float,
    frame: ModelFrame,
    reml: bool,
) -> tuple[np.ndarray, VarparInference | KenwardRoger | None]:
    p = stats.p
    unit = np.eye(p)
    if df_method == "satterthwaite":
        info = varpar_inference(stats, layout, theta, float(np.sqrt(sigma2)), reml=reml)
        return np.array([info.df(unit[j]) for j in range(p)]), info
    if df_method == "kenward-roger":
        kr = kenward_roger(frame, layout, layout.factors(theta), sigma2)
        return np.array([kr.df(unit[[j]])[0] for j in range(p)]), kr
    if df_method == "containment":
        return containment_df(frame), None
    if df_method == "residual":
        return np.full(p, float(stats.n - p)), None
    return np.full(p, np.inf), None


def _model_frame(
    fixed_formula: Formula, complete: pd.DataFrame, ordered: list[Level], codes: list[np.ndarray]
) -> tuple[ModelFrame, np.ndarray, Any]:
    """One float64 array ``[Z_L, …, Z_1, X, y]`` and a model frame of views into it.

    Built in place from formulaic's NumPy output, so the rows exist once (plus the
    formula's own matrix while it is copied in)."""
    model_y, model_x = fixed_formula.get_model_matrix(complete, output="numpy")
    spec = model_x.model_spec
    n = len(complete)
    widths = [len(lv.columns) for lv in ordered]
    q_total, p = sum(widths), model_x.shape[1]
    design = np.empty((n, q_total + p + 1))
    column = 0
    z_views = []
    for level in ordered:
        start = column
        for name in level.columns:
            if name == "1":
                design[:, column] = 1.0
            else:
                if not pd.api.types.is_numeric_dtype(complete[name]):
                    raise EvalkitInputError(f"random slope column {name!r} must be numeric.")
                design[:, column] = complete[name].to_numpy(dtype=np.float64)
            column += 1
        z_views.append(design[:, start:column])
    design[:, q_total : q_total + p] = model_x
    design[:, -1] = np.asarray(model_y, dtype=np.float64).ravel()
    del model_x, model_y
    frame = ModelFrame(
        x=design[:, q_total : q_total + p],
        y=design[:, -1],
        z=tuple(z_views),
        codes=tuple(codes),
    )
    return frame, design, spec


def _check_finite(frame: ModelFrame, terms: list[str], response: str, index: pd.Index) -> None:
    """Infinite values (missing ones were dropped or refused before) name their column and rows."""
    columns = [(response, frame.y[:, None]), *((t, frame.x[:, [k]]) for k, t in enumerate(terms))]
    for name, values in columns:
        bad = ~np.isfinite(values[:, 0])
        if bad.any():
            raise EvalkitInputError(
                f"{name!r} has non-finite values at {describe_rows(list(index), bad)}."
            )


COLLINEAR_TOL = 1e-13
"""A column is collinear when its residual sum of squares on the earlier columns is
below this share of its own sum of squares (about 3e-7 on the scale of QR's R
diagonal; lme4's rank check uses 1e-7 there)."""


def _check_rank(xtx: np.ndarray, terms: list[str]) -> None:
    """Sequential check on ``XᵀX``: which columns add nothing to the ones before them."""
    collinear = []
    kept: list[int] = []
    for j in range(xtx.shape[0]):
        own = float(xtx[j, j])
        if own <= 0:
            collinear.append(terms[j])
            continue
        if kept:
            block = xtx[np.ix_(kept, kept)]
            cross = xtx[kept, j]
            residual = own - float(cross @ np.linalg.solve(block, cross))
        else:
            residual = own
        if residual <= COLLINEAR_TOL * own:
            collinear.append(terms[j])
        else:
            kept.append(j)
    if collinear:
        raise EvalkitInputError(
            f"fixed effects are collinear: {', '.join(collinear)} add nothing to the terms before them."
        )
