"""Small-sample inference for evalkit.multilevel against lmerTest, pbkrtest, nlme,
clubSandwich and lme4 (tests/reference/multilevel/inference_reference.R)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from evalkit import EvalkitInputError
from evalkit.multilevel import (
    caterpillar_plot,
    effect_size,
    f_test,
    lmm,
    lrt,
    profile_intervals,
    ranef,
    reliability,
    robust,
)
from tests.multilevel.test_lme4_reference import CASES, _data, _hsb
from tests.multilevel.test_lme4_reference import REF as LME4

REFERENCE = Path(__file__).parents[1] / "reference" / "multilevel"
REF: dict[str, Any] = json.loads((REFERENCE / "inference.json").read_text())
KEYS = sorted(k for k in REF if k in CASES)


def _fit(key: str, **kwargs: Any) -> Any:
    formula, data_name, method = CASES[key]
    return lmm(formula, _data(data_name), method=method, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", KEYS)
def test_satterthwaite_df_match_lmertest(key: str) -> None:
    fit = _fit(key)
    # Both sides take H and ∂C/∂φ numerically (Richardson); measured agreement ≤ 2.2e-6.
    np.testing.assert_allclose(fit.df, REF[key]["df_satterthwaite"], rtol=2e-5)
    np.testing.assert_allclose(fit.std_errors, REF[key]["se"], rtol=1e-5)


@pytest.mark.parametrize("key", KEYS)
def test_kenward_roger_matches_pbkrtest(key: str) -> None:
    fit = _fit(key, df_method="kenward-roger")
    # Analytic on both sides; the only difference is the optimum (≤ 1e-6). Measured ≤ 1.7e-7.
    np.testing.assert_allclose(fit.df, REF[key]["df_kr"], rtol=2e-6)
    np.testing.assert_allclose(fit.std_errors, REF[key]["se_kr"], rtol=2e-6)
    assert np.all(fit.std_errors.to_numpy() >= np.asarray(REF[key]["se"]) * (1 - 1e-6))


@pytest.mark.parametrize("key", KEYS)
def test_containment_df_match_nlme(key: str) -> None:
    fit = _fit(key, df_method="containment")
    np.testing.assert_array_equal(fit.df, REF[key]["df_containment"])


def test_containment_df_are_hlm_j_minus_q_minus_1() -> None:
    """R&B Table 4.5 reports 157 df (160 schools − 2 school predictors − 1) for the
    school-level coefficients of the intercept model."""
    fit = lmm(
        "mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school)",
        _hsb(),
        df_method="containment",
    )
    assert fit.df["sector"] == 157 and fit.df["meanses"] == 157


@pytest.mark.parametrize("key", [k for k in KEYS if k != "district_slope"])
def test_cr2_matches_clubsandwich(key: str) -> None:
    """district_slope is left out: its lme4 fit is singular (correlation −1) and nlme
    stops at another point, so clubSandwich works from a different model there."""
    result = robust(_fit(key, df_method="none"))
    np.testing.assert_allclose(result.std_errors, REF[key]["se_cr2"], rtol=2e-5)
    np.testing.assert_allclose(result.df, REF[key]["df_cr2"], rtol=2e-5)


@pytest.mark.parametrize("key", [k for k in KEYS if REF[k]["ftests"]])
def test_f_tests_match_lmertest_and_pbkrtest(key: str) -> None:
    for spec in REF[key]["ftests"].values():
        contrasts = np.array(spec["L"])
        satt = f_test(_fit(key), contrasts=contrasts)
        np.testing.assert_allclose(satt.statistic, spec["F_satterthwaite"], rtol=1e-5)
        np.testing.assert_allclose(satt.df_denom, spec["ddf_satterthwaite"], rtol=2e-5)
        assert satt.df_num == spec["ndf"]
        kr = f_test(_fit(key, df_method="kenward-roger"), contrasts=contrasts)
        np.testing.assert_allclose(kr.statistic, spec["F_kr"], rtol=1e-5)
        np.testing.assert_allclose(kr.df_denom, spec["ddf_kr"], rtol=2e-6)


def test_f_test_by_term_names_equals_contrasts() -> None:
    fit = _fit("district_3level")
    terms = ["coached:leadership", "coached:collaboration", "coached:readiness"]
    by_name = f_test(fit, terms)
    spec = REF["district_3level"]["ftests"]["moderators"]
    np.testing.assert_allclose(by_name.statistic, spec["F_satterthwaite"], rtol=1e-5)
    with pytest.raises(EvalkitInputError, match="terms not in the model: coached:grit"):
        f_test(fit, ["coached:grit"])


def test_likelihood_ratio_tests_match_lme4() -> None:
    hsb = _hsb()
    small = lmm("mathach ~ 1 + ses_c + (1 + ses_c | school)", hsb)
    large = lmm("mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school)", hsb)
    test = lrt(small, large)
    ref = REF["lrt_fixed"]
    assert test.refitted and test.df == ref["df"]
    np.testing.assert_allclose(test.chisq, ref["chisq"], rtol=1e-8)
    np.testing.assert_allclose(
        [test.deviance_smaller, test.deviance_larger], ref["deviance"], rtol=1e-10
    )
    assert test.p_value_mixture is None
    intercepts = lmm("mathach ~ 1 + ses_c + (1 | school)", hsb)
    test = lrt(intercepts, small)
    ref = REF["lrt_random"]
    assert not test.refitted and test.df == ref["df"]
    np.testing.assert_allclose(test.chisq, ref["chisq"], rtol=1e-7)
    np.testing.assert_allclose(test.p_value, ref["p"], rtol=1e-6)
    # Boundary: the 50:50 mixture of chi2(1) and chi2(2) is smaller than the naive p.
    assert test.p_value_mixture is not None and test.p_value_mixture < test.p_value
    with pytest.raises(EvalkitInputError, match="more parameters"):
        lrt(small, intercepts)


@pytest.mark.parametrize("key", [k for k in KEYS if "ranef" in REF[k]])
def test_conditional_modes_match_lme4(key: str) -> None:
    ours = ranef(_fit(key))
    for level, ref in REF[key]["ranef"].items():
        table = ours[level]
        table.index = table.index.astype(str)
        table = table.loc[[str(g) for g in ref["groups"]]]
        modes = np.array(ref["modes"])
        effects = [c for c in table.columns if not c.endswith(("_sd", "_reliability"))]
        scale = float(np.max(np.abs(modes)))
        np.testing.assert_allclose(table[effects].to_numpy(), modes, atol=2e-6 * scale)
        condsd = np.array(ref["condsd"]).reshape(modes.shape)
        sds = table[[f"{e}_sd" for e in effects]].to_numpy()
        np.testing.assert_allclose(sds, condsd, rtol=2e-6)


def test_reliability_is_hlm_lambda_for_random_intercepts() -> None:
    """For a random-intercept model, 1 − condVar/τ equals τ/(τ + σ²/n_j)."""
    hsb = _hsb()
    fit = lmm("mathach ~ 1 + (1 | school)", hsb)
    tau = float(fit.variance_components.variance("school"))
    sizes = hsb.groupby("school").size()
    expected = tau / (tau + fit.sigma2 / sizes)
    table = ranef(fit)["school"]
    table.index = table.index.astype(str)
    expected.index = expected.index.astype(str)
    # β̂ is held fixed in condVar, so the identity holds exactly.
    np.testing.assert_allclose(
        table["Intercept_reliability"], expected.loc[table.index], rtol=1e-10
    )
    # R&B (2002, p. 73) report a mean reliability of .90 for the null model.
    assert reliability(fit)["school"]["Intercept"] == pytest.approx(0.90, abs=0.005)


@pytest.mark.parametrize("key", ["hsb_rc", "sleep_correlated", "district_3level"])
def test_profile_intervals_match_lme4(key: str) -> None:
    ci = profile_intervals(_fit(key, df_method="none")).set_index("parameter")
    ref = REF[key]["profile"]
    for name, low, high in zip(ref["names"], ref["lower"], ref["upper"], strict=True):
        if not (name.startswith(("sd_", "cor_")) or name == "sigma"):
            continue  # fixed-effect rows
        if name.startswith("cor_") and key == "hsb_rc":
            continue  # lme4 itself warns: non-monotonic profile, linear interpolation
        # lme4 interpolates a spline through its profile grid; we solve for the crossing.
        np.testing.assert_allclose(
            ci.loc[_our_name(name), ["ci_low", "ci_high"]], [low, high], rtol=1e-4, atol=1e-6
        )


def _our_name(lme4_name: str) -> str:
    """lme4's ``confint`` row names in evalkit's vocabulary: ``sd_(Intercept)|school`` →
    ``sd_school``, ``sd_x|g`` → ``sd_g[x]``, ``cor_x.(Intercept)|g`` →
    ``cor_g[Intercept, x]``, ``sigma`` → ``sd_residual``."""
    if lme4_name == "sigma":
        return "sd_residual"
    kind, rest = lme4_name.split("_", 1)
    terms, level = rest.rsplit("|", 1)
    terms = terms.replace("(Intercept)", "Intercept")
    if kind == "sd":
        return f"sd_{level}" if terms == "Intercept" else f"sd_{level}[{terms}]"
    second, first = terms.split(".", 1)
    return f"cor_{level}[{first}, {second}]"


def test_r_squared_and_icc() -> None:
    for key in KEYS:
        fit = _fit(key)
        np.testing.assert_allclose(fit.facts["r2_marginal"], REF[key]["r2"]["marginal"], atol=1e-6)
        np.testing.assert_allclose(
            fit.facts["r2_conditional"], REF[key]["r2"]["conditional"], atol=1e-6
        )
    null = _fit("hsb_null")
    tau, sigma2 = LME4["hsb_null"]["vc_vcov"]
    np.testing.assert_allclose(null.facts["icc_school"], tau / (tau + sigma2), rtol=1e-6)
    # R&B (2002, p. 71): ρ̂ = 8.614/(8.614 + 39.148) = .18.
    assert round(null.facts["icc_school"], 2) == 0.18


def test_proportional_reduction_in_variance() -> None:
    """Raudenbush & Bryk (2002, eq. 4.24): (τ_null − τ)/τ_null per level, here from
    lme4's variance components of the null and the full chapter-4 model."""
    hsb = _hsb()
    null = lmm("mathach ~ 1 + (1 | school)", hsb)
    full = lmm(
        "mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school)", hsb, reference=null
    )
    facts = full.glance().iloc[0]
    tau_null, sigma_null = LME4["hsb_null"]["vc_vcov"]
    tau_full = LME4["hsb_full"]["vc_vcov"][0]
    np.testing.assert_allclose(facts["prv_school"], 1 - tau_full / tau_null, rtol=1e-5)
    np.testing.assert_allclose(
        facts["prv_residual"], 1 - LME4["hsb_full"]["sigma2"] / sigma_null, rtol=1e-5
    )


def test_effect_size_standardizers() -> None:
    """Hedges (2007): δ_T = δ_W·sqrt(1 − ρ) with the same coefficient and components."""
    data = _data("district")
    null = lmm("achievement ~ 1 + (1 | school_id) + (1 | school_id:teacher_id)", data)
    fit = lmm("achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)", data)
    total = effect_size(fit, "coached", reference=null)
    within = effect_size(fit, "coached", standardizer="within", reference=null)
    rho = 1 - null.sigma2 / (
        null.sigma2 + sum(null.variance_components.intercept_variances().values())
    )
    np.testing.assert_allclose(total.estimate, within.estimate * np.sqrt(1 - rho), rtol=1e-12)
    np.testing.assert_allclose(total.estimate * total.sd, fit.params["coached"], rtol=1e-12)
    # The SE adds the uncertainty of the standardiser; it is at least SE(β)/S.
    assert total.std_error > fit.std_errors["coached"] / total.sd
    plain = effect_size(fit, "coached", reference=null.refit(df_method="none"))
    np.testing.assert_allclose(plain.std_error, fit.std_errors["coached"] / plain.sd, rtol=1e-12)
    with pytest.raises(EvalkitInputError, match="'coached:grit' is not a fixed effect"):
        effect_size(fit, "coached:grit")


def test_statsmodels_engine_agrees_where_it_converges() -> None:
    for key in ["hsb_null", "sleep_correlated", "district_3level"]:
        formula, data_name, method = CASES[key]
        second = lmm(formula, _data(data_name), method=method, engine="statsmodels")  # type: ignore[arg-type]
        assert second.backend == "statsmodels"
        np.testing.assert_allclose(second.params, LME4[key]["beta"], rtol=1e-5)
        # statsmodels' SEs come from the full Hessian; close, not equal, to lme4's.
        np.testing.assert_allclose(second.std_errors, LME4[key]["se"], rtol=1e-3)
    # On the random-slope HSB model statsmodels' optimisers fail: that must be visible.
    failed = lmm("mathach ~ 1 + ses_c + (1 + ses_c | school)", _hsb(), engine="statsmodels")
    assert any("convergence" in w for w in failed.warnings)
    nested = pd.DataFrame(
        {
            "y": np.arange(16.0) % 5,
            "a": np.repeat([1, 2], 8),
            "b": np.repeat([1, 2, 3, 4], 4),
            "c": np.repeat(np.arange(8), 2),
        }
    )
    with pytest.raises(EvalkitInputError, match="cannot express 3 grouping levels"):
        lmm("y ~ 1 + (1 | a/b/c)", nested, engine="statsmodels")


def test_bad_input_for_inference() -> None:
    with pytest.raises(EvalkitInputError, match="kenward-roger' needs a REML fit"):
        lmm("mathach ~ 1 + (1 | school)", _hsb(), method="ML", df_method="kenward-roger")
    broken = _data("district")
    first = broken.index[broken["teacher_id"] == 7][0]
    broken.loc[first, "school_id"] = broken.loc[first, "school_id"] % 30 + 1
    with pytest.raises(
        EvalkitInputError, match="teacher_id IDs 7 appear under more than one school_id"
    ):
        lmm("achievement ~ prior + (1 | school_id/teacher_id)", broken)
    # The explicit interaction is the documented way to treat them as distinct groups.
    lmm("achievement ~ prior + (1 | school_id) + (1 | school_id:teacher_id)", broken)


def test_caterpillar_plot_draws_every_group() -> None:
    fit = _fit("hsb_rc", df_method="none")
    figure = caterpillar_plot(fit, "school", "ses_c")
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].lines[0].get_xdata()) == 160
    with pytest.raises(EvalkitInputError, match="no random effect 'grit'"):
        caterpillar_plot(fit, "school", "grit")
