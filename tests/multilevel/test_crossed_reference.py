"""Crossed random effects against lme4 / lmerTest / pbkrtest
(tests/reference/multilevel/crossed_reference.R, fits at lme4's best optimum of two
optimisers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from evalkit.multilevel import lmm, profile_intervals, ranef
from evalkit.multilevel.engine import Optimum, profile
from evalkit.multilevel.model import build_results

REFERENCE = Path(__file__).parents[1] / "reference" / "multilevel"
REF: dict[str, Any] = json.loads((REFERENCE / "crossed.json").read_text())

CASES = {
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "REML"),
    "penicillin_ml": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "ML"),
    "gstudy": (
        "score ~ 1 + (1 | teacher) + (1 | teacher:lesson) + (1 | rater) + (1 | teacher:rater)",
        "observation_scores",
        "REML",
    ),
    "rater_slope": (
        "score ~ coached + (1 | teacher) + (1 + coached | rater)",
        "observation_scores",
        "REML",
    ),
    "rater_slope_ml": (
        "score ~ coached + (1 | teacher) + (1 + coached | rater)",
        "observation_scores",
        "ML",
    ),
    "panel": (
        "score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school)",
        "student_panel",
        "REML",
    ),
    "panel_ml": (
        "score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school)",
        "student_panel",
        "ML",
    ),
}


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"{name}.csv", dtype={"plate": str, "sample": str})


def insteval() -> pd.DataFrame:
    """lme4's InstEval with R's department order (so coefficients line up)."""
    data = pd.read_csv(REFERENCE / "insteval.csv.gz", dtype={"s": str, "d": str, "dept": str})
    levels = REF["insteval"]["dept_levels"]
    return data.assign(dept=pd.Categorical(data["dept"], categories=levels))


FLAT = {"insteval_ml3": 1e-5, "rater_slope": 1e-5, "rater_slope_ml": 1e-5}
"""Fits whose deviance is flat to ~1e-9 along a direction that moves some statistic
by more than 1e-6: InstEval's three-factor ML model (the department variance; the
intercept's SE moves 5e-6 while the deviance changes 1e-9, below what either code can
resolve — lme4's θ and ours each evaluate lower in its own code) and the rater model
(the coached-slope variance, 5e-5, next to 0.1; θ differs by 4e-5 relative in the
boundary-near direction, the deviance by 1e-12). For them the statistics at our
optimum are compared at rtol 1e-5 — and every statistic is also compared to 1e-6 at
lme4's θ (``_check_at_lme4_theta``), which tests the computations exactly."""


def _check(fit: Any, ref: dict[str, Any], method: str, key: str, *, df: bool = True) -> None:
    criterion = fit.facts["reml_criterion" if method == "REML" else "deviance"]
    # Never worse than lme4's optimum beyond floating-point rounding of the criterion
    # (lme4 and evalkit sum it differently: ~1e-14 relative), and equal to it.
    assert criterion <= ref["criterion"] * (1 + 1e-13)
    np.testing.assert_allclose(criterion, ref["criterion"], rtol=1e-10)
    rtol = FLAT.get(key, 1e-5 if ref["singular"] else 1e-6)
    # Coefficients near zero are compared on the scale of their SEs (a relative
    # difference of a coefficient of 0.005 says nothing about the fit).
    se = np.atleast_1d(ref["se"])
    np.testing.assert_allclose(fit.params, ref["beta"], rtol=rtol, atol=rtol * float(se.min()))
    np.testing.assert_allclose(fit.std_errors, se, rtol=rtol)
    np.testing.assert_allclose(fit.sigma2, ref["sigma2"], rtol=rtol)
    np.testing.assert_allclose(fit.facts["logLik"], ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(fit.facts["AIC"], ref["AIC"], rtol=1e-10)
    np.testing.assert_allclose(fit.facts["BIC"], ref["BIC"], rtol=1e-10)
    assert fit.facts["singular"] == ref["singular"]
    assert fit.facts["converged"]
    assert fit.facts["engine"] == "crossed (blocked Cholesky)"
    assert fit.n_groups == ref["ngrps"]
    _check_components(fit, ref, rtol)
    if df:
        np.testing.assert_allclose(fit.df, ref["df_satterthwaite"], rtol=DF_RTOL.get(key, 1e-5))


DF_RTOL = {"rater_slope": 5e-4}
"""The rater model's θ has an element at 3.8e-4 (a slope SD near its bound): the
numerical Hessian both lmerTest (numDeriv, Richardson) and evalkit take there is not
converged beyond ~1e-4 — evalkit's df move from 18.414 to 18.417 as the relative step
goes from 0.02 to 0.2 — so the df agree to 2e-4 (at lme4's θ: 1.2e-4)."""


def _check_components(fit: Any, ref: dict[str, Any], rtol: float) -> None:
    for grp, var1, var2, value in zip(
        ref["vc_grp"], ref["vc_var1"], ref["vc_var2"], ref["vc_vcov"], strict=True
    ):
        if grp == "Residual":
            np.testing.assert_allclose(fit.sigma2, value, rtol=rtol)
            continue
        matrix = fit.variance_components.matrix(grp.split(".")[0])
        name1 = "Intercept" if var1 == "(Intercept)" else var1
        name2 = name1 if var2 is None else ("Intercept" if var2 == "(Intercept)" else var2)
        # an element near zero (the slope variance 5e-5 of the rater model) is compared
        # on the scale of the level's largest variance
        scale = float(np.max(np.diag(matrix.to_numpy())))
        np.testing.assert_allclose(matrix.loc[name1, name2], value, rtol=rtol, atol=rtol * scale)


def _check_at_lme4_theta(
    fit: Any, ref: dict[str, Any], method: str, *, df: bool = True, df_rtol: float = 1e-5
) -> None:
    """Our statistics evaluated at lme4's θ equal lme4's to 1e-6 (df 1e-5)."""
    spec = fit.specification
    theta = np.array(ref["theta"])
    reml = method == "REML"
    deviance = profile(spec.stats, spec.layout.factors(theta), reml=reml).deviance
    np.testing.assert_allclose(deviance, ref["criterion"], rtol=1e-12)
    assert fit.facts["reml_criterion" if reml else "deviance"] <= deviance + 1e-12 * abs(deviance)
    optimum = Optimum(theta, deviance, 0, 0.0, True, ())
    at = build_results(spec, optimum, method=method, df_method="satterthwaite" if df else "none")
    se = np.atleast_1d(ref["se"])
    np.testing.assert_allclose(at.params, ref["beta"], rtol=1e-6, atol=1e-6 * float(se.min()))
    np.testing.assert_allclose(at.std_errors, se, rtol=1e-6)
    _check_components(at, ref, 1e-6)
    if df:
        np.testing.assert_allclose(at.df, ref["df_satterthwaite"], rtol=df_rtol)


@pytest.mark.parametrize("key", sorted(CASES))
def test_crossed_matches_lme4(key: str) -> None:
    formula, data_name, method = CASES[key]
    fit = lmm(formula, _data(data_name), method=method)  # type: ignore[arg-type]
    _check(fit, REF[key], method, key)
    _check_at_lme4_theta(fit, REF[key], method, df_rtol=DF_RTOL.get(key, 1e-5))


@pytest.mark.parametrize("key", ["penicillin", "gstudy", "rater_slope", "panel"])
def test_crossed_kenward_roger_matches_pbkrtest(key: str) -> None:
    formula, data_name, _ = CASES[key]
    fit = lmm(formula, _data(data_name), df_method="kenward-roger")
    np.testing.assert_allclose(fit.df, REF[key]["df_kr"], rtol=1e-5)
    np.testing.assert_allclose(fit.std_errors, REF[key]["se_kr"], rtol=1e-6)


def test_penicillin_conditional_modes_and_profile() -> None:
    ref = REF["penicillin"]
    fit = lmm(CASES["penicillin"][0], _data("penicillin"))
    modes = ranef(fit)
    plate = modes["plate"].loc[ref["ranef_plate_levels"]]
    np.testing.assert_allclose(plate["Intercept"], ref["ranef_plate"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(plate["Intercept_sd"], ref["ranef_plate_sd"], rtol=1e-6)
    sample = modes["sample"].sort_index()
    np.testing.assert_allclose(sample["Intercept"], ref["ranef_sample"], rtol=1e-6)
    np.testing.assert_allclose(sample["Intercept_sd"], ref["ranef_sample_sd"], rtol=1e-6)
    intervals = profile_intervals(fit).set_index("parameter")
    names = {
        "sd_(Intercept)|plate": "sd_plate",
        "sd_(Intercept)|sample": "sd_sample",
        "sigma": "sd_residual",
    }
    for r_name, lower, upper in zip(
        ref["profile"]["parameter"], ref["profile"]["lower"], ref["profile"]["upper"], strict=True
    ):
        if r_name not in names:
            continue
        row = intervals.loc[names[r_name]]
        np.testing.assert_allclose([row["ci_low"], row["ci_high"]], [lower, upper], rtol=1e-4)


def test_insteval_matches_lme4() -> None:
    """InstEval (73,421 ratings; 2,972 students × 1,128 instructors), REML with
    Satterthwaite df; and the three-factor ML model."""
    data = insteval()
    fit = lmm("y ~ service * dept + (1 | s) + (1 | d)", data)
    _check(fit, REF["insteval"], "REML", "insteval")
    _check_at_lme4_theta(fit, REF["insteval"], "REML", df=False)
    three = lmm(
        "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", data, method="ML", df_method="none"
    )
    modes = ranef(fit)  # the blocked path: no 73,421 × 4,100 matrix
    assert modes["d"].shape == (1128, 3) and modes["s"].shape == (2972, 3)
    assert (modes["d"]["Intercept_sd"] > 0).all()
    _check(three, REF["insteval_ml3"], "ML", "insteval_ml3", df=False)
    _check_at_lme4_theta(three, REF["insteval_ml3"], "ML", df=False)
