"""Degenerate multilevel designs against metafor's rma.mv
(tests/reference/meta/degenerate_reference.R): fitted and flagged as metafor does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import meta
from evalkit.cli import main

REFERENCE = Path(__file__).parents[1] / "reference" / "meta"
REF: dict[str, Any] = json.loads((REFERENCE / "degenerate.json").read_text())
RTOL = 1e-5
# Components whose optimum is 0: metafor stops them at up to 1.5e-8 (and reaches a lower
# likelihood there, which _check asserts); compare them absolutely.
ATOL_VARIANCE = 2e-8


def _check(fit: meta.MetaResults, ref: dict[str, Any], *, split: bool = True) -> None:
    np.testing.assert_allclose(fit.params.iloc[0], ref["beta"], rtol=RTOL)
    np.testing.assert_allclose(fit.std_errors.iloc[0], ref["se"], rtol=RTOL)
    facts = fit.glance().iloc[0]
    # At least metafor's likelihood (it stops a component at ~1e-8 where the optimum is 0).
    assert facts["logLik"] >= ref["logLik"] - 1e-10
    np.testing.assert_allclose(facts["logLik"], ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(facts["AIC"], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose(facts["BIC"], ref["BIC"], rtol=1e-6)
    assert fit.variance_components is not None
    sigma2 = list(fit.variance_components.intercept_variances().values())
    if split:
        np.testing.assert_allclose(sigma2, ref["sigma2"], rtol=RTOL, atol=ATOL_VARIANCE)
    else:
        np.testing.assert_allclose(sum(sigma2), ref["sum_sigma2"], rtol=RTOL, atol=ATOL_VARIANCE)


def _calendars() -> pd.DataFrame:
    return evalkit.datasets.load("konstantopoulos2011")


def test_one_school_per_district_matches_metafor() -> None:
    data = _calendars()
    one = data[~data["district"].duplicated()].reset_index(drop=True)
    fit = meta.multilevel(one, effect="yi", variance="vi", levels=["district", "school"])
    _check(fit, REF["one_per_district"], split=False)
    assert any("not separately identified" in w for w in fit.warnings)
    cr2 = meta.robust(fit, "district")
    np.testing.assert_allclose(cr2.std_errors.iloc[0], REF["one_per_district_CR2"]["se"], rtol=RTOL)
    np.testing.assert_allclose(cr2.df.iloc[0], REF["one_per_district_CR2"]["df"], rtol=RTOL)
    assert len(meta.influence(fit)) == len(one)


def test_single_district_variance_is_fixed_at_zero() -> None:
    data = _calendars()
    single = data[data["district"] == 11].reset_index(drop=True)
    fit = meta.multilevel(single, effect="yi", variance="vi", levels=["district", "school"])
    _check(fit, REF["single_district"])
    assert any("single group" in w and "fixed at 0" in w for w in fit.warnings)


def test_leave_one_out_down_to_one_district() -> None:
    data = _calendars()
    two = data[data["district"].isin([11, 12])].reset_index(drop=True)
    fit = meta.multilevel(two, effect="yi", variance="vi", levels=["district", "school"])
    _check(fit, REF["two_districts"])
    loo = meta.leave_one_out(fit)
    assert list(loo["left_out"]) == [11, 12]
    for row, ref in zip(loo.itertuples(), REF["two_districts_loo"], strict=True):
        np.testing.assert_allclose(row.estimate, ref["beta"], rtol=RTOL)
        np.testing.assert_allclose(row.std_error, ref["se"], rtol=RTOL)
    influence = meta.influence(fit)
    assert list(influence.index) == [11, 12] and np.isfinite(influence["cook_d"]).all()


def test_che_with_one_effect_per_study_matches_metafor() -> None:
    first = pd.read_csv(REFERENCE / "kalaian1996_first.csv")
    fit = meta.multilevel(first, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.6)
    _check(fit, REF["sat_first_che"], split=False)


TEN_STUDIES = """study,outcome_domain,outcome,design,clustering,program_size,dosage_hours,content_focus,format,n_t,n_c,mean_t,mean_c,sd_t,sd_c,t_stat,reported_g,reported_se,icc,cluster_size
Study 1,instruction,CLASS,rct,none,40,30,general,in_person,40,38,3.9,3.5,0.8,0.8,,,,,
Study 2,instruction,FFT,rct,none,25,12,general,virtual,25,27,,,,,2.10,,,,
Study 3,instruction,CLASS,rct,none,60,20,general,hybrid,60,60,5.1,4.9,0.7,0.75,,,,,
Study 4,instruction,MQI,rct,none,18,45,content-specific,in_person,18,17,1.6,1.3,0.4,0.45,,,,,
Study 5,instruction,CLASS,qed,none,30,25,content-specific,in_person,30,31,4.2,3.9,0.9,0.85,,,,,
Study 6,instruction,FFT,rct,none,22,40,general,in_person,22,24,3.1,2.7,0.6,0.7,,,,,
Study 7,instruction,MQI,rct,none,35,15,content-specific,virtual,35,33,1.4,1.35,0.5,0.5,,,,,
Study 8,instruction,CLASS,rct,none,50,35,general,hybrid,50,48,4.8,4.4,0.75,0.8,,,,,
Study 9,instruction,FFT,qed,none,28,20,general,in_person,28,30,,,,,1.60,,,,
Study 10,instruction,CLASS,rct,none,45,50,content-specific,in_person,45,44,4.5,3.9,0.8,0.9,,,,,
"""


def test_ten_studies_one_effect_each_through_the_cli(tmp_path: Path) -> None:
    """The crash reported in the issue: ten coded studies with one effect each. The CHE
    model is fitted and flagged; the command line exits 0 and writes its outputs."""
    path = tmp_path / "ten.csv"
    path.write_text(TEN_STUDIES)
    code = main(
        ["run", "coaching_synthesis", "--studies", str(path), "--out", str(tmp_path / "out")]
    )
    assert code == 0
    assert (tmp_path / "out" / "coded_effect_sizes.csv").exists()
    coded = evalkit.coaching.effect_sizes_from_reports(pd.read_csv(path))
    result = evalkit.coaching.synthesize(coded.assign(study=coded["study"]), rho=0.6)
    assert any("not separately identified" in w for w in result.che.warnings)
    univariate = meta.random_effects(coded, effect="yi", variance="vi")
    np.testing.assert_allclose(result.che.params.iloc[0], univariate.params.iloc[0], rtol=1e-6)
    assert len(meta.leave_one_out(result.che)) == 10
    assert len(meta.influence(result.che)) == 10


@pytest.mark.parametrize("labels", ["study", None])
def test_leave_one_out_rows_are_labelled(labels: str | None) -> None:
    studies = pd.read_csv(REFERENCE / "hackshaw1998.csv")
    fit = meta.random_effects(studies, effect="yi", variance="vi")
    loo = meta.leave_one_out(fit, labels="author" if labels else None)
    expected = list(studies["author"]) if labels else list(studies.index)
    assert list(loo["left_out"]) == expected
    diagnostics = meta.influence(fit, labels="author" if labels else None)
    assert list(diagnostics.index) == expected
