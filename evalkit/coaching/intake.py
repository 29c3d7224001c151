"""A district's own data in: the five (six) tables an evaluator exports, renamed by a
mapping, coded, typed and checked before anything is fitted.

Every conversion (renamed columns, IDs read as text, treatment words read as 0/1,
Likert words read as numbers, text dates parsed, activity labels normalised) is listed
in ``DistrictData.conversions`` and goes into the report's table notes. ``check()``
returns every problem at once, with the table, column, IDs and file line numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit.coaching.dosage import parse_dates
from evalkit.coaching.models import TREATMENT_WORDS
from evalkit.core import EvalkitInputError, check_option

TABLES = ("schools", "teachers", "coaching_log", "observations", "students", "survey")
REQUIRED: dict[str, tuple[str, ...]] = {
    "schools": ("school_id",),
    "teachers": ("teacher_id", "school_id", "coached"),
    "coaching_log": ("teacher_id", "date", "minutes", "activity"),
    "observations": ("teacher_id", "score"),
    "students": ("student_id", "teacher_id", "school_id", "prior", "achievement"),
    "survey": ("teacher_id", "school_id"),
}
"""The columns each table needs, in evalkit's names (map yours with ``mapping``)."""
ID_COLUMNS = ("school_id", "teacher_id", "student_id", "rater_id", "coach_id")
NUMBER_COLUMNS = ("minutes", "score", "prior", "achievement")

LIKERT_SCALES: dict[str, dict[str, int]] = {
    "agree5": {
        "strongly disagree": 1, "disagree": 2, "neither agree nor disagree": 3, "neutral": 3,
        "neither": 3, "agree": 4, "strongly agree": 5,
    },
    "agree4": {"strongly disagree": 1, "disagree": 2, "agree": 3, "strongly agree": 4},
    "frequency5": {"never": 1, "rarely": 2, "sometimes": 3, "often": 4, "always": 5},
    "extent4": {"not at all": 1, "to a small extent": 2, "to a moderate extent": 3,
                "to a great extent": 4},
}  # fmt: skip
"""Standard Likert vocabularies (compared without case); pass ``likert=`` for others."""


TeacherMoves = Literal["error", "first", "most_students", "split"]


def _home_schools(
    teachers: pd.DataFrame, students: pd.DataFrame, moved: list[Any], policy: str
) -> pd.Series:
    """The school each moved teacher is kept in."""
    listed = teachers[teachers["teacher_id"].isin(moved)]
    if policy == "first":
        return listed.drop_duplicates("teacher_id").set_index("teacher_id")["school_id"]
    counts = (
        students[students["teacher_id"].isin(moved)]
        .groupby(["teacher_id", "school_id"])
        .size()
        .rename("n")
        .reset_index()
    )
    candidates = listed.merge(counts, on=["teacher_id", "school_id"], how="left").fillna({"n": 0})
    best = candidates.sort_values("n", ascending=False, kind="stable")
    return best.drop_duplicates("teacher_id").set_index("teacher_id")["school_id"]


@dataclass(frozen=True)
class DistrictData:
    """A district's tables in evalkit's names and types, with what was converted.

    Build it with :meth:`from_frames` or :meth:`from_files`; check it with
    :meth:`check`; evaluate it with :func:`~evalkit.coaching.evaluate_district`.
    """

    schools: pd.DataFrame
    teachers: pd.DataFrame
    coaching_log: pd.DataFrame
    observations: pd.DataFrame
    students: pd.DataFrame
    survey: pd.DataFrame | None = None
    conversions: tuple[str, ...] = ()
    lines: Mapping[str, pd.Series] = field(default_factory=dict, repr=False)
    """For each table read from a file, the file line of every row."""
    problems_found: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    """Problems met while converting (unknown codes, unreadable dates, text in numbers)."""

    @classmethod
    def from_frames(
        cls,
        *,
        schools: pd.DataFrame,
        teachers: pd.DataFrame,
        coaching_log: pd.DataFrame,
        observations: pd.DataFrame,
        students: pd.DataFrame,
        survey: pd.DataFrame | None = None,
        mapping: Mapping[str, Mapping[str, str]] | None = None,
        likert: Mapping[str, int] | None = None,
        date_format: str | None = None,
        lines: Mapping[str, pd.Series] | None = None,
    ) -> DistrictData:
        """The tables as DataFrames, renamed by ``mapping`` (``{table: {yours: ours}}``)
        and converted: IDs to text, treatment words to 0/1, Likert words to numbers
        (standard vocabularies or ``likert``), dates parsed (``date_format`` when they
        are not ISO or month/day/year), activity labels to lower case."""
        given = {
            "schools": schools, "teachers": teachers, "coaching_log": coaching_log,
            "observations": observations, "students": students, "survey": survey,
        }  # fmt: skip
        unknown = sorted(set(mapping or {}) - set(TABLES))
        if unknown:
            raise EvalkitInputError(
                f"mapping names unknown table(s) {', '.join(unknown)}; the tables are "
                f"{', '.join(TABLES)}."
            )
        converter = _Converter(likert=likert, date_format=date_format)
        tables: dict[str, pd.DataFrame | None] = {}
        for name, frame in given.items():
            if frame is None:
                tables[name] = None
                continue
            if not isinstance(frame, pd.DataFrame):
                raise EvalkitInputError(f"{name} must be a DataFrame, got {type(frame).__name__}.")
            tables[name] = converter.table(name, frame, (mapping or {}).get(name, {}))
        return cls(
            schools=tables["schools"],  # type: ignore[arg-type]
            teachers=tables["teachers"],  # type: ignore[arg-type]
            coaching_log=tables["coaching_log"],  # type: ignore[arg-type]
            observations=tables["observations"],  # type: ignore[arg-type]
            students=tables["students"],  # type: ignore[arg-type]
            survey=tables["survey"],
            conversions=tuple(dict.fromkeys(converter.conversions)),
            lines=dict(lines or {}),
            problems_found=tuple(converter.problems),
        )

    @classmethod
    def from_files(
        cls,
        *,
        schools: str | Path,
        teachers: str | Path,
        coaching_log: str | Path,
        observations: str | Path,
        students: str | Path,
        survey: str | Path | None = None,
        mapping: Mapping[str, Mapping[str, str]] | str | Path | None = None,
        encoding: str = "utf-8",
        **options: Any,
    ) -> DistrictData:
        """The tables from CSV, Excel (.xlsx) or Parquet files; ``mapping`` may be a TOML
        file with one section per table (``[students]`` then ``their_name = "our_name"``).
        Problems are reported with the files' line numbers."""
        paths = {
            "schools": schools, "teachers": teachers, "coaching_log": coaching_log,
            "observations": observations, "students": students, "survey": survey,
        }  # fmt: skip
        frames: dict[str, pd.DataFrame | None] = {}
        lines: dict[str, pd.Series] = {}
        for name, path in paths.items():
            if path is None:
                frames[name] = None
                continue
            frame, first_line = read_export(Path(path), encoding=encoding)
            frames[name] = frame
            lines[name] = pd.Series(np.arange(len(frame)) + first_line, index=frame.index)
        if isinstance(mapping, str | Path):
            mapping = read_mapping(Path(mapping))
        return cls.from_frames(**frames, mapping=mapping, lines=lines, **options)  # type: ignore[arg-type]

    def resolve_moves(self, policy: TeacherMoves) -> DistrictData:
        """Teachers listed under two or more schools, resolved by ``policy``:
        ``"error"`` (leave them for ``check()`` to report), ``"first"`` (the first
        school listed), ``"most_students"`` (the school where most of their students are
        filed) — their students are re-filed under that school — or ``"split"`` (one
        teacher ID per school, ``T-01@S-2``; students and survey responses follow their
        school, observations and coaching sessions stay with the first school listed).
        The choice and the teachers it touched are added to ``conversions``; rows that
        are exact duplicates are left for ``check()`` to report."""
        check_option("teacher_moves", policy, TeacherMoves)
        teachers = self.teachers
        schools_per = teachers.groupby("teacher_id")["school_id"].nunique()
        moved = sorted(schools_per[schools_per > 1].index)
        if policy == "error" or not moved:
            return self
        students = self.students.copy()
        note = f"teachers in two or more schools ({', '.join(map(str, moved[:5]))}"
        note += f"{' …' if len(moved) > 5 else ''}): "
        if policy == "split":
            return self._split(teachers, students, moved, note)
        home = _home_schools(teachers, students, moved, policy)
        kept = teachers[~teachers["teacher_id"].isin(moved)]
        chosen = teachers[teachers["teacher_id"].isin(moved)]
        chosen = chosen[chosen["school_id"] == chosen["teacher_id"].map(home)]
        chosen = chosen.drop_duplicates("teacher_id")
        refile = students["teacher_id"].isin(moved)
        changed = int(
            (
                students.loc[refile, "school_id"] != students.loc[refile, "teacher_id"].map(home)
            ).sum()
        )
        students.loc[refile, "school_id"] = students.loc[refile, "teacher_id"].map(home)
        rule = "first school listed" if policy == "first" else "school of most of their students"
        return replace(
            self,
            teachers=pd.concat([kept, chosen]).sort_index(),
            students=students,
            conversions=(*self.conversions, f"{note}kept the {rule}; {changed} students re-filed."),
        )

    def _split(
        self, teachers: pd.DataFrame, students: pd.DataFrame, moved: list[Any], note: str
    ) -> DistrictData:
        def pair(teacher: pd.Series, school: pd.Series) -> pd.Series:
            label = teacher.astype(str) + "@" + school.astype(str)
            return label.where(teacher.isin(moved), teacher)

        first = teachers.drop_duplicates("teacher_id").set_index("teacher_id")["school_id"]
        teachers = teachers.assign(teacher_id=pair(teachers["teacher_id"], teachers["school_id"]))
        students["teacher_id"] = pair(students["teacher_id"], students["school_id"])

        def follow(frame: pd.DataFrame) -> pd.DataFrame:
            school = frame["teacher_id"].map(first)
            return frame.assign(teacher_id=pair(frame["teacher_id"], school))

        survey = self.survey
        if survey is not None and "school_id" in survey.columns:
            survey = survey.assign(teacher_id=pair(survey["teacher_id"], survey["school_id"]))
        return replace(
            self,
            teachers=teachers,
            students=students,
            survey=survey,
            observations=follow(self.observations),
            coaching_log=follow(self.coaching_log),
            conversions=(
                *self.conversions,
                f"{note}one teacher ID per school (teacher@school); observations and coaching "
                "sessions kept with the first school listed.",
            ),
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables present, by name."""
        out = {name: getattr(self, name) for name in TABLES}
        return {name: frame for name, frame in out.items() if frame is not None}

    def check(self) -> pd.DataFrame:
        """Every problem at once: ``problem, table, column, ids, lines, fatal``.

        Fatal problems (missing columns, duplicated or orphan IDs, teachers in two
        schools, unknown codes, out-of-range values, unreadable dates) stop
        :func:`~evalkit.coaching.evaluate_district`; missing values are listed but not
        fatal (the models drop those rows and say so)."""
        from evalkit.coaching.intake_checks import problems, row

        met = [
            row(self, p["text"], p["table"], p["column"], p["index"]) for p in self.problems_found
        ]
        rows = [*met, *problems(self)]
        frame = pd.DataFrame(rows, columns=["problem", "table", "column", "ids", "lines", "fatal"])
        return frame.reset_index(drop=True)


class _Converter:
    """Renames and converts one table at a time, recording what it did."""

    def __init__(self, *, likert: Mapping[str, int] | None, date_format: str | None) -> None:
        self.likert = {str(k).strip().lower(): int(v) for k, v in (likert or {}).items()}
        self.date_format = date_format
        self.conversions: list[str] = []
        self.problems: list[dict[str, Any]] = []

    def table(self, name: str, frame: pd.DataFrame, renames: Mapping[str, str]) -> pd.DataFrame:
        missing = [c for c in renames if c not in frame.columns]
        if missing:
            self._problem(f"mapped column(s) not in the file: {', '.join(missing)}", name, "", [])
        out = frame.rename(columns=dict(renames)).copy()
        for old, new in renames.items():
            if old in frame.columns and old != new:
                self.conversions.append(f"{name}: column {old!r} read as {new!r}.")
        for column in ID_COLUMNS:
            if column in out.columns:
                out[column] = self._ids(name, column, out[column])
        if name == "teachers" and "coached" in out.columns:
            out["coached"] = self._treatment(name, out["coached"])
        if name == "coaching_log":
            if "date" in out.columns:
                out["date"] = self._dates(name, out["date"])
            if "activity" in out.columns:
                out["activity"] = out["activity"].astype("string").str.strip().str.lower()
        for column in NUMBER_COLUMNS:
            if column in out.columns:
                out[column] = self._numbers(name, column, out[column])
        if name == "survey":
            for column in out.columns:
                if column not in ("teacher_id", "school_id") and not _numeric(out[column]):
                    out[column] = self._likert(name, column, out[column])
        return out

    def _problem(self, text: str, table: str, column: str, index: Any) -> None:
        self.problems.append({"text": text, "table": table, "column": column, "index": list(index)})

    def _ids(self, table: str, column: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            present = values.dropna().astype(float)
            if np.all(present == np.round(present)):
                # whole numbers read as integers, so 12 and 12.0 (a column with a gap
                # is float) name the same unit in every table
                text = present.astype("int64").astype(str)
                return text.reindex(values.index).astype(object).where(values.notna(), None)
        text = values.astype("string").str.strip()
        if not pd.api.types.is_string_dtype(values) or (text != values.astype("string")).any():
            self.conversions.append(f"{table}: {column} read as text (surrounding spaces removed).")
        return text.astype(object).where(text.notna(), None)

    def _treatment(self, table: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_bool_dtype(values):
            self.conversions.append(f"{table}: coached True/False read as 1/0.")
            return values.astype(int)
        if pd.api.types.is_numeric_dtype(values):
            bad = values.notna() & ~values.isin([0, 1])
            if bad.any():
                self._problem("treatment codes other than 0/1", table, "coached", values.index[bad])
            return values
        words = values.astype("string").str.strip().str.lower()
        mapped = words.map(TREATMENT_WORDS)
        bad = words.notna() & mapped.isna()
        if bad.any():
            codes = ", ".join(repr(v) for v in sorted(set(values[bad].astype(str)))[:5])
            self._problem(f"unknown treatment codes {codes}", table, "coached", values.index[bad])
        read = sorted({(str(v).strip(), TREATMENT_WORDS[str(v).strip().lower()])
                       for v in values[words.notna() & ~bad]})  # fmt: skip
        if read:
            listed = ", ".join(f"{code!r} → {value}" for code, value in read)
            self.conversions.append(f"{table}: coached codes read as {listed}.")
        return mapped.astype("Float64").astype(float)

    def _dates(self, table: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(values):
            return values
        try:
            parsed = parse_dates(values, "date", self.date_format)
        except EvalkitInputError:
            parsed = pd.to_datetime(values, errors="coerce", format=self.date_format or "mixed")
            bad = values.notna() & parsed.isna()
            found = ", ".join(repr(v) for v in values[bad].head(3))
            hint = "" if self.date_format else "; pass date_format= for other layouts"
            self._problem(
                f"missing or unreadable dates ({found}){hint}", table, "date", values.index[bad]
            )
            return parsed
        self.conversions.append(f"{table}: text dates parsed as dates.")
        return parsed

    def _numbers(self, table: str, column: str, values: pd.Series) -> pd.Series:
        if _numeric(values):
            return values.astype(float)
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        if bad.any():
            found = ", ".join(repr(v) for v in values[bad].head(3))
            self._problem(f"non-numeric values ({found})", table, column, values.index[bad])
        return numbers.astype(float)

    def _likert(self, table: str, column: str, values: pd.Series) -> pd.Series:
        words = values.astype("string").str.strip().str.lower()
        present = set(words.dropna())
        scale: Mapping[str, int] | None = self.likert or next(
            (s for s in LIKERT_SCALES.values() if present and present <= set(s)), None
        )
        if scale is None:
            numbers = pd.to_numeric(values, errors="coerce")
            unread = sorted(present - set(map(str, numbers.dropna().astype(int))))[:4]
            self._problem(
                f"answers that are neither numbers nor a known Likert vocabulary ({unread}); "
                "pass likert={word: number}",
                table, column, values.index[words.notna() & numbers.isna()],
            )  # fmt: skip
            return numbers.astype(float)
        listed = ", ".join(f"{w!r} → {n}" for w, n in sorted(scale.items(), key=lambda i: i[1]))
        self.conversions.append(f"{table}: Likert answers read as numbers ({listed}).")
        return words.map(scale).astype("Float64").astype(float)


def _numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def read_export(path: Path, *, encoding: str = "utf-8") -> tuple[pd.DataFrame, int]:
    """A table from CSV, Excel or Parquet, and the file line of its first data row."""
    if not path.is_file():
        raise EvalkitInputError(f"no file {str(path)!r}.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path, encoding=encoding), 2
        if suffix in (".xlsx", ".xls"):
            return pd.read_excel(path), 2
        if suffix == ".parquet":
            return pd.read_parquet(path), 1
    except UnicodeDecodeError:
        raise EvalkitInputError(
            f"{path} is not valid {encoding} text; pass encoding= with the file's encoding "
            "(for example 'latin-1' or 'cp1252'), or save it as UTF-8."
        ) from None
    except ImportError as error:
        raise EvalkitInputError(f"reading {path.name} needs an extra package: {error}") from None
    raise EvalkitInputError(f"{path.name}: read CSV, Excel (.xlsx) or Parquet files.")


def read_mapping(path: Path) -> dict[str, dict[str, str]]:
    """A column mapping from TOML: ``[students]`` then ``their_name = "our_name"``."""
    import tomllib

    try:
        loaded = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise EvalkitInputError(f"cannot read the mapping file {path}: {error}") from None
    out: dict[str, dict[str, str]] = {}
    for table, renames in loaded.items():
        if not isinstance(renames, dict) or not all(isinstance(v, str) for v in renames.values()):
            raise EvalkitInputError(
                f"{path}: section [{table}] must map column names to column names (text)."
            )
        out[table] = {str(k): str(v) for k, v in renames.items()}
    return out
