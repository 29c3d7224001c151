"""A district's own exports in: renamed columns, string IDs, Yes/No codes, text dates,
Likert words, capitalised activities, and planted problems that check() must report
(N of N); after the fixes the evaluation equals the one on the clean tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.cli import main
from evalkit.coaching import DistrictData, evaluate_district
from evalkit.data import bundled_export, messy_exports, write_exports

PLANTED = {
    "duplicated rows": "teachers",
    "teachers listed under two or more schools": "teachers",
    "missing or unreadable dates": "coaching_log",
    "coaching sessions of teachers absent": "coaching_log",
    "non-numeric values": "coaching_log",
    "students whose teacher is absent": "students",
}


@pytest.fixture(scope="module")
def district() -> evalkit.data.District:
    return evalkit.simulate_district(n_schools=12, teachers_per_school=4, seed=17)


def _load(paths: dict[str, Path]) -> DistrictData:
    return DistrictData.from_files(
        schools=paths["schools"], teachers=paths["teachers"], coaching_log=paths["coaching_log"],
        observations=paths["observations"], students=paths["students"], survey=paths["survey"],
        mapping=paths["mapping"],
    )  # fmt: skip


def test_clean_exports_reproduce_the_evaluation(
    district: evalkit.data.District, tmp_path: Path
) -> None:
    data = _load(write_exports(messy_exports(district), tmp_path))
    report = data.check()
    assert not report["fatal"].any(), report[report["fatal"]]
    text = " ".join(data.conversions)
    for expected in (
        "'Yes' → 1", "'No' → 0", "text dates parsed", "Likert answers",
        "'Rubric Score' read as 'score'",
    ):  # fmt: skip
        assert expected in text, expected
    ours = evaluate_district(data)
    clean = evaluate_district(district)
    for label in ("instruction", "achievement"):
        mine, theirs = getattr(ours, label).effects, getattr(clean, label).effects
        np.testing.assert_allclose(mine["estimate"], theirs["estimate"], rtol=1e-10)
        np.testing.assert_allclose(mine["effect_size"], theirs["effect_size"], rtol=1e-10)
    cycles = clean.dosage.assign(k=clean.dosage.teacher_id.map(lambda t: f"T-{int(t):04d}"))
    np.testing.assert_array_equal(
        ours.dosage.sort_values("teacher_id")["coaching_cycles"].to_numpy(),
        cycles.sort_values("k")["coaching_cycles"].to_numpy(),
    )
    assert "conversion" in ours.tables["data"].body.index


def test_every_planted_problem_is_reported(district: evalkit.data.District, tmp_path: Path) -> None:
    frames = messy_exports(district, problems=True)
    frames["teachers"].loc[0, "Coached?"] = "Maybe"
    log = frames["coaching_log"]
    log.loc[log.index[8], "Minutes"] = "n/a"  # read as missing by the CSV reader
    data = _load(write_exports(frames, tmp_path))
    fatal = data.check().query("fatal")
    planted = {**PLANTED, "unknown treatment codes": "teachers", "1 missing value": "coaching_log"}
    for text, table in planted.items():
        hits = fatal[fatal["problem"].str.contains(text) & (fatal["table"] == table)]
        assert len(hits), (text, fatal[["problem", "table"]].to_string())
    # the bad date sits on data row 2, line 4 of the CSV (the header is line 1)
    dates = fatal[fatal["problem"].str.contains("unreadable dates")].iloc[0]
    assert dates["lines"] == [4]
    with pytest.raises(EvalkitInputError, match="problem\\(s\\) to fix before fitting"):
        evaluate_district(data)


def test_the_bundled_export_is_what_the_generator_writes(tmp_path: Path) -> None:
    shipped = bundled_export()
    fresh = write_exports(messy_exports(problems=True), tmp_path)
    for name, path in shipped.items():
        assert path.read_text() == fresh[name].read_text(), name
    fatal = _load(shipped).check().query("fatal")
    assert all(
        len(fatal[fatal["problem"].str.contains(text) & (fatal["table"] == table)])
        for text, table in PLANTED.items()
    )


def test_command_line_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = bundled_export()
    flags = ["--schools", "schools", "--teachers", "teachers", "--log", "coaching_log",
             "--observations", "observations", "--students", "students", "--survey", "survey"]  # fmt: skip
    argv = ["evaluate"]
    for k in range(0, len(flags), 2):
        argv += [flags[k], str(shipped[flags[k + 1]])]
    argv += ["--map", str(shipped["mapping"]), "--out", str(tmp_path / "report")]
    assert main(argv) == 2
    listed = capsys.readouterr()
    assert "teachers listed under two or more schools" in listed.out
    assert "problem(s) in the data" in listed.err
    clean = write_exports(messy_exports(), tmp_path / "clean")
    argv = ["evaluate"]
    for k in range(0, len(flags), 2):
        argv += [flags[k], str(clean[flags[k + 1]])]
    argv += ["--map", str(clean["mapping"]), "--out", str(tmp_path / "report"), "--format", "csv"]
    assert main(argv) == 0
    written = {p.suffix for p in (tmp_path / "report").iterdir()}
    assert written == {".csv", ".png"}


def test_mapping_and_tables_are_checked(tmp_path: Path) -> None:
    with pytest.raises(EvalkitInputError, match="unknown table"):
        DistrictData.from_frames(
            schools=pd.DataFrame({"school_id": [1]}), teachers=pd.DataFrame(),
            coaching_log=pd.DataFrame(), observations=pd.DataFrame(), students=pd.DataFrame(),
            mapping={"pupils": {"a": "b"}},
        )  # fmt: skip
    bad = tmp_path / "mapping.toml"
    bad.write_text("[students]\nSASID = 3\n")
    from evalkit.coaching.intake import read_mapping

    with pytest.raises(EvalkitInputError, match="must map column names"):
        read_mapping(bad)


def _moved_district(district: evalkit.data.District) -> DistrictData:
    """The clean export with one teacher also listed under another school."""
    frames = messy_exports(district)
    teachers = frames["teachers"]
    moved = teachers.iloc[[5]].assign(**{"School Code": teachers["School Code"].iloc[-1]})
    frames["teachers"] = pd.concat([teachers, moved], ignore_index=True)
    return DistrictData.from_frames(**frames, mapping=evalkit.data.EXPORT_MAPPING)


@pytest.mark.parametrize("policy", ["first", "most_students", "split"])
def test_teacher_moves_policies(district: evalkit.data.District, policy: str) -> None:
    data = _moved_district(district)
    assert data.check().query("fatal")["problem"].str.contains("two or more schools").any()
    with pytest.raises(EvalkitInputError, match="two or more schools"):
        evaluate_district(data)
    resolved = data.resolve_moves(policy)  # type: ignore[arg-type]
    assert not resolved.check()["fatal"].any()
    assert any("teachers in two or more schools" in c for c in resolved.conversions)
    evaluation = evaluate_district(data, teacher_moves=policy)  # type: ignore[arg-type]
    assert np.isfinite(evaluation.achievement.effects["effect_size"]).all()
    if policy in ("first", "most_students"):
        # every student of the moved teacher was filed under the original school, so
        # both rules keep it and the estimates equal the clean ones
        clean = evaluate_district(district)
        np.testing.assert_allclose(
            evaluation.achievement.effects["estimate"],
            clean.achievement.effects["estimate"],
            rtol=1e-10,
        )


def test_student_covariates_and_centring(district: evalkit.data.District) -> None:
    students = district.students.assign(frl=(district.students.student_id % 3 == 0).astype(int))
    data = DistrictData.from_frames(
        schools=district.schools, teachers=district.teachers, coaching_log=district.coaching_log,
        observations=district.observations, students=students, survey=district.survey,
    )  # fmt: skip
    plain = evaluate_district(data, covariates=["frl"])
    grand = evaluate_district(data, covariates=["frl"], centring="grand")
    assert "frl" in plain.achievement.models["Covariates"].params.index
    # grand-mean centring moves only the intercept
    np.testing.assert_allclose(
        grand.achievement.models["Covariates"].params.drop("Intercept"),
        plain.achievement.models["Covariates"].params.drop("Intercept"),
        rtol=1e-8,
    )
    with pytest.raises(EvalkitInputError, match="missing required column"):
        evaluate_district(data, covariates=["ell"])


def test_excel_and_parquet_exports(district: evalkit.data.District, tmp_path: Path) -> None:
    frames = messy_exports(district)
    paths = write_exports(frames, tmp_path / "csv")
    for name, frame in frames.items():
        if name in ("students", "survey"):
            frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
            paths[name] = tmp_path / f"{name}.parquet"
        elif name == "teachers":
            frame.to_excel(tmp_path / "teachers.xlsx", index=False)
            paths[name] = tmp_path / "teachers.xlsx"
    data = _load(paths)
    assert not data.check()["fatal"].any()
    reference = _load(write_exports(frames, tmp_path / "again"))
    ours, theirs = evaluate_district(data), evaluate_district(reference)
    np.testing.assert_allclose(
        ours.achievement.effects["estimate"], theirs.achievement.effects["estimate"], rtol=1e-12
    )
    with pytest.raises(EvalkitInputError, match="read CSV, Excel"):
        DistrictData.from_files(**{**paths, "schools": tmp_path / "csv" / "mapping.toml"})  # type: ignore[arg-type]


def test_condition_names_come_from_the_survey_items(district: evalkit.data.District) -> None:
    survey = district.survey.rename(columns=lambda c: c.replace("lead", "principal"))
    items = {
        "principal": tuple(f"principal{k}" for k in range(1, 5)),
        "collaboration": tuple(f"collab{k}" for k in range(1, 5)),
        "readiness": tuple(f"ready{k}" for k in range(1, 5)),
    }
    data = DistrictData.from_frames(
        schools=district.schools, teachers=district.teachers, coaching_log=district.coaching_log,
        observations=district.observations, students=district.students.drop(columns=["leadership"]),
        survey=survey,
    )  # fmt: skip
    evaluation = evaluate_district(
        data, survey_items=items, reverse_items=("principal4", "collab4", "ready4")
    )
    assert "coached:principal" in evaluation.achievement.models["Moderation"].params.index
    assert "principal" in evaluation.tables["moderation"].title


def test_numeric_ids_with_gaps_match_across_tables(district: evalkit.data.District) -> None:
    """A numeric ID column with a missing value is float in pandas; its IDs must still
    read as '12', not '12.0', or every row would look like an orphan."""
    students = district.students.astype({"teacher_id": float})
    students.loc[students.index[0], "teacher_id"] = np.nan
    data = DistrictData.from_frames(
        schools=district.schools, teachers=district.teachers, coaching_log=district.coaching_log,
        observations=district.observations, students=students, survey=district.survey,
    )  # fmt: skip
    fatal = data.check().query("fatal")
    assert not fatal["problem"].str.contains("absent").any(), fatal
    assert fatal["problem"].str.contains("missing value").any()
    assert data.students["teacher_id"].iloc[1] == str(int(district.students["teacher_id"].iloc[1]))
