"""The cluster wild bootstrap test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import EvalkitInputError, meta

REFERENCE = Path(__file__).parents[1] / "reference" / "meta"


def _robust_fit() -> meta.RobustResults:
    sat = pd.read_csv(REFERENCE / "kalaian1996_ids.csv").dropna(subset=["hrs"])
    fit = meta.multilevel(
        sat,
        effect="yi",
        moderators="math + hrs + ets",
        variance="vi",
        levels=["study", "es_id"],
        rho=0.66,
    )
    return meta.robust(fit, sat["study"])


def test_statistic_is_the_robust_wald_statistic_and_seeded() -> None:
    robust_fit = _robust_fit()
    first = meta.wild_bootstrap_test(robust_fit, ["hrs", "ets"], replications=499, seed=4)
    again = meta.wild_bootstrap_test(robust_fit, ["hrs", "ets"], replications=499, seed=4)
    assert first == again
    b = robust_fit.params[["hrs", "ets"]].to_numpy()
    cov = robust_fit.cov.loc[["hrs", "ets"], ["hrs", "ets"]].to_numpy()
    assert first.statistic == pytest.approx(float(b @ np.linalg.solve(cov, b)))
    assert 0 < first.p_value <= 1


def test_bad_arguments() -> None:
    robust_fit = _robust_fit()
    with pytest.raises(EvalkitInputError, match="at least 99"):
        meta.wild_bootstrap_test(robust_fit, ["hrs"], replications=10)
    with pytest.raises(EvalkitInputError, match="terms not in the model: dose"):
        meta.wild_bootstrap_test(robust_fit, ["dose"])


@pytest.mark.slow
def test_size_under_the_null_with_few_clusters() -> None:
    """With 8 clusters the bootstrap rejects a true null at close to 5%."""
    rng = np.random.default_rng(2022)
    replications, rejections = 400, 0
    for _ in range(replications):
        studies = np.repeat(np.arange(8), 4)
        vi = rng.uniform(0.02, 0.08, studies.size)
        moderator = rng.normal(size=8)[studies]
        yi = 0.2 + rng.normal(0, 0.15, 8)[studies] + rng.normal(0, np.sqrt(vi))
        data = pd.DataFrame(
            {"study": studies, "es_id": np.arange(studies.size), "yi": yi, "vi": vi, "x": moderator}
        )
        fit = meta.multilevel(
            data, effect="yi", moderators="x", variance="vi", levels=["study", "es_id"], rho=0.5
        )
        test = meta.wild_bootstrap_test(
            meta.robust(fit, data["study"]), ["x"], replications=199, rng=rng
        )
        rejections += test.p_value < 0.05
    rate = rejections / replications
    mc_se = np.sqrt(0.05 * 0.95 / replications)  # 0.011
    assert abs(rate - 0.05) < 3 * mc_se
