"""CE and HE robust variance estimation against robumeta 2.0-3
(tests/reference/meta/robumeta_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError, meta

REFERENCE = Path(__file__).parents[1] / "reference" / "meta"
REF: dict[str, Any] = json.loads((REFERENCE / "robumeta.json").read_text())


def _sat() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "kalaian1996_ids.csv").dropna(subset=["hrs"])


def _calendars() -> pd.DataFrame:
    return evalkit.datasets.load("konstantopoulos2011").assign(year_c=lambda d: d["year"] - 1990)


CASES = {
    "ko_ce": ("calendars", "year_c", "CE", 0.8, "district"),
    "ko_ce_null": ("calendars", None, "CE", 0.5, "district"),
    "ko_he": ("calendars", "year_c", "HE", 0.8, "district"),
    "ce_null": ("sat", None, "CE", 0.8, "study"),
    "ce_mods": ("sat", "math + hrs + ets", "CE", 0.8, "study"),
    "ce_mods_rho0": ("sat", "math + hrs + ets", "CE", 0.0, "study"),
    "he_null": ("sat", None, "HE", 0.8, "study"),
    "he_mods": ("sat", "math + hrs + ets", "HE", 0.8, "study"),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_matches_robumeta(key: str) -> None:
    data_name, moderators, weights, rho, study = CASES[key]
    data = _sat() if data_name == "sat" else _calendars()
    fit = meta.robumeta(
        data,
        effect="yi",
        variance="vi",
        study=study,
        moderators=moderators,
        weights=weights,  # type: ignore[arg-type]
        rho=rho,
    )
    ref = REF[key]
    tidy = fit.tidy()
    np.testing.assert_allclose(tidy["estimate"], ref["b"], rtol=1e-6)
    np.testing.assert_allclose(tidy["std_error"], ref["se"], rtol=1e-6)
    np.testing.assert_allclose(tidy["df"], ref["df"], rtol=1e-5)
    np.testing.assert_allclose(tidy["p_value"], ref["p"], rtol=1e-5)
    np.testing.assert_allclose(tidy["ci_low"], ref["ci_lb"], rtol=1e-5)
    facts = fit.glance().iloc[0]
    np.testing.assert_allclose(facts["tau2"], np.ravel(ref["tau2"])[0], rtol=1e-6, atol=1e-12)
    if weights == "HE":
        np.testing.assert_allclose(
            facts["omega2"], np.ravel(ref["omega2"])[0], rtol=1e-6, atol=1e-12
        )
    else:
        np.testing.assert_allclose(facts["I2"], np.ravel(ref["I2"])[0], rtol=1e-6, atol=1e-12)


def test_bad_robumeta_input() -> None:
    data = _sat()
    with pytest.raises(EvalkitInputError, match="weights='XX' is not allowed"):
        meta.robumeta(data, variance="vi", study="study", effect="yi", weights="XX")  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="rho must lie in"):
        meta.robumeta(data, variance="vi", study="study", effect="yi", rho=-0.2)
    gap = data.copy()
    gap.loc[gap.index[0], "study"] = np.nan
    with pytest.raises(EvalkitInputError, match="study has missing IDs"):
        meta.robumeta(gap, variance="vi", study="study", effect="yi")
