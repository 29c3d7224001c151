"""``lmm()``: nested linear mixed models with lme4's formula syntax.

The work is three steps, as lme4 splits it: :func:`~evalkit.multilevel.specify`
(formula → levels → checked rows → design → sufficient statistics), the optimiser
(:func:`~evalkit.multilevel.engine.optimise`, profiled REML or ML over θ) and
:func:`build_results` (fixed effects, degrees of freedom, variance components, facts).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, overload

import numpy as np
import pandas as pd

from evalkit.core import (
    INTERCEPT,
    EvalkitInputError,
    MissingPolicy,
    ModelResults,
    VarianceComponents,
    blas_threads,
    check_option,
    is_data_source,
    lapack_threads,
)
from evalkit.multilevel.containment import containment_df, containment_from_stats
from evalkit.multilevel.crossed import CrossedStats
from evalkit.multilevel.engine import Optimum, ThetaLayout, optimise, profile, reducer_for
from evalkit.multilevel.frame import ModelFrame
from evalkit.multilevel.iterative import PROBES, CrossedSolver, IterativeStats, check_probes
from evalkit.multilevel.kenward_roger import KenwardRoger, kenward_roger
from evalkit.multilevel.outofcore import specify_source
from evalkit.multilevel.satterthwaite import (
    VarparInference,
    varpar_inference,
    varpar_inference_exact,
)
from evalkit.multilevel.sm_engine import fit_statsmodels
from evalkit.multilevel.spec import Level, MixedModelSpec, model_rows, ones_column, specify
from evalkit.multilevel.stats import SufficientStats
from evalkit.multilevel.summaries import check_reference, icc, prv, r_squared

EstimationMethod = Literal["REML", "ML"]
Engine = Literal["evalkit", "statsmodels"]
DfMethod = Literal["satterthwaite", "kenward-roger", "containment", "residual", "none"]
SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on the diagonal of the relative factors


@dataclass(frozen=True)
class LMMResults(ModelResults):
    """A fitted linear mixed model (fixed effects on the results contract).

    ``variance_components`` is the shared table (level, term, variance, sd,
    correlation) with the residual variance; ``theta`` is lme4's relative-factor
    parameter at the optimum; ``specification`` the model as specified (its design,
    sufficient statistics and data), which the inference tools reuse.
    """

    method: str = "REML"
    theta: np.ndarray = field(default_factory=lambda: np.empty(0))
    sigma2: float = float("nan")
    df_method: str = "satterthwaite"
    specification: MixedModelSpec | None = field(default=None, repr=False)
    inference: VarparInference | KenwardRoger | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def _spec(self) -> MixedModelSpec:
        if self.specification is None:
            raise EvalkitInputError("this fit kept no model specification; refit it with lmm().")
        return self.specification

    @property
    def levels(self) -> tuple[Level, ...]:
        """Grouping levels, lowest first."""
        return self._spec().levels

    @property
    def frame(self) -> ModelFrame:
        """The fitted design (fixed effects, outcome, random-effect columns, codes)."""
        return self._spec().frame

    @property
    def stats(self) -> SufficientStats | CrossedStats | IterativeStats:
        """Per-cluster sufficient statistics of the fitted rows."""
        return self._spec().stats

    @property
    def layout(self) -> ThetaLayout:
        """How θ maps onto the levels' relative factors."""
        return self._spec().layout

    @property
    def data(self) -> pd.DataFrame:
        """The data as given to :func:`lmm`."""
        return self._spec().data

    @property
    def rows_used(self) -> np.ndarray:
        """Positions (in ``data``) of the fitted rows."""
        spec = self._spec()
        if spec.rows_used is None:
            raise spec.rows_not_loaded()
        return spec.rows_used

    @property
    def group_labels(self) -> tuple[np.ndarray, ...]:
        """For each level (lowest first), the label of each integer group code."""
        return self._spec().group_labels

    @property
    def factors(self) -> list[np.ndarray]:
        """The relative factors ``T_l`` of every level (lowest first)."""
        return self.layout.factors(self.theta)

    def refit(self, **changes: Any) -> LMMResults:
        """Fit the same formula to the same data with some options changed
        (``method``, ``df_method``, ``missing``, ``reference``)."""
        if self.formula is None:
            raise EvalkitInputError("this fit kept no formula to refit.")
        return lmm(self.formula, self.data, **{**self.options, **changes})


@overload
def lmm(
    formula: str,
    data: pd.DataFrame | object,
    *,
    method: EstimationMethod = ...,
    missing: MissingPolicy = ...,
    df_method: DfMethod = ...,
    reference: LMMResults | None = ...,
    engine: Literal["evalkit"] = ...,
    client: Any = ...,
    solver: CrossedSolver = ...,
    n_probes: int = ...,
) -> LMMResults: ...


@overload
def lmm(
    formula: str,
    data: pd.DataFrame | object,
    *,
    method: EstimationMethod = ...,
    missing: MissingPolicy = ...,
    df_method: DfMethod = ...,
    reference: LMMResults | None = ...,
    engine: Literal["statsmodels"],
    client: Any = ...,
    solver: CrossedSolver = ...,
    n_probes: int = ...,
) -> ModelResults: ...


def lmm(
    formula: str,
    data: pd.DataFrame | object,
    *,
    method: EstimationMethod = "REML",
    missing: MissingPolicy = "drop",
    df_method: DfMethod = "satterthwaite",
    reference: LMMResults | None = None,
    engine: Engine = "evalkit",
    client: Any = None,
    solver: CrossedSolver = "auto",
    n_probes: int = PROBES,
) -> LMMResults | ModelResults:
    """Fit a linear mixed model (nested or crossed factors) by profiled REML or ML.

    Parameters
    ----------
    formula
        lme4 syntax: ``"achievement ~ prior + coached * leadership + (1 | school) +
        (1 | school:teacher)"``; ``(1 + x | g)`` correlated, ``(x || g)`` uncorrelated,
        ``(1 | school/teacher)`` nested.
    data
        One row per observation: a pandas DataFrame, or data fitted where they live —
        a DuckDB relation, a Parquet or CSV path or glob (``"district/*.parquet"``), or
        a Dask DataFrame. For the latter the model frame (categorical coding,
        interactions, ``center``/``scale``, arithmetic in ``I()``) is computed in SQL
        and only each lowest-level group's cross-products are read, so memory grows
        with the number of groups, not rows; the numbers equal a fit of the same rows
        in pandas. Nested designs only; what needs the rows themselves
        (Kenward–Roger, CR2, residuals) is refused with an error saying so.
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
    client
        A ``dask.distributed.Client`` on which to compute a Dask DataFrame's statistics
        (by default Dask's active scheduler).
    solver
        Crossed factors only (nested models always use the exact nested engine).
        ``"direct"``: the exact blocked factorisation, whose dense part has a side equal
        to the smaller factors' groups. ``"iterative"``: conjugate gradients with
        stochastic traces and log-determinant (random intercepts only), for designs
        whose smaller factors have tens of thousands of groups; β̂ and its covariance
        are solved to 1e-10 at the estimated θ̂, while θ̂ and the REML criterion carry a
        Monte Carlo error that is reported (``facts["monte_carlo"]``, a warning and the
        table notes). ``"auto"`` (default): direct when its dense factor fits
        (side ≤ 8,000 and the memory available), iterative otherwise.
    n_probes
        Random probes of the iterative engine (default 64, at least 16): its Monte Carlo
        errors shrink as ``1/√n_probes`` and its time grows about linearly. Other fits
        ignore it.
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
    check_option("solver", solver, CrossedSolver)
    check_probes(n_probes)
    if df_method == "kenward-roger" and method != "REML":
        raise EvalkitInputError("df_method='kenward-roger' needs a REML fit (method='REML').")
    if engine == "statsmodels":
        if not isinstance(data, pd.DataFrame) and is_data_source(data):
            raise EvalkitInputError(
                "engine='statsmodels' needs a pandas DataFrame; evalkit's engine fits data "
                "where they live."
            )
        rows = model_rows(formula, cast(pd.DataFrame, data), missing=missing)
        return fit_statsmodels(
            rows.parsed.fixed, list(rows.levels), rows.complete, method=method, dropped=rows.dropped
        )
    if isinstance(data, pd.DataFrame) or not is_data_source(data):
        if client is not None:
            raise EvalkitInputError(
                "client= fits on a Dask cluster and needs a Dask DataFrame as data."
            )
        spec = specify(
            formula, cast(pd.DataFrame, data), missing=missing, solver=solver, n_probes=n_probes
        )
    else:
        if df_method == "kenward-roger":
            raise EvalkitInputError(
                "df_method='kenward-roger' needs the rows in memory; a fit where the data "
                "live reads per-group sums only. Use 'satterthwaite' (the default) or "
                "'containment'."
            )
        spec = specify_source(formula, data, missing=missing, client=client)
    if df_method == "kenward-roger" and spec.iterative:
        raise EvalkitInputError(
            "df_method='kenward-roger' needs dense products of the whole design, which this "
            "crossed model is too large for (it is fitted iteratively). Use 'satterthwaite' "
            "(the default) or 'none'."
        )
    with _threads(spec):
        optimum = optimise(spec.stats, spec.layout, reml=method == "REML")
        result = build_results(spec, optimum, method=method, df_method=df_method)
    return _with_summaries(result, reference)


def _threads(spec: MixedModelSpec) -> contextlib.AbstractContextManager[None]:
    """The crossed engine's dense factorisations get SciPy's LAPACK on every core and
    any other BLAS one thread (see :mod:`evalkit.core.threads`); the iterative engine's
    sparse products and small blocks get one thread; nested models are left alone."""
    if isinstance(spec.stats, CrossedStats):
        return lapack_threads()
    if spec.iterative:
        return blas_threads(1)  # a second thread only contends
    return contextlib.nullcontext()


def variance_components(
    levels: tuple[Level, ...], factors: list[np.ndarray], sigma2: float
) -> VarianceComponents:
    """The shared table from the relative factors: ``Σ_l = σ² T_l T_lᵀ`` per level."""
    matrices = {}
    for level, t in zip(levels, factors, strict=True):
        names = [INTERCEPT if c == "1" else c for c in level.columns]
        matrices[level.name] = pd.DataFrame(sigma2 * t @ t.T, index=names, columns=names)
    return VarianceComponents.from_matrices(matrices, residual=sigma2)


def _engine_name(spec: MixedModelSpec) -> str:
    if spec.iterative:
        return "crossed (conjugate gradients, stochastic traces: approximate)"
    return "crossed (blocked Cholesky)" if spec.crossed else "nested sufficient statistics"


def _monte_carlo_facts(spec: MixedModelSpec, optimum: Optimum, sigma2: float) -> dict[str, Any]:
    """Monte Carlo errors of an iterative fit on the variance scale: ``τ_l = σ²θ_l²``,
    so ``se(τ_l) ≈ 2σ²θ_l·se(θ_l)`` (σ² is solved, not estimated stochastically)."""
    mc = optimum.monte_carlo or {}
    theta = optimum.theta
    se_var = {
        level.name: float(2.0 * sigma2 * abs(t) * se)
        for level, t, se in zip(spec.levels, theta, mc["theta_se"], strict=True)
    }
    return {**mc, "variance_se": se_var}


def _approximation_note(mc: dict[str, Any], reml: bool) -> str:
    criterion = "REML criterion" if reml else "deviance"
    parts = ", ".join(f"{name} {se:.2g}" for name, se in mc["variance_se"].items())
    return (
        f"approximate fit (iterative engine, {mc['probes']} random probes): Monte Carlo "
        f"SEs of the variance components {parts}; of the {criterion} "
        f"{mc['deviance_se']:.2g}; fixed effects and their SEs are exact at these variances"
    )


def build_results(
    spec: MixedModelSpec, optimum: Optimum, *, method: str, df_method: str
) -> LMMResults:
    """The results at the optimum: fixed effects, their covariance and df, the
    variance components and the facts ``glance()`` reports."""
    reml = method == "REML"
    factors = spec.layout.factors(optimum.theta)
    fit = profile(spec.stats, factors, reml=reml)
    index = pd.Index(spec.terms)
    beta = np.array(fit.beta, dtype=float)
    if spec.outcome_shift:
        beta[spec.terms.index(INTERCEPT)] += spec.outcome_shift
    cov = fit.sigma2 * fit.xtmx_inv
    df, inference = _degrees_of_freedom(df_method, spec, optimum.theta, fit.sigma2, reml)
    if isinstance(inference, KenwardRoger):
        cov = inference.phi_adjusted
    singular = any(bool(np.any(np.abs(np.diag(t)) < SINGULAR_TOL)) for t in factors)
    n_params = len(spec.terms) + optimum.theta.size + 1
    facts: dict[str, Any] = {
        "method": method,
        ("reml_criterion" if reml else "deviance"): optimum.deviance,
        "logLik": -0.5 * optimum.deviance,
        "AIC": optimum.deviance + 2 * n_params,
        "BIC": optimum.deviance + n_params * np.log(spec.nobs),
        "iterations": optimum.iterations,
        "gradient_norm": optimum.gradient_norm,
        "converged": optimum.converged,
        "singular": singular,
        "engine": _engine_name(spec),
        "data_source": spec.source,
    }
    warnings = []
    if optimum.monte_carlo is not None:
        facts["monte_carlo"] = _monte_carlo_facts(spec, optimum, fit.sigma2)
        warnings.append(_approximation_note(facts["monte_carlo"], reml))
    if singular:
        warnings.append(
            "singular fit: a random-effect variance (or correlation) is on its boundary"
        )
    if not optimum.converged:
        warnings.append(
            f"the optimiser did not reach an optimum (gradient norm {optimum.gradient_norm:.2g}); "
            f"attempts: {'; '.join(optimum.attempts)}"
        )
    if spec.dropped.n:
        warnings.append(spec.dropped.describe().rstrip("."))
    return LMMResults(
        params=pd.Series(beta, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(df, index=index),
        nobs=spec.nobs,
        model=f"linear mixed model ({method})",
        backend="evalkit",
        n_groups=spec.n_groups,
        facts=facts,
        warnings=tuple(warnings),
        dropped=spec.dropped,
        formula=spec.formula,
        spec=spec.design_spec,
        variance_components=variance_components(spec.levels, factors, fit.sigma2),
        method=method,
        theta=optimum.theta,
        sigma2=fit.sigma2,
        df_method=df_method,
        specification=spec,
        inference=inference,
        options={
            "method": method,
            "missing": spec.missing,
            "df_method": df_method,
            **(
                {"solver": "iterative", "n_probes": spec.stats.probes}
                if isinstance(spec.stats, IterativeStats)
                else {}
            ),
        },
    )


def _with_summaries(result: LMMResults, reference: LMMResults | None) -> LMMResults:
    """Add ICCs, R² and (against ``reference``) proportional reductions in variance."""
    facts = dict(result.facts)
    if reference is not None:
        check_reference(result, reference)
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
    df_method: str, spec: MixedModelSpec, theta: np.ndarray, sigma2: float, reml: bool
) -> tuple[np.ndarray, VarparInference | KenwardRoger | None]:
    stats, layout = spec.stats, spec.layout
    p = stats.p
    unit = np.eye(p)
    if df_method == "satterthwaite":
        if all(size == 1 for size in layout.q):  # random intercepts: exact gradients
            reducer = reducer_for(stats)
            info = varpar_inference_exact(reducer, theta, float(np.sqrt(sigma2)), reml=reml)
        else:
            info = varpar_inference(stats, layout, theta, float(np.sqrt(sigma2)), reml=reml)
        return np.array([info.df(unit[j]) for j in range(p)]), info
    if df_method == "kenward-roger":
        kr = kenward_roger(spec.frame, layout, layout.factors(theta), sigma2)
        return np.array([kr.df(unit[[j]])[0] for j in range(p)]), kr
    if df_method == "containment":
        if spec.crossed:
            raise EvalkitInputError(
                "df_method='containment' is nlme's rule for nested designs; this model's "
                "factors cross. Use 'satterthwaite' or 'kenward-roger'."
            )
        if spec.in_memory:
            return containment_df(spec.frame), None
        assert isinstance(stats, SufficientStats)
        return containment_from_stats(stats, ones_column(spec)), None
    if df_method == "residual":
        return np.full(p, float(stats.n - p)), None
    return np.full(p, np.inf), None
