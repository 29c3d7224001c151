"""Model facts evaluators report: ICCs, R², proportional reduction in variance, and
standardised effect sizes of multilevel coefficients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, VarianceComponents, check_option
from evalkit.multilevel.spec import ones_column, require_fit
from evalkit.multilevel.stats import SufficientStats

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults

Standardizer = Literal["total", "within", "between", "clusters"]


def intercept_variances(result: LMMResults) -> dict[str, float]:
    """Random-intercept variance of each level (0 for a level without one)."""
    return _components(result).intercept_variances()


def _components(result: LMMResults) -> VarianceComponents:
    if result.variance_components is None:
        raise EvalkitInputError("this model has no variance components.")
    return result.variance_components


def check_reference(result: LMMResults, reference: LMMResults) -> None:
    """A reference model must be a fit of the same outcome on the same rows."""
    mine, theirs = result.specification, reference.specification
    if mine is None or theirs is None:
        same = False
    elif mine.in_memory and theirs.in_memory:
        same = reference.frame.y.shape == result.frame.y.shape and np.array_equal(
            reference.frame.y, result.frame.y
        )
    else:
        # fits where the data live: the same outcome, rows and sums of the outcome
        same = (
            mine.response == theirs.response
            and mine.nobs == theirs.nobs
            and mine.source == theirs.source
            and bool(np.allclose(_outcome_moments(result), _outcome_moments(reference), rtol=1e-10))
        )
    if not same:
        raise EvalkitInputError(
            "reference must be a fit of the same outcome to the same rows (usually the null "
            f"model); it has {reference.nobs} rows of {reference.formula!r}, this fit "
            f"{result.nobs} rows of {result.formula!r}."
        )


def icc(result: LMMResults) -> dict[str, float]:
    """Intraclass correlation of each level: its intercept variance over the total
    (all intercept variances plus the residual). With random slopes the ICC refers to
    units at zero on the slope variables; from the null model it is the usual ICC."""
    require_fit(result, "icc()")
    tau = intercept_variances(result)
    total = sum(tau.values()) + result.sigma2
    return {name: value / total for name, value in tau.items()}


def _outcome_moments(result: LMMResults) -> tuple[float, float]:
    """The outcome's sum and sum of squares about the fit's shift, from the statistics."""
    spec = result._spec()
    stats = spec.stats
    assert isinstance(stats, SufficientStats)
    ones = ones_column(spec)
    total = float(stats.cross[:, ones, -1].sum()) if ones is not None else float("nan")
    return total + spec.outcome_shift * stats.n, float(stats.cross[:, -1, -1].sum())


def random_variance(result: LMMResults) -> float:
    """Mean variance the random effects add to an observation: ``Σ_l mean_i z_ilᵀ Σ_l z_il``
    (Johnson 2014's extension of Nakagawa & Schielzeth to random slopes)."""
    spec = result._spec()
    if not spec.in_memory:
        return _random_variance_from_stats(result)
    total = 0.0
    for level, z in zip(result.levels, result.frame.z, strict=True):
        sigma = _components(result).matrix(level.name).to_numpy()
        total += float(np.mean(np.einsum("ij,jk,ik->i", z, sigma, z)))
    return total


def _fixed_variance_from_stats(result: LMMResults) -> float:
    """The variance of ``Xβ̂`` from ``Σ XᵀX`` and the column sums (a fit whose rows
    were never loaded)."""
    spec = result._spec()
    stats = spec.stats
    assert isinstance(stats, SufficientStats)
    ones = ones_column(spec)
    if ones is None:
        return float("nan")
    q_total, p, n = sum(stats.q), stats.p, stats.n
    block = slice(q_total, q_total + p)
    xtx = stats.cross[:, block, block].sum(axis=0)
    means = stats.cross[:, ones, block].sum(axis=0) / n
    beta = result.params.to_numpy()
    centred = float(beta @ xtx @ beta) - n * float(means @ beta) ** 2
    return centred / (n - 1)


def _random_variance_from_stats(result: LMMResults) -> float:
    spec = result._spec()
    stats = spec.stats
    assert isinstance(stats, SufficientStats)
    total, offset = 0.0, 0
    for level in spec.levels:
        width = len(level.columns)
        ztz = stats.cross[:, offset : offset + width, offset : offset + width].sum(axis=0)
        sigma = _components(result).matrix(level.name).to_numpy()
        total += float(np.trace(sigma @ ztz)) / stats.n
        offset += width
    return total


def r_squared(result: LMMResults) -> dict[str, float]:
    """Marginal and conditional R² of Nakagawa & Schielzeth (2013, Methods Ecol. Evol. 4),
    with Johnson's (2014) random-slope term: ``σ²_f/(σ²_f + σ²_r + σ²)`` and
    ``(σ²_f + σ²_r)/(σ²_f + σ²_r + σ²)``, ``σ²_f`` the variance of the fixed-part
    predictions."""
    require_fit(result, "r_squared()")
    if result._spec().in_memory:
        fitted = result.frame.x @ result.params.to_numpy()
        var_f = float(np.var(fitted, ddof=1))
    else:
        var_f = _fixed_variance_from_stats(result)
    var_r = random_variance(result)
    total = var_f + var_r + result.sigma2
    return {"marginal": var_f / total, "conditional": (var_f + var_r) / total}


def prv(result: LMMResults, reference: LMMResults) -> dict[str, float]:
    """Proportional reduction in variance per level against a reference (usually the
    null) model: ``(τ_ref − τ)/τ_ref`` for intercept variances and the residual
    (Raudenbush & Bryk 2002, eq. 4.24). Negative values are possible and reported."""
    tau, ref = intercept_variances(result), intercept_variances(reference)
    missing = set(tau) ^ set(ref)
    if missing:
        raise EvalkitInputError(
            f"the reference model has different grouping levels ({', '.join(sorted(missing))})."
        )
    out = {
        name: (ref[name] - tau[name]) / ref[name] if ref[name] > 0 else float("nan") for name in tau
    }
    out["residual"] = (reference.sigma2 - result.sigma2) / reference.sigma2
    return out


@dataclass(frozen=True)
class StandardizedEffect:
    """A coefficient divided by a standard deviation implied by variance components."""

    term: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    standardizer: str
    sd: float
    df: float

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame."""
        return pd.DataFrame([self.__dict__])


def effect_size(
    result: LMMResults,
    term: str,
    *,
    standardizer: Standardizer = "total",
    reference: LMMResults | None = None,
    level: float = 0.95,
    exclude: Sequence[str] = (),
) -> StandardizedEffect:
    """Standardised coefficient δ = β/S (Hedges 2007, J. Educ. Behav. Stat. 32(4)).

    S is the total SD (all variance components; δ_T, the WWC metric), the within SD
    (the residual, δ_W), the between SD (the top-level intercept, δ_B) or the SD of
    the cluster-level true scores (``"clusters"``: all intercept variances without
    the residual — for observation scores in teachers in schools, the teacher-level
    distribution Hedges (2007) and the WWC standardise teacher-level outcomes on), taken from
    ``reference`` — the unconditional model, as Hedges (2007) prescribes — when given,
    otherwise from ``result`` itself (with a warning-worthy caveat: covariate-adjusted
    components shrink S). The SE adds the uncertainty of S by the delta method,
    ``Var(δ) ≈ SE(β)²/S² + β² Var(Ŝ)/S⁴``, with ``Var(Ŝ)`` from the asymptotic
    covariance of the variance parameters (available when the source model was fitted
    with ``df_method="satterthwaite"``; otherwise S is treated as known). The CI
    uses the coefficient's df. ``exclude`` names grouping levels whose variance is
    measurement error rather than a difference between units — the raters of
    observation scores, crossed with teachers — and is left out of S.
    """
    require_fit(result, "effect_size()")
    check_option("standardizer", standardizer, Standardizer)
    if term not in result.params.index:
        raise EvalkitInputError(f"term {term!r} is not a fixed effect of the model.")
    if reference is not None:
        check_reference(result, reference)
    source = reference if reference is not None else result
    names = [lv.name for lv in source.levels]
    unknown = [name for name in exclude if name not in names]
    if unknown:
        raise EvalkitInputError(
            f"exclude names {', '.join(map(repr, unknown))}, not grouping levels of the model "
            f"({', '.join(names)})."
        )
    tau = {k: v for k, v in intercept_variances(source).items() if k not in exclude}
    if standardizer == "between" and source.frame.crossed:
        raise EvalkitInputError(
            "standardizer='between' takes the top level of nested factors; this model's "
            "factors cross. Use 'clusters' (with exclude=) or 'total'."
        )
    if standardizer == "total":
        variance = sum(tau.values()) + source.sigma2
    elif standardizer == "within":
        variance = source.sigma2
    elif standardizer == "clusters":
        variance = sum(tau.values())
        if variance <= 0:
            raise EvalkitInputError(
                "the cluster-level variances are zero; the standardiser is undefined."
            )
    else:
        top = source.levels[-1].name
        variance = tau[top]
        if variance <= 0:
            raise EvalkitInputError(f"the between-{top} variance is zero; δ_B is undefined.")
    sd = float(np.sqrt(variance))
    beta = float(result.params[term])
    sd_var = _standardizer_variance(source, standardizer, tuple(exclude))
    se = float(np.sqrt(float(result.std_errors[term]) ** 2 / sd**2 + beta**2 * sd_var / sd**4))
    df = float(result.df[term])
    crit = stats.norm.ppf(0.5 + level / 2) if np.isinf(df) else stats.t.ppf(0.5 + level / 2, df)
    delta = beta / sd
    return StandardizedEffect(
        term, delta, se, delta - crit * se, delta + crit * se, standardizer, sd, df
    )


def _standardizer_variance(
    source: LMMResults, standardizer: str, exclude: tuple[str, ...]
) -> float:
    """Var(Ŝ) by the delta method in the variance parameters φ = (θ, σ)."""
    from evalkit.multilevel.satterthwaite import VarparInference

    info = source.inference
    if not isinstance(info, VarparInference) or source.layout is None:
        return 0.0
    layout = source.layout
    top = len(source.levels) - 1

    def sd(vp: np.ndarray) -> float:
        sigma2 = float(vp[-1]) ** 2
        factors = layout.factors(vp[:-1])
        taus = []
        for level, t in zip(source.levels, factors, strict=True):
            k = level.columns.index("1") if "1" in level.columns else None
            skip = k is None or level.name in exclude
            taus.append(0.0 if skip else sigma2 * float(t[k] @ t[k]))
        if standardizer == "total":
            return float(np.sqrt(sum(taus) + sigma2))
        if standardizer == "within":
            return float(np.sqrt(sigma2))
        if standardizer == "clusters":
            return float(np.sqrt(sum(taus)))
        return float(np.sqrt(taus[top]))

    point = np.r_[source.theta, np.sqrt(source.sigma2)]
    grad = np.empty(point.size)
    for i in range(point.size):
        step = 1e-6 * max(abs(point[i]), 1e-3)
        up, down = point.copy(), point.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (sd(up) - sd(down)) / (2 * step)
    return float(grad @ info.vcov_varpar @ grad)
