"""Power for the indirect effect: the analytic formulas (checked by hand arithmetic
from Kelcey, Dong, Spybrook & Shen 2017 for 2-2-1) and, in a slow test, against
trials simulated and analysed with mediation()."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evalkit import EvalkitInputError
from evalkit.power import mdes_mediation, power_mediation, simulate_mediation_power


def test_221_standard_errors_by_hand() -> None:
    """a = .5, b = .3, c' = .1, n = 20, J = 80, ρ₂ = .2, R²_M = .3, R²_1 = .4, p = .5:
    σ²_M = 1 − .3 − .25·.25 = .6375; Var(a) = .6375/(.25·80);
    Var(b) = [.2 + .8·.6/20 − .25·(.15 + .1)² − .09·.6375]/(80·.6375)."""
    result = power_mediation(
        "2-2-1",
        a=0.5,
        b=0.3,
        direct=0.1,
        n=20,
        J=80,
        icc2=0.2,
        r2_mediator=0.3,
        r2_outcome1=0.4,
    )
    assert result.std_error_a == pytest.approx(np.sqrt(0.6375 / 20), rel=1e-12)
    var_b = (0.2 + 0.8 * 0.6 / 20 - 0.25 * 0.25**2 - 0.09 * 0.6375) / (80 * 0.6375)
    assert result.std_error_b == pytest.approx(np.sqrt(var_b), rel=1e-12)
    assert result.df == 76
    crit = stats.t.ppf(0.975, 76)
    ncp = 0.5 / result.std_error_a
    power_a = stats.nct.sf(crit, 76, ncp) + stats.nct.cdf(-crit, 76, ncp)
    assert result.power_a == pytest.approx(power_a, rel=1e-10)
    assert result.power_joint == pytest.approx(result.power_a * result.power_b, rel=1e-12)
    z = 0.15 / np.sqrt(0.25 * result.std_error_b**2 + 0.09 * result.std_error_a**2)
    assert result.power_sobel == pytest.approx(stats.norm.sf(1.959964 - z), abs=1e-4)


def test_321_standard_errors_by_hand() -> None:
    """K = 40 schools, J = 4 teachers, n = 10; ρ₃ = ρ₂ = .1, mediator ICC₃ = .3:
    σ²_M̄ = .3 − .0625 + .7/4; school-mean outcome variance .1 + .1/4 + .8/40."""
    result = power_mediation(
        "3-2-1", a=0.5, b=0.3, n=10, J=4, K=40, icc2=0.1, icc3=0.1, mediator_icc3=0.3
    )
    var_m = 0.3 - 0.0625 + 0.7 / 4
    assert result.std_error_a == pytest.approx(np.sqrt(var_m / (0.25 * 40)), rel=1e-12)
    resid = 0.1 + 0.1 / 4 + 0.8 / 40 - 0.25 * 0.15**2 - 0.09 * var_m
    assert result.std_error_b == pytest.approx(np.sqrt(resid / (40 * var_m)), rel=1e-12)
    assert result.df == 36


def test_power_grows_with_clusters_and_the_mc_test_sits_near_the_joint_test() -> None:
    powers = [power_mediation("2-2-1", a=0.5, b=0.3, n=20, J=j, icc2=0.2) for j in (40, 80, 160)]
    joint = [p.power_joint for p in powers]
    assert joint == sorted(joint)
    for p in powers:  # both are close to the product of the two path powers here
        assert abs(p.power_monte_carlo - p.power_joint) < 0.04


def test_mdes_reaches_the_target_power_or_says_why_not() -> None:
    result = mdes_mediation("2-2-1", a=0.5, n=20, J=160, icc2=0.2)
    assert result.power_joint == pytest.approx(0.8, abs=1e-6)
    assert result.indirect == pytest.approx(0.5 * result.b)
    with pytest.raises(EvalkitInputError, match=r"test of a alone has power 0\.626"):
        mdes_mediation("2-2-1", a=0.5, n=20, J=80, icc2=0.2)


def test_infeasible_and_malformed_designs_are_refused() -> None:
    with pytest.raises(EvalkitInputError, match="not feasible"):
        power_mediation("2-2-1", a=0.5, b=1.5, n=20, J=80, icc2=0.1)
    with pytest.raises(EvalkitInputError, match="K >= 5"):
        power_mediation("3-2-1", a=0.5, b=0.3, n=20, J=4, icc2=0.1)
    with pytest.raises(EvalkitInputError, match="leave K, icc3"):
        power_mediation("2-2-1", a=0.5, b=0.3, n=20, J=80, K=10, icc2=0.1)
    with pytest.raises(EvalkitInputError, match=r"icc2 must lie in \[0, 1\)"):
        power_mediation("2-2-1", a=0.5, b=0.3, n=20, J=80, icc2=1.2)
    with pytest.raises(EvalkitInputError, match="design"):
        power_mediation("2-1-1", a=0.5, b=0.3, n=20, J=80, icc2=0.1)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize(
    "design",
    [
        dict(design="2-2-1", a=0.5, b=0.3, n=10, J=60, icc2=0.2),
        dict(design="3-2-1", a=0.5, b=0.3, n=10, J=4, K=40, icc2=0.1, icc3=0.1, mediator_icc3=0.3),
    ],
    ids=["2-2-1", "3-2-1"],
)
def test_analytic_power_matches_simulated_trials(design: dict) -> None:
    """400 simulated trials analysed with mediation(): the spread of â and b̂ equals
    the analytic SEs within 3 Monte Carlo SEs of an SD (SD/√(2(R−1))), and the Monte
    Carlo interval test's power the analytic one within 3 MC SE plus .03 (the formulas
    ignore the REML variance estimates' uncertainty)."""
    name = design.pop("design")
    analytic = power_mediation(name, **design)
    sim = simulate_mediation_power(name, replications=400, seed=20261203, **design)
    for simulated, expected in ((sim.sd_a, analytic.std_error_a), (sim.sd_b, analytic.std_error_b)):
        assert abs(simulated - expected) < 3 * expected / np.sqrt(2 * 399)
    assert abs(sim.power - analytic.power_monte_carlo) < 3 * sim.mc_std_error + 0.03
