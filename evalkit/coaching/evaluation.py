"""The coaching district evaluation end to end: survey scales → school conditions,
coaching dosage, the instruction and achievement model sequences, moderation by
principal leadership, effect sizes, and the report's tables and figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.coaching.dosage import coaching_dosage
from evalkit.coaching.models import ModelSequence, achievement_models, instruction_models
from evalkit.coaching.moderation import johnson_neyman, moderation_plot, simple_slopes
from evalkit.core import merge_lookup
from evalkit.data import REVERSED_ITEMS, SURVEY_ITEMS, District
from evalkit.multilevel import DfMethod
from evalkit.scales import SchoolConditions, school_conditions
from evalkit.tables import Table, descriptive_table, fmt_number

CONDITIONS = ("leadership", "collaboration", "readiness")


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


def _timed(timings: dict[str, float], step: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    timings[step] = time.perf_counter() - start
    return result


def evaluate_district(
    district: District,
    *,
    df_method: DfMethod = "satterthwaite",
    survey_items: dict[str, tuple[str, ...]] | None = None,
) -> Evaluation:
    """Run the evaluation on a district's tables (simulated or real, same columns)."""
    timings: dict[str, float] = {}
    items = survey_items or dict(SURVEY_ITEMS)
    conditions: SchoolConditions = _timed(
        timings,
        "scales",
        lambda: school_conditions(
            district.survey,
            items,
            reverse=REVERSED_ITEMS,
            schools=district.schools["school_id"].tolist(),
        ),
    )
    dosage: pd.DataFrame = _timed(
        timings, "dosage", lambda: coaching_dosage(district.coaching_log, district.teachers)
    )
    school_scores = conditions.schools[["school_id", *CONDITIONS]]
    teachers = merge_lookup(
        district.teachers.drop(columns=["coaching_hours", "coaching_sessions"], errors="ignore"),
        dosage,
        ["teacher_id", "coached"],
        name="the coaching dosage",
    )
    instruction: ModelSequence = _timed(
        timings,
        "instruction models",
        lambda: instruction_models(
            district.observations, teachers, school_scores, df_method=df_method
        ),
    )
    students = merge_lookup(
        district.students.drop(columns=list(CONDITIONS), errors="ignore"),
        school_scores,
        "school_id",
        name="the school conditions table",
    )
    achievement: ModelSequence = _timed(
        timings,
        "achievement models",
        lambda: achievement_models(students, df_method=df_method),
    )
    tables = _timed(
        timings, "tables", lambda: _tables(conditions, teachers, students, instruction, achievement)
    )
    return Evaluation(conditions, dosage, instruction, achievement, tables, timings)


def _tables(
    conditions: SchoolConditions,
    teachers: pd.DataFrame,
    students: pd.DataFrame,
    instruction: ModelSequence,
    achievement: ModelSequence,
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
        "moderation": moderation_table(achievement, instruction),
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


def write_report(evaluation: Evaluation, out: str | Path) -> list[Path]:
    """Tables in Markdown, HTML, LaTeX, CSV and Word, and the figures, under ``out``
    (a folder, created if needed)."""
    from evalkit.multilevel import caterpillar_plot
    from evalkit.plots import save_figure

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, table in evaluation.tables.items():
        files.extend(table.save_all(folder / name))
    for label, sequence in (
        ("achievement", evaluation.achievement),
        ("instruction", evaluation.instruction),
    ):
        figure = moderation_plot(sequence.models["Moderation"], sequence.treatment, "leadership")
        files.append(save_figure(figure, folder / f"moderation_{label}.png"))
    figure = caterpillar_plot(evaluation.achievement.models["Null"], "school_id")
    files.append(save_figure(figure, folder / "school_effects.png"))
    return files
