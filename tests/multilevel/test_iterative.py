"""The iterative (conjugate-gradient, stochastic-trace) engine for large crossed
random-intercept designs: against lme4 (tests/reference/multilevel/crossed_reference.R)
and against the exact blocked factorisation, with tolerances set by the Monte Carlo
error the fit reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit.multilevel.iterative as iterative
from evalkit import EvalkitInputError
from evalkit.data import simulate_student_panel
from evalkit.multilevel import lmm, ranef
from evalkit.multilevel.engine import Optimum, profile
from evalkit.multilevel.iterative import IterativeReducer, build_iterative, find_root
from evalkit.multilevel.model import build_results
from evalkit.multilevel.spec import specify

REFERENCE = Path(__file__).parents[1] / "reference" / "multilevel"
REF: dict[str, Any] = json.loads((REFERENCE / "crossed.json").read_text())
PANEL = "score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school)"
INSTEVAL = "y ~ service * dept + (1 | s) + (1 | d)"
SCHOOLS = "score ~ year + (1 | student) + (1 | teacher) + (1 | school)"
MC_Z = 5.0
"""Differences from the exact optimum are allowed up to this many Monte Carlo SEs (the
fit's own estimate of its error; P(|Z| > 5) ≈ 6e-7 for each compared number)."""


def insteval() -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "insteval.csv.gz", dtype={"s": str, "d": str, "dept": str})
    levels = REF["insteval"]["dept_levels"]
    return data.assign(dept=pd.Categorical(data["dept"], categories=levels))


def school_system(n_students: int, seed: int = 1) -> pd.DataFrame:
    """The benchmark's design, smaller, with rows shuffled (text IDs)."""
    return simulate_student_panel(n_students, seed=seed).sample(frac=1.0, random_state=seed)


@pytest.fixture(scope="module")
def schools() -> pd.DataFrame:
    return school_system(2000)


def _check_theta(fit: Any, theta: np.ndarray, atol: float = 1e-9) -> None:
    mc = fit.facts["monte_carlo"]
    np.testing.assert_array_less(np.abs(fit.theta - theta), MC_Z * mc["theta_se"] + atol)


@pytest.mark.parametrize(("key", "data", "formula", "method"), [
    ("insteval", "insteval", INSTEVAL, "REML"),
    ("panel", "panel", PANEL, "REML"),
    ("panel_ml", "panel", PANEL, "ML"),
])  # fmt: skip
def test_iterative_matches_lme4_within_monte_carlo_error(
    key: str, data: str, formula: str, method: str
) -> None:
    frame = insteval() if data == "insteval" else pd.read_csv(REFERENCE / "student_panel.csv")
    ref = REF[key]
    fit = lmm(formula, frame, method=method, df_method="none", solver="iterative")
    mc = fit.facts["monte_carlo"]
    assert fit.facts["engine"].startswith("crossed (conjugate gradients")
    assert fit.facts["converged"]
    assert any("approximate fit" in w for w in fit.warnings)
    _check_theta(fit, np.array(ref["theta"]))
    criterion = fit.facts["reml_criterion" if method == "REML" else "deviance"]
    assert abs(criterion - ref["criterion"]) < MC_Z * mc["deviance_se"]
    for name, se in mc["variance_se"].items():
        assert 0 < se < 1e-2 * fit.variance_components.matrix(name).iloc[0, 0]
    # at lme4's θ the solved quantities (β, SEs, σ²) are exact: they equal lme4's
    theta = np.array(ref["theta"])
    spec = fit.specification
    optimum = Optimum(theta, 0.0, 0, 0.0, True, ())
    at = build_results(spec, optimum, method=method, df_method="none")
    se = np.atleast_1d(ref["se"])
    np.testing.assert_allclose(at.params, ref["beta"], rtol=1e-7, atol=1e-7 * float(se.min()))
    np.testing.assert_allclose(at.std_errors, se, rtol=1e-7)
    np.testing.assert_allclose(at.sigma2, ref["sigma2"], rtol=1e-7)


def test_iterative_solves_equal_the_factorisation(schools: pd.DataFrame) -> None:
    """At the same θ every solved number equals the dense engine's; the log-determinant
    and gradient differ by no more than their Monte Carlo errors."""
    direct = specify(SCHOOLS, schools, solver="direct")
    approx = specify(SCHOOLS, schools, solver="iterative")
    theta = np.array([1.6, 0.6, 0.5])
    factors = direct.layout.factors(theta)
    for reml in (True, False):
        exact = profile(direct.stats, factors, reml=reml)
        other = profile(approx.stats, factors, reml=reml)
        np.testing.assert_allclose(other.beta, exact.beta, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(other.sigma2, exact.sigma2, rtol=1e-9)
        np.testing.assert_allclose(other.xtmx_inv, exact.xtmx_inv, rtol=1e-8)
    reducer = IterativeReducer(approx.stats)  # type: ignore[arg-type]
    est = reducer.estimate(theta)
    from evalkit.multilevel.engine import reducer_for

    dense = reducer_for(direct.stats)
    for reml in (True, False):
        exact_parts = dense.derivatives(theta, reml=reml)  # type: ignore[union-attr]
        parts = est.derivatives(reml=reml)
        logdet_se = float(np.std(est.logdet_terms, ddof=1) / np.sqrt(approx.stats.probes))
        assert abs(parts.logdet - exact_parts.logdet) < MC_Z * logdet_se
        grad_se = np.std(est.gradient_terms, axis=0, ddof=1) / np.sqrt(approx.stats.probes)
        np.testing.assert_array_less(np.abs(parts.dlogdet - exact_parts.dlogdet), MC_Z * grad_se)
        np.testing.assert_allclose(parts.drss, exact_parts.drss, rtol=1e-8)
        np.testing.assert_allclose(parts.rss, exact_parts.rss, rtol=1e-10)


def test_iterative_fit_agrees_with_the_direct_fit(schools: pd.DataFrame) -> None:
    exact = lmm(SCHOOLS, schools)
    approx = lmm(SCHOOLS, schools, solver="iterative")
    assert exact.facts["engine"] == "crossed (blocked Cholesky)"
    assert "monte_carlo" not in exact.facts
    _check_theta(approx, exact.theta)
    mc = approx.facts["monte_carlo"]
    assert abs(approx.facts["reml_criterion"] - exact.facts["reml_criterion"]) < (
        MC_Z * mc["deviance_se"]
    )
    # β̂ and its covariance are exact functions of θ (and σ², profiled): a relative
    # change of θ moves each variance component by twice as much, Var(β̂) (a positive
    # combination of them) by no more, and an SE by half that
    moved = 2.0 * MC_Z * float(np.max(mc["theta_se"] / approx.theta))
    np.testing.assert_allclose(approx.std_errors, exact.std_errors, rtol=moved)
    np.testing.assert_array_less(np.abs(approx.params - exact.params), moved * exact.std_errors)
    # Satterthwaite df, 2·Var(β̂)²/Var(Var(β̂)), from differences of the estimated
    # gradient: a squared variance over a variance of variances, twice the bound above
    np.testing.assert_allclose(approx.df, exact.df, rtol=2.0 * moved)
    # conditional modes are solved; their SDs are Monte Carlo estimates
    modes_exact, modes_approx = ranef(exact), ranef(approx)
    for level, table in modes_exact.items():
        other = modes_approx[level].loc[table.index]
        np.testing.assert_allclose(
            other["Intercept"], table["Intercept"], atol=1e-3 * table["Intercept"].std()
        )
        np.testing.assert_allclose(other["Intercept_sd"], table["Intercept_sd"], rtol=0.05)
    assert approx.refit(method="ML").facts["engine"] == approx.facts["engine"]


def test_monte_carlo_error_is_calibrated(schools: pd.DataFrame) -> None:
    """Over probe seeds θ̂ scatters as the reported Monte Carlo SE says: the SD over 12
    seeds against the mean reported SE (the ratio has a sampling SD of about 0.21)."""
    spec = specify(SCHOOLS, schools, solver="iterative")
    stats = spec.stats
    thetas, ses = [], []
    for seed in range(12):
        found = find_root(IterativeReducer(dataclasses.replace(stats, seed=seed)), reml=True)  # type: ignore[type-var]
        assert found.converged
        thetas.append(found.theta)
        ses.append(np.sqrt(np.diag(found.theta_mc_cov)))
    ratio = np.std(thetas, axis=0, ddof=1) / np.mean(ses, axis=0)
    assert np.all((ratio > 0.4) & (ratio < 2.0)), ratio


def test_auto_picks_the_iterative_engine_when_the_factor_is_too_large(
    schools: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evalkit.multilevel.crossed as crossed

    monkeypatch.setattr(crossed, "DENSE_SIDE_LIMIT", 100)
    fit = lmm(SCHOOLS, schools, df_method="none")
    assert fit.facts["engine"].startswith("crossed (conjugate gradients")
    with pytest.raises(EvalkitInputError, match="leave a dense"):
        lmm(SCHOOLS, schools, solver="direct")
    with pytest.raises(EvalkitInputError, match="random slopes"):
        lmm("score ~ year + (1 | student) + (1 + year | teacher)", schools)


def test_iterative_bad_input(schools: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EvalkitInputError, match="random slopes on teacher"):
        lmm("score ~ year + (1 | student) + (1 + year | teacher)", schools, solver="iterative")
    with pytest.raises(EvalkitInputError, match="kenward-roger"):
        lmm(SCHOOLS, schools, solver="iterative", df_method="kenward-roger")
    with pytest.raises(EvalkitInputError, match="solver"):
        lmm(SCHOOLS, schools, solver="sparse")  # type: ignore[call-overload]
    monkeypatch.setattr(iterative, "available_memory", lambda: 2**20)
    with pytest.raises(EvalkitInputError, match=r"student \(2,000 groups\).*GiB available"):
        lmm(SCHOOLS, schools, solver="iterative")


def test_iterative_flags_a_zero_variance(schools: pd.DataFrame) -> None:
    """No school variance at all: θ for schools is held at its bound and the fit is
    flagged singular, as the direct fit is."""
    flat = schools.assign(
        score=schools["score"] - schools.groupby("school")["score"].transform("mean")
    )
    exact = lmm(SCHOOLS, flat, df_method="none")
    approx = lmm(SCHOOLS, flat, df_method="none", solver="iterative")
    assert exact.facts["singular"] and approx.facts["singular"]
    assert approx.theta[2] < 1e-8
    assert approx.facts["converged"]
    # the exact engine stops at 3e-8 on the way to the bound; the iterative one at 0
    _check_theta(approx, exact.theta, atol=1e-7)


def test_build_iterative_checks_the_update_pattern() -> None:
    """``pairs @ w`` is ``Z_rᵀZ₀ diag(w) Z₀ᵀZ_r`` at the stored pattern."""
    rng = np.random.default_rng(4)
    codes = (rng.integers(0, 40, 300), rng.integers(0, 9, 300), rng.integers(0, 5, 300))
    codes = tuple(np.unique(c, return_inverse=True)[1] for c in codes)
    z = tuple(np.ones((300, 1)) for _ in codes)
    stats = build_iterative(z, codes, np.ones((300, 1)), rng.normal(size=300))
    w = rng.uniform(size=stats.n_groups[0])
    _indptr, rows, cols = stats.pattern
    dense = np.zeros((stats.q_rest, stats.q_rest))
    dense[rows, cols] = stats.base - stats.pairs @ w
    b = stats.first_rest.toarray()
    expected = stats.rest_rest.toarray() - b.T @ np.diag(w) @ b
    np.testing.assert_allclose(dense, expected, atol=1e-12)


def test_lrt_and_profile_intervals_on_iterative_fits(schools: pd.DataFrame) -> None:
    from evalkit.multilevel import lrt, profile_intervals

    larger = lmm(SCHOOLS, schools, method="ML", df_method="none", solver="iterative")
    smaller = lmm(
        "score ~ 1 + (1 | student) + (1 | teacher) + (1 | school)",
        schools, method="ML", df_method="none", solver="iterative",
    )  # fmt: skip
    exact = lrt(
        lmm("score ~ 1 + (1 | student) + (1 | teacher) + (1 | school)", schools, method="ML"),
        lmm(SCHOOLS, schools, method="ML"),
    )
    test = lrt(smaller, larger)
    assert "Monte Carlo" in test.note and "Monte Carlo" not in exact.note
    se = np.hypot(
        smaller.facts["monte_carlo"]["deviance_se"], larger.facts["monte_carlo"]["deviance_se"]
    )
    assert abs(test.chisq - exact.chisq) < MC_Z * se
    with pytest.raises(EvalkitInputError, match="profile intervals need"):
        profile_intervals(larger)


def test_regression_table_notes_carry_the_approximation(schools: pd.DataFrame) -> None:
    from evalkit.tables import regression_table

    fit = lmm(SCHOOLS, schools, df_method="none", solver="iterative")
    table = regression_table({"panel": fit})
    notes = " ".join(table.notes)
    assert "approximate fit (iterative engine, 64 random probes)" in notes
    assert "exact at these variances." in notes and ".." not in notes


def test_more_probes_shrink_the_monte_carlo_error(schools: pd.DataFrame) -> None:
    """Four times the probes: Monte Carlo SEs about halve (1/√n_probes); the SE
    estimates themselves vary by roughly 1/√(2·64) ≈ 9%, so 0.5 ± 0.2 is wide enough."""
    base = lmm(SCHOOLS, schools, df_method="none", solver="iterative")
    more = lmm(SCHOOLS, schools, df_method="none", solver="iterative", n_probes=256)
    ratio = more.facts["monte_carlo"]["theta_se"] / base.facts["monte_carlo"]["theta_se"]
    assert np.all((ratio > 0.3) & (ratio < 0.7)), ratio
    assert more.facts["monte_carlo"]["probes"] == 256
    assert more.refit(method="ML").facts["monte_carlo"]["probes"] == 256
    # two estimates with independent probes: within MC_Z SEs of their difference
    both = np.hypot(base.facts["monte_carlo"]["theta_se"], more.facts["monte_carlo"]["theta_se"])
    np.testing.assert_array_less(np.abs(more.theta - base.theta), MC_Z * both)
    for bad in (8, 64.0, True, "64"):
        with pytest.raises(EvalkitInputError, match="n_probes must be a whole number"):
            lmm(SCHOOLS, schools, solver="iterative", n_probes=bad)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="n_probes"):
        lmm("score ~ year + (1 | school)", schools, n_probes=2)
