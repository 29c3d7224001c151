"""Quasi-experimental and take-up designs with linearmodels: two-way fixed effects,
an event study robust to staggered timing (Sun & Abraham 2021, J. Econometrics
225(2)), and treatment-on-the-treated by instrumental variables."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.adapters import from_linearmodels
from evalkit.core import (
    Dropped,
    EvalkitInputError,
    EvalkitWarning,
    ModelResults,
    complete_cases,
    describe_rows,
    figure_and_axes,
    require_columns,
)

WEAK_F = 10.0
"""First-stage F below which an instrument is flagged weak (Staiger & Stock 1997)."""


def _model_rows(
    data: pd.DataFrame, columns: list[str], numeric: list[str]
) -> tuple[pd.DataFrame, Dropped]:
    """Complete rows of ``columns`` (the others recorded as dropped) whose ``numeric``
    columns hold numbers; text in a numeric column is an error naming its rows."""
    require_columns(data, columns)
    for name in numeric:
        values = data[name]
        if not pd.api.types.is_numeric_dtype(values):
            bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
            shown = describe_rows(list(data.index), bad) if bad.any() else "every row"
            raise EvalkitInputError(
                f"column {name!r} must be numeric (0/1 for a treatment); non-numeric values at {shown}."
            )
    return complete_cases(data, columns, "drop")


def _panel(data: pd.DataFrame, unit: str, time: str) -> pd.DataFrame:
    if data.duplicated([unit, time]).any():
        dup = data.loc[data.duplicated([unit, time]), [unit, time]].head(5)
        pairs = ", ".join(f"({u}, {t})" for u, t in dup.itertuples(index=False))
        raise EvalkitInputError(f"each {unit} may appear once per {time}; duplicated: {pairs}.")
    return data.set_index([unit, time]).sort_index()


def twfe(
    data: pd.DataFrame,
    *,
    outcome: str,
    treated: str,
    unit: str,
    time: str,
    cluster: str,
    covariates: Sequence[str] = (),
) -> ModelResults:
    """Two-way fixed effects (unit and time) with SEs clustered by ``cluster``.

    The clustered variance has the usual CR1 scaling ``G/(G − 1) · (N − 1)/(N − K)``
    with K counting the absorbed effects, as Stata and statsmodels (with the dummies)
    compute it.

    With staggered adoption and effects that change over time or across cohorts the
    TWFE coefficient is a weighted average that can even take the wrong sign
    (Goodman-Bacon 2021); use :func:`event_study` to check.
    """
    from linearmodels import PanelOLS

    frame, dropped = _model_rows(
        data, [outcome, treated, unit, time, cluster, *covariates], [outcome, treated, *covariates]
    )
    panel = _panel(frame, unit, time)
    exog = panel[[treated, *covariates]].astype(float)
    fit = PanelOLS(panel[outcome], exog, entity_effects=True, time_effects=True).fit(
        cov_type="clustered", clusters=panel[[cluster]], group_debias=True
    )
    result = from_linearmodels(
        fit, model=f"two-way fixed effects, SEs clustered by {cluster}", dropped=dropped
    )
    notes = (*result.warnings, dropped.describe().rstrip(".")) if dropped.n else result.warnings
    return replace(result, warnings=notes)


@dataclass(frozen=True)
class EventStudy:
    """Interaction-weighted event-study estimates and the pre-trend test.

    ``estimates`` has one row per relative period ``l`` (−1 is the reference): the
    interaction-weighted ATT, SE, CI and the number of treated units behind it.
    ``pretrend`` tests that all leads (``l ≤ −2``) are zero; ``average_post`` is the
    mean of the post-period estimates with its SE.
    """

    estimates: pd.DataFrame
    pretrend_statistic: float
    pretrend_df: tuple[int, int]
    pretrend_p: float
    average_post: tuple[float, float]
    cohort_effects: pd.DataFrame
    n_clusters: int

    def plot(self, ax: Any = None) -> Any:
        """Event-study figure: estimates with 95% CIs by relative period. Returns the
        Figure (drawn on ``ax`` when given)."""
        figure, ax = figure_and_axes(ax)
        est = self.estimates
        ax.errorbar(
            est.index,
            est["estimate"],
            yerr=[est["estimate"] - est["ci_low"], est["ci_high"] - est["estimate"]],
            fmt="o",
            capsize=3,
            color="C0",
        )
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.axvline(-0.5, color="0.6", linestyle="--", linewidth=0.8)
        ax.set_xlabel("years relative to the start of coaching")
        ax.set_ylabel("effect (Sun & Abraham)")
        ax.set_title(
            f"pre-trend test: F = {self.pretrend_statistic:.2f}, p = {self.pretrend_p:.3f}",
            fontsize=8,
        )
        return figure


def event_study(
    data: pd.DataFrame,
    *,
    outcome: str,
    unit: str,
    time: str,
    cohort: str,
    cluster: str,
    leads: int | None = None,
    lags: int | None = None,
) -> EventStudy:
    """Sun & Abraham's interaction-weighted event study with never-treated controls.

    ``cohort`` holds the first treated period (0 or missing: never treated). The
    regression of the outcome on unit and time fixed effects and cohort × relative-
    period indicators (relative period −1 left out) gives cohort-specific effects
    δ_{e,l}; each period's estimate averages them with the cohorts' shares among the
    units observed at that period. SEs by the delta method from the cluster-robust
    covariance, treating the shares as fixed. Relative periods beyond ``leads``/
    ``lags`` are binned into the end points.
    """
    from linearmodels import PanelOLS

    require_columns(data, [outcome, unit, time, cohort, cluster])
    frame = data.copy()
    first = frame[cohort].fillna(0)
    never = first == 0
    if not never.any():
        raise EvalkitInputError(
            "the event study needs never-treated units as controls (cohort 0 or missing)."
        )
    if never.all():
        raise EvalkitInputError("no unit is ever treated.")
    rel = (frame[time] - first).where(~never)
    if leads is not None:
        rel = rel.clip(lower=-leads)
    if lags is not None:
        rel = rel.clip(upper=lags)
    frame["_rel"] = rel
    cells = (
        frame.loc[~never & (frame["_rel"] != -1), [cohort, "_rel"]]
        .drop_duplicates()
        .sort_values([cohort, "_rel"])
    )
    names = []
    for e, rel_l in cells.itertuples(index=False):
        name = f"c{int(e)}_l{int(rel_l)}"
        frame[name] = ((first == e) & (frame["_rel"] == rel_l)).astype(float)
        names.append((name, int(e), int(rel_l)))
    panel = _panel(frame, unit, time)
    columns = [n for n, _, _ in names]
    fit = PanelOLS(
        panel[outcome], panel[columns], entity_effects=True, time_effects=True, drop_absorbed=True
    ).fit(cov_type="clustered", clusters=panel[[cluster]])
    params, cov = fit.params, fit.cov
    kept = [(n, e, r) for n, e, r in names if n in params.index]
    units = frame.loc[~never].groupby([cohort, "_rel"])[unit].nunique()
    periods = sorted({r for _, _, r in kept})
    weights = np.zeros((len(periods), len(kept)))
    counts = []
    for i, period in enumerate(periods):
        members = [(j, e) for j, (_, e, r) in enumerate(kept) if r == period]
        total = sum(units.loc[(e, period)] for _, e in members)
        counts.append(total)
        for j, e in members:
            weights[i, j] = units.loc[(e, period)] / total
    kept_names = [n for n, _, _ in kept]
    beta = params[kept_names].to_numpy()
    vcov = cov.loc[kept_names, kept_names].to_numpy()
    att = weights @ beta
    att_cov = weights @ vcov @ weights.T
    se = np.sqrt(np.diag(att_cov))
    n_clusters = int(frame[cluster].nunique())
    crit = stats.t.ppf(0.975, n_clusters - 1)
    estimates = pd.DataFrame(
        {
            "estimate": att,
            "std_error": se,
            "ci_low": att - crit * se,
            "ci_high": att + crit * se,
            "treated_units": counts,
        },
        index=pd.Index(periods, name="relative_period"),
    )
    lead_rows = [i for i, r in enumerate(periods) if r <= -2]
    if lead_rows:
        b = att[lead_rows]
        v = att_cov[np.ix_(lead_rows, lead_rows)]
        q = len(lead_rows)
        f_stat = float(b @ np.linalg.solve(v, b)) / q
        p_value = float(stats.f.sf(f_stat, q, n_clusters - 1))
    else:
        f_stat, p_value, q = float("nan"), float("nan"), 0
    post = [i for i, r in enumerate(periods) if r >= 0]
    avg_w = np.zeros(len(periods))
    avg_w[post] = 1.0 / len(post)
    average = (float(avg_w @ att), float(np.sqrt(avg_w @ att_cov @ avg_w)))
    cohort_effects = pd.DataFrame(
        [(e, r, float(beta[j]), float(np.sqrt(vcov[j, j]))) for j, (_, e, r) in enumerate(kept)],
        columns=["cohort", "relative_period", "estimate", "std_error"],
    )
    return EventStudy(
        estimates, f_stat, (q, n_clusters - 1), p_value, average, cohort_effects, n_clusters
    )


def treatment_on_treated(
    data: pd.DataFrame,
    *,
    outcome: str,
    received: str,
    assigned: str,
    cluster: str,
    covariates: Sequence[str] = (),
) -> ModelResults:
    """The effect of coaching received, with random assignment as the instrument
    (two-stage least squares, SEs clustered by ``cluster``).

    ``glance()`` carries the first-stage F; below 10 the instrument is weak and the
    result says so in ``warnings`` (and a warning is issued).
    """
    from linearmodels import IV2SLS

    if received == assigned:
        raise EvalkitInputError(
            f"received and assigned are both {received!r}: the instrument (assignment) must be "
            "a different column from the treatment received."
        )
    frame, dropped = _model_rows(
        data,
        [outcome, received, assigned, cluster, *covariates],
        [outcome, received, assigned, *covariates],
    )
    exog = pd.concat(
        [
            pd.Series(1.0, index=frame.index, name="Intercept"),
            frame[list(covariates)].astype(float),
        ],
        axis=1,
    )
    fit = IV2SLS(
        frame[outcome], exog, frame[[received]].astype(float), frame[[assigned]].astype(float)
    ).fit(cov_type="clustered", clusters=frame[cluster])
    result = from_linearmodels(
        fit,
        model=f"2SLS: {received} instrumented by {assigned}, SEs clustered by {cluster}",
        dropped=dropped,
    )
    first_f = float(result.facts.get("first_stage_F", np.nan))
    notes = list(result.warnings)
    if not np.isfinite(first_f) or first_f < WEAK_F:
        message = (
            f"weak instrument: the first-stage F of {assigned} on {received} is {first_f:.2f} (below {WEAK_F:g}); "
            "the 2SLS estimate and its SE are unreliable"
        )
        notes.append(message)
        warnings.warn(message, EvalkitWarning, stacklevel=2)
    if dropped.n:
        notes.append(dropped.describe().rstrip("."))
    return replace(result, warnings=tuple(notes))
