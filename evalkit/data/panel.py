"""A simulated multi-year student panel: students crossed with teachers, teachers
nested in schools, some students changing school each year.

Each year a student has one teacher (one of ``teachers_per_grade`` in the student's
school and that year's grade), so over the years students cross teachers; a share
``mobility`` of the students moves to a random school each year, which links the
teachers of different schools. The score is the sum of a year trend, a school, a
teacher and a student effect and error. It is the design of value-added models and
of the crossed-random-effects benchmarks (at 100,000 students: 300,000 rows, 15,000
teachers and 1,000 schools).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError


@dataclass(frozen=True)
class PanelSDs:
    """Standard deviations of the effects in a simulated panel score."""

    school: float = 0.25
    teacher: float = 0.30
    student: float = 0.80
    error: float = 0.50


def simulate_student_panel(
    n_students: int = 1000,
    *,
    students_per_school: int = 100,
    teachers_per_grade: int = 5,
    years: int = 3,
    mobility: float = 0.10,
    year_effect: float = 0.5,
    sds: PanelSDs | None = None,
    seed: int | None = None,
) -> pd.DataFrame:
    """Scores with string IDs: ``student``, ``teacher``, ``school``, ``year``, ``score``
    (one row per student and year, rows in year order).

    Examples
    --------
    >>> panel = simulate_student_panel(200, seed=1)
    >>> panel.shape, panel["school"].nunique(), panel["teacher"].nunique()
    ((600, 5), 2, 30)
    """
    if n_students < 2 * students_per_school or students_per_school < 1:
        raise EvalkitInputError(
            f"n_students ({n_students}) must be at least twice students_per_school "
            f"({students_per_school}): the panel needs two schools."
        )
    if years < 2 or teachers_per_grade < 1:
        raise EvalkitInputError("need at least 2 years and 1 teacher per grade.")
    if not 0.0 <= mobility <= 1.0:
        raise EvalkitInputError(f"mobility is a share of students, got {mobility!r}.")
    sd = sds or PanelSDs()
    rng = np.random.default_rng(seed)
    n_schools = n_students // students_per_school
    school = rng.integers(0, n_schools, n_students)
    school_effect = rng.normal(0.0, sd.school, n_schools)
    teacher_effect = rng.normal(0.0, sd.teacher, (n_schools, years, teachers_per_grade))
    student_effect = rng.normal(0.0, sd.student, n_students)
    student_ids = _ids("S", np.arange(n_students))
    frames = []
    for year in range(years):
        if year:
            move = rng.random(n_students) < mobility
            school = np.where(move, rng.integers(0, n_schools, n_students), school)
        slot = rng.integers(0, teachers_per_grade, n_students)
        score = (
            year_effect * year
            + school_effect[school]
            + teacher_effect[school, year, slot]
            + student_effect
            + rng.normal(0.0, sd.error, n_students)
        )
        teacher = (school * years + year) * teachers_per_grade + slot
        frames.append(
            pd.DataFrame(
                {
                    "student": student_ids,
                    "teacher": _ids("T", teacher),
                    "school": _ids("K", school),
                    "year": year,
                    "score": score,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _ids(prefix: str, codes: np.ndarray) -> pd.Series:
    """Text IDs such as ``S000042`` (zero-padded so they sort as the codes do)."""
    width = len(str(int(codes.max()))) if codes.size else 1
    return prefix + pd.Series(codes).astype(str).str.zfill(width)
