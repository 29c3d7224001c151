"""Bias and sensitivity analyses against metafor (tests/reference/meta/bias_reference.R)."""

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
REF: dict[str, Any] = json.loads((REFERENCE / "bias.json").read_text())
MULTI: dict[str, Any] = json.loads((REFERENCE / "multilevel.json").read_text())
RTOL = 1e-6
ATOL = 1e-12


def _data(name: str) -> pd.DataFrame:
    if name == "bcg":
        return pd.read_csv(REFERENCE / "bcg_logrr.csv")
    return evalkit.datasets.load("bangertdrowns2004")


def _model(name: str, method: str) -> meta.MetaResults:
    data = _data(name)
    if method == "FE":
        return meta.fixed_effect(data, effect="yi", variance="vi")
    return meta.random_effects(data, effect="yi", variance="vi", method=method)  # type: ignore[arg-type]


CASES = [(name, method) for name in ("bcg", "writing") for method in ("REML", "DL", "FE")]


@pytest.mark.parametrize(("name", "method"), CASES)
def test_egger(name: str, method: str) -> None:
    ref = REF[f"{name}_{method}_egger"]
    test = meta.egger_test(_model(name, method))
    np.testing.assert_allclose(test.statistic, ref["z"], rtol=RTOL)
    np.testing.assert_allclose(test.p_value, ref["p"], rtol=1e-5)
    np.testing.assert_allclose(test.limit_estimate, ref["limit"], rtol=RTOL)
    np.testing.assert_allclose(test.limit_ci, [ref["limit_lb"], ref["limit_ub"]], rtol=1e-5)


@pytest.mark.parametrize(("name", "method"), CASES)
@pytest.mark.parametrize("estimator", ["L0", "R0"])
def test_trim_and_fill(name: str, method: str, estimator: str) -> None:
    ref = REF[f"{name}_{method}_trimfill_{estimator}"]
    result = meta.trim_and_fill(_model(name, method), estimator=estimator)  # type: ignore[arg-type]
    assert result.k0 == ref["k0"]
    assert result.side == ref["side"]
    np.testing.assert_allclose(result.model.params.iloc[0], ref["beta"], rtol=RTOL)
    np.testing.assert_allclose(result.model.std_errors.iloc[0], ref["se"], rtol=RTOL)
    np.testing.assert_allclose(result.model.tau2, ref["tau2"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        np.sort(result.filled_effects), np.sort(np.atleast_1d(ref["filled_yi"])), rtol=RTOL
    )


@pytest.mark.parametrize(("name", "method"), CASES)
def test_leave_one_out_and_influence(name: str, method: str) -> None:
    model = _model(name, method)
    loo = meta.leave_one_out(model)
    ref = REF[f"{name}_{method}_loo"]
    np.testing.assert_allclose(loo["estimate"], ref["estimate"], rtol=RTOL)
    np.testing.assert_allclose(loo["std_error"], ref["se"], rtol=RTOL)
    np.testing.assert_allclose(loo["Q"], ref["Q"], rtol=RTOL)
    if method != "FE":
        np.testing.assert_allclose(loo["tau2"], ref["tau2"], rtol=RTOL, atol=ATOL)
    diagnostics = meta.influence(model)
    ref = REF[f"{name}_{method}_influence"]
    for column in ("rstudent", "dffits", "cook_d", "cov_r", "QE_del", "hat", "weight"):
        np.testing.assert_allclose(
            diagnostics[column], np.array(ref[column], dtype=float), rtol=RTOL, atol=ATOL
        )


def test_egger_sandwich_for_che_models() -> None:
    sat = pd.read_csv(REFERENCE / "kalaian1996_ids.csv")
    fit = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    test = meta.egger_test(fit)
    ref = MULTI["sat_che_egger_CR2"]
    np.testing.assert_allclose(test.slope, ref["beta"][1], rtol=RTOL)
    np.testing.assert_allclose(test.statistic, ref["tstat"][1], rtol=RTOL)
    np.testing.assert_allclose(test.df, ref["df"][1], rtol=1e-5)
    np.testing.assert_allclose(test.p_value, ref["p"][1], rtol=1e-5)
    assert test.inference.startswith("CR2")


def test_leave_one_cluster_out_for_multilevel() -> None:
    data = evalkit.datasets.load("konstantopoulos2011")
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
    loo = meta.leave_one_out(fit)
    assert len(loo) == 11  # one row per district
    first = data[data["district"] != loo["left_out"].iloc[0]]
    direct = meta.multilevel(first, effect="yi", variance="vi", levels=["district", "school"])
    np.testing.assert_allclose(loo["estimate"].iloc[0], direct.params.iloc[0], rtol=1e-7)


def test_pet_peese_and_limits() -> None:
    model = _model("writing", "REML")
    result = meta.pet_peese(model)
    egger = meta.egger_test(model)
    assert result.pet == pytest.approx(egger.limit_estimate)
    assert result.chosen in ("PET", "PEESE")
    with pytest.raises(EvalkitInputError, match="needs an intercept-only model"):
        meta.trim_and_fill(
            meta.meta_regression(_data("bcg"), effect="yi", moderators="ablat", variance="vi")
        )


MULTI_BIAS: dict[str, Any] = json.loads((REFERENCE / "bias_multilevel.json").read_text())


def test_aggregation_and_trim_and_fill_for_che_models() -> None:
    sat = pd.read_csv(REFERENCE / "kalaian1996_ids.csv")
    aggregated = meta.aggregate_effects(sat, effect="yi", variance="vi", cluster="study", rho=0.66)
    ref = pd.DataFrame(MULTI_BIAS["sat_aggregate"]).set_index("study")
    ours = aggregated.set_index("study").loc[ref.index]
    np.testing.assert_allclose(ours["yi"], ref["yi"], rtol=RTOL)
    np.testing.assert_allclose(ours["vi"], ref["vi"], rtol=RTOL)
    che = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    filled = meta.trim_and_fill(che)
    ref_tf = MULTI_BIAS["sat_aggregate_trimfill"]
    assert (filled.k0, filled.side) == (ref_tf["k0"], ref_tf["side"])
    np.testing.assert_allclose(filled.model.params.iloc[0], ref_tf["beta"], rtol=RTOL)
    np.testing.assert_allclose(filled.model.std_errors.iloc[0], ref_tf["se"], rtol=RTOL)


def test_cluster_cooks_distances_for_three_level_models() -> None:
    data = evalkit.datasets.load("konstantopoulos2011")
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
    diagnostics = meta.influence(fit)
    ref = MULTI_BIAS["konst_cooks_district"]
    # metafor refits each deletion with nlminb's default tolerance; agreement ~1e-7.
    np.testing.assert_allclose(diagnostics.loc[ref["district"], "cook_d"], ref["cook_d"], rtol=1e-5)
