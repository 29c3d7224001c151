"""glmm(): input checks, separation, refusals and invariances (the numbers themselves
are checked against glmer in test_glmm_reference.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.multilevel import glmm


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    """Three-level binary data shaped like an export: string IDs, a Yes/No flag kept
    as text, a count with an exposure."""
    rng = np.random.default_rng(7)
    rows = []
    for s in range(12):
        school_effect = rng.normal(0, 0.5)
        for t in range(4):
            coached = int(rng.random() < 0.5)
            teacher_effect = rng.normal(0, 0.4)
            for _ in range(12):
                prior = rng.normal()
                eta = -0.2 + 0.4 * coached + 0.7 * prior + school_effect + teacher_effect
                days = int(rng.integers(90, 181))
                rows.append(
                    {
                        "school": f"S{s}",
                        "teacher": f"S{s}-T{t}",
                        "coached": coached,
                        "prior": prior,
                        "proficient": int(rng.random() < 1 / (1 + np.exp(-eta))),
                        "proficient_text": "Yes" if eta > 0 else "No",
                        "days": days,
                        "absences": int(rng.poisson(0.03 * days)),
                    }
                )
    return pd.DataFrame(rows)


FORMULA = "proficient ~ coached + prior + (1 | school) + (1 | teacher)"


def test_three_level_fit_reports_its_checks(students: pd.DataFrame) -> None:
    fit = glmm(FORMULA, students)
    assert fit.facts["converged"] and fit.facts["hessian_positive_definite"]
    assert fit.facts["engine"] == "Laplace (PIRLS on the nested group tree)"
    assert fit.n_groups == {"teacher": 48, "school": 12}
    assert np.isinf(fit.df).all()
    tidy = fit.tidy()
    assert list(tidy.columns[:3]) == ["term", "estimate", "std_error"]
    odds = fit.odds_ratios()
    assert odds.loc["coached", "odds_ratio"] == pytest.approx(np.exp(fit.params["coached"]))
    assert (
        odds.loc["coached", "ci_low"]
        < odds.loc["coached", "odds_ratio"]
        < odds.loc["coached", "ci_high"]
    )
    # latent-scale ICCs (residual π²/3)
    tau = fit.variance_components.matrix("school").iloc[0, 0]
    total = tau + fit.variance_components.matrix("teacher").iloc[0, 0] + np.pi**2 / 3
    assert fit.facts["icc_school"] == pytest.approx(tau / total)


def test_row_order_does_not_matter(students: pd.DataFrame) -> None:
    fit = glmm(FORMULA, students)
    shuffled = students.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = glmm(FORMULA, shuffled)
    np.testing.assert_allclose(again.params, fit.params, rtol=1e-7)
    np.testing.assert_allclose(again.std_errors, fit.std_errors, rtol=1e-6)
    assert again.facts["deviance"] == pytest.approx(fit.facts["deviance"], rel=1e-12)
    pd.testing.assert_frame_equal(
        again.conditional_modes["teacher"], fit.conditional_modes["teacher"], rtol=1e-5
    )


def test_poisson_with_exposure_is_a_rate_model(students: pd.DataFrame) -> None:
    fit = glmm("absences ~ coached + (1 | school)", students, family="poisson", exposure="days")
    doubled = students.assign(days=2 * students["days"])
    shifted = glmm("absences ~ coached + (1 | school)", doubled, family="poisson", exposure="days")
    # doubling every exposure halves the rate: only the intercept moves, by −log 2
    assert shifted.params["Intercept"] == pytest.approx(
        fit.params["Intercept"] - np.log(2), abs=1e-6
    )
    assert shifted.params["coached"] == pytest.approx(fit.params["coached"], abs=1e-6)
    rates = fit.rate_ratios()
    assert rates.loc["coached", "rate_ratio"] == pytest.approx(np.exp(fit.params["coached"]))
    with pytest.raises(EvalkitInputError, match="odds ratios need the logit link"):
        fit.odds_ratios()


def test_bad_outcomes_name_their_rows(students: pd.DataFrame) -> None:
    bad = students.copy()
    bad.loc[[3, 8], "proficient"] = 2
    with pytest.raises(EvalkitInputError, match=r"must be 0 or 1.*rows? 3.*8"):
        glmm(FORMULA, bad)
    with pytest.raises(EvalkitInputError, match=r"holds text.*'Yes'.*map"):
        glmm("proficient_text ~ coached + (1 | school)", students)
    counts = students.astype({"absences": float})
    counts.loc[5, "absences"] = -1
    counts.loc[6, "absences"] = 2.5
    with pytest.raises(EvalkitInputError, match=r"whole numbers ≥ 0.*5.*6"):
        glmm("absences ~ coached + (1 | school)", counts, family="poisson")
    exposure = students.copy()
    exposure.loc[9, "days"] = 0
    with pytest.raises(EvalkitInputError, match=r"exposure 'days' must be positive.*9"):
        glmm("absences ~ coached + (1 | school)", exposure, family="poisson", exposure="days")


def test_trials_smaller_than_successes(students: pd.DataFrame) -> None:
    cells = students.groupby(["school", "teacher"], as_index=False).agg(
        passed=("proficient", "sum"), tested=("proficient", "size"), coached=("coached", "first")
    )
    fit = glmm("passed ~ coached + (1 | school)", cells, trials="tested")
    assert fit.facts["converged"]
    cells.loc[2, "tested"] = cells.loc[2, "passed"] - 1
    with pytest.raises(EvalkitInputError, match=r"whole number from 0 to 'tested'.*2"):
        glmm("passed ~ coached + (1 | school)", cells, trials="tested")
    cells.loc[2, "tested"] = 0
    with pytest.raises(EvalkitInputError, match=r"trials column 'tested' needs whole numbers ≥ 1"):
        glmm("passed ~ coached + (1 | school)", cells, trials="tested")


def test_grouped_binomial_equals_the_binary_fit(students: pd.DataFrame) -> None:
    """Successes out of trials per teacher give the binary fit's estimates when every
    predictor is constant within the cells (the likelihoods differ by a constant)."""
    binary = glmm("proficient ~ coached + (1 | school)", students)
    cells = students.groupby(["school", "teacher"], as_index=False).agg(
        passed=("proficient", "sum"), tested=("proficient", "size"), coached=("coached", "first")
    )
    grouped = glmm("passed ~ coached + (1 | school)", cells, trials="tested")
    np.testing.assert_allclose(grouped.params, binary.params, rtol=1e-6)
    np.testing.assert_allclose(grouped.std_errors, binary.std_errors, rtol=1e-5)
    np.testing.assert_allclose(grouped.theta, binary.theta, rtol=1e-6)


def test_missing_values_are_dropped_and_reported(students: pd.DataFrame) -> None:
    holes = students.copy()
    holes.loc[[0, 1, 2], "prior"] = np.nan
    fit = glmm(FORMULA, holes)
    assert fit.nobs == len(students) - 3
    assert fit.dropped.n == 3
    assert any("3 rows" in w or "dropped" in w for w in fit.warnings)
    with pytest.raises(EvalkitInputError, match="prior"):
        glmm(FORMULA, holes, missing="raise")


def test_separation_is_reported(students: pd.DataFrame) -> None:
    data = students.copy()
    data["honors"] = (np.arange(len(data)) % 10 == 0).astype(int)
    data.loc[data["honors"] == 1, "proficient"] = 1
    fit = glmm("proficient ~ coached + honors + (1 | school)", data)
    assert "honors" in fit.facts["separation"]
    assert any("separation" in w and "honors" in w for w in fit.warnings)
    clean = glmm("proficient ~ coached + (1 | school)", students)
    assert "separation" not in clean.facts


def test_refusals(students: pd.DataFrame) -> None:
    with pytest.raises(EvalkitInputError, match=r"nagq=5.*one grouping factor"):
        glmm(FORMULA, students, nagq=5)
    with pytest.raises(EvalkitInputError, match="link='log' is not available"):
        glmm(FORMULA, students, link="log")
    with pytest.raises(EvalkitInputError, match="family"):
        glmm(FORMULA, students, family="gamma")  # type: ignore[arg-type]
    crossed = students.assign(rater=np.arange(len(students)) % 5)
    with pytest.raises(EvalkitInputError, match="cross; glmm\\(\\) fits nested designs"):
        glmm("proficient ~ coached + (1 | teacher) + (1 | rater)", crossed)
    with pytest.raises(EvalkitInputError, match="nagq must be an integer"):
        glmm(FORMULA, students, nagq=0)


def test_agq_with_one_node_is_laplace(students: pd.DataFrame) -> None:
    """Adaptive quadrature with a single node is the Laplace approximation, so the
    two engines' deviances coincide at any (θ, β)."""
    fit = glmm("proficient ~ coached + (1 | school)", students)
    assert fit.engine is not None
    par_theta, beta = fit.theta, fit.params.to_numpy()
    laplace = fit.engine.deviance(par_theta, beta)
    assert fit.engine.quadrature(par_theta, beta, 1) == pytest.approx(laplace, rel=1e-12)
    # more nodes move the value (the Laplace approximation is not exact here)
    assert abs(fit.engine.quadrature(par_theta, beta, 15) - laplace) > 1e-6


def test_bundled_cbpp_example() -> None:
    herds = evalkit.datasets.load("cbpp")
    fit = glmm("incidence ~ period + (1 | herd)", herds, trials="size")
    # lme4 1.1-31: logLik −92.02628 (Bates et al. 2015, cbpp example)
    assert fit.facts["logLik"] == pytest.approx(-92.02628, abs=1e-5)


def test_a_teacher_who_moved_is_named(students: pd.DataFrame) -> None:
    """A teacher ID under two schools makes (1 | school) + (1 | teacher) crossed: a
    clear refusal, and with the nesting written out the inconsistent ID is named."""
    moved = students.copy()
    moved.loc[moved.index[:6], "teacher"] = "S1-T0"  # six of S0-T0's students under S1's ID
    with pytest.raises(EvalkitInputError, match="cross; glmm\\(\\) fits nested designs"):
        glmm(FORMULA, moved)
    with pytest.raises(EvalkitInputError, match="S1-T0"):
        glmm("proficient ~ coached + (1 | school/teacher)", moved)
