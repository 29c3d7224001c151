"""evalkit.power: PowerUp!'s check values (Dong & Maynard 2013, J. Res. Educ. Eff. 6(1); the PowerUp! workbook's worked examples), consistency of the three
solvers, simulation against analytic power, reproducibility across executors, and
bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from evalkit import EvalkitInputError
from evalkit.power import (
    SimulationDesign,
    design_grid,
    mdes,
    power,
    power_curve,
    sample_size,
    simulate_power,
)

# Dong & Maynard (2013) / PowerUp! worked examples.
CHECKS = [
    ("cra2r2", {"rho2": 0.17, "n": 15, "J": 20}, 0.629),
    ("cra2r2", {"rho2": 0.15, "r21": 0.40, "r22": 0.53, "g": 1, "n": 100, "J": 40}, 0.250),
    (
        "cra3r3",
        {
            "rho2": 0.06,
            "rho3": 0.18,
            "r21": 0.55,
            "r22": 0.50,
            "r23": 0.45,
            "g": 1,
            "p": 0.40,
            "n": 10,
            "J": 2,
            "K": 83,
        },
        0.230,
    ),
    (
        "cra3r3",
        {
            "rho3": 0.38,
            "rho2": 0.10,
            "r21": 0.37,
            "r22": 0.53,
            "r23": 0.87,
            "g": 1,
            "n": 20,
            "J": 2,
            "K": 66,
        },
        0.199,
    ),
    (
        "bcra3r2",
        {
            "rho3": 0.38,
            "rho2": 0.10,
            "omega3": 0.5,
            "r21": 0.37,
            "r22": 0.53,
            "n": 20,
            "J": 2,
            "K": 64,
        },
        0.200,
    ),
    ("ira", {"n": 400}, 0.28),
    ("ira", {"n": 400, "r21": 0.5, "g": 1}, 0.20),
]


@pytest.mark.parametrize(("design", "params", "published"), CHECKS)
def test_published_mdes(design: str, params: dict[str, float], published: float) -> None:
    value = mdes(design, **params).mdes
    digits = len(str(published).split(".")[1])
    assert round(value, digits) == pytest.approx(published, abs=1e-12)


def test_multiplier_is_about_2_8_for_large_df() -> None:
    """Bloom (2005): M ≈ 2.80 at α = .05 two-tailed, power .80, large df."""
    assert mdes("ira", n=100_000).multiplier == pytest.approx(2.80, abs=0.005)
    one_tailed = mdes("ira", n=100_000, two_tailed=False).multiplier
    assert one_tailed == pytest.approx(1.645 + 0.842, abs=0.005)


@pytest.mark.parametrize(
    ("design", "params"),
    [
        ("bira2c1", {"n": 20, "J": 10}),
        ("bira2f1", {"n": 20, "J": 10}),
        ("bira2r1", {"rho2": 0.2, "omega2": 0.3, "n": 20, "J": 10}),
        (
            "bira3r1",
            {"rho2": 0.1, "rho3": 0.2, "omega2": 0.1, "omega3": 0.1, "n": 20, "J": 5, "K": 12},
        ),
        ("bcra3f2", {"rho2": 0.1, "n": 20, "J": 6, "K": 10}),
        ("cra3r3", {"rho2": 0.1, "rho3": 0.15, "n": 20, "J": 4, "K": 30}),
    ],
)
def test_solvers_are_consistent(design: str, params: dict[str, float]) -> None:
    """The three quantities invert each other: at the MDES the (non-central t) power
    is close to 0.80 (M = t₁ + t₂ is Bloom's approximation, exact as df → ∞), and
    the required sample size is the smallest one whose MDES is at most the target."""
    found = mdes(design, **params)
    assert 0.78 < power(design, found.mdes, **params).power < 0.82
    top = next(k for k in ("K", "J", "n") if k in params)
    solved = sample_size(design, found.mdes, **{k: v for k, v in params.items() if k != top})
    assert solved.parameters[top] == params[top]
    fewer = {**params, top: params[top] - 1}
    assert mdes(design, **fewer).mdes > found.mdes


def test_sample_size_for_a_lower_level_and_limits() -> None:
    result = sample_size("cra2r2", 0.4, unknown="n", rho2=0.1, J=40)
    assert mdes("cra2r2", rho2=0.1, J=40, n=result.parameters["n"]).mdes <= 0.4
    assert mdes("cra2r2", rho2=0.1, J=40, n=result.parameters["n"] - 1).mdes > 0.4
    # With 10 schools no number of students per school reaches 0.2 when rho2 = .2.
    with pytest.raises(EvalkitInputError, match=r"no n reaches MDES 0\.2"):
        sample_size("cra2r2", 0.2, unknown="n", rho2=0.2, J=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rho2": 0.6, "rho3": 0.4, "n": 10, "J": 4, "K": 20}, "ICCs sum to 1"),
        (
            {"rho2": 0.1, "rho3": 0.1, "r21": 1.0, "n": 10, "J": 4, "K": 20},
            r"r21 \(variance explained\) must lie in \[0, 1\)",
        ),
        ({"rho2": 0.1, "rho3": 0.1, "n": 10, "J": 4, "K": 2}, "at least 3 clusters"),
        (
            {"rho2": 0.1, "rho3": 0.1, "p": 1.0, "n": 10, "J": 4, "K": 20},
            r"p \(share treated\) must lie in \(0, 1\)",
        ),
        ({"rho2": 0.1, "n": 10, "J": 4, "K": 20}, "needs rho3"),
        (
            {"rho2": 0.1, "rho3": 0.1, "omega2": 0.1, "n": 10, "J": 4, "K": 20},
            "does not use omega2",
        ),
    ],
)
def test_bad_input(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(EvalkitInputError, match=message):
        mdes("cra3r3", **kwargs)


def test_bad_names_and_effects() -> None:
    with pytest.raises(EvalkitInputError, match="unknown design 'cra9'"):
        mdes("cra9", n=10)
    with pytest.raises(EvalkitInputError, match="effect size\\) must be positive"):
        power("ira", 0.0, n=100)
    with pytest.raises(EvalkitInputError, match="the ICCs must sum to less than 1"):
        SimulationDesign(icc_school=0.5, icc_teacher=0.5).validate()
    with pytest.raises(EvalkitInputError, match="at least 3 schools"):
        simulate_power(SimulationDesign(n_schools=2), replications=10)


SMALL = SimulationDesign(
    n_schools=20,
    teachers_per_school=4,
    students_per_teacher=10,
    icc_school=0.15,
    icc_teacher=0.10,
    effect=0.35,
)


def test_simulated_power_agrees_with_analytic() -> None:
    """Schools randomised, balanced: the REML t test with containment df (K − 2) is the
    exact test, so simulated power must match PowerUp!'s non-central t power within
    Monte Carlo error (3 SE, R = 400), estimates be unbiased and CIs cover."""
    result = simulate_power(SMALL, replications=400, seed=11)
    row = result.table.iloc[0]
    assert abs(row["power"] - row["analytic_power"]) < 3 * row["mc_se"]
    assert abs(row["bias"]) < 3 * row["empirical_sd"] / np.sqrt(400)
    assert abs(row["coverage"] - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 400)
    assert row["not_converged"] == 0


def test_teachers_randomised_within_schools_match_bcra3r2() -> None:
    design = SimulationDesign(
        n_schools=10, teachers_per_school=6, students_per_teacher=8, icc_school=0.2, icc_teacher=0.1,
        effect=0.3, assignment="teacher",
    )  # fmt: skip
    row = simulate_power(design, replications=300, seed=5).table.iloc[0]
    # Containment df for a teacher-level term are K(J − 1) − 1, PowerUp!'s K − 1: with
    # ω₃ = 0 the SEs coincide and only the df differ, which moves power by < .02 here.
    assert abs(row["power"] - row["analytic_power"]) < 3 * row["mc_se"] + 0.02


def test_results_do_not_depend_on_how_work_is_split() -> None:
    serial = simulate_power(SMALL, replications=24, seed=2, chunk_size=24)
    chunked = simulate_power(SMALL, replications=24, seed=2, chunk_size=5)
    parallel = simulate_power(SMALL, replications=24, seed=2, chunk_size=7, n_jobs=2)
    columns = ["estimate", "std_error", "p_value"]
    np.testing.assert_array_equal(serial.raw[columns], chunked.raw[columns])
    np.testing.assert_array_equal(serial.raw[columns], parallel.raw[columns])


def test_dask_cluster_gives_the_serial_result() -> None:
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = simulate_power(SMALL, replications=16, seed=4, chunk_size=5, client=client)
    serial = simulate_power(SMALL, replications=16, seed=4)
    np.testing.assert_array_equal(
        serial.raw[["estimate", "std_error"]], on_dask.raw[["estimate", "std_error"]]
    )


def test_moderator_power_grid_and_curve() -> None:
    import matplotlib

    matplotlib.use("Agg")
    base = SimulationDesign(
        n_schools=20, teachers_per_school=4, students_per_teacher=10, moderation=0.15, effect=0.2
    )
    grid = design_grid(base, n_schools=[10, 30])
    result = simulate_power(grid, replications=60, seed=9)
    table = result.table
    assert result.term == "treated:leadership"
    assert table["analytic_power"].isna().all()  # PowerUp! has no moderator design here
    assert table.loc[1, "power"] >= table.loc[0, "power"] - 3 * table["mc_se"].max()
    figure = power_curve(result, "n_schools")
    assert isinstance(figure, Figure) and len(figure.axes[0].lines) >= 1
    with pytest.raises(EvalkitInputError, match="unknown design parameter"):
        design_grid(base, schools=[1])


def test_flat_deviance_does_not_send_the_optimiser_to_infinity() -> None:
    """A replication where L-BFGS-B once stepped to θ ≈ 1.9e9 (the profiled deviance
    flattens as the school variance grows) and XᵀM⁻¹X lost definiteness."""
    from evalkit.multilevel import lmm
    from evalkit.power import simulate_study

    design = SimulationDesign(
        n_schools=10,
        teachers_per_school=6,
        students_per_teacher=15,
        icc_school=0.10,
        icc_teacher=0.08,
        effect=0.25,
    )
    seed = np.random.SeedSequence(1).spawn(3)[0].spawn(300)[11]
    data = simulate_study(design, np.random.default_rng(seed))
    fit = lmm("y ~ treated + (1 | school) + (1 | school:teacher)", data)
    assert fit.facts["converged"]


def test_binary_mdes_and_power_are_consistent() -> None:
    """At the MDES the power is the target (to the gap between the multiplier and the
    non-central t); three levels with one teacher per school and no teacher variance
    are the two-level design with the schools as clusters; the SE follows the
    formula by hand for a balanced two-level trial."""
    from evalkit.power.binary import mdes_binary, power_binary

    found = mdes_binary("cra2", base_rate=0.3, n=25, J=30, tau2=0.25)
    again = power_binary(
        "cra2", log_odds_ratio=found.log_odds_ratio, base_rate=0.3, n=25, J=30, tau2=0.25
    )
    assert again.power == pytest.approx(0.80, abs=0.005)
    assert found.cox_index == pytest.approx(found.log_odds_ratio / 1.65)
    three = mdes_binary("cra3", base_rate=0.3, n=25, J=1, K=30, tau2=0.0, tau3=0.25)
    assert three.log_odds_ratio == pytest.approx(found.log_odds_ratio, rel=1e-10)
    treated = found.treated_rate
    by_hand = np.sqrt(
        (0.25 + 1 / (25 * treated * (1 - treated))) / 15 + (0.25 + 1 / (25 * 0.3 * 0.7)) / 15
    )
    assert found.std_error == pytest.approx(by_hand, rel=1e-12)
    # more clusters detect smaller effects; a smaller cluster variance too
    assert (
        mdes_binary("cra2", base_rate=0.3, n=25, J=60, tau2=0.25).log_odds_ratio
        < found.log_odds_ratio
    )
    assert (
        mdes_binary("cra2", base_rate=0.3, n=25, J=30, tau2=0.1).log_odds_ratio
        < found.log_odds_ratio
    )


def test_binary_power_bad_input() -> None:
    from evalkit.power.binary import mdes_binary, power_binary

    with pytest.raises(EvalkitInputError, match="base_rate must lie in"):
        mdes_binary("cra2", base_rate=1.2, n=25, J=30, tau2=0.25)
    with pytest.raises(EvalkitInputError, match="needs K"):
        mdes_binary("cra3", base_rate=0.3, n=25, J=5, tau2=0.25)
    with pytest.raises(EvalkitInputError, match="at least 3"):
        mdes_binary("cra2", base_rate=0.3, n=25, J=2, tau2=0.25)
    with pytest.raises(EvalkitInputError, match="≥ 0"):
        power_binary("cra2", log_odds_ratio=0.5, base_rate=0.3, n=25, J=30, tau2=-0.1)


def test_binary_simulation_design() -> None:
    """A binary design simulates 0/1 outcomes and fits the logistic model (effects in
    Cox index units); an impossible base rate is refused."""
    from evalkit.power import SimulationDesign, simulate_power, simulate_study

    design = SimulationDesign(
        n_schools=10, teachers_per_school=3, students_per_teacher=10, outcome="binary",
        effect=0.3, base_rate=0.35,
    )  # fmt: skip
    data = simulate_study(design, np.random.default_rng(1))
    assert set(np.unique(data["y"])) <= {0.0, 1.0}
    result = simulate_power(design, replications=4, seed=3)
    row = result.table.iloc[0]
    assert np.isfinite(row["mean_estimate"]) and np.isnan(row["analytic_power"])
    with pytest.raises(EvalkitInputError, match="base_rate"):
        simulate_power(SimulationDesign(outcome="binary", base_rate=0.0), replications=2)
