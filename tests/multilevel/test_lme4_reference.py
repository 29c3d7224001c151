"""evalkit.multilevel.lmm against lme4 1.1 (tests/reference/multilevel/lme4_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.multilevel import lmm

REFERENCE = Path(__file__).parents[1] / "reference" / "multilevel"
REF: dict[str, Any] = json.loads((REFERENCE / "lme4.json").read_text())


def _hsb() -> pd.DataFrame:
    hsb = evalkit.datasets.load("hsb")
    return hsb.assign(ses_c=hsb["ses"] - hsb.groupby("school")["ses"].transform("mean"))


CASES = {
    "hsb_null": ("mathach ~ 1 + (1 | school)", "hsb", "REML"),
    "hsb_null_ml": ("mathach ~ 1 + (1 | school)", "hsb", "ML"),
    "hsb_rc": ("mathach ~ 1 + ses_c + (1 + ses_c | school)", "hsb", "REML"),
    "hsb_full": ("mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school)", "hsb", "REML"),
    "hsb_uncorrelated": ("mathach ~ 1 + ses_c + (ses_c || school)", "hsb", "REML"),
    "sleep_correlated": ("Reaction ~ Days + (Days | Subject)", "sleep", "REML"),
    "sleep_uncorrelated": (
        "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
        "sleep",
        "REML",
    ),
    "sleep_ml": ("Reaction ~ Days + (Days | Subject)", "sleep", "ML"),
    "district_3level": (
        "achievement ~ prior + coached * (leadership + collaboration + readiness)"
        " + (1 | school_id) + (1 | school_id:teacher_id)",
        "district",
        "REML",
    ),
    "district_slope": (
        "achievement ~ prior + coached + leadership + (1 + coached | school_id) + (1 | school_id:teacher_id)",
        "district",
        "REML",
    ),
}


def _data(name: str) -> pd.DataFrame:
    if name == "hsb":
        return _hsb()
    return pd.read_csv(REFERENCE / ("sleepstudy.csv" if name == "sleep" else "district.csv"))


@pytest.mark.parametrize("key", sorted(CASES))
def test_matches_lme4(key: str) -> None:
    formula, data_name, method = CASES[key]
    fit = lmm(formula, _data(data_name), method=method)  # type: ignore[arg-type]
    ref = REF[key]
    criterion = fit.facts["reml_criterion" if method == "REML" else "deviance"]
    # The optimum reached: never worse than lme4's, and equal to 1e-10 relative.
    assert criterion <= ref["criterion"] * (1 + 1e-12)
    np.testing.assert_allclose(criterion, ref["criterion"], rtol=1e-10)
    # Singular fits (a variance at 0) have a flat likelihood in the remaining
    # direction; lme4's bobyqa stops within 1e-6 there, so allow 1e-5 for them only.
    rtol = 1e-5 if ref["singular"] else 1e-6
    np.testing.assert_allclose(fit.params, ref["beta"], rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(fit.std_errors, ref["se"], rtol=rtol)
    np.testing.assert_allclose(fit.sigma2, ref["sigma2"], rtol=rtol)
    np.testing.assert_allclose(fit.facts["logLik"], ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(fit.facts["AIC"], ref["AIC"], rtol=1e-10)
    np.testing.assert_allclose(fit.facts["BIC"], ref["BIC"], rtol=1e-10)
    assert fit.facts["singular"] == ref["singular"]
    assert fit.facts["converged"]
    # Variance components: lme4's as.data.frame(VarCorr()) rows for the random effects.
    for grp, var1, var2, value in zip(
        ref["vc_grp"], ref["vc_var1"], ref["vc_var2"], ref["vc_vcov"], strict=True
    ):
        if grp == "Residual":
            np.testing.assert_allclose(fit.sigma2, value, rtol=rtol)
            continue
        level = grp.split(".")[0]
        matrix = fit.variance_components.matrix(level)
        name1 = "Intercept" if var1 == "(Intercept)" else var1
        name2 = name1 if var2 is None else ("Intercept" if var2 == "(Intercept)" else var2)
        np.testing.assert_allclose(matrix.loc[name1, name2], value, rtol=max(rtol, 1e-5), atol=1e-8)


def test_published_hsb_values() -> None:
    """Raudenbush & Bryk (2002, Table 4.5): 12.1136, 5.3391, 2.9388, 1.0389, 1.2167, -1.6426.

    R&B centre SES on the school's mean SES from the school file (MEANSES), not on
    the mean of the students in the extract.
    """
    hsb = evalkit.datasets.load("hsb")
    hsb["cses"] = hsb["ses"] - hsb["meanses"]
    fit = lmm("mathach ~ 1 + cses * (sector + meanses) + (1 + cses | school)", hsb)
    published = {
        "Intercept": 12.1136,
        "sector": 1.2167,
        "meanses": 5.3391,
        "cses": 2.9388,
        "cses:sector": -1.6426,
        "cses:meanses": 1.0389,
    }
    for term, value in published.items():
        assert round(float(fit.params[term]), 4) == pytest.approx(value, abs=1e-4)


def test_bad_input_and_reporting() -> None:
    hsb = _hsb()
    with pytest.raises(EvalkitInputError, match="no random terms"):
        lmm("mathach ~ ses_c", hsb)
    with pytest.raises(EvalkitInputError, match="has no variance"):
        lmm("constant ~ ses_c + (1 | school)", hsb.assign(constant=3.0))
    with pytest.raises(EvalkitInputError, match="collinear: ses_twice"):
        lmm("mathach ~ ses_c + ses_twice + (1 | school)", hsb.assign(ses_twice=2 * hsb["ses_c"]))
    with pytest.raises(EvalkitInputError, match="method='REMl' is not allowed"):
        lmm("mathach ~ 1 + (1 | school)", hsb, method="REMl")  # type: ignore[arg-type]
    gaps = hsb.copy()
    gaps.loc[[3, 10], "ses_c"] = np.nan
    with pytest.raises(EvalkitInputError, match="column 'ses_c' has missing values at rows 3, 10"):
        lmm("mathach ~ ses_c + (1 | school)", gaps, missing="raise")
    fit = lmm("mathach ~ ses_c + (1 | school)", gaps)
    assert fit.nobs == len(hsb) - 2
    infinite = hsb.copy()
    infinite.loc[5, "ses_c"] = np.inf
    with pytest.raises(EvalkitInputError, match="'ses_c' has non-finite values at row 5"):
        lmm("mathach ~ ses_c + (1 | school)", infinite)
    assert fit.dropped.counts() == {"missing ses_c": 2}
    assert any("2 rows dropped" in w for w in fit.warnings)


def test_crossed_factors_are_named() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=200),
            "student": np.repeat(np.arange(50), 4),
            "year": np.tile(np.arange(4), 50),
        }
    )
    frame["teacher"] = (frame["student"] + frame["year"] * 7) % 20
    # evalkit's engine fits the crossed design; statsmodels' MixedLM (nested only) refuses it
    assert lmm("y ~ 1 + (1 | student) + (1 | teacher)", frame).facts["engine"].startswith("crossed")
    with pytest.raises(
        EvalkitInputError, match=r"(teacher and student|student and teacher) are crossed"
    ):
        lmm("y ~ 1 + (1 | student) + (1 | teacher)", frame, engine="statsmodels")


def test_nested_ids_that_restart_within_schools() -> None:
    """(1 | school/teacher) treats teacher IDs within schools, as lme4 does."""
    data = pd.read_csv(REFERENCE / "district.csv")
    data["teacher_in_school"] = (
        data.groupby("school_id")["teacher_id"].rank(method="dense").astype(int)
    )
    nested = lmm("achievement ~ prior + (1 | school_id/teacher_in_school)", data)
    explicit = lmm("achievement ~ prior + (1 | school_id) + (1 | school_id:teacher_id)", data)
    np.testing.assert_allclose(
        nested.facts["reml_criterion"], explicit.facts["reml_criterion"], rtol=1e-12
    )
    assert (
        nested.n_groups["school_id:teacher_in_school"] == explicit.n_groups["school_id:teacher_id"]
    )
