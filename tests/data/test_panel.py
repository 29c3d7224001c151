"""The simulated multi-year student panel."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import EvalkitInputError
from evalkit.data import PanelSDs, simulate_student_panel


def test_panel_design() -> None:
    panel = simulate_student_panel(2000, mobility=0.2, seed=3)
    assert panel.shape == (6000, 5)
    assert panel["student"].nunique() == 2000 and panel["school"].nunique() == 20
    # teachers are nested in schools, one grade-year each; students cross teachers
    assert (panel.groupby("teacher")["school"].nunique() == 1).all()
    assert (panel.groupby("teacher")["year"].nunique() == 1).all()
    assert (panel.groupby("student")["teacher"].nunique() == 3).all()
    # about a fifth of the students change school each year (binomial SD ≈ 0.009)
    by_year = panel.pivot(index="student", columns="year", values="school")
    moved = (by_year[1] != by_year[0]).mean()
    assert abs(moved - 0.2 * (1 - 1 / 20)) < 0.04
    # same seed, same panel; text IDs sort as their codes
    again = simulate_student_panel(2000, mobility=0.2, seed=3)
    assert panel.equals(again)
    assert list(panel["student"].iloc[:3]) == ["S0000", "S0001", "S0002"]


def test_panel_variances_are_the_given_ones() -> None:
    sds = PanelSDs(school=0.0, teacher=0.0, student=1.0, error=0.5)
    panel = simulate_student_panel(4000, sds=sds, year_effect=0.0, seed=1)
    within = panel["score"] - panel.groupby("student")["score"].transform("mean")
    # within-student variance over 3 years: error variance × 2/3 (df correction)
    assert abs(float(np.mean(within**2)) * 3 / 2 - 0.25) < 0.02


def test_panel_bad_input() -> None:
    with pytest.raises(EvalkitInputError, match="two schools"):
        simulate_student_panel(150)
    with pytest.raises(EvalkitInputError, match="mobility"):
        simulate_student_panel(1000, mobility=1.5)
    with pytest.raises(EvalkitInputError, match="2 years"):
        simulate_student_panel(1000, years=1)
