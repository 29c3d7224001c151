"""evalkit.scales and coaching dosage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit import EvalkitInputError
from evalkit.coaching import coaching_dosage, school_year
from evalkit.data import simulate_district
from evalkit.data.simulate import REVERSED_ITEMS, SURVEY_ITEMS
from evalkit.multilevel import lmm
from evalkit.scales import cronbach_alpha, icc_aggregation, rwg_j, school_conditions, score_scale


@pytest.fixture(scope="module")
def district():  # type: ignore[no-untyped-def]
    return simulate_district(n_schools=30, teachers_per_school=8, seed=12)


def test_alpha_matches_its_definition_and_feldt_interval() -> None:
    rng = np.random.default_rng(0)
    latent = rng.standard_normal(200)
    items = pd.DataFrame({f"i{k}": latent + rng.standard_normal(200) for k in range(5)})
    alpha, low, high = cronbach_alpha(items)
    k = 5
    cov = np.cov(items.to_numpy(), rowvar=False)
    expected = k / (k - 1) * (1 - np.trace(cov) / cov.sum())
    assert alpha == pytest.approx(expected, rel=1e-12)
    assert low < alpha < high
    # Feldt: (1 − α_L)/(1 − α) is the upper F quantile with (n − 1, (n − 1)(k − 1)) df.
    from scipy import stats

    assert (1 - low) / (1 - alpha) == pytest.approx(stats.f.ppf(0.975, 199, 199 * 4), rel=1e-12)


def test_icc1_equals_reml_icc_for_balanced_groups() -> None:
    """With equal group sizes the ANOVA estimator of ICC(1) is the REML estimate."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 12)
    y = rng.normal(0, 0.5, 40)[groups] + rng.standard_normal(groups.size)
    icc1, icc2 = icc_aggregation(pd.Series(y), pd.Series(groups))
    fit = lmm("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": groups}))
    assert icc1 == pytest.approx(fit.facts["icc_g"], rel=1e-6)
    assert icc2 == pytest.approx(12 * icc1 / (1 + 11 * icc1), rel=1e-10)  # Spearman–Brown


def test_rwg_extremes() -> None:
    items = pd.DataFrame({"a": [3, 3, 3, 1, 5, 1, 5], "b": [4, 4, 4, 1, 5, 5, 1]})
    groups = pd.Series(["agree"] * 3 + ["split"] * 4)
    rwg = rwg_j(items, groups, options=5)
    assert rwg["agree"] == 1.0
    assert rwg["split"] == 0.0  # observed variance above the uniform null: truncated to 0


def test_school_conditions_recover_the_simulated_conditions(district) -> None:  # type: ignore[no-untyped-def]
    result = school_conditions(district.survey, SURVEY_ITEMS, reverse=REVERSED_ITEMS)
    merged = result.schools.merge(district.schools, on="school_id", suffixes=("", "_true"))
    for condition in SURVEY_ITEMS:
        assert np.corrcoef(merged[condition], merged[f"{condition}_true"])[0, 1] > 0.75
        assert merged[condition].mean() == pytest.approx(0.0, abs=1e-12)
        assert merged[condition].std(ddof=1) == pytest.approx(1.0, rel=1e-12)
    table = result.table()
    assert list(table.body.index) == list(SURVEY_ITEMS)
    silent = int(district.survey[list(SURVEY_ITEMS["leadership"])].isna().all(axis=1).sum())
    assert result.scales["leadership"].dropped.n >= silent
    assert any("respondents without a score" in note for note in table.notes)


def test_reverse_coding_changes_the_score() -> None:
    data = pd.DataFrame({"a": [1.0, 5.0], "b": [1.0, 5.0], "c": [5.0, 1.0]})
    plain = score_scale(pd.concat([data] * 6, ignore_index=True), ["a", "b", "c"], name="x")
    coded = score_scale(
        pd.concat([data] * 6, ignore_index=True), ["a", "b", "c"], name="x", reverse=["c"]
    )
    assert plain.scores.iloc[0] == pytest.approx(7 / 3)
    assert coded.scores.iloc[0] == pytest.approx(1.0)


def test_survey_bad_input(district) -> None:  # type: ignore[no-untyped-def]
    survey = district.survey.copy()
    survey.loc[[4, 9], "lead2"] = 7
    with pytest.raises(
        EvalkitInputError, match=r"'lead2' has answers outside the 1–5 scale .* rows 4, 9"
    ):
        school_conditions(survey, SURVEY_ITEMS, reverse=REVERSED_ITEMS)
    survey = district.survey.copy()
    items = [i for items in SURVEY_ITEMS.values() for i in items]
    survey.loc[survey["school_id"] == 3, items] = np.nan
    with pytest.raises(
        EvalkitInputError, match=r"no scored survey responses on leadership for school\(s\) 3"
    ):
        school_conditions(
            survey, SURVEY_ITEMS, reverse=REVERSED_ITEMS, schools=district.schools["school_id"]
        )
    with pytest.raises(EvalkitInputError, match="reverse-coded item"):
        score_scale(district.survey, ["lead1", "lead2"], name="x", reverse=["ready4"])


def test_dosage_counts_sessions_hours_and_cycles(district) -> None:  # type: ignore[no-untyped-def]
    dosage = coaching_dosage(district.coaching_log, district.teachers)
    assert len(dosage) == len(district.teachers)
    np.testing.assert_allclose(dosage["coaching_hours"], district.teachers["coaching_hours"])
    np.testing.assert_array_equal(
        dosage["coaching_sessions"], district.teachers["coaching_sessions"]
    )
    log = pd.DataFrame(
        {
            "teacher_id": [1, 1, 1, 1, 1],
            "date": pd.to_datetime(
                ["2025-09-01", "2025-09-03", "2025-09-05", "2025-09-09", "2026-09-01"]
            ),
            "minutes": [60, 30, 45, 30, 60],
            "activity": ["observe", "debrief", "debrief", "model", "feedback"],
        }
    )
    teachers = pd.DataFrame({"teacher_id": [1, 2], "coached": [1, 1]})
    result = coaching_dosage(log, teachers).set_index("teacher_id")
    assert result.loc[1, "coaching_cycles"] == 2  # observe→debrief, model→feedback
    assert result.loc[2, ["coaching_hours", "coaching_sessions", "coaching_cycles"]].tolist() == [
        0.0,
        0,
        0,
    ]
    yearly = coaching_dosage(log, teachers, by_year=True).set_index(["teacher_id", "school_year"])
    assert yearly.loc[(1, 2025), "coaching_sessions"] == 4
    assert yearly.loc[(1, 2026), "coaching_sessions"] == 1
    assert yearly.loc[(2, 2026), "coaching_hours"] == 0.0
    assert school_year(pd.Series(pd.to_datetime(["2026-07-31", "2026-08-01"]))).tolist() == [
        2025,
        2026,
    ]


def test_dosage_bad_input() -> None:
    log = pd.DataFrame(
        {
            "teacher_id": [1, 9],
            "minutes": [30, 45],
            "activity": ["observe", "debrief"],
            "date": pd.to_datetime(["2025-09-01"] * 2),
        }
    )
    teachers = pd.DataFrame({"teacher_id": [1, 2], "coached": [1, 0]})
    with pytest.raises(EvalkitInputError, match="absent from the teacher table: 9"):
        coaching_dosage(log, teachers)
    log = pd.DataFrame(
        {
            "teacher_id": [1, 1],
            "minutes": [30, -5],
            "activity": ["observe", "debrief"],
            "date": pd.to_datetime(["2025-09-01"] * 2),
        }
    )
    with pytest.raises(
        EvalkitInputError, match="missing, negative or infinite session lengths at row 1"
    ):
        coaching_dosage(log, teachers)
