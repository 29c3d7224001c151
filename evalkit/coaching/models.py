"""The model sequences of a coaching evaluation: null → treatment → covariates →
moderation, for instruction (observation scores in teachers in schools) and for
achievement (students in teachers in schools)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from evalkit.coaching.binary_models import binary_effects, binary_models, binary_notes
from evalkit.core import (
    Dropped,
    EvalkitInputError,
    check_option,
    complete_cases,
    describe_rows,
    merge_lookup,
    require_columns,
)
from evalkit.multilevel import DfMethod, GLMMResults, LMMResults, Standardizer, effect_size, lmm
from evalkit.tables import Table, fmt_number, regression_table

CONDITIONS = ("leadership", "collaboration", "readiness")
Centring = Literal["none", "grand", "group"]
OutcomeFamily = Literal["gaussian", "binomial"]


@dataclass(frozen=True)
class ModelSequence:
    """Fitted models in presentation order, with the standardised coaching effect.

    ``effects`` has one row per model with a treatment term: the coefficient, its
    standardised value with SE and CI (against the null model's variance
    components), the standardiser and its SD.
    """

    outcome: str
    treatment: str
    models: dict[str, LMMResults] | dict[str, GLMMResults]
    effects: pd.DataFrame
    standardizer: str
    metric: str
    dropped: Dropped = field(default_factory=Dropped)
    conversions: tuple[str, ...] = ()
    reliability: float | None = None
    """Mean reliability of a teacher's mean score (instruction models), or None."""
    measurement_notes: tuple[str, ...] = ()
    family: str = "gaussian"
    """``"gaussian"`` (linear mixed models) or ``"binomial"`` (logistic GLMMs)."""

    def table(self, *, digits: int = 2, title: str | None = None) -> Table:
        """Side-by-side table: fixed effects (SE), variance components, ICCs,
        proportional reduction in variance, standardised effect and fit statistics."""
        null = self.models["Null"]
        statistics = {}
        if self.family == "binomial":
            for name in null.n_groups:
                statistics[f"icc_{name}"] = f"ICC({name})"
            statistics.update({"deviance": "Deviance (−2 log L)", "AIC": "AIC", "BIC": "BIC"})
            notes = binary_notes(self.outcome, self.treatment, self.models, self.dropped)  # type: ignore[arg-type]
        else:
            assert isinstance(null, LMMResults)
            for level in null.levels:
                statistics[f"prv_{level.name}"] = f"PRV({level.name})"
            statistics["prv_residual"] = "PRV(residual)"
            statistics.update({"reml_criterion": "REML criterion", "AIC": "AIC", "BIC": "BIC"})
            notes = [
                f"Outcome: {self.outcome}. Linear mixed models fitted by REML; tests use "
                f"{null.df_method} degrees of freedom.",
                "PRV: proportional reduction in each variance component relative to the null model.",
                f"Effect size: the {self.treatment} coefficient divided by the {self.metric} SD of the null model "
                "(Hedges 2007); its SE includes the uncertainty of that SD.",
            ]
            if self.dropped.n:
                notes.append(f"Before fitting, {self.dropped.describe()}")
        notes.extend(self.conversions)
        notes.extend(self.measurement_notes)
        shown = [
            str(t)
            for t in dict.fromkeys(t for m in self.models.values() for t in m.params.index)
            if not str(t).startswith("C(_rater)")
        ]
        if len(shown) < len({t for m in self.models.values() for t in m.params.index}):
            notes.append("Rater fixed effects included, not shown.")
        table = regression_table(
            self.models,
            terms=shown,
            statistics=statistics,
            digits=digits,
            title=title or f"Model sequence for {self.outcome}",
            notes=notes,
        )
        row = []
        for name in self.models:
            if name in self.effects.index:
                e = self.effects.loc[name].astype(float).to_dict()
                row.append(
                    f"{fmt_number(e['effect_size'], digits)} [{fmt_number(e['ci_low'], digits)}, {fmt_number(e['ci_high'], digits)}]"
                )
            else:
                row.append("")
        body = table.body.copy()
        position = list(body.index).index("N")
        label = "Cox index [95% CI]" if self.family == "binomial" else "Effect size [95% CI]"
        top = body.iloc[:position]
        bottom = body.iloc[position:]
        extra = pd.DataFrame([row], index=[label], columns=body.columns)
        return Table(
            body=pd.concat([top, extra, bottom]),
            title=table.title,
            notes=table.notes,
            data=table.data,
            stub_header=table.stub_header,
        )


def _effects(
    models: dict[str, LMMResults],
    treatment: str,
    standardizer: Standardizer,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    null = models["Null"]
    rows = {}
    for name, model in models.items():
        if treatment not in model.params.index:
            continue
        es = effect_size(
            model, treatment, standardizer=standardizer, reference=null, exclude=exclude
        )
        rows[name] = {
            "estimate": float(model.params[treatment]),
            "std_error": float(model.std_errors[treatment]),
            "p_value": float(model.pvalues[treatment]),
            "effect_size": es.estimate,
            "effect_size_std_error": es.std_error,
            "ci_low": es.ci_low,
            "ci_high": es.ci_high,
            "sd": es.sd,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def fit_sequence(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    random: str,
    covariates: Sequence[str],
    moderators: Sequence[str],
    standardizer: Standardizer,
    metric: str,
    df_method: DfMethod = "satterthwaite",
    dropped: Dropped | None = None,
    exclude: Sequence[str] = (),
) -> ModelSequence:
    """Fit the four models; the covariates model adds ``covariates`` (including the
    moderators' main effects), the moderation model the treatment × moderator terms.
    ``exclude`` names random factors left out of the effect-size standardiser
    (crossed raters: measurement error, not differences between teachers).

    The treatment must be coded 0/1; true/false and the usual words (yes/no, y/n,
    coached/comparison, treatment/control, treated/untreated, in any case) are
    converted to 1/0 and the conversion is reported in the table notes; any other codes
    are an error naming them."""
    require_columns(data, [treatment])
    coded, conversion = treatment_indicator(data[treatment], treatment)
    data = data.assign(**{treatment: coded})
    null = lmm(f"{outcome} ~ 1 + {random}", data, df_method=df_method)
    steps = {
        "Null": null,
        "Treatment": lmm(
            f"{outcome} ~ {treatment} + {random}", data, df_method=df_method, reference=null
        ),
    }
    if covariates:
        rhs = " + ".join([treatment, *covariates])
        steps["Covariates"] = lmm(
            f"{outcome} ~ {rhs} + {random}", data, df_method=df_method, reference=null
        )
    if moderators:
        interactions = " + ".join(f"{treatment}:{m}" for m in moderators)
        rhs = " + ".join([treatment, *covariates, interactions])
        steps["Moderation"] = lmm(
            f"{outcome} ~ {rhs} + {random}", data, df_method=df_method, reference=null
        )
    nobs = {m.nobs for m in steps.values()}
    if len(nobs) > 1:
        raise EvalkitInputError(
            f"the models were fitted to different rows ({sorted(nobs)}); drop rows with missing covariates first "
            "so the sequence compares like with like."
        )
    return ModelSequence(
        outcome, treatment, steps, _effects(steps, treatment, standardizer, exclude), standardizer, metric,
        dropped or Dropped(), (conversion,) if conversion else (),
    )  # fmt: skip


TREATMENT_WORDS = {
    "yes": 1, "no": 0, "y": 1, "n": 0, "true": 1, "false": 0, "t": 1, "f": 0,
    "coached": 1, "comparison": 0, "treatment": 1, "control": 0, "treated": 1,
    "untreated": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0,
}  # fmt: skip
"""Treatment codes read as coached (1) or comparison (0), compared without case."""


def treatment_indicator(values: pd.Series, name: str) -> tuple[pd.Series, str]:
    """The treatment as 0/1 floats, and a sentence reporting any conversion (empty when
    it was 0/1 already). Unknown codes, and anything but two groups, are errors."""
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values) or (
        values.dtype == object and present.map(lambda v: isinstance(v, bool | np.bool_)).all()
    ):
        return values.map({True: 1.0, False: 0.0}), f"{name}: True/False read as 1/0."
    if pd.api.types.is_numeric_dtype(values):
        codes = set(present.unique().tolist())
        if codes <= {0, 1}:
            return values.astype(float), ""
        shown = ", ".join(map(str, sorted(codes)[:6]))
        raise EvalkitInputError(
            f"the treatment column {name!r} must be coded 0/1 (comparison/coached); it has {shown}."
        )
    words = present.astype(str).str.strip().str.lower()
    unknown = sorted(set(words) - set(TREATMENT_WORDS))
    if unknown:
        found = ", ".join(repr(v) for v in sorted(set(present.astype(str)))[:6])
        raise EvalkitInputError(
            f"the treatment column {name!r} has codes evalkit cannot read as coached or "
            f"comparison ({found}); recode it to 1/0 (or yes/no, coached/comparison)."
        )
    mapped = values.astype(str).str.strip().str.lower().map(TREATMENT_WORDS).astype(float)
    mapped[values.isna()] = np.nan
    pairs = sorted({(str(v).strip(), TREATMENT_WORDS[str(v).strip().lower()]) for v in present})
    listed = ", ".join(f"{code!r} → {value}" for code, value in pairs)
    return mapped, f"{name}: codes read as {listed}."


def standardize_within(data: pd.DataFrame, column: str, by: Sequence[str]) -> pd.Series:
    """Scores standardised within cells (e.g. grade × year × subject)."""
    require_columns(data, [column, *by])
    grouped = data.groupby(list(by))[column]
    sd = grouped.transform("std")
    small = sd.isna() | (sd == 0)
    if small.any():
        rows = describe_rows(list(data.index), small.to_numpy())
        raise EvalkitInputError(
            f"cannot standardise {column!r} within {', '.join(by)}: cells with one student or no variance at {rows}."
        )
    return (data[column] - grouped.transform("mean")) / sd


def achievement_models(
    students: pd.DataFrame,
    *,
    outcome: str = "achievement",
    treatment: str = "coached",
    prior: str | None = "prior",
    conditions: Sequence[str] = CONDITIONS,
    school: str = "school_id",
    teacher: str = "teacher_id",
    standardize_by: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    centring: Centring = "none",
    df_method: DfMethod = "satterthwaite",
    family: OutcomeFamily = "gaussian",
) -> ModelSequence:
    """Students in teachers in schools: the effect on achievement, δ_T (WWC).

    ``family="binomial"`` fits a 0/1 outcome (proficient or not) by logistic mixed
    models (:func:`~evalkit.multilevel.glmm`, Laplace, Wald z tests; ``df_method`` does
    not apply) and reports odds ratios and the Cox index ``ln(OR)/1.65``, the WWC effect
    size for dichotomous outcomes; ``standardize_by`` then standardises the prior score
    only.

    With ``standardize_by`` (e.g. ``["grade", "year", "subject"]``) the outcome and
    the prior score are first standardised within those cells. ``covariates`` adds
    student, teacher or school characteristics (FRL, ELL, SPED, experience, …) to the
    covariates and moderation models, ``centring`` centres them (and the prior score)
    on the grand mean or on their teacher's mean (Enders & Tofighi 2007).
    """
    check_option("centring", centring, Centring)
    check_option("family", family, OutcomeFamily)
    require_columns(
        students,
        [outcome, treatment, school, teacher, *conditions, *covariates]
        + ([prior] if prior else []),
    )
    data = students.copy()
    if standardize_by:
        if family == "gaussian":
            data[outcome] = standardize_within(data, outcome, standardize_by)
        if prior:
            data[prior] = standardize_within(data, prior, standardize_by)
    used = [outcome, treatment, school, teacher, *conditions, *covariates] + (
        [prior] if prior else []
    )
    data, dropped = complete_cases(data, used, "drop")
    adjusted = ([prior] if prior else []) + list(covariates)
    data = centre(data, adjusted, centring, teacher)
    if family == "binomial":
        coded, conversion = treatment_indicator(data[treatment], treatment)
        data = data.assign(**{treatment: coded})
        models = binary_models(
            data, outcome=outcome, treatment=treatment, random=f"(1 | {school}/{teacher})",
            covariates=[*adjusted, *conditions], moderators=list(conditions),
        )  # fmt: skip
        return ModelSequence(
            outcome, treatment, models, binary_effects(models, treatment), "cox",
            "Cox index", dropped, (conversion,) if conversion else (), family="binomial",
        )  # fmt: skip
    return fit_sequence(
        data, outcome=outcome, treatment=treatment,
        random=f"(1 | {school}/{teacher})",
        covariates=[*adjusted, *conditions], moderators=list(conditions), standardizer="total",
        metric="total (student-level)", df_method=df_method, dropped=dropped,
    )  # fmt: skip


def instruction_models(
    observations: pd.DataFrame,
    teachers: pd.DataFrame,
    conditions_table: pd.DataFrame,
    *,
    score: str = "score",
    treatment: str = "coached",
    occasion: str | None = "occasion",
    rater: str | None = "rater_id",
    conditions: Sequence[str] = CONDITIONS,
    school: str = "school_id",
    teacher: str = "teacher_id",
    rubric: tuple[float, float] = (1.0, 7.0),
    df_method: DfMethod = "satterthwaite",
    raters: RaterEffects = "fixed",
) -> ModelSequence:
    """Repeated observation scores in teachers in schools; the effect is standardised
    on the teacher-level distribution of the null model (Hedges 2007; WWC Procedures and Standards Handbook 5.0, Appendix E).

    ``raters="fixed"`` adjusts for each rater's severity with rater dummies;
    ``raters="random"`` makes the rater a crossed random factor (raters are a sample
    of possible raters, as in a G study), whose variance is left out of the effect
    size's teacher-level SD. Either way the sequence reports the reliability of a
    teacher's mean score, ``mean_j τ/(τ + σ²/n_j + σ²_rater/r_j)`` from the null
    model (τ the teacher-level variance, n_j the teacher's scores, r_j its raters;
    the rater term only when raters are random), which attenuates the
    instruction–achievement relation (see the G-study docs).

    Scores outside the rubric's range and observations of teachers absent from the
    teacher table are errors that name the rows or IDs.
    """
    check_option("raters", raters, RaterEffects)
    if raters == "random" and not rater:
        raise EvalkitInputError("raters='random' needs the rater column (rater=...).")
    require_columns(observations, [teacher, score] + [c for c in (occasion, rater) if c])
    require_columns(teachers, [teacher, school, treatment])
    require_columns(conditions_table, [school, *conditions])
    values = observations[score]
    outside = values.notna() & ((values < rubric[0]) | (values > rubric[1]))
    if outside.any():
        rows = describe_rows(list(observations.index), outside.to_numpy())
        raise EvalkitInputError(
            f"observation scores outside the rubric's {rubric[0]:g}–{rubric[1]:g} range at {rows}."
        )
    unknown = sorted(set(observations[teacher]) - set(teachers[teacher]))
    if unknown:
        raise EvalkitInputError(
            f"observations for {len(unknown)} teacher(s) absent from the teacher table: {', '.join(map(str, unknown[:10]))}."
        )
    data = merge_lookup(
        observations, teachers[[teacher, school, treatment]], teacher, name="the teacher table"
    )
    data = merge_lookup(
        data, conditions_table[[school, *conditions]], school, name="the school conditions table"
    )
    covariates = list(conditions)
    if occasion:
        covariates.append(occasion)
    random = f"(1 | {school}/{teacher})"
    if rater:
        data["_rater"] = data[rater].astype(str)
        if raters == "fixed":
            covariates.append("C(_rater)")
        else:
            random += f" + (1 | {rater})"
    used = [score, treatment, school, teacher, *conditions] + [
        c for c in (occasion, "_rater" if rater else None) if c
    ]
    data, dropped = complete_cases(data, used, "drop")
    exclude = (rater,) if (rater and raters == "random") else ()
    sequence = fit_sequence(
        data, outcome=score, treatment=treatment, random=random,
        covariates=covariates, moderators=list(conditions), standardizer="clusters",
        metric="teacher-level", df_method=df_method, dropped=dropped, exclude=exclude,
    )  # fmt: skip
    null = sequence.models["Null"]
    assert isinstance(null, LMMResults)
    value, note = score_reliability(
        null, data, teacher=teacher, rater=rater,
        random_raters=raters == "random",
    )  # fmt: skip
    return replace(sequence, reliability=value, measurement_notes=(note,))


RaterEffects = Literal["fixed", "random"]


def score_reliability(
    null: LMMResults,
    data: pd.DataFrame,
    *,
    teacher: str,
    rater: str | None,
    random_raters: bool,
) -> tuple[float, str]:
    """Mean reliability of teachers' mean scores from the null model and its note."""
    components = null.variance_components
    assert components is not None
    variances = components.intercept_variances()
    rater_var = variances.pop(rater, 0.0) if (rater and random_raters) else 0.0
    tau = float(sum(variances.values()))
    counts = data.groupby(teacher).size()
    distinct = data.groupby(teacher)[rater].nunique() if rater else counts * 0 + 1
    lam = tau / (tau + null.sigma2 / counts + rater_var / distinct)
    value = float(lam.mean())
    how = (
        f"rater severity ({rater}) as a crossed random factor, its variance counted as error"
        if random_raters
        else "rater severity adjusted by fixed effects"
        if rater
        else "no rater information"
    )
    note = (
        f"Reliability of a teacher's mean score: {value:.2f} (mean over teachers of "
        f"τ/(τ + σ²/n_j{' + σ²_rater/r_j' if random_raters else ''}) from the null model; {how}). "
        "Measurement error attenuates the instruction–achievement relation by about this factor."
    )
    return value, note


def centre(data: pd.DataFrame, columns: Sequence[str], centring: str, group: str) -> pd.DataFrame:
    """Numeric ``columns`` centred on their grand mean or within ``group``; categorical
    ones are left to the formula's dummy coding."""
    if centring == "none":
        return data
    out = data.copy()
    for column in columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            continue
        values = out[column].astype(float)
        mean = (
            values.mean() if centring == "grand" else values.groupby(out[group]).transform("mean")
        )
        out[column] = values - mean
    return out


def treatment_terms(sequence: ModelSequence) -> list[str]:
    """The treatment and treatment × moderator terms of the last model."""
    last = list(sequence.models.values())[-1]
    return [
        t
        for t in last.params.index
        if t == sequence.treatment or t.startswith(f"{sequence.treatment}:")
    ]
