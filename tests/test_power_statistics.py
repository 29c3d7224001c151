"""Power simulation from sufficient statistics: the statistics path fits what lmm fits,
its draws have the exact distribution of the rows' cross-products, and its power agrees
with the row simulation and with PowerUp!'s analytic power."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import EvalkitInputError
from evalkit.multilevel import fit_statistics, lmm
from evalkit.power import SimulationDesign, simulate_power, simulate_study
from evalkit.power.statistics import _bartlett, simulate_statistics

DESIGN = SimulationDesign(
    n_schools=12, teachers_per_school=5, students_per_teacher=8, icc_school=0.15,
    icc_teacher=0.10, effect=0.35, r21=0.4, moderation=0.1,
)  # fmt: skip


def test_fit_from_statistics_equals_lmm() -> None:
    data = simulate_study(DESIGN, np.random.default_rng(1))
    fit = lmm("y ~ treated * leadership + prior + (1 | school) + (1 | school:teacher)", data)
    again = fit_statistics(fit.stats)
    slopes = fit.params.index != "Intercept"  # lmm's statistics hold a shifted outcome
    np.testing.assert_allclose(again.beta[slopes], fit.params[slopes], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(again.cov)), fit.std_errors, rtol=1e-8)
    np.testing.assert_allclose(again.theta, fit.theta, rtol=1e-7)
    quick = fit_statistics(fit.stats, start=np.array([0.5, 0.5]), fast=True)
    np.testing.assert_allclose(quick.theta, fit.theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(quick.beta[slopes], fit.params[slopes], rtol=1e-6)
    with pytest.raises(EvalkitInputError, match="random-effect columns per level"):
        fit_statistics(fit.stats, blocks=[[2], [1]])


@pytest.mark.slow
def test_the_statistics_a_design_draws_match_those_of_its_rows() -> None:
    """Every cross-product entry has the mean and variance it has when computed from
    simulated student rows (4,000 studies each way; 5 Monte Carlo SEs)."""
    design = SimulationDesign(
        n_schools=4, teachers_per_school=2, students_per_teacher=6, icc_school=0.1,
        icc_teacher=0.1, effect=0.3, r21=0.5,
    )  # fmt: skip
    from evalkit.multilevel import specify

    drawn, rows = [], []
    for seed in range(4000):
        stats, _, _ = simulate_statistics(design, np.random.default_rng(seed))
        drawn.append(stats.cross.sum(axis=0))
        data = simulate_study(design, np.random.default_rng(10_000 + seed))
        spec = specify("y ~ treated + prior + (1 | school) + (1 | school:teacher)", data)
        cross = spec.stats.cross.sum(axis=0)
        # lmm centres the outcome; undo it to compare raw cross-products
        shift = spec.outcome_shift
        rows.append(_unshift(cross, shift))
    drawn_arr, rows_arr = np.array(drawn), np.array(rows)
    mean_gap = np.abs(drawn_arr.mean(0) - rows_arr.mean(0))
    mc = np.sqrt((drawn_arr.var(0) + rows_arr.var(0)) / 4000) + 1e-12
    assert np.all(mean_gap < 5 * mc)
    ratio = (drawn_arr.var(0) + 1e-12) / (rows_arr.var(0) + 1e-12)
    varying = rows_arr.var(0) > 1e-9
    assert np.all(np.abs(ratio[varying] - 1) < 0.15)


def _unshift(cross: np.ndarray, shift: float) -> np.ndarray:
    """Cross-products of [.., y + shift] from those of [.., y] (the last column)."""
    out = cross.copy()
    ones = cross[0]  # the first column is the teacher intercept: all ones
    out[-1, :-1] = out[:-1, -1] = cross[:-1, -1] + shift * ones[:-1]
    out[-1, -1] = cross[-1, -1] + 2 * shift * ones[-1] + shift**2 * ones[0]
    return out


def test_bartlett_draws_are_wishart() -> None:
    draws = _bartlett(7, 0.8, 200_000, np.random.default_rng(3))
    # Wishart_2(6, diag(1, 0.64)): means 6, 0, 3.84; variances 2·6, 6·0.64, 2·6·0.64²
    np.testing.assert_allclose(draws.mean(0), [6.0, 0.0, 3.84], atol=0.03)
    np.testing.assert_allclose(draws.var(0), [12.0, 3.84, 4.9152], rtol=0.02)


@pytest.mark.slow
def test_power_from_statistics_agrees_with_rows_and_powerup() -> None:
    design = SimulationDesign(
        n_schools=10, teachers_per_school=4, students_per_teacher=10, icc_school=0.15,
        icc_teacher=0.10, effect=0.35, r21=0.3,
    )  # fmt: skip
    fast = simulate_power(design, replications=400, seed=11)
    assert fast.simulation == "statistics"
    # (the default test run checks the statistics path against PowerUp! in
    # tests/test_power.py::test_simulated_power_agrees_with_analytic)
    slow = simulate_power(design, replications=200, seed=11, simulation="rows")
    assert slow.simulation == "rows"
    a, b = fast.table.iloc[0], slow.table.iloc[0]
    assert abs(a["power"] - a["analytic_power"]) < 3 * a["mc_se"]
    assert abs(a["power"] - b["power"]) < 3 * np.hypot(a["mc_se"], b["mc_se"])
    assert abs(a["empirical_sd"] - b["empirical_sd"]) < 0.15 * b["empirical_sd"]
    assert abs(a["coverage"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 400)
    assert a["not_converged"] == 0


def test_which_simulation_runs() -> None:
    binary = SimulationDesign(n_schools=6, teachers_per_school=2, students_per_teacher=5,
                              outcome="binary", base_rate=0.4)  # fmt: skip
    assert simulate_power(binary, replications=2, seed=1).simulation == "rows"
    with pytest.raises(EvalkitInputError, match="simulation='statistics' covers"):
        simulate_power(binary, replications=2, simulation="statistics")
    custom = simulate_power(
        DESIGN, replications=2, seed=1, formula="y ~ treated + (1 | school)", term="treated"
    )
    assert custom.simulation == "rows"
    with pytest.raises(EvalkitInputError, match="simulation"):
        simulate_power(DESIGN, replications=2, simulation="cells")  # type: ignore[arg-type]
