"""A MARS-style summary of a meta-analysis (Appelbaum et al. 2018, *American
Psychologist* 73(1), Table 9): effect metric, model, dependence handling, estimates with
CIs and exact p, prediction interval, heterogeneity (τ², I² with intervals, Q) and the
moderator test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.core import RobustResults
from evalkit.meta import MetaResults
from evalkit.tables._format import fmt_df, fmt_number, fmt_p
from evalkit.tables._table import Table


def meta_summary_table(
    result: MetaResults,
    *,
    robust_result: RobustResults | None = None,
    effect_metric: str = "standardised mean difference (Hedges' g)",
    title: str = "Meta-analysis summary",
) -> Table:
    """A MARS-style summary: metric, model, dependence handling, estimates with CIs
    and exact p, prediction interval, heterogeneity (τ², I² with intervals, Q) and
    the moderator test."""
    shown = robust_result or result
    tidy = shown.tidy(result.level)
    rows = _design_rows(result, robust_result, effect_metric)
    for _, term in tidy.iterrows():
        ci = f"[{fmt_number(term['ci_low'])}, {fmt_number(term['ci_high'])}]"
        df = "" if np.isinf(term["df"]) else f", df = {fmt_df(term['df'])}"
        value = f"{fmt_number(term['estimate'])} {ci}, p = {fmt_p(term['p_value'])}{df}"
        rows.append((f"Estimate: {term['term']}", value.replace("p = <", "p <")))
    rows.extend(_heterogeneity_rows(result))
    body = pd.DataFrame({"Value": [value for _, value in rows]}, index=[item for item, _ in rows])
    notes = [f"Intervals are {result.level:.0%}; p-values are exact and two-sided."]
    notes.extend(f"{w}." for w in shown.warnings)
    return Table(
        body=body, title=title, notes=tuple(notes), data=_numbers(result, tidy), stub_header="Item"
    )


def _design_rows(
    result: MetaResults, robust_result: RobustResults | None, effect_metric: str
) -> list[tuple[str, str]]:
    """Metric, model, number of effects, clusters, dependence handling and inference."""
    rows = [
        ("Effect-size metric", effect_metric),
        ("Model", result.model),
        ("Effect sizes (k)", str(result.nobs)),
    ]
    if result.structure is not None:
        rows.append(("Clusters", ", ".join(f"{k}: {v}" for k, v in result.n_groups.items())))
        rho = result.facts.get("rho")
        working = f"{rho}" if rho is not None else "none (independent sampling errors)"
        rows.append(("Dependent effects", f"CHE working model, ρ = {working}"))
    if robust_result is not None:
        inference = (
            f"{robust_result.vcov_type} cluster-robust SEs, Satterthwaite df "
            f"({robust_result.n_clusters} clusters)"
        )
    else:
        inference = "Knapp–Hartung t" if result.test == "knha" else "z (model-based)"
    rows.append(("Inference", inference))
    return rows


def _heterogeneity_rows(result: MetaResults) -> list[tuple[str, str]]:
    """Prediction interval, variance components or τ² and I² with intervals, Q and QM."""
    rows = []
    if result.x.shape[1] == 1 and result.method != "FE":
        pred = result.predict().iloc[0]
        rows.append(
            (
                f"{result.level:.0%} prediction interval",
                f"[{fmt_number(pred['pi_low'])}, {fmt_number(pred['pi_high'])}]",
            )
        )
    if result.structure is not None and result.variance_components is not None:
        for name, value in result.variance_components.intercept_variances().items():
            rows.append((f"Variance: {name}", fmt_number(value, 4)))
    elif result.method != "FE":
        low, high = result.tau2_ci
        tau2 = f"{fmt_number(result.tau2, 4)} [{fmt_number(low, 4)}, {fmt_number(high, 4)}]"
        rows.append((f"τ² [{result.level:.0%} CI]", tau2))
        low, high = result.i2_ci
        i2 = f"{fmt_number(result.i2, 1)}% [{fmt_number(low, 1)}, {fmt_number(high, 1)}]"
        rows.append((f"I² [{result.level:.0%} CI]", i2))
    rows.append(("Q (df, p)", f"{fmt_number(result.q)} ({result.q_df}, {fmt_p(result.q_p)})"))
    if np.isfinite(result.qm):
        rows.append(("Moderator test QM (p)", f"{fmt_number(result.qm)} ({fmt_p(result.qm_p)})"))
    return rows


def _numbers(result: MetaResults, tidy: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the summary: the coefficients as ``tidy()`` reports them, then
    one row per heterogeneity statistic with its value in ``estimate`` (and its
    interval where it has one)."""
    statistics: dict[str, tuple[float, float, float]] = {
        "Q": (result.q, np.nan, np.nan),
        "Q_df": (float(result.q_df), np.nan, np.nan),
        "Q_p": (result.q_p, np.nan, np.nan),
    }
    if result.method != "FE":
        statistics["tau2"] = (result.tau2, *result.tau2_ci)
        statistics["I2"] = (result.i2, *result.i2_ci)
    if result.x.shape[1] == 1 and result.method != "FE":
        pred = result.predict().iloc[0]
        statistics["prediction_interval"] = (
            float(pred["estimate"]),
            float(pred["pi_low"]),
            float(pred["pi_high"]),
        )
    if np.isfinite(result.qm):
        statistics["QM"] = (result.qm, np.nan, np.nan)
        statistics["QM_p"] = (result.qm_p, np.nan, np.nan)
    extra = pd.DataFrame(
        [
            {"term": name, "estimate": value, "ci_low": low, "ci_high": high}
            for name, (value, low, high) in statistics.items()
        ]
    )
    return pd.concat([tidy, extra], ignore_index=True)
