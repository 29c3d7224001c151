"""evalkit.bayes: agreement with REML and with the plain model, meta-analysis, and
calibration of posterior intervals (slow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymc", reason="the bayes extra (pymc) is not installed")
pytest.importorskip("nutpie", reason="the bayes extra (nutpie) is not installed")

import evalkit
from evalkit import EvalkitInputError, meta
from evalkit.bayes import (
    BayesResults,
    hdi,
    lmm,
    meta_analysis,
    prob_greater,
    random_effect_draws,
)
from evalkit.data import simulate_district
from evalkit.multilevel import lmm as reml
from evalkit.tables import regression_table

FORMULA = (
    "achievement ~ prior + coached * leadership + (1 | school_id) + (1 | school_id:teacher_id)"
)


@pytest.fixture(scope="module")
def district() -> pd.DataFrame:
    return simulate_district(
        n_schools=30, teachers_per_school=6, students_per_teacher=10, seed=5
    ).students


@pytest.fixture(scope="module")
def collapsed(district: pd.DataFrame) -> BayesResults:
    return lmm(FORMULA, district, seed=1)


def test_hdi_and_prob_greater() -> None:
    draws = np.random.default_rng(0).normal(0.2, 0.1, 200_000)
    low, high = hdi(draws, 0.95)
    assert low == pytest.approx(0.2 - 1.96 * 0.1, abs=0.003) and high == pytest.approx(
        0.2 + 1.96 * 0.1, abs=0.003
    )
    fake = BayesResults(
        params=pd.Series([0.2], index=["coached"]), cov=pd.DataFrame([[0.01]], index=["coached"], columns=["coached"]),
        df=pd.Series([np.inf], index=["coached"]), nobs=1, model="m", backend="b",
        draws=pd.DataFrame({"coached": draws}),
    )  # fmt: skip
    assert prob_greater(fake, "coached", 0.10) == pytest.approx(0.8413, abs=0.003)
    with pytest.raises(EvalkitInputError, match="'grit' is not a parameter"):
        prob_greater(fake, "grit")


def test_collapsed_posterior_agrees_with_reml(
    district: pd.DataFrame, collapsed: BayesResults
) -> None:
    """With 1,800 students and weak priors the posterior mean of every coefficient is
    within 0.15 posterior SD of the REML estimate (plus 4 Monte Carlo SEs), and the
    posterior SDs are within 10% of the REML SEs."""
    fit = reml(FORMULA, district)
    tidy = collapsed.tidy().set_index("term")
    mcse = tidy["std_error"] / np.sqrt(tidy["ess_bulk"])
    gap = np.abs(tidy["estimate"] - fit.params)
    assert np.all(gap < 0.15 * tidy["std_error"] + 4 * mcse), gap
    np.testing.assert_allclose(tidy["std_error"], fit.std_errors, rtol=0.10)
    assert collapsed.facts["collapsed"] and not collapsed.warnings
    assert collapsed.draws["sigma"].mean() == pytest.approx(np.sqrt(fit.sigma2), rel=0.02)
    table = regression_table(
        {"REML": fit, "Bayes": collapsed}, terms=["coached", "coached:leadership"]
    )
    assert table.body.shape[1] == 2
    assert 0.99 < prob_greater(collapsed, "coached", 0.10) <= 1.0


@pytest.mark.slow
def test_collapsed_and_plain_models_give_the_same_posterior(
    district: pd.DataFrame, collapsed: BayesResults
) -> None:
    plain = lmm(FORMULA, district, seed=2, collapsed=False, draws=2000)
    a, b = collapsed.tidy().set_index("term"), plain.tidy().set_index("term")
    mcse = np.sqrt(a["std_error"] ** 2 / a["ess_bulk"] + b["std_error"] ** 2 / b["ess_bulk"])
    assert np.all(np.abs(a["estimate"] - b["estimate"]) < 4 * mcse + 1e-12)
    np.testing.assert_allclose(a["std_error"], b["std_error"], rtol=0.10)


@pytest.mark.slow
def test_integrated_and_sampled_coefficients_give_the_same_posterior(
    district: pd.DataFrame,
) -> None:
    """β integrated out (Normal prior) and β sampled (Student-t with ν = 10⁶, the same
    prior to within 10⁻⁶) give the same posterior within Monte Carlo error."""
    from evalkit.bayes import Prior

    a = lmm(FORMULA, district, seed=4, priors={"beta": Prior.normal(0.0, 3.0)}).tidy()
    b = lmm(FORMULA, district, seed=5, priors={"beta": Prior.student_t(1e6, 0.0, 3.0)}).tidy()
    a, b = a.set_index("term"), b.set_index("term")
    mcse = np.sqrt(a["std_error"] ** 2 / a["ess_bulk"] + b["std_error"] ** 2 / b["ess_bulk"])
    assert np.all(np.abs(a["estimate"] - b["estimate"]) < 4 * mcse)
    np.testing.assert_allclose(a["std_error"], b["std_error"], rtol=0.10)


SLOPES = "achievement ~ prior + coached + (1 + prior | school_id) + (1 | school_id:teacher_id)"


def test_collapsed_random_slopes_report_sds_correlations_and_effects(
    district: pd.DataFrame,
) -> None:
    fit = lmm(SLOPES, district, seed=3, draws=300, tune=300, chains=2)
    assert fit.facts["collapsed"]
    for name in (
        "sd_school_id[Intercept]",
        "sd_school_id[prior]",
        "cor_school_id[Intercept, prior]",
    ):
        assert name in fit.draws.columns and name in fit.diagnostics.index
    assert fit.draws["cor_school_id[Intercept, prior]"].between(-1, 1).all()
    effects = random_effect_draws(fit, n_draws=20)
    assert set(effects) == {"school_id[Intercept]", "school_id[prior]", "school_id:teacher_id"}
    assert effects["school_id[prior]"].shape == (20, 30)


@pytest.mark.slow
def test_collapsed_and_plain_random_slopes_agree_with_each_other_and_reml(
    district: pd.DataFrame,
) -> None:
    """Random slopes integrated out (compiled block reduction) and sampled (non-centred
    LKJ model): the same posterior within Monte Carlo error; both near REML."""
    collapsed = lmm(SLOPES, district, seed=6)
    plain = lmm(SLOPES, district, seed=7, collapsed=False, draws=3000, target_accept=0.95)
    a, b = collapsed.tidy().set_index("term"), plain.tidy().set_index("term")
    mcse = np.sqrt(a["std_error"] ** 2 / a["ess_bulk"] + b["std_error"] ** 2 / b["ess_bulk"])
    assert np.all(np.abs(a["estimate"] - b["estimate"]) < 4 * mcse)
    np.testing.assert_allclose(a["std_error"], b["std_error"], rtol=0.10)
    for name in ("sigma", "sd_school_id:teacher_id", "sd_school_id[Intercept]"):
        x, y = collapsed.draws[name], plain.draws[name]
        se = np.sqrt(
            x.var() / collapsed.diagnostics.loc[name, "ess_bulk"]
            + y.var() / plain.diagnostics.loc[name, "ess_bulk"]
        )
        assert abs(x.mean() - y.mean()) < 4 * se, name
    fit = reml(SLOPES, district)
    gap = np.abs(a["estimate"] - fit.params)
    assert np.all(gap < 0.15 * a["std_error"] + 4 * a["std_error"] / np.sqrt(a["ess_bulk"]))


def test_meta_analysis_agrees_with_reml_random_effects() -> None:
    data = evalkit.datasets.load("raudenbush1985")
    posterior = meta_analysis(data, effect="yi", variance="vi", seed=3)
    freq = meta.random_effects(data, effect="yi", variance="vi")
    tidy = posterior.tidy().set_index("term").loc["Intercept"]
    assert abs(tidy["estimate"] - float(freq.params["Intercept"])) < 0.25 * tidy["std_error"]
    assert posterior.facts["predictive_low"] < tidy["estimate"] < posterior.facts["predictive_high"]
    assert posterior.draws["sd_study"].mean() > 0
    with pytest.raises(EvalkitInputError, match="positive sampling variances"):
        meta_analysis(data.assign(vi=-1.0), effect="yi", variance="vi")


@pytest.mark.slow
def test_posterior_intervals_are_calibrated() -> None:
    """Simulation-based calibration of the random-effects meta-analysis: with μ and τ
    drawn from the priors, central 90% posterior intervals cover the truth at 0.90 ±
    3 Monte Carlo SE over 100 replications (one compiled model, data swapped in)."""
    rng = np.random.default_rng(2026)
    reps, k = 100, 8
    variances = rng.uniform(0.02, 0.10, k)
    covered_mu, covered_tau = [], []
    for rep in range(reps):
        mu, tau = rng.normal(0, 1.0), abs(rng.normal(0, 0.5))
        y = rng.normal(mu + tau * rng.standard_normal(k), np.sqrt(variances))
        data = pd.DataFrame({"yi": y, "vi": variances})
        fit = meta_analysis(
            data, effect="yi", variance="vi", seed=rep, draws=500, tune=500, chains=2
        )
        mu_draws = fit.draws["Intercept"].to_numpy()
        tau_draws = fit.draws["sd_study"].to_numpy()
        covered_mu.append(np.quantile(mu_draws, 0.05) <= mu <= np.quantile(mu_draws, 0.95))
        covered_tau.append(np.quantile(tau_draws, 0.05) <= tau <= np.quantile(tau_draws, 0.95))
    bound = 3 * np.sqrt(0.9 * 0.1 / reps)
    assert abs(np.mean(covered_mu) - 0.9) < bound
    assert abs(np.mean(covered_tau) - 0.9) < bound


def test_conditional_random_effects_and_checks(
    district: pd.DataFrame, collapsed: BayesResults
) -> None:
    from evalkit.bayes import posterior_predictive, random_effect_draws
    from evalkit.multilevel import ranef

    draws = random_effect_draws(collapsed, n_draws=200)
    blups = ranef(reml(FORMULA, district))["school_id"]["Intercept"].to_numpy()
    # Conditional on θ̂ (REML) or averaged over the posterior: the same school effects.
    assert np.corrcoef(draws["school_id"].mean(axis=0), blups)[0, 1] > 0.99
    assert draws["school_id:teacher_id"].shape == (200, 180)
    check = posterior_predictive(collapsed, n_draws=100)
    assert check["ppp"].between(0.05, 0.95).all()  # the model generated these data


@pytest.mark.slow
def test_bernoulli_family_recovers_a_logistic_effect() -> None:
    import statsmodels.formula.api as smf

    from evalkit.bayes import prior_predictive

    students = simulate_district(
        n_schools=30, teachers_per_school=6, students_per_teacher=10, seed=8
    ).students
    students = students.assign(proficient=(students["achievement"] > 0.3).astype(float))
    fit = lmm(
        "proficient ~ prior + coached + (1 | school_id)", students, family="bernoulli", seed=4
    )
    glm = smf.logit("proficient ~ prior + coached", students).fit(disp=0)
    tidy = fit.tidy().set_index("term")
    # Random intercepts widen the logit scale slightly; the fixed-effects-only logit is
    # attenuated, so the mixed model's coefficients are at least as large.
    assert tidy.loc["coached", "ci_low"] > 0
    assert tidy.loc["prior", "estimate"] >= glm.params["prior"] - 2 * tidy.loc["prior", "std_error"]
    prior = prior_predictive("achievement ~ prior + coached + (1 | school_id)", students, draws=200)
    assert prior.loc["sd", "prior_95%"] > prior.loc["sd", "observed"]


def test_bad_input_is_named(district: pd.DataFrame) -> None:
    with pytest.raises(EvalkitInputError, match="unknown prior\\(s\\) slope"):
        lmm(FORMULA, district, priors={"slope": None})
    with pytest.raises(
        EvalkitInputError, match="write the uncorrelated terms for school_id as one term"
    ):
        lmm("achievement ~ coached + (coached || school_id)", district)
    with pytest.raises(EvalkitInputError, match="'achievement' has non-finite values at row 3"):
        lmm(
            FORMULA,
            district.assign(achievement=district["achievement"].where(district.index != 3, np.inf)),
        )
    data = evalkit.datasets.load("raudenbush1985")
    with pytest.raises(EvalkitInputError, match="prior_sd and prior_tau must be positive"):
        meta_analysis(data, effect="yi", variance="vi", prior_tau=0.0)
    with pytest.raises(EvalkitInputError, match="non-finite effect sizes"):
        meta_analysis(data.assign(yi=np.nan), effect="yi", variance="vi")
