"""Seeded simulation of the logistic coaching model (slow): coverage and bias of the
coaching log odds ratio over 500 simulated districts, and the analytic binary power
formula's standard error against the spread of the fitted estimates."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.power import SimulationDesign, simulate_power
from evalkit.power.binary import power_binary

pytestmark = pytest.mark.slow

REPLICATIONS = 500


def test_coverage_and_bias_of_the_coaching_log_odds_ratio() -> None:
    """Teachers coached within 40 schools (5 teachers × 20 students each, a class),
    latent ICCs 0.10 (school) and 0.05 (teacher), comparison rate 0.4, Cox index 0.25.
    With 500 replications the Monte Carlo SE of a 95% coverage is 0.0097, so an honest
    Wald interval lands in [0.93, 0.97]; the bias must be within 2 Monte Carlo SEs of 0.
    (Measured: coverage 0.950, mean SE 1.7% below the SD of the estimates. With 10
    students per teacher the Laplace Wald SEs run 5% small and coverage is 0.93–0.94,
    as glmer's would be: its SEs equal ours at the optimum.)"""
    design = SimulationDesign(
        n_schools=40, teachers_per_school=5, students_per_teacher=20, assignment="teacher",
        icc_school=0.10, icc_teacher=0.05, effect=0.25, outcome="binary", base_rate=0.4,
    )  # fmt: skip
    result = simulate_power(design, replications=REPLICATIONS, seed=2026, n_jobs=2)
    row = result.table.iloc[0]
    assert row["not_converged"] == 0
    assert 0.93 <= row["coverage"] <= 0.97
    mc_se = row["empirical_sd"] / np.sqrt(REPLICATIONS)
    assert abs(row["bias"]) <= 2 * mc_se


def test_analytic_standard_error_tracks_the_fitted_estimates() -> None:
    """The first-order SE of mdes_binary/power_binary against the SD of the GLMM
    estimates of 400 simulated school-randomised trials: within 10% (the Monte Carlo
    SE of an SD from 400 draws is 3.5%; the rest is the approximation's)."""
    rho3, rho2 = 0.10, 0.05
    total = (np.pi**2 / 3) / (1 - rho3 - rho2)
    design = SimulationDesign(
        n_schools=30, teachers_per_school=5, students_per_teacher=10, icc_school=rho3,
        icc_teacher=rho2, effect=0.3, outcome="binary", base_rate=0.4,
    )  # fmt: skip
    result = simulate_power(design, replications=400, seed=7, n_jobs=2)
    analytic = power_binary(
        "cra3", log_odds_ratio=1.65 * 0.3, base_rate=0.4, n=10, J=5, K=30,
        tau2=rho2 * total, tau3=rho3 * total,
    )  # fmt: skip
    empirical = 1.65 * float(result.table.iloc[0]["empirical_sd"])
    assert abs(analytic.std_error / empirical - 1) < 0.10
