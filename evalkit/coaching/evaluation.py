"""The coaching district evaluation end to end: survey scales → school conditions,
coaching dosage, the instruction and achievement model sequences, moderation by
principal leadership, effect sizes, and the report's tables and figures."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.coaching.dosage import coaching_dosage
from evalkit.coaching.intake import DistrictData, TeacherMoves
from evalkit.coaching.mediation_step import MediationStep, mediation_step
from evalkit.coaching.models import (
    Centring,
    ModelSequence,
    achievement_models,
    instruction_models,
)
from evalkit.coaching.moderation import johnson_neyman, moderation_plot, simple_slopes
from evalkit.core import EvalkitInputError, TableFormat, merge_lookup
from evalkit.data import REVERSED_ITEMS, SURVEY_ITEMS, District
from evalkit.multilevel import DfMethod, LMMResults
from evalkit.scales import SchoolConditions, school_conditions
from evalkit.tables import Table, descriptive_table, fmt_number


@dataclass(frozen=True)
class Evaluation:
    """Everything the evaluation produced, with the time spent in each step."""

    conditions: SchoolConditions
    dosage: pd.DataFrame
    instruction: ModelSequence
    achievement: ModelSequence
    tables: dict[str, Table]
    timings: dict[str, float]
    files: list[Path] = field(default_factory=list)
    mediation: MediationStep | None = None


def _timed(timings: dict[str, float], step: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    timings[step] = time.perf_counter() - start
    return result


def evaluate_district(
    district: District | DistrictData,
    *,
    df_method: DfMethod = "satterthwaite",
    survey_items: dict[str, tuple[str, ...]] | None = None,
    reverse_items: tuple[str, ...] | None = None,
    covariates: Sequence[str] = (),
    centring: Centring = "none",
    teacher_moves: TeacherMoves = "error",
    mediation: bool = False,
) -> Evaluation:
    """Run the evaluation on a district's tables: a :class:`DistrictData` built from the
    district's exports (or a simulated :class:`~evalkit.data.District`, taken through
    the same path).

    The data are checked first: any fatal problem (see :meth:`DistrictData.check`)
    stops the evaluation before a model is fitted, with every problem listed.
    ``survey_items`` maps each condition (leadership, collaboration, readiness) to its
    survey items and ``reverse_items`` names the reverse-worded ones (defaults: the
    simulated survey's). ``covariates`` (student, teacher or school columns of the
    students table: FRL, ELL, SPED, …) join the prior score in the achievement models,
    centred by ``centring``; ``teacher_moves`` decides what a teacher listed under two
    schools means (see :meth:`DistrictData.resolve_moves`).
    """
    data = district if isinstance(district, DistrictData) else _from_simulation(district)
    data = data.resolve_moves(teacher_moves)
    report = data.check()
    fatal = report[report["fatal"]]
    if len(fatal):
        listed = "; ".join(
            f"{table}.{column}: {problem}" + (f" (IDs {ids})" if ids else "")
            for table, column, problem, ids in zip(
                fatal["table"].head(8).astype(str),
                fatal["column"].head(8).astype(str),
                fatal["problem"].head(8).astype(str),
                fatal["ids"].head(8).astype(str),
                strict=True,
            )
        )
        raise EvalkitInputError(
            f"the district data have {len(fatal)} problem(s) to fix before fitting: {listed}"
            + (" …" if len(fatal) > 8 else "")
            + ". See DistrictData.check() for all of them with file lines."
        )
    if data.survey is None:
        raise EvalkitInputError(
            "the evaluation needs the teacher survey for the school conditions."
        )
    timings: dict[str, float] = {}
    items = survey_items or dict(SURVEY_ITEMS)
    reverse = REVERSED_ITEMS if reverse_items is None else reverse_items
    survey = data.survey
    conditions: SchoolConditions = _timed(
        timings,
        "scales",
        lambda: school_conditions(
            survey, items, reverse=reverse, schools=data.schools["school_id"].tolist()
        ),
    )
    dosage: pd.DataFrame = _timed(
        timings, "dosage", lambda: coaching_dosage(data.coaching_log, data.teachers)
    )
    names = tuple(items)
    school_scores = conditions.schools[["school_id", *names]]
    teachers = merge_lookup(
        data.teachers.drop(columns=["coaching_hours", "coaching_sessions"], errors="ignore"),
        dosage,
        ["teacher_id", "coached"],
        name="the coaching dosage",
    )
    instruction: ModelSequence = _timed(
        timings,
        "instruction models",
        lambda: instruction_models(
            data.observations, teachers, school_scores, conditions=names, df_method=df_method
        ),
    )
    students = merge_lookup(
        merge_lookup(
            data.students.drop(columns=[*names, "coached"], errors="ignore"),
            data.teachers[["teacher_id", "coached"]],
            "teacher_id",
            name="the teacher table",
        ),
        school_scores,
        "school_id",
        name="the school conditions table",
    )
    achievement: ModelSequence = _timed(
        timings,
        "achievement models",
        lambda: achievement_models(
            students,
            conditions=names,
            covariates=covariates,
            centring=centring,
            df_method=df_method,
        ),
    )
    tables = _timed(
        timings,
        "tables",
        lambda: _tables(conditions, teachers, students, instruction, achievement, names[0]),
    )
    step = None
    if mediation:
        step = _timed(
            timings,
            "mediation",
            lambda: mediation_step(
                students, data.observations, instruction, conditions=names, covariates=covariates
            ),
        )
        tables["mediation"] = step.table
    tables["data"] = data_report(data, report)
    if data.conversions:
        effects = tables["effect_sizes"]
        note = (
            "The district's data were converted on the way in (see the data table: "
            f"{len(data.conversions)} conversions of IDs, codes, dates or answers)."
        )
        tables["effect_sizes"] = replace(effects, notes=(*effects.notes, note))
    return Evaluation(conditions, dosage, instruction, achievement, tables, timings, mediation=step)


def _from_simulation(district: District) -> DistrictData:
    """A simulated district through the same intake as an evaluator's files."""
    return DistrictData.from_frames(
        schools=district.schools,
        teachers=district.teachers,
        coaching_log=district.coaching_log,
        observations=district.observations,
        students=district.students,
        survey=district.survey,
    )


def data_report(data: DistrictData, report: pd.DataFrame) -> Table:
    """What was converted on the way in, and the problems that did not stop the fit."""
    rows = [("conversion", text) for text in data.conversions]
    calm = report[~report["fatal"].astype(bool)]
    rows += [
        ("note", f"{table}.{column}: {problem}")
        for table, column, problem in zip(
            calm["table"].astype(str),
            calm["column"].astype(str),
            calm["problem"].astype(str),
            strict=True,
        )
    ]
    if not rows:
        rows = [("note", "The tables needed no conversion and showed no problem.")]
    body = pd.DataFrame({"Detail": [text for _, text in rows]}, index=[kind for kind, _ in rows])
    return Table(body=body, title="The district's data on the way in", stub_header="Kind")


def _tables(
    conditions: SchoolConditions,
    teachers: pd.DataFrame,
    students: pd.DataFrame,
    instruction: ModelSequence,
    achievement: ModelSequence,
    moderator: str,
) -> dict[str, Table]:
    coached = teachers.assign(group=teachers["coached"].map({0: "Comparison", 1: "Coached"}))
    dosage_table = descriptive_table(
        coached, {"coaching_hours": "Coaching hours", "coaching_sessions": "Sessions", "coaching_cycles": "Completed cycles"},
        by="group", unit="teachers", title="Coaching dosage by condition",
    )  # fmt: skip
    student_table = descriptive_table(
        students.assign(group=students["coached"].map({0: "Comparison", 1: "Coached"})),
        {"prior": "Prior achievement", "achievement": "Achievement"}, by="group", title="Student achievement by condition",
    )  # fmt: skip
    effects = effect_summary(instruction, achievement)
    return {
        "school_conditions": conditions.table(),
        "dosage": dosage_table,
        "students": student_table,
        "instruction_models": instruction.table(
            title="Instruction: observation scores in teachers in schools"
        ),
        "achievement_models": achievement.table(
            title="Achievement: students in teachers in schools"
        ),
        "effect_sizes": effects,
        "moderation": moderation_table(achievement, instruction, moderator=moderator),
    }


def effect_summary(
    instruction: ModelSequence, achievement: ModelSequence, *, model: str = "Covariates"
) -> Table:
    """The headline effects: coefficient, standardised effect with CI, and p."""
    rows, data = {}, {}
    for label, sequence in (
        ("Instruction (teacher-level SD)", instruction),
        ("Achievement (student-level SD, δ_T)", achievement),
    ):
        e = sequence.effects.loc[model].astype(float).to_dict()
        rows[label] = [
            fmt_number(e["estimate"], 3), fmt_number(e["std_error"], 3),
            f"{fmt_number(e['effect_size'], 2)} [{fmt_number(e['ci_low'], 2)}, {fmt_number(e['ci_high'], 2)}]",
            "<.001" if e["p_value"] < 0.001 else f"{e['p_value']:.3f}".lstrip("0"),
        ]  # fmt: skip
        data[label] = [e["estimate"], e["std_error"], e["effect_size"], e["p_value"]]
    columns = ["Coefficient", "SE", "Effect size [95% CI]", "p"]
    return Table(
        body=pd.DataFrame(rows, index=columns).T,
        title="Effects of coaching",
        notes=(
            "From the covariates model of each sequence; effect sizes divide the coefficient by the SD of the null model "
            "(teacher-level for instruction, total for achievement; Hedges 2007).",
        ),
        data=pd.DataFrame(data, index=columns).T,
        stub_header="Outcome",
    )


def moderation_table(
    achievement: ModelSequence, instruction: ModelSequence, *, moderator: str = "leadership"
) -> Table:
    """Simple slopes of coaching at low, mean and high leadership, and the
    Johnson–Neyman region, for both outcomes."""
    rows, notes = {}, []
    for label, sequence in (("Instruction", instruction), ("Achievement", achievement)):
        fit = sequence.models["Moderation"]
        slopes = simple_slopes(fit, sequence.treatment, moderator)
        names = ("low (mean − 1 SD", "mean (", "high (mean + 1 SD")
        for name, (_, row) in zip(names, slopes.iterrows(), strict=True):
            level = f"{name}{'' if name.endswith('(') else ', '}{fmt_number(row[moderator], 2)})"
            rows[f"{label}, {moderator} {level}"] = [
                fmt_number(row["slope"], 3), f"[{fmt_number(row['ci_low'], 3)}, {fmt_number(row['ci_high'], 3)}]",
            ]  # fmt: skip
        notes.append(f"{label}: {johnson_neyman(fit, sequence.treatment, moderator).description}")
    return Table(
        body=pd.DataFrame(rows, index=["Effect of coaching", "95% CI"]).T,
        title=f"Coaching effects by {moderator}",
        notes=tuple(notes),
        stub_header="Outcome and moderator level",
    )


def write_report(
    evaluation: Evaluation,
    out: str | Path,
    *,
    formats: tuple[TableFormat, ...] = ("md", "html", "tex", "csv", "docx"),
) -> list[Path]:
    """The tables in ``formats`` (Markdown, HTML, LaTeX, CSV, Word) and the figures
    (PNG) under ``out`` (a folder, created if needed)."""
    from evalkit.multilevel import caterpillar_plot
    from evalkit.plots import save_figure

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, table in evaluation.tables.items():
        files.extend(table.save_all(folder / name, formats))
    for label, sequence in (
        ("achievement", evaluation.achievement),
        ("instruction", evaluation.instruction),
    ):
        moderator = next(
            t.split(":")[1] for t in sequence.models["Moderation"].params.index if ":" in t
        )
        figure = moderation_plot(sequence.models["Moderation"], sequence.treatment, moderator)
        files.append(save_figure(figure, folder / f"moderation_{label}.png"))
    if evaluation.mediation is not None:
        figure = evaluation.mediation.observed.plot_sensitivity()
        files.append(save_figure(figure, folder / "mediation_sensitivity.png"))
    null = evaluation.achievement.models["Null"]
    if isinstance(null, LMMResults):
        figure = caterpillar_plot(null, "school_id")
        files.append(save_figure(figure, folder / "school_effects.png"))
    return files
