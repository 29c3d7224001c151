"""A clearly synthetic district export, messy the way real ones are.

:func:`messy_exports` turns a simulated district into the files a district's data
office sends: its own column names, string IDs (``S-001``, ``T-0001``, ``ST000001``),
Yes/No coaching codes, month/day/year text dates, capitalised activity labels, rater
codes, Likert words in the survey — and, with ``problems=True``, a duplicated teacher
row, a teacher listed under a second school, an unreadable date, a session of an
unknown teacher, a session length typed as a word, and a student whose teacher is
missing. Every value is simulated: no real student appears.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.data.simulate import District, simulate_district

LIKERT_WORDS = {
    1: "Strongly disagree",
    2: "Disagree",
    3: "Neutral",
    4: "Agree",
    5: "Strongly agree",
}
EXPORT_MAPPING: dict[str, dict[str, str]] = {
    "schools": {"School Code": "school_id"},
    "teachers": {"Employee ID": "teacher_id", "School Code": "school_id", "Coached?": "coached"},
    "coaching_log": {"Employee ID": "teacher_id", "Session Date": "date", "Minutes": "minutes",
                     "Activity": "activity"},
    "observations": {"Employee ID": "teacher_id", "Rater": "rater_id", "Visit": "occasion",
                     "Rubric Score": "score"},
    "students": {"SASID": "student_id", "Employee ID": "teacher_id", "School Code": "school_id",
                 "Prior Score": "prior", "Score": "achievement"},
    "survey": {"Employee ID": "teacher_id", "School Code": "school_id"},
}  # fmt: skip
"""The export's column names → evalkit's, per table (also written as mapping.toml)."""


def messy_exports(
    district: District | None = None, *, problems: bool = False
) -> dict[str, pd.DataFrame]:
    """The district's six tables as a district exports them (see the module docs).

    Examples
    --------
    >>> frames = messy_exports()
    >>> frames["teachers"].columns.tolist(), frames["teachers"]["Coached?"].iloc[0]
    (['Employee ID', 'School Code', 'Coached?'], 'No')
    """
    source = district or simulate_district(
        n_schools=8, teachers_per_school=4, students_per_teacher=15, seed=2026
    )
    school = {s: f"S-{s:03d}" for s in source.schools.school_id}
    teacher = {t: f"T-{t:04d}" for t in source.teachers.teacher_id}

    def ids(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        if "school_id" in out:
            out["school_id"] = out["school_id"].map(school)
        if "teacher_id" in out:
            out["teacher_id"] = out["teacher_id"].map(teacher)
        return out

    teachers = ids(source.teachers)[["teacher_id", "school_id", "coached"]]
    teachers["coached"] = np.where(teachers["coached"] == 1, "Yes", "No")
    log = ids(source.coaching_log)[["teacher_id", "date", "minutes", "activity"]]
    log["date"] = pd.to_datetime(log["date"]).dt.strftime("%m/%d/%Y")
    log["activity"] = log["activity"].str.capitalize()
    observations = ids(source.observations)
    observations["rater_id"] = "R" + observations["rater_id"].astype(str)
    students = ids(source.students)[
        ["student_id", "teacher_id", "school_id", "prior", "achievement"]
    ]
    students["student_id"] = "ST" + students["student_id"].astype(str).str.zfill(6)
    survey = ids(source.survey)
    items = [c for c in survey.columns if c not in ("teacher_id", "school_id")]
    survey[items] = survey[items].apply(lambda column: column.map(LIKERT_WORDS))
    frames = {
        "schools": ids(source.schools)[["school_id"]],
        "teachers": teachers,
        "coaching_log": log.astype({"minutes": object}),
        "observations": observations,
        "students": students,
        "survey": survey,
    }
    if problems:
        _plant(frames)
    return {name: _theirs(name, frame) for name, frame in frames.items()}


def _plant(frames: dict[str, pd.DataFrame]) -> None:
    """The problems ``check()`` must find, one of each kind."""
    teachers = frames["teachers"]
    moved = teachers.iloc[[5]].assign(school_id=teachers["school_id"].iloc[-1])
    frames["teachers"] = pd.concat([teachers, teachers.iloc[[3]], moved], ignore_index=True)
    log = frames["coaching_log"]
    log.loc[log.index[2], "date"] = "13/31/2025"
    log.loc[log.index[4], "teacher_id"] = "T-9999"
    log.loc[log.index[6], "minutes"] = "forty"
    students = frames["students"]
    students.loc[students.index[10], "teacher_id"] = "T-8888"


def _theirs(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={ours: theirs for theirs, ours in EXPORT_MAPPING[name].items()})


def write_exports(frames: dict[str, pd.DataFrame], folder: str | Path) -> dict[str, Path]:
    """Each table as ``<name>.csv`` and the mapping as ``mapping.toml`` in ``folder``."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in frames.items():
        paths[name] = target / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    sections = [
        f"[{table}]\n" + "\n".join(f'"{theirs}" = "{ours}"' for theirs, ours in columns.items())
        for table, columns in EXPORT_MAPPING.items()
    ]
    paths["mapping"] = target / "mapping.toml"
    paths["mapping"].write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return paths


def bundled_export() -> dict[str, Path]:
    """Paths of the messy export shipped with evalkit (``messy_exports(problems=True)``
    written to files): six CSV tables and ``mapping.toml``."""
    folder = Path(__file__).parent / "messy_district"
    names = [*EXPORT_MAPPING, "mapping"]
    return {n: folder / ("mapping.toml" if n == "mapping" else f"{n}.csv") for n in names}
