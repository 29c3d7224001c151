"""The evaluation's mediation step on simulated and messy district data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import evalkit
from evalkit.coaching import DistrictData, evaluate_district, write_report
from evalkit.data import messy_exports, write_exports


@pytest.fixture(scope="module")
def district() -> evalkit.data.District:
    return evalkit.simulate_district(
        n_schools=24, teachers_per_school=8, instruction_achievement=0.3, seed=23
    )


def test_the_simulated_truth_is_recovered(district: evalkit.data.District) -> None:
    """The district's indirect effect (a = effect_instruction·instruction_sd rubric
    points, b = instruction_achievement/instruction_sd per point) lies in the
    interval; the table lists observed and corrected paths."""
    evaluation = evaluate_district(district, mediation=True)
    step = evaluation.mediation
    assert step is not None and step.corrected is not None
    truth = district.truth
    table = step.observed.tidy().set_index("term")
    assert (
        table.loc["indirect", "ci_low"] < truth.indirect_effect < table.loc["indirect", "ci_high"]
    )
    a_true = truth.effect_instruction * truth.instruction_sd
    assert table.loc["a", "ci_low"] < a_true < table.loc["a", "ci_high"]
    assert step.corrected.params["b"] > step.observed.params["b"]  # disattenuated
    body = evaluation.tables["mediation"].body
    assert list(body.columns) == ["Estimate", "95% CI", "Corrected", "95% CI (corrected)"]
    assert "Indirect effect through instruction" in body.index
    assert "mediation" in evaluation.timings


def test_messy_exports_give_the_same_mediation(
    district: evalkit.data.District, tmp_path: Path
) -> None:
    """String IDs, Yes/No codes, text dates and Likert words converted on intake give
    the numbers of the clean tables."""
    paths = write_exports(messy_exports(district), tmp_path)
    data = DistrictData.from_files(
        schools=paths["schools"], teachers=paths["teachers"], coaching_log=paths["coaching_log"],
        observations=paths["observations"], students=paths["students"], survey=paths["survey"],
        mapping=paths["mapping"],
    )  # fmt: skip
    ours = evaluate_district(data, mediation=True).mediation
    clean = evaluate_district(district, mediation=True).mediation
    assert ours is not None and clean is not None
    cols = ["estimate", "std_error", "df"]
    np.testing.assert_allclose(
        ours.observed.tidy()[cols].to_numpy(), clean.observed.tidy()[cols].to_numpy(), rtol=1e-8
    )


def test_teachers_without_observations_are_counted(
    district: evalkit.data.District, tmp_path: Path
) -> None:
    unobserved = district.observations["teacher_id"].isin([1, 2])
    thinner = evalkit.data.District(
        schools=district.schools, teachers=district.teachers,
        coaching_log=district.coaching_log, observations=district.observations[~unobserved],
        students=district.students, truth=district.truth, survey=district.survey,
    )  # fmt: skip
    evaluation = evaluate_district(thinner, mediation=True)
    step = evaluation.mediation
    assert step is not None
    lost = int(district.students["teacher_id"].isin([1, 2]).sum())
    assert step.observed.dropped.counts() == {"missing instruction": lost}
    assert (
        f"{lost} rows dropped: {lost} missing instruction." in evaluation.tables["mediation"].notes
    )
    files = write_report(evaluation, tmp_path / "report", formats=("md",))
    names = {f.name for f in files}
    assert {"mediation.md", "mediation_sensitivity.png"} <= names
