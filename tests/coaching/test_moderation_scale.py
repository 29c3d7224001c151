"""Moderation on the moderator's own scale: a raw 1–5 survey score is not evaluated at
−1, 0, +1 or labelled in SD units, and Johnson–Neyman bounds are reported against the
observed range (issue 15: the old code reported 'significant between 2.25 and 18.39'
for a 1–5 moderator)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.coaching import johnson_neyman, moderation_plot, simple_slopes
from evalkit.multilevel import lmm


@pytest.fixture(scope="module")
def fit_and_data() -> tuple[object, pd.DataFrame]:
    district = evalkit.simulate_district(
        n_schools=16, seed=4, moderation_achievement={"leadership": 0.15}
    )
    students = district.students.assign(lead_raw=3.0 + 0.8 * district.students.leadership)
    fit = lmm("achievement ~ prior + coached * lead_raw + (1 | school_id)", students)
    return fit, students


def test_simple_slopes_at_the_mean_and_one_sd(fit_and_data: tuple[object, pd.DataFrame]) -> None:
    fit, students = fit_and_data
    slopes = simple_slopes(fit, "coached", "lead_raw")  # type: ignore[arg-type]
    values = students["lead_raw"]
    expected = [values.mean() - values.std(), values.mean(), values.mean() + values.std()]
    np.testing.assert_allclose(slopes["lead_raw"], expected, rtol=1e-12)
    b1, b3 = fit.params["coached"], fit.params["coached:lead_raw"]  # type: ignore[attr-defined]
    np.testing.assert_allclose(slopes["slope"], b1 + b3 * np.asarray(expected), rtol=1e-12)
    with pytest.raises(EvalkitInputError, match="finite values"):
        simple_slopes(fit, "coached", "lead_raw", [np.nan])  # type: ignore[arg-type]


def test_johnson_neyman_and_figure_speak_in_observed_units(
    fit_and_data: tuple[object, pd.DataFrame],
) -> None:
    fit, students = fit_and_data
    region = johnson_neyman(fit, "coached", "lead_raw")  # type: ignore[arg-type]
    low, high = students["lead_raw"].min(), students["lead_raw"].max()
    assert region.observed_range == pytest.approx((low, high))
    assert region.bounds[0] < low < region.bounds[1] < high  # one root outside the data
    assert "from 2.58 to 4.80 (observed lead_raw: 2.29 to 4.80)" in region.description
    figure = moderation_plot(fit, "coached", "lead_raw")  # type: ignore[arg-type]
    axes = figure.axes[0]
    assert axes.get_xlabel() == "lead_raw" and "SD" not in axes.get_xlabel()
    line = axes.lines[0].get_xdata()
    assert line.min() == pytest.approx(low) and line.max() == pytest.approx(high)
