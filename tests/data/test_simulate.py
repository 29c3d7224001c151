"""The simulated district: structure, reproducibility, bad input, parameter recovery."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.formula.api as smf

from evalkit import EvalkitInputError, simulate_district
from evalkit.data import check_nesting, check_unique


def test_structure_and_sizes() -> None:
    district = simulate_district(n_schools=6, teachers_per_school=4, students_per_teacher=5, seed=3)
    assert len(district.schools) == 6
    assert len(district.teachers) == 24
    assert len(district.students) == 120
    assert len(district.observations) == 24 * 3
    check_unique(district.teachers, "teacher_id")
    check_unique(district.students, "student_id")
    check_nesting(district.students, "teacher_id", "school_id")
    # Within-school assignment: half the teachers of every school are coached.
    assert (district.teachers.groupby("school_id")["coached"].sum() == 2).all()
    assert district.observations["score"].between(1, 7).all()
    assert district.schools["leadership_score"].between(1, 99).all()
    # Dosage comes from the log; coached teachers who took coaching up have sessions.
    received = district.teachers[district.teachers["received"] == 1]
    assert (received["coaching_sessions"] > 0).all()
    assert (district.teachers.loc[district.teachers["received"] == 0, "coaching_hours"] == 0).all()
    log_hours = district.coaching_log.groupby("teacher_id")["minutes"].sum() / 60
    np.testing.assert_allclose(
        received.set_index("teacher_id")["coaching_hours"], log_hours.loc[received["teacher_id"]]
    )


def test_by_school_assignment() -> None:
    district = simulate_district(n_schools=10, assignment="by_school", seed=4)
    per_school = district.teachers.groupby("school_id")["coached"].agg(["min", "max"])
    assert (per_school["min"] == per_school["max"]).all()
    assert per_school["max"].sum() == 5


def test_seed_reproduces_and_differs() -> None:
    first = simulate_district(n_schools=5, seed=9)
    second = simulate_district(n_schools=5, seed=9)
    third = simulate_district(n_schools=5, seed=10)
    assert first.students.equals(second.students)
    assert first.coaching_log.equals(second.coaching_log)
    assert not first.students["achievement"].equals(third.students["achievement"])
    rng_based = simulate_district(n_schools=5, rng=np.random.default_rng(9))
    assert rng_based.students.equals(first.students)


def test_size_variation_and_takeup() -> None:
    district = simulate_district(n_schools=5, size_variation=0.5, takeup=0.5, seed=2)
    sizes = district.students.groupby("teacher_id").size()
    assert sizes.nunique() > 1 and sizes.min() >= 1
    assert (district.teachers["received"] <= district.teachers["coached"]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_schools": 0}, "n_schools must be a whole number of at least 1"),
        ({"teachers_per_school": 2.5}, "teachers_per_school must be a whole number"),
        ({"share_coached": 1.0}, "share_coached must lie in"),
        ({"share_coached": 0.0}, "nobody would be coached"),
        ({"icc_school": 0.6, "icc_teacher": 0.5}, "must be below 1"),
        ({"icc_teacher": -0.1}, "icc_teacher must lie in"),
        ({"takeup": 1.5}, "takeup must lie in"),
        ({"assignment": "random"}, "assignment='random' is not allowed"),
        ({"moderation_achievement": {"budget": 0.1}}, "unknown condition"),
        ({"seed": 1, "rng": np.random.default_rng(1)}, "pass seed or rng, not both"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(EvalkitInputError, match=message):
        simulate_district(**kwargs)  # type: ignore[arg-type]


def test_total_achievement_variance_is_about_one() -> None:
    district = simulate_district(
        n_schools=200, teachers_per_school=10, students_per_teacher=20, seed=5
    )
    comparison = district.students.loc[district.students["coached"] == 0, "achievement"]
    assert comparison.var() == pytest.approx(1.0, abs=0.1)


def test_recovers_coaching_effect_with_statsmodels() -> None:
    """Fit the generating model with statsmodels MixedLM: the truth lies in the 95% CI."""
    district = simulate_district(
        n_schools=40, teachers_per_school=8, students_per_teacher=15, seed=2026
    )
    students = district.students
    fit = smf.mixedlm(
        "achievement ~ prior + coached * (leadership + collaboration + readiness)",
        students,
        groups="school_id",
        vc_formula={"teacher": "0 + C(teacher_id)"},
    ).fit(reml=True)
    low, high = fit.conf_int().loc["coached"]
    assert low < district.truth.effect_achievement < high
    assert fit.params["prior"] == pytest.approx(district.truth.prior_coefficient, abs=0.05)
