"""A Kraft-style synthesis of coaching studies: effect sizes from reported statistics,
CHE + robust variance estimation, moderators, bias and sensitivity analyses, figures.

Kraft, Blazar & Hogan's (2018) study-level data are not public; the workflow runs on
the bundled SAT-coaching data or on a CSV the evaluator codes from their own studies
(see :data:`TEMPLATE_COLUMNS` and ``analyses/templates/coaching_studies_template.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalkit import effectsize as es
from evalkit import meta
from evalkit.core import EvalkitInputError, read_formula, require_columns

TEMPLATE_COLUMNS = {
    "study": "study label (effect sizes of one study share it)",
    "outcome_domain": "instruction or achievement",
    "outcome": "the measure (e.g. CLASS, state math test)",
    "design": "rct or qed",
    "clustering": "none, teachers or schools: the unit assigned to coaching",
    "program_size": "number of teachers coached",
    "dosage_hours": "hours of coaching per teacher",
    "content_focus": "general or content-specific",
    "format": "in_person, virtual or hybrid",
    "coach_background": "who coached: content specialist, former teacher, researcher, ... (or blank)",
    "grade_band": "elementary, middle, high or mixed (or blank)",
    "n_t": "analysed sample, coached group",
    "n_c": "analysed sample, comparison group",
    "mean_t": "outcome mean, coached (or blank)",
    "mean_c": "outcome mean, comparison (or blank)",
    "sd_t": "outcome SD, coached (or blank)",
    "sd_c": "outcome SD, comparison (or blank)",
    "t_stat": "independent-samples t, when means are not reported (or blank)",
    "reported_g": "an effect size the study reports, when neither is available (or blank)",
    "reported_se": "its standard error (with reported_g)",
    "icc": "ICC for the clustering correction (blank: WWC default 0.20 for achievement, 0.10 otherwise)",
    "cluster_size": "average students per cluster (blank when clustering is none)",
}
"""The template's columns, one row per effect size."""


def effect_sizes_from_reports(studies: pd.DataFrame) -> pd.DataFrame:
    """Hedges' g and its variance for every row, from means and SDs, from t, or from a
    reported effect size and SE, in that order of preference; clustered designs get
    the Hedges (2007) correction with the row's ICC (WWC defaults when blank).
    Adds ``yi``, ``vi`` and ``es_source``; rows with nothing usable are an error that
    names them. A reported effect size is taken as reported (its study's own
    clustering correction)."""
    require_columns(studies, ["study", "n_t", "n_c"])
    out = studies.copy()
    yi, vi, source = [], [], []
    for index, row in out.iterrows():
        clustered = str(row.get("clustering", "none")).lower() not in ("none", "nan", "")
        icc = row.get("icc")
        if clustered and (icc is None or pd.isna(icc)):
            icc = 0.20 if str(row.get("outcome_domain", "")).lower() == "achievement" else 0.10
        options: dict[str, Any] = {}
        computable = all(
            _present(row, c) for c in ("mean_t", "mean_c", "sd_t", "sd_c")
        ) or _present(row, "t_stat")
        if clustered and computable:
            size = row.get("cluster_size")
            if size is None or pd.isna(size):
                raise EvalkitInputError(
                    f"row {index} ({row['study']}): a clustered design needs cluster_size."
                )
            options = {"icc": float(icc), "cluster_size": float(size)}  # type: ignore[arg-type]
        if all(_present(row, c) for c in ("mean_t", "mean_c", "sd_t", "sd_c")):
            g = es.hedges_g(
                row["mean_t"],
                row["mean_c"],
                row["sd_t"],
                row["sd_c"],
                row["n_t"],
                row["n_c"],
                **options,
            )
            label = "means and SDs"
        elif _present(row, "t_stat"):
            g = es.hedges_g_from_t(row["t_stat"], row["n_t"], row["n_c"], **options)
            label = "t statistic"
        elif _present(row, "reported_g") and _present(row, "reported_se"):
            yi.append(float(row["reported_g"]))
            vi.append(float(row["reported_se"]) ** 2)
            source.append("reported effect size")
            continue
        else:
            raise EvalkitInputError(
                f"row {index} ({row['study']}): no means and SDs, t statistic, or reported effect size with SE."
            )
        yi.append(float(g.estimate))
        vi.append(float(g.variance))
        source.append(label + (" (clustering-corrected)" if clustered else ""))
    out["yi"], out["vi"], out["es_source"] = yi, vi, source
    return out


def _present(row: pd.Series, column: str) -> bool:
    return column in row.index and not pd.isna(row[column])


@dataclass(frozen=True)
class Synthesis:
    """Every step of the synthesis."""

    data: pd.DataFrame
    che: meta.MetaResults
    robust: meta.RobustResults
    moderated: meta.MetaResults | None
    moderated_robust: meta.RobustResults | None
    egger: Any
    rho_sensitivity: pd.DataFrame
    figures: dict[str, Any]
    moderator_rows_dropped: int = 0
    """Effect sizes left out of the meta-regression for missing moderator values."""
    joint: meta.MultivariateResults | None = None
    """Both outcome domains at once (multivariate model), when asked for and estimable."""
    joint_robust: meta.RobustResults | None = None
    selection: pd.DataFrame | None = None
    """The pooled estimate with and without adjustment for selective reporting."""
    notes: tuple[str, ...] = ()
    """What could not be estimated on these data, and why."""


PROGRAM_FEATURES = (
    "dosage_hours",
    "format",
    "content_focus",
    "coach_background",
    "grade_band",
    "design",
)
"""Program features worth coding in the template (Kraft, Blazar & Hogan 2018, Table 4)."""


def moderator_table(
    data: pd.DataFrame,
    *,
    study: str = "study",
    features: tuple[str, ...] = PROGRAM_FEATURES,
    rho: float = 0.8,
) -> pd.DataFrame:
    """One CHE meta-regression per coded program feature, CR2 by study: a slope for a
    numeric feature, the contrast of each level with the first for a text one. Features
    the data do not have, or with a single value, are listed with the reason."""
    frame = data.reset_index(drop=True).copy()
    frame["es_id"] = np.arange(1, len(frame) + 1)
    rows: list[dict[str, Any]] = []
    for feature in features:
        if feature not in frame.columns or frame[feature].isna().all():
            rows.append({"feature": feature, "term": "", "note": "not coded"})
            continue
        part = frame.dropna(subset=[feature])
        if part[feature].nunique() < 2:
            rows.append({"feature": feature, "term": "", "note": "a single value"})
            continue
        numeric = pd.api.types.is_numeric_dtype(part[feature])
        formula = feature if numeric else f"C({feature})"
        try:
            fit = meta.multilevel(
                part,
                effect="yi",
                variance="vi",
                moderators=formula,
                levels=[study, "es_id"],
                rho=rho,
            )
            tidy = meta.robust(fit, part[study]).tidy()
        except EvalkitInputError as error:
            rows.append({"feature": feature, "term": "", "note": str(error)})
            continue
        for record in tidy.iloc[1:].to_dict("records"):
            rows.append(
                {
                    "feature": feature,
                    "term": record["term"],
                    "estimate": record["estimate"],
                    "std_error": record["std_error"],
                    "df": record["df"],
                    "p_value": record["p_value"],
                    "k": len(part),
                    "studies": part[study].nunique(),
                    "note": "CR2 df < 4: unreliable" if record["df"] < 4 else "",
                }
            )
    return pd.DataFrame(rows)


MIN_SELECTION_STUDIES = 10
"""Fewest studies for the selection-model sensitivity analysis: below it the selection
parameters are rarely identified and sandwich SEs are unreliable (Pustejovsky,
Citkowicz & Joshi 2025 study 20 or more)."""


def selection_sensitivity(che: meta.MetaResults, robust: meta.RobustResults) -> pd.DataFrame:
    """The pooled effect under the CHE model and adjusted for selective reporting by the
    step (p < .025 one-sided) and beta selection models for dependent effects (cluster-
    robust composite likelihood, Pustejovsky, Citkowicz & Joshi 2025)."""
    first = robust.tidy().iloc[0]
    rows = [
        {
            "model": "CHE, CR2 (unadjusted)",
            "estimate": first["estimate"],
            "std_error": first["std_error"],
            "ci_low": first["ci_low"],
            "ci_high": first["ci_high"],
            "note": "",
        }
    ]
    models = (
        ("step selection model (p < .025), cluster-robust", {"type": "step", "steps": (0.025,)}),
        ("beta selection model, cluster-robust", {"type": "beta"}),
    )
    if robust.n_clusters < MIN_SELECTION_STUDIES:
        note = (
            f"not fitted: {robust.n_clusters} studies; selection models with cluster-robust "
            f"SEs need at least {MIN_SELECTION_STUDIES}"
        )
        rows.extend({"model": label, "note": note} for label, _ in models)
        return pd.DataFrame(rows)
    for label, options in models:
        try:
            fit = meta.selection_model(che, **options)
        except EvalkitInputError as error:
            rows.append({"model": label, "note": str(error)})
            continue
        tidy = fit.tidy().iloc[0]
        rows.append(
            {
                "model": label,
                "estimate": tidy["estimate"],
                "std_error": tidy["std_error"],
                "ci_low": tidy["ci_low"],
                "ci_high": tidy["ci_high"],
                "note": "; ".join(w for w in fit.warnings if not w.startswith("dependent effects")),
            }
        )
    return pd.DataFrame(rows)


def synthesize(
    data: pd.DataFrame,
    *,
    study: str = "study",
    moderators: str | None = None,
    rho: float = 0.8,
    labels: pd.Series | None = None,
    outcome: str | None = None,
) -> Synthesis:
    """CHE + RVE (CR2 by study) with ``rho`` imputed, a meta-regression on
    ``moderators`` (``"dosage_hours + C(design)"``), Egger's test with CR2, ρ
    sensitivity, selection-model sensitivity, forest (with the CR2 pooled estimate),
    funnel and orchard plots; with ``outcome`` (``"outcome_domain"``), also the
    multivariate model of the outcomes' effects with CR2."""
    require_columns(data, [study, "yi", "vi"])
    frame = data.reset_index(drop=True).copy()
    frame["es_id"] = np.arange(1, len(frame) + 1)
    levels = [study, "es_id"]
    che = meta.multilevel(frame, effect="yi", variance="vi", levels=levels, rho=rho)
    robust = meta.robust(che, frame[study])
    moderated = moderated_robust = None
    dropped = 0
    if moderators:
        needed = sorted(
            str(v) for v in read_formula(moderators, what="moderator formula").required_variables
        )
        complete = frame.dropna(subset=needed)
        dropped = len(frame) - len(complete)
        moderated = meta.multilevel(
            complete, effect="yi", variance="vi", moderators=moderators, levels=levels, rho=rho
        )
        moderated_robust = meta.robust(moderated, complete[study])
    egger = meta.egger_test(che, cluster=frame[study])
    sensitivity = meta.rho_sensitivity(frame, effect="yi", variance="vi", levels=levels)
    figure_labels = list((labels if labels is not None else frame[study]).astype(str))
    groups = frame[outcome].astype(str).to_numpy() if outcome is not None else None
    figures = {
        "forest": meta.forest_plot(che, labels=figure_labels, subgroups=groups, robust=robust),
        "orchard": meta.orchard_plot(che, robust=robust),
        "funnel": meta.funnel_plot(che, contour=True),
        "rho_sensitivity": meta.rho_sensitivity_plot(sensitivity),
    }
    notes: list[str] = []
    joint = joint_robust = None
    if outcome is not None:
        try:
            joint = meta.multivariate(
                frame, effect="yi", variance="vi", outcome=outcome, study=study, rho=rho
            )
            joint_robust = meta.robust(joint, frame[study])
        except EvalkitInputError as error:
            notes.append(f"multivariate model not fitted: {error}")
    selection = selection_sensitivity(che, robust)
    return Synthesis(
        frame, che, robust, moderated, moderated_robust, egger, sensitivity, figures, dropped,
        joint, joint_robust, selection, tuple(notes),
    )  # fmt: skip
