"""Bad input gets a clear error, degenerate fits are flagged, and nothing is silently
wrong: one regression test per case found by the reliability review (issue 14)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError, meta
from evalkit import effectsize as es
from evalkit.cli import main
from evalkit.coaching import coaching_dosage
from evalkit.data import check_columns
from evalkit.multilevel import effect_size, lmm
from evalkit.power import mdes
from evalkit.tables import descriptive_table

FORMULA = "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)"


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return evalkit.simulate_district(n_schools=12, teachers_per_school=4, seed=8).students


@pytest.fixture(scope="module")
def expectancy() -> pd.DataFrame:
    return evalkit.datasets.load("raudenbush1985")


def test_series_are_paired_by_label_not_position() -> None:
    treated = pd.Series([5.0, 6.0, 7.0], index=["a", "b", "c"])
    comparison = pd.Series([6.0, 4.0, 5.0], index=["c", "a", "b"])  # same pairs, shuffled
    shuffled = es.hedges_g(treated, comparison, 1.0, 1.0, 3, 3)
    aligned = es.hedges_g(treated, comparison.loc[["a", "b", "c"]], 1.0, 1.0, 3, 3)
    np.testing.assert_allclose(shuffled.estimate, aligned.estimate)
    other = pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])
    with pytest.raises(EvalkitInputError, match="different row labels"):
        es.hedges_g(treated, other, 1.0, 1.0, 3, 3)


def test_robust_clusters_follow_the_labels() -> None:
    sat = evalkit.datasets.load("kalaian1996").assign(es_id=lambda d: range(len(d)))
    che = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    reference = meta.robust(che, sat["study"]).std_errors
    shuffled = sat["study"].sample(frac=1.0, random_state=3)
    np.testing.assert_allclose(meta.robust(che, shuffled).std_errors, reference, rtol=1e-12)
    np.testing.assert_allclose(meta.robust(che, "study").std_errors, reference, rtol=1e-12)
    with pytest.raises(EvalkitInputError, match="not a column"):
        meta.robust(che, "district")
    with pytest.raises(EvalkitInputError, match="index does not match"):
        meta.robust(che, sat["study"].reset_index(drop=True).set_axis(range(1, len(sat) + 1)))


@pytest.mark.parametrize("scale", [1e-9, 1e-6, 1e6, 1e9])
def test_meta_analysis_does_not_depend_on_units(expectancy: pd.DataFrame, scale: float) -> None:
    base = meta.random_effects(expectancy, effect="yi", variance="vi")
    scaled = meta.random_effects(
        expectancy.assign(yi=expectancy.yi * scale, vi=expectancy.vi * scale**2),
        effect="yi",
        variance="vi",
    )
    assert scaled.params.iloc[0] / scale == pytest.approx(base.params.iloc[0], rel=1e-8)
    assert scaled.tau2 / scale**2 == pytest.approx(base.tau2, rel=1e-6)
    assert scaled.tau2_ci[1] / scale**2 == pytest.approx(base.tau2_ci[1], rel=1e-6)
    calendars = evalkit.datasets.load("konstantopoulos2011")
    three = meta.multilevel(calendars, effect="yi", variance="vi", levels=["district", "school"])
    scaled3 = meta.multilevel(
        calendars.assign(yi=calendars.yi * scale, vi=calendars.vi * scale**2),
        effect="yi",
        variance="vi",
        levels=["district", "school"],
    )
    assert scaled3.params.iloc[0] / scale == pytest.approx(three.params.iloc[0], rel=1e-8)
    assert not scaled3.warnings


@pytest.mark.parametrize(("scale", "offset"), [(1e-9, 0.0), (1e-6, 0.0), (1e9, 0.0), (1.0, 1e6)])
def test_mixed_models_do_not_depend_on_units(
    students: pd.DataFrame, scale: float, offset: float
) -> None:
    base = lmm(FORMULA, students)
    moved = lmm(FORMULA, students.assign(achievement=students.achievement * scale + offset))
    assert moved.facts["converged"] and not moved.warnings
    assert moved.params["coached"] / scale == pytest.approx(base.params["coached"], rel=1e-6)
    assert moved.df["coached"] == pytest.approx(base.df["coached"], rel=1e-5)
    assert moved.sigma2 / scale**2 == pytest.approx(base.sigma2, rel=1e-6)


def test_knapp_hartung_with_no_residual_variation_is_flagged() -> None:
    same = pd.DataFrame({"yi": [0.3] * 5, "vi": [0.02] * 5})
    fit = meta.random_effects(same, effect="yi", variance="vi", test="knha")
    assert any("Knapp–Hartung" in w and "zero" in w for w in fit.warnings)


def test_egger_needs_more_effects_than_coefficients(expectancy: pd.DataFrame) -> None:
    two = meta.random_effects(expectancy.head(2), effect="yi", variance="vi")
    with pytest.raises(EvalkitInputError, match="saturated"):
        meta.egger_test(two)
    equal = meta.random_effects(expectancy.assign(vi=0.02), effect="yi", variance="vi")
    with pytest.raises(EvalkitInputError, match="all equal"):
        meta.egger_test(equal)


def test_mixed_models_refuse_impossible_designs(students: pd.DataFrame) -> None:
    one_school = students[students.school_id == students.school_id.iloc[0]]
    with pytest.raises(EvalkitInputError, match="single group"):
        lmm("achievement ~ coached + (1 | school_id)", one_school)
    with pytest.raises(EvalkitInputError, match="single category"):
        lmm("achievement ~ coached + C(grade) + (1 | school_id)", students.assign(grade="3"))
    with pytest.raises(EvalkitInputError, match="one row per group"):
        lmm("achievement ~ coached + (1 | student_id)", students)
    null = lmm("achievement ~ 1 + (1 | school_id)", students)
    fit = lmm("achievement ~ coached + (1 | school_id)", students)
    other = lmm("prior ~ 1 + (1 | school_id)", students)
    with pytest.raises(EvalkitInputError, match="same outcome to the same rows"):
        effect_size(fit, "coached", reference=other)
    with pytest.raises(EvalkitInputError, match="same outcome to the same rows"):
        lmm("achievement ~ coached + (1 | school_id)", students.iloc[:-5], reference=null)


def test_simulator_refuses_parameters_that_cannot_generate_data() -> None:
    with pytest.raises(EvalkitInputError, match="prior_coefficient must lie in"):
        evalkit.simulate_district(n_schools=4, prior_coefficient=1.5)
    with pytest.raises(EvalkitInputError, match="finite"):
        evalkit.simulate_district(n_schools=4, effect_achievement=math.nan)
    with pytest.raises(EvalkitInputError, match="must be a number"):
        evalkit.simulate_district(n_schools=4, share_coached="half")  # type: ignore[arg-type]


def test_power_and_effect_sizes_check_their_numbers() -> None:
    with pytest.raises(EvalkitInputError, match="n must be a finite number"):
        mdes("cra2r2", rho2=0.17, n=math.nan, J=20)
    with pytest.raises(EvalkitInputError, match="two_tailed must be True or False"):
        mdes("cra2r2", rho2=0.17, n=15, J=20, two_tailed="no")
    with pytest.raises(EvalkitInputError, match="g counts units"):
        mdes("cra2r2", rho2=0.17, n=15, J=20, g=1.5)
    with pytest.raises(EvalkitInputError, match="n_t must be a whole number"):
        es.cluster_adjusted_g(0.30, 2.5, 200, 20, 0.2)


def test_cli_booleans_are_words_or_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["power", "cra2r2", "--param", "rho2=0.17", "--param", "n=15", "--param", "J=20"]
    assert main([*base, "--format", "json"]) == 0
    two = capsys.readouterr().out
    assert main([*base, "--param", "two_tailed=1", "--format", "json"]) == 0
    assert capsys.readouterr().out == two  # 1 means two-tailed, as true and yes do
    assert main([*base, "--param", "two_tailed=maybe"]) == 2
    assert "two_tailed" in capsys.readouterr().err
    assert main([*base[:-2], "--param", "J=abc"]) == 2
    assert "J must be a number" in capsys.readouterr().err


def test_infinite_values_and_unknown_kinds_are_named(students: pd.DataFrame) -> None:
    district = evalkit.simulate_district(n_schools=4, seed=2)
    log = district.coaching_log.astype({"minutes": float})
    log.loc[log.index[3], "minutes"] = np.inf
    with pytest.raises(EvalkitInputError, match="infinite session lengths"):
        coaching_dosage(log, district.teachers)
    frame = students[["achievement"]].copy()
    frame.loc[frame.index[2], "achievement"] = np.inf
    with pytest.raises(EvalkitInputError, match="infinite values"):
        descriptive_table(frame, ["achievement"])
    with pytest.raises(EvalkitInputError, match="kind of column"):
        check_columns(students, {"achievement": "weird"})  # type: ignore[dict-item]


def test_coaching_paths_refuse_duplicated_lookups_and_moved_teachers() -> None:
    from evalkit.coaching import fit_sequence, instruction_models
    from evalkit.data import REVERSED_ITEMS, SURVEY_ITEMS
    from evalkit.scales import school_conditions

    district = evalkit.simulate_district(n_schools=6, teachers_per_school=4, seed=12)
    conditions = school_conditions(district.survey, SURVEY_ITEMS, reverse=REVERSED_ITEMS)
    schools = conditions.schools
    doubled = pd.concat([district.teachers, district.teachers.iloc[:2]], ignore_index=True)
    with pytest.raises(
        EvalkitInputError, match="the teacher table has several rows for teacher_id"
    ):
        instruction_models(district.observations, doubled, schools)
    with pytest.raises(EvalkitInputError, match="conditions table has several rows"):
        instruction_models(district.observations, district.teachers, pd.concat([schools] * 2))
    # A teacher listed under a second school is one teacher, not two clusters: the
    # model sequences apply lmm's nesting check.
    frame = district.observations.merge(district.teachers[["teacher_id", "school_id"]])
    frame = frame.merge(schools, on="school_id").assign(coached=1.0)
    frame.loc[frame.index[frame.teacher_id == frame.teacher_id.iloc[0]][0], "school_id"] = int(
        frame.school_id.max()
    )
    with pytest.raises(EvalkitInputError, match="appear under more than one school_id"):
        fit_sequence(
            frame, outcome="score", treatment="coached", random="(1 | school_id/teacher_id)",
            covariates=[], moderators=[], standardizer="clusters", metric="teacher-level",
        )  # fmt: skip
    survey = district.survey.copy()
    survey.loc[survey.index[4], "school_id"] = np.nan
    with pytest.raises(EvalkitInputError, match="survey responses without a school_id at row 4"):
        school_conditions(survey, SURVEY_ITEMS, reverse=REVERSED_ITEMS)


def test_former_raw_errors_are_named(students: pd.DataFrame) -> None:
    sat = evalkit.datasets.load("kalaian1996").assign(es_id=lambda d: range(len(d)))
    with pytest.raises(EvalkitInputError, match="rho = 1 makes the sampling covariance"):
        meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=1.0)
    with pytest.raises(EvalkitInputError, match="needs several studies"):
        meta.robumeta(
            sat[sat.study == sat.study.iloc[0]], effect="yi", variance="vi", study="study"
        )
    holes = sat.assign(study=sat.study.where(sat.index != 3))
    with pytest.raises(EvalkitInputError, match="study has missing IDs at row 3"):
        meta.aggregate_effects(holes, effect="yi", variance="vi", cluster="study", rho=0.6)
    with pytest.raises(EvalkitInputError, match="a parenthesis is opened and not closed"):
        lmm("achievement ~ (prior + (1 | school_id)", students)
    with pytest.raises(EvalkitInputError, match="a parenthesis is opened and not closed"):
        meta.meta_regression(sat, effect="yi", variance="vi", moderators="(hrs")
    with pytest.raises(EvalkitInputError, match="the outcome 'label' must be numeric"):
        lmm("label ~ prior + (1 | school_id)", students.assign(label="x"))
    tiny = pd.DataFrame({"yi": [0.1, 0.25, 0.3, 0.05], "vi": [1e-300, 2e-300, 1e-300, 3e-300]})
    fit = meta.random_effects(tiny, effect="yi", variance="vi")
    assert np.isfinite(fit.params.iloc[0]) and np.isfinite(fit.h2)


def test_one_effect_per_study_is_fitted_and_flagged() -> None:
    """A multilevel model whose inner level has one group per outer group: the two
    components are not separately identified, but the pooled estimate is (it equals the
    univariate random-effects estimate); the fit says so instead of crashing."""
    calendars = evalkit.datasets.load("konstantopoulos2011")
    one = calendars.groupby("district").head(1).reset_index(drop=True)
    fit = meta.multilevel(one, effect="yi", variance="vi", levels=["district", "school"])
    univariate = meta.random_effects(one, effect="yi", variance="vi")
    assert fit.params.iloc[0] == pytest.approx(univariate.params.iloc[0], rel=1e-6)
    assert fit.variance_components is not None
    total = sum(fit.variance_components.intercept_variances().values())
    assert total == pytest.approx(univariate.tau2, rel=1e-5)
    assert any("not separately identified" in w for w in fit.warnings)
    assert meta.robust(fit, "district").std_errors.iloc[0] > 0
    assert len(meta.leave_one_out(fit)) == len(one)


def test_cli_names_encoding_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "studies.csv"
    path.write_bytes(b"yi,vi,study\n0.1,0.02,Caf\xe9\n0.2,0.03,B\n0.3,0.02,C\n")
    assert main(["meta", str(path), "--effect", "yi", "--variance", "vi"]) == 2
    assert "byte 0xe9 on line 2" in capsys.readouterr().err
    code = main(["meta", str(path), "--effect", "yi", "--variance", "vi", "--encoding", "latin-1"])
    assert code == 0


def test_treatment_codes_are_read_or_refused(students: pd.DataFrame) -> None:
    """'Yes'/'No' (or True/False) used to fit coached[T.Yes] and return an empty effects
    table without a word; now they are converted and reported, or refused."""
    from evalkit.coaching import achievement_models

    plain = achievement_models(students)
    words = achievement_models(
        students.assign(coached=np.where(students.coached == 1, "Yes", "No"))
    )
    flags = achievement_models(students.assign(coached=students.coached == 1))
    np.testing.assert_allclose(words.effects["effect_size"], plain.effects["effect_size"])
    np.testing.assert_allclose(flags.effects["effect_size"], plain.effects["effect_size"])
    assert any("'Yes' → 1" in note for note in words.table().notes)
    assert any("True/False" in note for note in flags.table().notes)
    with pytest.raises(EvalkitInputError, match="cannot read as coached or comparison"):
        achievement_models(students.assign(coached=np.where(students.coached == 1, "A", "B")))
    with pytest.raises(EvalkitInputError, match="must be coded 0/1"):
        achievement_models(students.assign(coached=students.coached * 2))


def test_trim_and_fill_on_a_multilevel_fit_says_what_it_did() -> None:
    calendars = evalkit.datasets.load("konstantopoulos2011")
    fit = meta.multilevel(calendars, effect="yi", variance="vi", levels=["district", "school"])
    with pytest.warns(evalkit.EvalkitWarning, match="no multilevel version"):
        filled = meta.trim_and_fill(fit)
    assert any("averaged within their 11 top-level clusters" in w for w in filled.warnings)
