"""The checks behind :meth:`DistrictData.check`: every problem of a district's tables,
each with its table, column, IDs and file lines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from evalkit.coaching.intake import DistrictData

SHOWN = 5


def problems(data: DistrictData) -> list[dict[str, Any]]:
    """All problems found in ``data`` (conversion problems are added by the caller)."""
    from evalkit.coaching.intake import REQUIRED

    found: list[dict[str, Any]] = []
    tables = data.tables()
    complete = True
    for name, frame in tables.items():
        absent = [c for c in REQUIRED[name] if c not in frame.columns]
        if absent:
            complete = False
            found.append(row(data, f"missing column(s) {', '.join(absent)}", name, "", []))
    if not complete:
        return found
    found += _duplicates(data)
    found += _orphans(data)
    found += _moved(data)
    found += _ranges(data)
    found += _missing(data)
    return found


def row(
    data: DistrictData,
    text: str,
    table: str,
    column: str,
    index: Any,
    ids: Any = (),
    *,
    fatal: bool = True,
) -> dict[str, Any]:
    positions = list(index)
    lines = data.lines.get(table)
    shown_lines = [int(lines.loc[i]) for i in positions if lines is not None and i in lines.index]
    return {
        "problem": text,
        "table": table,
        "column": column,
        "ids": ", ".join(map(str, list(dict.fromkeys(ids))[:SHOWN])),
        "lines": shown_lines or positions,
        "fatal": fatal,
    }


def _duplicates(data: DistrictData) -> list[dict[str, Any]]:
    out = []
    for table, key in (
        ("schools", "school_id"),
        ("teachers", "teacher_id"),
        ("students", "student_id"),
    ):
        frame = getattr(data, table)
        exact = frame.duplicated(keep=False)
        if exact.any():
            out.append(
                row(data, "duplicated rows (the same record twice)", table, key,
                     frame.index[exact], frame.loc[exact, key])
            )  # fmt: skip
        repeated = frame[key].duplicated(keep=False) & ~exact
        if table == "teachers":
            repeated &= ~_in_two_schools(frame)
        if repeated.any():
            out.append(
                row(data, f"duplicated {key} with different values", table, key,
                     frame.index[repeated], frame.loc[repeated, key])
            )  # fmt: skip
    return out


def _in_two_schools(teachers: pd.DataFrame) -> pd.Series:
    schools = teachers.groupby("teacher_id")["school_id"].transform("nunique")
    return schools > 1


def _orphans(data: DistrictData) -> list[dict[str, Any]]:
    out = []
    known_schools = set(data.schools["school_id"].dropna())
    known_teachers = set(data.teachers["teacher_id"].dropna())
    checks = [
        ("teachers", "school_id", known_schools, "teachers in a school absent from the schools table"),
        ("students", "teacher_id", known_teachers, "students whose teacher is absent from the teachers table"),
        ("students", "school_id", known_schools, "students in a school absent from the schools table"),
        ("coaching_log", "teacher_id", known_teachers, "coaching sessions of teachers absent from the teachers table"),
        ("observations", "teacher_id", known_teachers, "observations of teachers absent from the teachers table"),
    ]  # fmt: skip
    if data.survey is not None:
        checks.append(
            ("survey", "teacher_id", known_teachers, "survey responses of unknown teachers")
        )
    for table, column, known, text in checks:
        frame = getattr(data, table)
        orphan = frame[column].notna() & ~frame[column].isin(known)
        if orphan.any():
            out.append(
                row(data, text, table, column, frame.index[orphan], frame.loc[orphan, column])
            )
    return out


def _moved(data: DistrictData) -> list[dict[str, Any]]:
    """Teachers listed under two schools, and students filed under another school than
    their teacher's."""
    out = []
    teachers = data.teachers
    moved = _in_two_schools(teachers)
    if moved.any():
        out.append(
            row(data, "teachers listed under two or more schools (a teacher who moved?)",
                 "teachers", "school_id", teachers.index[moved], teachers.loc[moved, "teacher_id"])
        )  # fmt: skip
    home = teachers.drop_duplicates("teacher_id").set_index("teacher_id")["school_id"]
    students = data.students
    expected = students["teacher_id"].map(home)
    mismatch = (
        expected.notna() & students["school_id"].notna() & (expected != students["school_id"])
    )
    if mismatch.any():
        out.append(
            row(data, "students filed under a school other than their teacher's",
                 "students", "school_id", students.index[mismatch],
                 students.loc[mismatch, "student_id"])
        )  # fmt: skip
    return out


def _ranges(data: DistrictData) -> list[dict[str, Any]]:
    out = []
    minutes = data.coaching_log["minutes"]
    bad = minutes.notna() & ((minutes < 0) | (minutes > 24 * 60))
    if bad.any():
        out.append(
            row(data, "session lengths below 0 or above 24 hours (minutes)", "coaching_log",
                 "minutes", data.coaching_log.index[bad], data.coaching_log.loc[bad, "teacher_id"])
        )  # fmt: skip
    dates = data.coaching_log["date"]
    if pd.api.types.is_datetime64_any_dtype(dates):
        future = dates.notna() & (dates > pd.Timestamp.now() + pd.Timedelta(days=1))
        if future.any():
            out.append(
                row(data, "session dates in the future", "coaching_log", "date",
                     data.coaching_log.index[future], data.coaching_log.loc[future, "teacher_id"])
            )  # fmt: skip
    return out


def _missing(data: DistrictData) -> list[dict[str, Any]]:
    """Missing values by column: not fatal (the models drop those rows and report them)
    except in ID columns, which decide where a row belongs, and in the coaching log's
    minutes and dates, without which dosage cannot be counted."""
    out = []
    for table, frame in data.tables().items():
        for column in frame.columns:
            gaps = frame[column].isna()
            if not gaps.any():
                continue
            fatal = column in ("school_id", "teacher_id", "student_id") or (
                table == "coaching_log" and column in ("minutes", "date")
            )
            out.append(
                row(data, f"{int(gaps.sum())} missing value(s)", table, column,
                     frame.index[gaps], fatal=fatal)
            )  # fmt: skip
    return out
