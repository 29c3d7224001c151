"""A simulated school district for coaching evaluations, with known true effects.

The district has schools (with principal-leadership, collaboration and
reform-readiness scores), teachers nested in schools (some assigned to coaching,
either at random within schools or by school), a coaching log with one row per
session, repeated classroom-observation scores per teacher, and students nested in
teachers with prior and current achievement. The coaching effects on instruction
and achievement, and their moderation by the three school conditions, are
parameters; the returned :class:`District` carries the tables and the truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from evalkit.core import Assignment, EvalkitInputError, check_option

CONDITIONS = ("leadership", "collaboration", "readiness")
"""The school conditions, standardised across schools (mean 0, SD 1)."""

ACTIVITIES = ("observe", "model", "debrief", "co-plan", "feedback")
RUBRIC_RANGE = (1.0, 7.0)
"""Observation scores are on a CLASS-like 1–7 rubric."""


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DistrictTruth:
    """The parameters that generated a :class:`District`.

    Achievement parameters are in SD units of student achievement (total SD ≈ 1
    for comparison students); instruction parameters are in SD units of the
    teacher-level distribution of observation scores (``instruction_sd`` rubric
    points). ``moderation_*`` are the coefficients of coached × condition.
    ``effect_achievement`` is the direct effect; ``instruction_achievement`` is the
    change in achievement per teacher-level SD of true instruction, so the effect
    through instruction is ``indirect_effect`` (in rubric points the a path is
    ``instruction_sd × effect_instruction`` and the b path
    ``instruction_achievement / instruction_sd``).
    """

    effect_achievement: float
    effect_instruction: float
    moderation_achievement: Mapping[str, float]
    moderation_instruction: Mapping[str, float]
    condition_effects_achievement: Mapping[str, float]
    prior_coefficient: float
    school_variance: float
    teacher_variance: float
    residual_variance: float
    instruction_sd: float
    takeup: float
    assignment: str
    instruction_achievement: float = 0.0

    @property
    def indirect_effect(self) -> float:
        """Coaching's effect on achievement through instruction at average school
        conditions (student SD units): ``effect_instruction × instruction_achievement``."""
        return self.effect_instruction * self.instruction_achievement

    @property
    def total_effect(self) -> float:
        """Direct plus indirect effect on achievement at average school conditions."""
        return self.effect_achievement + self.indirect_effect


@dataclass(frozen=True)
class District:
    """The tables of a simulated district and the truth behind them.

    Attributes
    ----------
    schools
        One row per school: ``school_id``, the three conditions (z-scores) and
        their 1–99 survey-style versions (``*_score``, 50 = mean, 20 points = 1 SD).
    teachers
        One row per teacher: ``teacher_id``, ``school_id``, ``coach_id``,
        ``coached`` (assigned), ``received`` (took up), ``coaching_hours``,
        ``coaching_sessions``.
    coaching_log
        One row per coaching session: teacher, coach, date, minutes, format, activity.
    observations
        Repeated observation scores: ``teacher_id``, ``occasion``, ``rater_id``, ``score``.
    students
        ``student_id``, ``teacher_id``, ``school_id``, ``grade``, ``prior``,
        ``achievement`` (z metric), ``scale_score``, plus the school conditions and
        ``coached`` copied for convenience.
    truth
        The generating parameters.
    survey
        Teacher survey responses, one row per teacher: ``teacher_id``,
        ``school_id`` and four 1–5 Likert items per condition (``lead1``–``lead4``,
        ``collab1``–``collab4``, ``ready1``–``ready4``; item 4 of each is
        reverse-worded), about 3% of responses missing and 5% of teachers not
        responding at all. Items load on the teacher's perception, which is the
        school condition plus teacher-level noise (ICC(1) about .3).
    """

    schools: pd.DataFrame
    teachers: pd.DataFrame
    coaching_log: pd.DataFrame
    observations: pd.DataFrame
    students: pd.DataFrame
    truth: DistrictTruth
    seed: int | None = field(default=None)
    survey: pd.DataFrame = field(default_factory=pd.DataFrame)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise EvalkitInputError(f"{name} must be a whole number of at least 1, got {value!r}.")


def _check_finite(**values: float) -> None:
    """Every parameter a real, finite number (not text, not true/false, not NaN)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise EvalkitInputError(f"{name} must be a number, got {value!r}.")
        if not np.isfinite(value):
            raise EvalkitInputError(f"{name} must be a finite number, got {value!r}.")


def _check_unit(name: str, value: float, *, low: float, high: float, closed_high: bool) -> None:
    _check_finite(**{name: value})
    ok = low <= value <= high if closed_high else low <= value < high
    if not ok:
        bracket = "]" if closed_high else ")"
        raise EvalkitInputError(f"{name} must lie in [{low}, {high}{bracket}, got {value!r}.")


def simulate_district(
    *,
    n_schools: int = 40,
    teachers_per_school: int = 10,
    students_per_teacher: int = 20,
    observations_per_teacher: int = 3,
    assignment: Assignment = "within_school",
    share_coached: float = 0.5,
    effect_achievement: float = 0.18,
    effect_instruction: float = 0.49,
    moderation_achievement: Mapping[str, float] | None = None,
    moderation_instruction: Mapping[str, float] | None = None,
    condition_effects_achievement: Mapping[str, float] | None = None,
    prior_coefficient: float = 0.6,
    icc_school: float = 0.10,
    icc_teacher: float = 0.08,
    instruction_sd: float = 0.5,
    instruction_achievement: float = 0.0,
    takeup: float = 1.0,
    size_variation: float = 0.0,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> District:
    """Simulate a district of schools, teachers, coaching sessions, observations and students.

    Parameters
    ----------
    n_schools, teachers_per_school, students_per_teacher, observations_per_teacher
        Sizes. With ``size_variation > 0`` the number of students per teacher varies
        (lognormal around the mean, at least 1).
    assignment
        ``"within_school"``: a share of teachers in every school is coached (teachers
        randomised within schools); ``"by_school"``: a share of schools is coached.
    share_coached
        Share of teachers (or schools) assigned to coaching, in (0, 1).
    effect_achievement, effect_instruction
        Coaching effects at average school conditions, on achievement (student SD
        units) and on instruction (SD units of the teacher-level distribution of
        observation scores; Kraft, Blazar & Hogan 2018 report 0.18 and 0.49).
    moderation_achievement, moderation_instruction
        Coefficients of coached × condition for ``leadership``, ``collaboration``
        and ``readiness`` (defaults 0.05, 0.03, 0.04 and 0.10, 0.05, 0.08).
    condition_effects_achievement
        Main effects of the school conditions on achievement (defaults 0.05, 0.04, 0.02).
    prior_coefficient
        Coefficient of prior achievement.
    icc_school, icc_teacher
        Shares of the unexplained achievement variance at the school and teacher
        levels; their sum must be below 1.
    instruction_sd
        Teacher-level SD of observation scores, in rubric points.
    instruction_achievement
        Change in achievement (student SD) per teacher-level SD of true instruction
        (0: instruction does not affect achievement). With it, ``effect_achievement``
        is the direct effect and ``truth.indirect_effect`` the effect through
        instruction; the true instruction a teacher would show anyway also adds
        ``instruction_achievement²`` of teacher- and school-level achievement variance.
    takeup
        Probability that an assigned teacher receives any coaching; effects apply
        to teachers who receive it.
    size_variation
        SD of the log number of students per teacher (0: equal sizes).
    seed, rng
        A seed or a ``numpy.random.Generator`` (not both).

    Returns
    -------
    District

    Examples
    --------
    >>> district = simulate_district(n_schools=4, teachers_per_school=4, seed=1)
    >>> len(district.students), district.truth.effect_achievement
    (320, 0.18)
    """
    check_option("assignment", assignment, Assignment)
    _check_sizes(
        n_schools=n_schools,
        teachers_per_school=teachers_per_school,
        students_per_teacher=students_per_teacher,
        observations_per_teacher=observations_per_teacher,
    )
    _check_unit("share_coached", share_coached, low=0.0, high=1.0, closed_high=False)
    if share_coached == 0.0:
        raise EvalkitInputError("share_coached must be above 0: nobody would be coached.")
    _check_unit("icc_school", icc_school, low=0.0, high=1.0, closed_high=False)
    _check_unit("icc_teacher", icc_teacher, low=0.0, high=1.0, closed_high=False)
    if icc_school + icc_teacher >= 1.0:
        raise EvalkitInputError(
            f"icc_school + icc_teacher must be below 1, got {icc_school + icc_teacher:.3g}."
        )
    _check_unit("takeup", takeup, low=0.0, high=1.0, closed_high=True)
    _check_finite(
        effect_achievement=effect_achievement,
        effect_instruction=effect_instruction,
        prior_coefficient=prior_coefficient,
        instruction_sd=instruction_sd,
        instruction_achievement=instruction_achievement,
        size_variation=size_variation,
        **{f"moderation_achievement[{k}]": v for k, v in (moderation_achievement or {}).items()},
        **{f"moderation_instruction[{k}]": v for k, v in (moderation_instruction or {}).items()},
        **{
            f"condition_effects_achievement[{k}]": v
            for k, v in (condition_effects_achievement or {}).items()
        },
    )
    if not -1.0 < prior_coefficient < 1.0:
        raise EvalkitInputError(
            f"prior_coefficient must lie in (-1, 1), got {prior_coefficient!r}: achievement has "
            "unit variance, so the prior score cannot explain all of it (the residual variance "
            "1 - prior_coefficient² would not be positive)."
        )
    if instruction_sd <= 0 or size_variation < 0:
        raise EvalkitInputError("instruction_sd must be positive and size_variation non-negative.")
    if seed is not None and rng is not None:
        raise EvalkitInputError("pass seed or rng, not both.")
    gen = rng if rng is not None else np.random.default_rng(seed)
    truth = DistrictTruth(
        effect_achievement=effect_achievement,
        effect_instruction=effect_instruction,
        moderation_achievement=_frozen(
            _conditions(moderation_achievement, (0.05, 0.03, 0.04), "moderation_achievement")
        ),
        moderation_instruction=_frozen(
            _conditions(moderation_instruction, (0.10, 0.05, 0.08), "moderation_instruction")
        ),
        condition_effects_achievement=_frozen(
            _conditions(
                condition_effects_achievement, (0.05, 0.04, 0.02), "condition_effects_achievement"
            )
        ),
        prior_coefficient=prior_coefficient,
        school_variance=icc_school * (1.0 - prior_coefficient**2),
        teacher_variance=icc_teacher * (1.0 - prior_coefficient**2),
        residual_variance=(1.0 - icc_school - icc_teacher) * (1.0 - prior_coefficient**2),
        instruction_sd=instruction_sd,
        takeup=takeup,
        assignment=assignment,
        instruction_achievement=instruction_achievement,
    )
    schools = _schools(gen, n_schools)
    teachers = _teachers(gen, schools, teachers_per_school, assignment, share_coached, takeup)
    log = _coaching_log(gen, teachers)
    sessions = log.groupby("teacher_id").size()
    hours = log.groupby("teacher_id")["minutes"].sum() / 60.0
    teachers["coaching_sessions"] = sessions.reindex(
        teachers["teacher_id"], fill_value=0
    ).to_numpy()
    teachers["coaching_hours"] = hours.reindex(teachers["teacher_id"], fill_value=0.0).to_numpy()
    observations, instruction = _observations(
        gen, schools, teachers, observations_per_teacher, truth
    )
    students = _students(
        gen, schools, teachers, students_per_teacher, size_variation, truth, instruction
    )
    survey = _survey(gen, schools, teachers)
    return District(
        schools=schools,
        teachers=teachers,
        coaching_log=log,
        observations=observations,
        students=students,
        truth=truth,
        seed=seed,
        survey=survey,
    )


SURVEY_ITEMS = {
    "leadership": ("lead1", "lead2", "lead3", "lead4"),
    "collaboration": ("collab1", "collab2", "collab3", "collab4"),
    "readiness": ("ready1", "ready2", "ready3", "ready4"),
}
"""Survey items per school condition; the fourth item of each is reverse-worded."""
REVERSED_ITEMS = ("lead4", "collab4", "ready4")


def _survey(
    gen: np.random.Generator, schools: pd.DataFrame, teachers: pd.DataFrame
) -> pd.DataFrame:
    """Likert responses drawn after every other table, so those stay as they were."""
    n = len(teachers)
    position = pd.Index(schools["school_id"]).get_indexer(teachers["school_id"])
    frame = pd.DataFrame(
        {
            "teacher_id": teachers["teacher_id"].to_numpy(),
            "school_id": teachers["school_id"].to_numpy(),
        }
    )
    cuts = np.array([-1.5, -0.5, 0.5, 1.5])
    for condition, items in SURVEY_ITEMS.items():
        # Perception = school condition + teacher noise; ICC(1) = 1/(1 + 1.5²) ≈ .31.
        perception = schools[condition].to_numpy()[position] + 1.5 * gen.standard_normal(n)
        for k, item in enumerate(items):
            latent = 0.8 * perception / np.sqrt(1 + 1.5**2) + 0.6 * gen.standard_normal(n)
            answer = 1 + np.searchsorted(cuts, latent)
            if k == 3:
                answer = 6 - answer
            frame[item] = answer.astype(float)
    answers = frame.columns[2:]
    frame[answers] = frame[answers].mask(gen.random((n, len(answers))) < 0.03)
    silent = gen.random(n) < 0.05
    frame.loc[silent, answers] = np.nan
    return frame


def _conditions(
    values: Mapping[str, float] | None, default: tuple[float, ...], name: str
) -> dict[str, float]:
    if values is None:
        return dict(zip(CONDITIONS, default, strict=True))
    unknown = set(values) - set(CONDITIONS)
    if unknown:
        raise EvalkitInputError(
            f"{name} has unknown condition(s) {sorted(unknown)}; use {CONDITIONS}."
        )
    return {c: float(values.get(c, 0.0)) for c in CONDITIONS}


def _schools(gen: np.random.Generator, n_schools: int) -> pd.DataFrame:
    # The three conditions are positively correlated across schools (r = .5, .4, .3).
    corr = np.array([[1.0, 0.5, 0.4], [0.5, 1.0, 0.3], [0.4, 0.3, 1.0]])
    z = gen.standard_normal((n_schools, 3)) @ np.linalg.cholesky(corr).T
    frame = pd.DataFrame({"school_id": np.arange(1, n_schools + 1)})
    for k, name in enumerate(CONDITIONS):
        frame[name] = z[:, k]
        frame[f"{name}_score"] = np.clip(np.round(50.0 + 20.0 * z[:, k]), 1, 99).astype(int)
    return frame


def _teachers(
    gen: np.random.Generator,
    schools: pd.DataFrame,
    per_school: int,
    assignment: str,
    share: float,
    takeup: float,
) -> pd.DataFrame:
    n_schools = len(schools)
    school_of = np.repeat(schools["school_id"].to_numpy(), per_school)
    n = school_of.size
    if assignment == "within_school":
        n_coached = max(1, round(share * per_school))
        ranks = np.argsort(gen.random((n_schools, per_school)), axis=1).argsort(axis=1)
        coached = (ranks < n_coached).ravel()
    else:
        n_coached = max(1, round(share * n_schools))
        chosen = gen.permutation(n_schools) < n_coached
        coached = np.repeat(chosen, per_school)
    received = coached & (gen.random(n) < takeup)
    # Coaches serve about 15 teachers each within a school cluster.
    coach = np.where(received, 1 + (np.arange(n) // 15), 0)
    return pd.DataFrame(
        {
            "teacher_id": np.arange(1, n + 1),
            "school_id": school_of,
            "coached": coached.astype(np.int8),
            "received": received.astype(np.int8),
            "coach_id": coach,
        }
    )


def _coaching_log(gen: np.random.Generator, teachers: pd.DataFrame) -> pd.DataFrame:
    receiving = teachers.loc[teachers["received"] == 1, ["teacher_id", "coach_id"]]
    counts = 1 + gen.poisson(11.0, size=len(receiving))
    teacher_ids = np.repeat(receiving["teacher_id"].to_numpy(), counts)
    coach_ids = np.repeat(receiving["coach_id"].to_numpy(), counts)
    n = teacher_ids.size
    start = np.datetime64("2025-09-02")
    days = np.sort(gen.integers(0, 270, size=n))
    return pd.DataFrame(
        {
            "teacher_id": teacher_ids,
            "coach_id": coach_ids,
            "date": start + days.astype("timedelta64[D]"),
            "minutes": gen.choice(np.array([30, 45, 60, 90]), size=n, p=[0.2, 0.4, 0.3, 0.1]),
            "format": gen.choice(np.array(["in_person", "virtual"]), size=n, p=[0.7, 0.3]),
            "activity": gen.choice(np.array(ACTIVITIES), size=n),
        }
    ).sort_values(["teacher_id", "date"], ignore_index=True)


def _school_values(schools: pd.DataFrame, school_of: np.ndarray) -> dict[str, np.ndarray]:
    position = pd.Index(schools["school_id"]).get_indexer(school_of)
    return {c: schools[c].to_numpy()[position] for c in CONDITIONS}


def _observations(
    gen: np.random.Generator,
    schools: pd.DataFrame,
    teachers: pd.DataFrame,
    per_teacher: int,
    truth: DistrictTruth,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Observation scores, and each teacher's true instruction (teacher-level SD units)."""
    n_teachers = len(teachers)
    conditions = _school_values(schools, teachers["school_id"].to_numpy())
    school_part = gen.normal(0.0, 0.4, size=len(schools))[
        pd.Index(schools["school_id"]).get_indexer(teachers["school_id"])
    ]
    teacher_true = np.sqrt(1.0 - 0.4**2) * gen.standard_normal(n_teachers) + school_part
    received = teachers["received"].to_numpy().astype(float)
    effect = truth.effect_instruction + sum(
        truth.moderation_instruction[c] * conditions[c] for c in CONDITIONS
    )
    latent = teacher_true + received * effect  # teacher-level SD units
    occasion = np.tile(np.arange(1, per_teacher + 1), n_teachers)
    teacher_rows = np.repeat(np.arange(n_teachers), per_teacher)
    n_raters = 12
    rater = gen.integers(1, n_raters + 1, size=teacher_rows.size)
    rater_bias = gen.normal(0.0, 0.1, size=n_raters + 1)
    score = (
        4.0
        + truth.instruction_sd * latent[teacher_rows]
        + 0.05 * (occasion - 1)
        + rater_bias[rater]
        + gen.normal(0.0, 0.35, size=teacher_rows.size)
    )
    frame = pd.DataFrame(
        {
            "teacher_id": teachers["teacher_id"].to_numpy()[teacher_rows],
            "occasion": occasion,
            "rater_id": rater,
            "score": np.clip(score, *RUBRIC_RANGE),
        }
    )
    return frame, latent


def _students(
    gen: np.random.Generator,
    schools: pd.DataFrame,
    teachers: pd.DataFrame,
    per_teacher: int,
    size_variation: float,
    truth: DistrictTruth,
    instruction: np.ndarray,
) -> pd.DataFrame:
    n_teachers = len(teachers)
    if size_variation > 0:
        sizes = np.maximum(
            1, np.round(per_teacher * gen.lognormal(0.0, size_variation, n_teachers))
        )
        sizes = sizes.astype(np.int64)
    else:
        sizes = np.full(n_teachers, per_teacher, dtype=np.int64)
    teacher_rows = np.repeat(np.arange(n_teachers), sizes)
    n = teacher_rows.size
    school_of = teachers["school_id"].to_numpy()[teacher_rows]
    school_pos = pd.Index(schools["school_id"]).get_indexer(school_of)
    conditions = {c: schools[c].to_numpy()[school_pos] for c in CONDITIONS}
    # Prior achievement is itself clustered: 15% of its variance lies between schools.
    prior_school = gen.standard_normal(len(schools))
    prior = np.sqrt(0.15) * prior_school[school_pos] + np.sqrt(0.85) * gen.standard_normal(n)
    school_effect = gen.normal(0.0, np.sqrt(truth.school_variance), size=len(schools))
    teacher_effect = gen.normal(0.0, np.sqrt(truth.teacher_variance), size=n_teachers)
    received = teachers["received"].to_numpy().astype(float)[teacher_rows]
    effect = truth.effect_achievement + sum(
        truth.moderation_achievement[c] * conditions[c] for c in CONDITIONS
    )
    achievement = (
        truth.prior_coefficient * prior
        + sum(truth.condition_effects_achievement[c] * conditions[c] for c in CONDITIONS)
        + school_effect[school_pos]
        + teacher_effect[teacher_rows]
        + received * effect
        + gen.normal(0.0, np.sqrt(truth.residual_variance), size=n)
    )
    if truth.instruction_achievement != 0.0:  # the b path; 0 leaves the draws untouched
        achievement = achievement + truth.instruction_achievement * instruction[teacher_rows]
    grade = 3 + (teacher_rows % 6)
    frame = pd.DataFrame(
        {
            "student_id": np.arange(1, n + 1),
            "teacher_id": teachers["teacher_id"].to_numpy()[teacher_rows],
            "school_id": school_of,
            "grade": grade.astype(np.int8),
            "coached": teachers["coached"].to_numpy()[teacher_rows],
            "received": teachers["received"].to_numpy()[teacher_rows],
            "prior": prior,
            "achievement": achievement,
            "scale_score": np.round(400.0 + 15.0 * grade + 40.0 * achievement),
        }
    )
    for c in CONDITIONS:
        frame[c] = conditions[c]
    return frame
