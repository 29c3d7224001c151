"""Multilevel/CHE models against metafor's rma.mv and robust variance against
clubSandwich (tests/reference/meta/multilevel_reference.R)."""

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
REF: dict[str, Any] = json.loads((REFERENCE / "multilevel.json").read_text())
RTOL_ESTIMATE = 1e-6  # estimates, SEs, variance components
RTOL_INFERENCE = 1e-5  # p-values, CIs, df
# Variance components at the boundary: metafor's optimiser (on the log scale) stops
# at about 1e-12 where the optimum is 0; compare those absolutely.
ATOL_BOUNDARY = 1e-9


def _konstantopoulos() -> pd.DataFrame:
    return evalkit.datasets.load("konstantopoulos2011").assign(year_c=lambda d: d["year"] - 1990)


def _three_level(method: str) -> meta.MetaResults:
    return meta.multilevel(
        _konstantopoulos(),
        effect="yi",
        variance="vi",
        levels=["district", "school"],
        method=method,  # type: ignore[arg-type]
    )


def _sat() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "kalaian1996_ids.csv")


def _check_fit(fit: meta.MetaResults, ref: dict[str, Any]) -> None:
    tidy = fit.tidy()
    np.testing.assert_allclose(tidy["estimate"], ref["beta"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(tidy["std_error"], ref["se"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(tidy["p_value"], ref["pval"], rtol=RTOL_INFERENCE)
    np.testing.assert_allclose(tidy["ci_low"], ref["ci_lb"], rtol=RTOL_INFERENCE)
    np.testing.assert_allclose(
        list(fit.variance_components.intercept_variances().values()),
        ref["sigma2"],
        rtol=RTOL_ESTIMATE,
        atol=ATOL_BOUNDARY,
    )
    facts = fit.glance().iloc[0]
    np.testing.assert_allclose(facts["logLik"], ref["logLik"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(facts["AIC"], ref["AIC"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(facts["BIC"], ref["BIC"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(fit.q, ref["QE"], rtol=RTOL_ESTIMATE)


def _check_robust(res: meta.RobustResults, ref: dict[str, Any]) -> None:
    np.testing.assert_allclose(res.std_errors, ref["se"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(
        res.cov.to_numpy().ravel(), np.ravel(ref["vcov"]), rtol=RTOL_ESTIMATE, atol=1e-14
    )
    np.testing.assert_allclose(res.df, ref["df"], rtol=RTOL_INFERENCE)
    np.testing.assert_allclose(res.pvalues, ref["p"], rtol=RTOL_INFERENCE)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_three_level_konstantopoulos(method: str) -> None:
    fit = _three_level(method)
    _check_fit(fit, REF[f"konst_{method}"])
    assert fit.n_groups == {"district": 11, "school": 56}


@pytest.mark.parametrize("vcov", ["CR0", "CR1", "CR2"])
def test_three_level_meta_regression_robust(vcov: str) -> None:
    data = _konstantopoulos()
    fit = meta.multilevel(
        data, effect="yi", moderators="year_c", variance="vi", levels=["district", "school"]
    )
    _check_fit(fit, REF["konst_year_REML"])
    _check_robust(meta.robust(fit, data["district"], type=vcov), REF[f"konst_year_REML_{vcov}"])  # type: ignore[arg-type]


def test_intercept_only_robust() -> None:
    data = _konstantopoulos()
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
    _check_robust(meta.robust(fit, data["district"]), REF["konst_REML_CR2"])


def test_che_sat_coaching() -> None:
    sat = _sat()
    fit = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    _check_fit(fit, REF["sat_che"])
    assert any("boundary" in w for w in fit.warnings)  # the study-level variance is 0
    _check_robust(meta.robust(fit, sat["study"]), REF["sat_che_CR2"])


def test_che_with_moderators_and_htz() -> None:
    # metafor drops the two rows without hours of coaching; evalkit asks for it explicitly.
    sat = _sat().dropna(subset=["hrs"])
    fit = meta.multilevel(
        sat,
        effect="yi",
        # homework holds two 'l' values (a typo for 1 in the source data): R reads the
        # column as a factor; here the categorical coding is declared with C().
        moderators="math + hrs + ets + C(homework)",
        variance="vi",
        levels=["study", "es_id"],
        rho=0.66,
    )
    _check_fit(fit, REF["sat_che_mods"])
    robust_fit = meta.robust(fit, sat["study"])
    _check_robust(robust_fit, REF["sat_che_mods_CR2"])
    _check_robust(meta.robust(fit, sat["study"], type="CR1"), REF["sat_che_mods_CR1"])
    htz = meta.wald_test(robust_fit, ["hrs", "ets", "C(homework)[T.1]"])
    ref = REF["sat_che_mods_HTZ"]
    np.testing.assert_allclose(htz.statistic, ref["Fstat"], rtol=RTOL_ESTIMATE)
    np.testing.assert_allclose(htz.df_denom, ref["df_denom"], rtol=RTOL_INFERENCE)
    np.testing.assert_allclose(htz.p_value, ref["p"], rtol=RTOL_INFERENCE)
    assert htz.df_num == 3 and htz.test == "HTZ"
    # The one-study homework level ('l', a typo in the source data) has df near 3: flagged.
    assert any("below 4" in w for w in robust_fit.warnings)


def test_random_effects_with_rve_by_study() -> None:
    sat = _sat()
    fit = meta.random_effects(sat, effect="yi", variance="vi")
    _check_robust(meta.robust(fit, sat["study"]), REF["sat_re_CR2"])


def test_bad_multilevel_input() -> None:
    data = _konstantopoulos()
    with pytest.raises(EvalkitInputError, match="rho must lie in \\[0, 1\\]"):
        meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"], rho=1.5)
    with pytest.raises(EvalkitInputError, match="levels needs at least one"):
        meta.multilevel(data, effect="yi", variance="vi", levels=[])
    with pytest.raises(EvalkitInputError, match="give only the right-hand side"):
        meta.multilevel(
            data, effect="yi", variance="vi", levels=["district"], moderators="yi ~ year"
        )
    missing = data.copy()
    missing.loc[3, "school"] = np.nan
    with pytest.raises(EvalkitInputError, match="level 'school' has missing IDs at row 3"):
        meta.multilevel(missing, effect="yi", variance="vi", levels=["district", "school"])
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
    with pytest.raises(EvalkitInputError, match="needs several clusters; got 1"):
        meta.robust(fit, np.ones(len(data)))
    with pytest.raises(EvalkitInputError, match="must contain whole model clusters"):
        meta.robust(fit, data["study"])
    with pytest.raises(EvalkitInputError, match="type='CR3' is not allowed"):
        meta.robust(fit, data["district"], type="CR3")  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="terms not in the model: slope"):
        meta.wald_test(fit, ["slope"])


def test_single_effect_studies_are_allowed() -> None:
    data = _konstantopoulos()
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["study"])
    single = meta.random_effects(data, effect="yi", variance="vi")
    # One effect per study: the two-level model is the random-effects model.
    assert fit.params["Intercept"] == pytest.approx(single.params["Intercept"], rel=1e-6)
    assert fit.variance_components.variance("study") == pytest.approx(single.tau2, rel=1e-6)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_profile_likelihood_intervals(method: str) -> None:
    fit = _three_level(method)
    table = meta.profile_intervals(fit).set_index("parameter")
    ref = REF[f"konst_{method}_profile"]
    for level in ("district", "school"):
        # metafor's root finder stops at tol = 1e-10; bounds agree to 1e-5 relative.
        np.testing.assert_allclose(
            table.loc[f"var_{level}"].to_numpy(), ref[f"sigma2_{level}"], rtol=1e-5
        )
    with pytest.raises(EvalkitInputError, match="needs a multilevel model"):
        meta.profile_intervals(meta.random_effects(_konstantopoulos(), effect="yi", variance="vi"))
