"""evalkit.scales against psych 2.2 and multilevel 2.7 (tests/reference/scales/psych_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit.data.simulate import REVERSED_ITEMS, SURVEY_ITEMS
from evalkit.scales import cronbach_alpha, icc_aggregation, mcdonald_omega, rwg_j, score_scale

REFERENCE = Path(__file__).parents[1] / "reference" / "scales"
REF = json.loads((REFERENCE / "psych.json").read_text())
SURVEY = pd.read_csv(REFERENCE / "survey.csv")


@pytest.mark.parametrize("name", sorted(SURVEY_ITEMS))
def test_reliability_and_aggregation_match_psych_and_multilevel(name: str) -> None:
    items = list(SURVEY_ITEMS[name])
    coded = SURVEY[items].astype(float).copy()
    for item in items:
        if item in REVERSED_ITEMS:
            coded[item] = 6 - coded[item]
    ref = REF[name]
    alpha, low, high = cronbach_alpha(coded)
    assert alpha == pytest.approx(ref["alpha"], rel=1e-12)
    assert (low, high) == pytest.approx((ref["feldt_lower"], ref["feldt_upper"]), rel=1e-10)
    # psych's omega (minres, one factor) and ours solve the same least-squares problem.
    assert mcdonald_omega(coded, n_boot=20)[0] == pytest.approx(ref["omega_total"], abs=1e-4)
    scale = score_scale(SURVEY, items, name=name, reverse=[i for i in REVERSED_ITEMS if i in items])
    icc1, icc2 = icc_aggregation(scale.scores, SURVEY["school_id"])
    assert (icc1, icc2) == pytest.approx((ref["icc1"], ref["icc2"]), rel=1e-10)
    kept = scale.scores.notna()
    rwg = rwg_j(coded[kept], SURVEY["school_id"][kept], options=5)
    theirs = pd.Series(ref["rwg"], index=[int(g) for g in ref["rwg_groups"]])
    np.testing.assert_allclose(rwg.loc[theirs.index], theirs, rtol=1e-10)
