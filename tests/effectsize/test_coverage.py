"""Seeded Monte Carlo check of the Hedges (2007) clustering correction.

Cluster-randomised studies (schools assigned, students analysed) are simulated with a
known total-SD effect; the clustering-corrected 95% interval must cover the truth at
its nominal rate, while the naive interval, which ignores clustering, must not.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evalkit import effectsize as es

REPLICATIONS = 4000
MC_SE = float(np.sqrt(0.95 * 0.05 / REPLICATIONS))  # 0.0034


def _simulate(rng: np.random.Generator, clusters_per_arm: int, size: int, icc: float, delta: float):  # type: ignore[no-untyped-def]
    shape = (REPLICATIONS, 2, clusters_per_arm)
    cluster = rng.normal(0.0, np.sqrt(icc), shape)
    students = rng.normal(0.0, np.sqrt(1.0 - icc), (*shape, size)) + cluster[..., None]
    students[:, 0] += delta  # arm 0 is treated; total SD is 1, so delta is delta_T
    flat = students.reshape(REPLICATIONS, 2, clusters_per_arm * size)
    means, sds = flat.mean(axis=2), flat.std(axis=2, ddof=1)
    n_arm = clusters_per_arm * size
    pooled = np.sqrt((sds[:, 0] ** 2 + sds[:, 1] ** 2) / 2)
    return (means[:, 0] - means[:, 1]) / pooled, n_arm


@pytest.mark.slow
@pytest.mark.parametrize(("clusters_per_arm", "size", "icc"), [(20, 20, 0.2), (30, 10, 0.1)])
def test_cluster_corrected_interval_covers(clusters_per_arm: int, size: int, icc: float) -> None:
    delta = 0.25
    rng = np.random.default_rng(20071)
    d, n_arm = _simulate(rng, clusters_per_arm, size, icc, delta)
    corrected = es.cluster_adjusted_g(d, n_arm, n_arm, size, icc)
    covered = (corrected.ci_low <= delta) & (delta <= corrected.ci_high)
    # Nominal 95% within 3.5 Monte Carlo SEs plus 0.5 point for the normal approximation.
    assert abs(covered.mean() - 0.95) < 3.5 * MC_SE + 0.005
    # Bias of the corrected estimate within 3 Monte Carlo SEs of its mean.
    bias_se = corrected.estimate.std(ddof=1) / np.sqrt(REPLICATIONS)
    assert abs(corrected.estimate.mean() - delta) < 3 * bias_se + 0.002
    naive = es.hedges_g_from_t(d / np.sqrt(2 / n_arm), n_arm, n_arm)
    naive_covered = (naive.ci_low <= delta) & (delta <= naive.ci_high)
    # Ignoring clustering shrinks the SE by sqrt(design effect): coverage falls to
    # 2 Phi(1.96 / sqrt(eta)) - 1 (0.62 and 0.84 here), which the simulation must show.
    eta = float(es.design_effect(np.array(size), np.array(icc)))
    expected = 2 * stats.norm.cdf(1.959964 / np.sqrt(eta)) - 1
    naive_mc_se = np.sqrt(expected * (1 - expected) / REPLICATIONS)
    assert abs(naive_covered.mean() - expected) < 3.5 * naive_mc_se + 0.01
    assert expected < 0.90
