"""Seeded simulation of the Monte Carlo interval's coverage (slow).

2-2-1 design: 60 schools × 4 teachers (two coached per school) × 10 students, a = 0.5,
b = 0.3 (indirect 0.15), direct 0.1. 400 replications: the MC interval of the
indirect effect covers 0.15 in 93-97% of them (the issue's band; 2 MC SE at 95% is
±2.2 points), the estimate's bias is within 2 MC SE, and the naive single-level
analysis (ordinary least squares on the student rows, ignoring teachers and schools)
under-covers: its SE of a treats ten students' copies of one teacher's score as ten
independent observations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit.mediation import mediation
from tests.mediation.conftest import simulate_221

pytestmark = pytest.mark.slow
TRUE_INDIRECT = 0.5 * 0.3
REPLICATIONS = 400


def _naive_interval(data: pd.DataFrame, rng: np.random.Generator) -> tuple[float, float]:
    """Single-level OLS of both equations on the student rows, MC interval of a·b."""
    n = len(data)
    ones = np.ones(n)
    x_a = np.column_stack([ones, data["coached"]])
    x_b = np.column_stack([ones, data["coached"], data["instruction"], data["prior"]])
    paths = []
    for x, y, k in ((x_a, data["instruction"], 1), (x_b, data["achievement"], 2)):
        beta, rss, *_ = np.linalg.lstsq(x, y.to_numpy(), rcond=None)
        cov = float(rss[0]) / (n - x.shape[1]) * np.linalg.inv(x.T @ x)
        paths.append((beta[k], np.sqrt(cov[k, k])))
    (a, se_a), (b, se_b) = paths
    products = rng.normal(a, se_a, 10_000) * rng.normal(b, se_b, 10_000)
    low, high = np.quantile(products, [0.025, 0.975])
    return float(low), float(high)


def test_monte_carlo_interval_covers_and_naive_analysis_does_not() -> None:
    root = np.random.default_rng(20261203)
    covered, naive_covered, estimates = [], [], []
    for seed in root.integers(0, 2**31, REPLICATIONS):
        rng = np.random.default_rng(seed)
        data = simulate_221(rng)
        result = mediation(
            data,
            treatment="coached",
            mediator="instruction",
            outcome="achievement",
            clusters=("school_id", "teacher_id"),
            covariates=["prior"],
            n_draws=10_000,
            rng=rng,
        )
        row = result.tidy().set_index("term").loc["indirect"]
        covered.append(row["ci_low"] <= TRUE_INDIRECT <= row["ci_high"])
        estimates.append(row["estimate"])
        low, high = _naive_interval(data, rng)
        naive_covered.append(low <= TRUE_INDIRECT <= high)
    coverage = float(np.mean(covered))
    assert 0.93 <= coverage <= 0.97, coverage
    values = np.asarray(estimates)
    mc_se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - TRUE_INDIRECT) < 2 * mc_se
    assert float(np.mean(naive_covered)) < 0.85
