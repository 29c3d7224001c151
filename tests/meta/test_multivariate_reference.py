"""Multivariate meta-analysis against metafor's rma.mv with ``~ outcome | study``
(tests/reference/meta/multivariate_reference.R)."""

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
REF: dict[str, Any] = json.loads((REFERENCE / "multivariate.json").read_text())
RTOL = 1e-5
# Profile bounds: metafor's confint stops its root search at tol = 1e-10 on refits
# converged to rel.tol = 1e-10.
RTOL_PROFILE = 1e-4


def _berkey() -> tuple[pd.DataFrame, np.ndarray]:
    data = pd.read_csv(REFERENCE / "berkey1998.csv")
    return data, meta.sampling_covariance(data, study="trial", columns=["v1i", "v2i"])


def _best(*keys: str) -> dict[str, Any]:
    """For two outcomes UN and HCS are one model: compare with whichever R fit reached
    the higher likelihood (nlminb stops a little short on some)."""
    return max((REF[k] for k in keys), key=lambda r: r["logLik"])


def _check(fit: meta.MultivariateResults, ref: dict[str, Any], rtol: float = RTOL) -> None:
    assert fit.glance().iloc[0]["logLik"] >= ref["logLik"] - 1e-9
    np.testing.assert_allclose(fit.glance().iloc[0]["logLik"], ref["logLik"], rtol=1e-8)
    np.testing.assert_allclose(fit.params.to_numpy(), ref["beta"], rtol=rtol)
    np.testing.assert_allclose(fit.std_errors.to_numpy(), ref["se"], rtol=rtol)
    tau = fit.variance_components.matrix("study").to_numpy()
    tau2 = np.atleast_1d(ref["tau2"])
    np.testing.assert_allclose(np.diag(tau)[: tau2.size], tau2, rtol=rtol)
    corr = tau[0, 1] / np.sqrt(tau[0, 0] * tau[1, 1])
    np.testing.assert_allclose(corr, ref["rho"], rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(fit.glance().iloc[0]["AIC"], ref["AIC"], rtol=1e-7)
    np.testing.assert_allclose(fit.glance().iloc[0]["BIC"], ref["BIC"], rtol=1e-7)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("struct", ["UN", "HCS", "CS"])
def test_berkey_known_covariances(struct: str, method: str) -> None:
    data, covariance = _berkey()
    fit = meta.multivariate(
        data, effect="yi", variance="vi", outcome="outcome", study="trial",
        covariance=covariance, struct=struct, method=method,  # type: ignore[arg-type]
    )  # fmt: skip
    keys = [f"berkey_{s}_{method}" for s in (["UN", "HCS"] if struct != "CS" else ["CS"])]
    _check(fit, _best(*keys))
    assert list(fit.params.index) == ["AL", "PD"]


def test_berkey_moderator_prediction_profile_and_cr2() -> None:
    data, covariance = _berkey()
    fit = meta.multivariate(
        data, effect="yi", variance="vi", outcome="outcome", study="trial", covariance=covariance
    )
    pred = fit.predict()
    ref = REF["berkey_UN_predict"]
    np.testing.assert_allclose(pred["estimate"], ref["pred"], rtol=RTOL)
    # Half-widths of the prediction intervals (a bound near 0 has no relative accuracy).
    half = pred["pi_high"] - pred["estimate"]
    np.testing.assert_allclose(half, np.subtract(ref["pi_ub"], ref["pred"]), rtol=RTOL)
    np.testing.assert_allclose(pred["estimate"] - pred["pi_low"], half, rtol=1e-12)
    profile = meta.profile_intervals(fit).set_index("parameter")
    prof = REF["berkey_UN_profile"]
    np.testing.assert_allclose(
        profile.loc["var_study[AL]", ["ci_low", "ci_high"]], prof["tau2_1"][1:], rtol=RTOL_PROFILE
    )
    np.testing.assert_allclose(
        profile.loc["var_study[PD]", ["ci_low", "ci_high"]], prof["tau2_2"][1:], rtol=RTOL_PROFILE
    )
    np.testing.assert_allclose(
        profile.loc["cor_study[AL, PD]", ["ci_low", "ci_high"]], prof["rho"][1:], rtol=RTOL_PROFILE
    )
    robust = meta.robust(fit, "trial")
    cr2 = REF["berkey_UN_CR2"]
    np.testing.assert_allclose(robust.std_errors, cr2["se"], rtol=RTOL)
    np.testing.assert_allclose(robust.df, cr2["df"], rtol=RTOL)
    np.testing.assert_allclose(robust.pvalues, cr2["p"], rtol=RTOL)
    year = meta.multivariate(
        data.assign(year_c=data["year"] - 1990), effect="yi", variance="vi", outcome="outcome",
        study="trial", covariance=covariance, moderators="year_c",
    )  # fmt: skip
    _check(year, REF["berkey_UN_year"])
    with pytest.raises(EvalkitInputError, match="newmods"):
        year.predict()
    at_1990 = year.predict({"year_c": [0.0]})
    np.testing.assert_allclose(at_1990["estimate"], REF["berkey_UN_year"]["beta"][:2], rtol=RTOL)


@pytest.mark.parametrize("struct", ["UN", "HCS", "CS"])
def test_sat_coaching_boundary_correlation(struct: str) -> None:
    """Math and verbal SAT coaching effects: the correlation of true effects sits at −1
    (metafor reaches −1 + 1e-13); the fit is flagged and matches at the boundary."""
    sat = evalkit.datasets.load("kalaian1996")
    # A categorical outcome keeps its categories' order (here R's factor levels).
    sat["outcome"] = pd.Categorical(sat["outcome"], categories=["verbal", "math"])
    fit = meta.multivariate(
        sat, effect="yi", variance="vi", outcome="outcome", study="study", rho=0.66,
        struct=struct,  # type: ignore[arg-type]
    )  # fmt: skip
    ref = _best("sat_UN", "sat_HCS") if struct != "CS" else REF["sat_CS"]
    np.testing.assert_allclose(fit.glance().iloc[0]["logLik"], ref["logLik"], rtol=1e-7)
    np.testing.assert_allclose(fit.params.to_numpy(), ref["beta"], rtol=1e-4)
    np.testing.assert_allclose(fit.std_errors.to_numpy(), ref["se"], rtol=1e-4)
    assert any("boundary (±1)" in w for w in fit.warnings)


def test_multivariate_inputs_are_checked() -> None:
    data, covariance = _berkey()
    with pytest.raises(EvalkitInputError, match="single outcome"):
        meta.multivariate(
            data.assign(outcome="PD"), effect="yi", variance="vi", outcome="outcome", study="trial"
        )
    with pytest.raises(EvalkitInputError, match="different studies"):
        leaky = covariance.copy()
        leaky[0, 5] = leaky[5, 0] = 0.001
        meta.multivariate(
            data, effect="yi", variance="vi", outcome="outcome", study="trial", covariance=leaky
        )
    with pytest.raises(EvalkitInputError, match="missing"):
        meta.multivariate(
            data.assign(trial=[None, *list(data["trial"][1:])]),
            effect="yi",
            variance="vi",
            outcome="outcome",
            study="trial",
        )
    with pytest.raises(EvalkitInputError, match="struct"):
        meta.multivariate(
            data, effect="yi", variance="vi", outcome="outcome", study="trial", struct="AR"
        )  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="differ only in case or spacing: 'AL' / 'al'"):
        meta.multivariate(
            data.assign(outcome=["al" if i == 3 else o for i, o in enumerate(data["outcome"])]),
            effect="yi", variance="vi", outcome="outcome", study="trial", covariance=covariance,
        )  # fmt: skip
    fit = meta.multivariate(
        data, effect="yi", variance="vi", outcome="outcome", study="trial", covariance=covariance
    )
    with pytest.raises(EvalkitInputError, match="multivariate"):
        meta.leave_one_out(fit)
