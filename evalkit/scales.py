"""School conditions from teacher surveys: scale scores, reliability and aggregation.

A scale score is the mean (or a one-factor score) of a respondent's answered items
after reverse-coding, kept when at least ``min_share`` of the items were answered.
Reliability: Cronbach's α with Feldt's (1965) F-based interval and McDonald's ω from
a one-factor model (unweighted least squares, as psych's default) with a bootstrap
interval. Aggregation to
schools: ICC(1) and ICC(2) from the one-way ANOVA of scores on schools (Bliese
2000), and r_wg(j) per school against a uniform null (James, Demaree & Wolf 1984),
so the evaluator can justify treating the means as school properties; the school
means are then z-scored across schools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import Dropped, EvalkitInputError, check_option, describe_rows, require_columns
from evalkit.tables import Table, fmt_number

ScoreMethod = Literal["mean", "factor"]


@dataclass(frozen=True)
class Scale:
    """A scored scale: respondent scores, reliability, and what was dropped."""

    name: str
    items: tuple[str, ...]
    scores: pd.Series
    alpha: tuple[float, float, float]  # estimate, lower, upper
    omega: tuple[float, float, float]
    n_complete: int
    dropped: Dropped = field(default_factory=Dropped)


def check_items(data: pd.DataFrame, items: Sequence[str], scale: tuple[float, float]) -> None:
    """Raise when an item is not numeric or has answers outside ``scale``, naming the
    column and rows."""
    require_columns(data, list(items))
    low, high = scale
    for item in items:
        if not pd.api.types.is_numeric_dtype(data[item]):
            raise EvalkitInputError(
                f"survey item {item!r} must be numeric (codes {low:g}–{high:g})."
            )
        values = data[item].to_numpy(dtype=float)
        bad = ~np.isnan(values) & ((values < low) | (values > high) | (values != np.round(values)))
        if bad.any():
            rows = describe_rows(list(data.index), bad)
            raise EvalkitInputError(
                f"survey item {item!r} has answers outside the {low:g}–{high:g} scale (or not whole numbers) at {rows}."
            )


def cronbach_alpha(items: pd.DataFrame, *, level: float = 0.95) -> tuple[float, float, float]:
    """Cronbach's α of complete responses with Feldt's interval.

    Examples
    --------
    >>> frame = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 5], "c": [1, 3, 3, 4, 4]})
    >>> round(cronbach_alpha(frame)[0], 3)
    0.954
    """
    complete = items.dropna().to_numpy(dtype=float)
    n, k = complete.shape
    if k < 2 or n < 3:
        raise EvalkitInputError(
            f"Cronbach's α needs at least 2 items and 3 complete responses; got {k} and {n}."
        )
    item_var = complete.var(axis=0, ddof=1).sum()
    total_var = complete.sum(axis=1).var(ddof=1)
    if total_var <= 0:
        raise EvalkitInputError(
            "Cronbach's α is undefined: every respondent has the same total score "
            "(the items do not vary)."
        )
    alpha = k / (k - 1) * (1 - item_var / total_var)
    df1, df2 = n - 1, (n - 1) * (k - 1)
    tail = (1 - level) / 2
    lower = 1 - (1 - alpha) * stats.f.ppf(1 - tail, df1, df2)
    upper = 1 - (1 - alpha) * stats.f.ppf(tail, df1, df2)
    return float(alpha), float(lower), float(upper)


def one_factor_loadings(
    values: np.ndarray, *, tol: float = 1e-8, max_iter: int = 500
) -> np.ndarray:
    """Loadings of a one-factor model on the correlation matrix by iterated principal
    axes (unweighted least squares, psych's ``fm = "minres"`` solution), signed so
    that they sum positive."""
    corr = np.corrcoef(values, rowvar=False)
    if not np.all(np.isfinite(corr)):
        return np.full(values.shape[1], np.nan)  # a constant item: no factor model
    # Squared multiple correlations (a pseudo-inverse copes with redundant items).
    communality = np.clip(1 - 1 / np.diag(np.linalg.pinv(corr)), 0.0, 0.995)
    for _ in range(max_iter):
        reduced = corr.copy()
        np.fill_diagonal(reduced, communality)
        eigenvalues, eigenvectors = np.linalg.eigh(reduced)
        loadings = eigenvectors[:, -1] * np.sqrt(max(eigenvalues[-1], 0.0))
        updated = np.clip(loadings**2, 0.0, 0.995)
        if np.max(np.abs(updated - communality)) < tol:
            break
        communality = updated
    return loadings if loadings.sum() >= 0 else -loadings


def _omega_point(values: np.ndarray) -> float:
    """ω (total) of a one-factor model: (Σλ)² / ((Σλ)² + Σ(1 − λ²))."""
    loadings = one_factor_loadings(values)
    common = loadings.sum() ** 2
    return float(common / (common + np.sum(1 - loadings**2)))


def mcdonald_omega(
    items: pd.DataFrame, *, level: float = 0.95, n_boot: int = 200, seed: int = 0
) -> tuple[float, float, float]:
    """McDonald's ω (total) of complete responses with a percentile bootstrap interval."""
    complete = items.dropna().to_numpy(dtype=float)
    n, k = complete.shape
    if k < 3 or n < 10:
        raise EvalkitInputError(
            f"McDonald's ω needs at least 3 items and 10 complete responses; got {k} and {n}."
        )
    point = _omega_point(complete)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        sample = complete[rng.integers(0, n, n)]
        if np.all(sample.std(axis=0) > 0):
            draws.append(_omega_point(sample))
    finite = [d for d in draws if np.isfinite(d)]
    if not np.isfinite(point) or not finite:
        return point, float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return point, float(low), float(high)


def score_scale(
    data: pd.DataFrame,
    items: Sequence[str],
    *,
    name: str,
    reverse: Sequence[str] = (),
    scale: tuple[float, float] = (1, 5),
    min_share: float = 0.5,
    method: ScoreMethod = "mean",
) -> Scale:
    """Score one scale per respondent.

    Parameters
    ----------
    data
        One row per respondent.
    items
        The scale's item columns.
    name
        The scale's name (the scores' name).
    reverse
        Items to reverse-code (``low + high − x``).
    scale
        The response scale's lowest and highest codes.
    min_share
        Respondents who answered fewer than this share of the items get no score;
        they are counted on ``dropped`` (never silently lost).
    method
        ``"mean"`` of answered items, or ``"factor"``: regression (Thomson) scores of
        a one-factor model, computed on the mean-imputed items of kept respondents.
    """
    check_option("method", method, ScoreMethod)
    items = list(items)
    unknown = [r for r in reverse if r not in items]
    if unknown:
        raise EvalkitInputError(
            f"reverse-coded item(s) {', '.join(unknown)} are not items of {name}."
        )
    if not 0 < min_share <= 1:
        raise EvalkitInputError(f"min_share must lie in (0, 1], got {min_share!r}.")
    check_items(data, items, scale)
    coded = data[items].astype(float).copy()
    for item in reverse:
        coded[item] = scale[0] + scale[1] - coded[item]
    answered = coded.notna().mean(axis=1)
    keep = answered >= min_share
    scores = coded.mean(axis=1).where(keep)
    if method == "factor":
        from statsmodels.multivariate.factor import Factor

        filled = coded[keep].fillna(coded[keep].mean())
        fit = Factor(filled.to_numpy(), n_factor=1, method="ml").fit()
        factor = np.asarray(fit.factor_scoring(method="regression"))[:, 0]
        if np.corrcoef(factor, filled.mean(axis=1))[0, 1] < 0:
            factor = -factor
        scores = pd.Series(np.nan, index=data.index)
        scores[keep] = factor
    dropped_rows = tuple(data.index[~keep])
    reasons = tuple(f"{name}: fewer than {min_share:.0%} of items answered" for _ in dropped_rows)
    return Scale(
        name=name,
        items=tuple(items),
        scores=scores.rename(name),
        alpha=cronbach_alpha(coded),
        omega=mcdonald_omega(coded),
        n_complete=int(coded.dropna().shape[0]),
        dropped=Dropped(rows=dropped_rows, reasons=reasons),
    )


def icc_aggregation(scores: pd.Series, groups: pd.Series) -> tuple[float, float]:
    """ICC(1) and ICC(2) of scores aggregated to groups from the one-way ANOVA (Bliese
    2000): ``(MSB − MSW)/(MSB + (k̄ − 1)MSW)`` with k̄ the mean group size, and
    ``(MSB − MSW)/MSB``."""
    frame = pd.DataFrame({"y": scores, "g": groups}).dropna()
    sizes = frame.groupby("g")["y"].size()
    j, n = len(sizes), len(frame)
    if j < 2:
        raise EvalkitInputError("aggregation needs at least two groups with responses.")
    means = frame.groupby("g")["y"].transform("mean")
    grand = frame["y"].mean()
    ssb = float(((means - grand) ** 2).sum())
    ssw = float(((frame["y"] - means) ** 2).sum())
    msb, msw = ssb / (j - 1), ssw / (n - j)
    mean_size = (
        n / j
    )  # Bliese's (2000) choice, as the multilevel package (n₀ would differ when sizes vary)
    icc1 = (msb - msw) / (msb + (mean_size - 1) * msw)
    icc2 = (msb - msw) / msb
    return float(icc1), float(icc2)


def rwg_j(items: pd.DataFrame, groups: pd.Series, *, options: int) -> pd.Series:
    """r_wg(j) per group against a uniform null with ``options`` response categories,
    on each group's complete responses (as Bliese's multilevel package)."""
    if isinstance(options, bool) or not isinstance(options, int | np.integer) or options < 2:
        raise EvalkitInputError(
            f"options is the number of response categories (at least 2), got {options!r}."
        )
    null_variance = (options**2 - 1) / 12.0
    k = items.shape[1]
    complete = items.notna().all(axis=1)
    out = {}
    for group, part in items[complete].groupby(groups[complete]):
        mean_var = float(part.var(ddof=1).mean()) if len(part) > 1 else np.nan
        ratio = min(mean_var / null_variance, 1.0) if np.isfinite(mean_var) else np.nan
        out[group] = k * (1 - ratio) / (k * (1 - ratio) + ratio) if np.isfinite(ratio) else np.nan
    return pd.Series(out, name="rwg_j")


@dataclass(frozen=True)
class SchoolConditions:
    """School-level condition scores (z across schools) and their justification."""

    schools: pd.DataFrame
    scales: dict[str, Scale]
    aggregation: pd.DataFrame  # per scale: ICC(1), ICC(2), median r_wg(j), schools, respondents

    def table(self, *, digits: int = 2) -> Table:
        """The reliability and aggregation table of the school conditions."""
        rows = {}
        data = {}
        for name, scale in self.scales.items():
            agg = self.aggregation.loc[name].astype(float).to_dict()
            a, o = scale.alpha, scale.omega
            rows[name] = [
                str(len(scale.items)),
                f"{int(agg['respondents']):,}",
                f"{fmt_number(a[0], digits)} [{fmt_number(a[1], digits)}, {fmt_number(a[2], digits)}]",
                f"{fmt_number(o[0], digits)} [{fmt_number(o[1], digits)}, {fmt_number(o[2], digits)}]",
                fmt_number(agg["icc1"], digits),
                fmt_number(agg["icc2"], digits),
                fmt_number(agg["rwg_median"], digits),
            ]
            data[name] = [
                len(scale.items),
                agg["respondents"],
                a[0],
                o[0],
                agg["icc1"],
                agg["icc2"],
                agg["rwg_median"],
            ]
        columns = [
            "Items",
            "Respondents",
            "α [95% CI]",
            "ω [95% CI]",
            "ICC(1)",
            "ICC(2)",
            "Median r_wg(j)",
        ]
        notes = [
            "α: Cronbach's alpha with Feldt's interval; ω: McDonald's omega (one-factor, unweighted least squares) with a percentile bootstrap interval; both on complete responses.",
            "ICC(1), ICC(2): one-way ANOVA of teacher scores on schools; r_wg(j) against a uniform null.",
        ]
        for scale in self.scales.values():
            if scale.dropped.n:
                notes.append(
                    f"{scale.name}: {scale.dropped.n} respondents without a score (fewer than the minimum share of items answered)."
                )
        return Table(
            body=pd.DataFrame(rows, index=columns).T,
            title="Reliability and aggregation of school conditions",
            notes=tuple(notes),
            data=pd.DataFrame(data, index=columns).T,
            stub_header="Scale",
        )


def school_conditions(
    survey: pd.DataFrame,
    constructs: Mapping[str, Sequence[str]],
    *,
    school: str = "school_id",
    reverse: Sequence[str] = (),
    scale: tuple[float, float] = (1, 5),
    min_share: float = 0.5,
    schools: Sequence[object] | None = None,
) -> SchoolConditions:
    """Score every construct, aggregate to schools, and z-score the school means.

    ``schools``: every school the analysis needs; a school with no scored response
    on a construct is an error that names it.
    """
    if not constructs:
        raise EvalkitInputError(
            "constructs is empty: give each construct's items, e.g. "
            "{'leadership': ['lead1', 'lead2', 'lead3']}."
        )
    require_columns(survey, [school])
    unassigned = survey[school].isna().to_numpy()
    if unassigned.any():
        raise EvalkitInputError(
            f"survey responses without a {school} at {describe_rows(list(survey.index), unassigned)}: "
            "they cannot be aggregated to a school (and would still count in α and ω); "
            "fill in the school or drop those responses first."
        )
    table = pd.DataFrame(index=pd.Index(sorted(survey[school].unique()), name=school))
    scales = {}
    rows = []
    for name, items in constructs.items():
        fitted = score_scale(
            survey,
            items,
            name=name,
            reverse=[r for r in reverse if r in items],
            scale=scale,
            min_share=min_share,
        )
        scales[name] = fitted
        scored = fitted.scores.notna()
        groups = survey[school]
        means = fitted.scores.groupby(groups).mean()
        wanted = list(schools) if schools is not None else list(table.index)
        missing = [
            s for s in wanted if s not in means.index or not np.isfinite(means.get(s, np.nan))
        ]
        if missing:
            shown = ", ".join(str(s) for s in missing[:10])
            raise EvalkitInputError(
                f"no scored survey responses on {name} for school(s) {shown}; the school mean is undefined."
            )
        icc1, icc2 = icc_aggregation(fitted.scores, groups)
        coded = survey[list(items)].astype(float)
        for item in items:
            if item in reverse:
                coded[item] = scale[0] + scale[1] - coded[item]
        rwg = rwg_j(coded[scored], groups[scored], options=int(scale[1] - scale[0] + 1))
        table = table.reindex(sorted(set(table.index) | set(means.index)))
        table[f"{name}_mean"] = means
        table[name] = (means - means.mean()) / means.std(ddof=1)
        table[f"{name}_rwg"] = rwg
        table[f"{name}_n"] = fitted.scores.groupby(groups).count()
        rows.append(
            {
                "scale": name,
                "icc1": icc1,
                "icc2": icc2,
                "rwg_median": float(rwg.median()),
                "schools": int(means.notna().sum()),
                "respondents": int(scored.sum()),
            }
        )
    return SchoolConditions(table.reset_index(), scales, pd.DataFrame(rows).set_index("scale"))
