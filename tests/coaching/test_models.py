"""Coaching model sequences, moderation, quasi-experimental designs and districts."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from evalkit import EvalkitInputError, EvalkitWarning
from evalkit.coaching import (
    achievement_models,
    instruction_models,
    johnson_neyman,
    simple_slopes,
)
from evalkit.coaching.districts import four_level, outcome_domain_table, synthesize_districts
from evalkit.coaching.qed import event_study, treatment_on_treated, twfe
from evalkit.data import simulate_district
from evalkit.data.rollout import simulate_rollout
from evalkit.multilevel import GLMMResults

CONDITIONS = ["leadership", "collaboration", "readiness"]


def _district(seed: int, **kwargs: object):  # type: ignore[no-untyped-def]
    options = {
        "n_schools": 30,
        "teachers_per_school": 6,
        "students_per_teacher": 10,
        "seed": seed,
    } | kwargs
    return simulate_district(**options)  # type: ignore[arg-type]


def test_sequences_fit_and_tabulate() -> None:
    d = _district(1)
    ach = achievement_models(d.students)
    assert list(ach.models) == ["Null", "Treatment", "Covariates", "Moderation"]
    table = ach.table()
    assert "Effect size [95% CI]" in table.body.index
    assert "PRV(school_id)" in table.body.index and "ICC(school_id)" in table.body.index
    # δ_T is the coefficient over the null model's total SD.
    null = ach.models["Null"]
    assert null.variance_components is not None
    total = null.sigma2 + sum(null.variance_components.intercept_variances().values())
    row = ach.effects.loc["Treatment"]
    assert row["effect_size"] == pytest.approx(row["estimate"] / np.sqrt(total), rel=1e-12)
    ins = instruction_models(d.observations, d.teachers, d.schools)
    assert any("Rater fixed effects" in n for n in ins.table().notes)
    components = ins.models["Null"].variance_components
    assert components is not None
    teacher_sd = np.sqrt(sum(components.intercept_variances().values()))
    assert ins.effects.loc["Treatment", "sd"] == pytest.approx(teacher_sd, rel=1e-12)


def test_missing_covariates_are_counted_in_the_notes() -> None:
    d = _district(2)
    students = d.students.copy()
    students.loc[students.index[:7], "prior"] = np.nan
    ach = achievement_models(students)
    assert ach.dropped.counts() == {"missing prior": 7}
    assert any("7 rows dropped: 7 missing prior" in n for n in ach.table().notes)
    assert all(m.nobs == len(students) - 7 for m in ach.models.values())


def test_instruction_bad_input() -> None:
    d = _district(3)
    obs = d.observations.copy()
    obs.loc[[2, 5], "score"] = 9.0
    with pytest.raises(EvalkitInputError, match=r"outside the rubric's 1–7 range at rows 2, 5"):
        instruction_models(obs, d.teachers, d.schools)
    obs = d.observations.copy()
    obs.loc[0, "teacher_id"] = 99_999
    with pytest.raises(EvalkitInputError, match="absent from the teacher table: 99999"):
        instruction_models(obs, d.teachers, d.schools)


def test_simple_slopes_and_johnson_neyman_agree() -> None:
    d = _district(4, n_schools=60)
    fit = achievement_models(d.students).models["Moderation"]
    slopes = simple_slopes(fit, "coached", "leadership", at=[0.0])
    assert slopes["slope"].iloc[0] == pytest.approx(fit.params["coached"], rel=1e-12)
    assert slopes["std_error"].iloc[0] == pytest.approx(fit.std_errors["coached"], rel=1e-12)
    region = johnson_neyman(fit, "coached", "leadership")
    # At each Johnson–Neyman bound the slope's CI touches zero.
    for bound in region.bounds:
        at = simple_slopes(fit, "coached", "leadership", at=[bound]).iloc[0]
        assert min(abs(at["ci_low"]), abs(at["ci_high"])) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.slow
def test_models_recover_the_simulated_truth() -> None:
    """200 seeded districts: CIs of the coaching effect and its three moderators cover
    at 93–97% (in total over the 4 coefficients × 2 outcomes) and bias is within 2 MC SE."""
    reps = 200
    truth = simulate_district(seed=0).truth
    ach_terms = ["coached", *[f"coached:{c}" for c in CONDITIONS]]
    true_ach = [truth.effect_achievement, *[truth.moderation_achievement[c] for c in CONDITIONS]]
    true_ins = [
        truth.instruction_sd * truth.effect_instruction,
        *[truth.instruction_sd * truth.moderation_instruction[c] for c in CONDITIONS],
    ]
    estimates = {"ach": [], "ins": []}
    covered = {"ach": [], "ins": []}
    for seed in range(reps):
        d = _district(1000 + seed)
        for key, sequence, target in (
            ("ach", achievement_models(d.students, df_method="containment"), true_ach),
            (
                "ins",
                instruction_models(d.observations, d.teachers, d.schools, df_method="containment"),
                true_ins,
            ),
        ):
            fit = sequence.models["Moderation"]
            tidy = fit.tidy().set_index("term").loc[ach_terms]
            estimates[key].append(tidy["estimate"].to_numpy())
            covered[key].append(
                ((tidy["ci_low"] <= target) & (target <= tidy["ci_high"])).to_numpy()
            )
    for key, target in (("ach", true_ach), ("ins", true_ins)):
        est = np.array(estimates[key])
        mc_se = est.std(axis=0, ddof=1) / np.sqrt(reps)
        assert np.all(np.abs(est.mean(axis=0) - target) < 2 * mc_se + 1e-12), (
            key,
            est.mean(axis=0),
            target,
            mc_se,
        )
        coverage = np.array(covered[key]).mean()
        assert 0.93 <= coverage <= 0.97, (key, coverage)


def test_twfe_matches_ols_with_dummies() -> None:
    panel = simulate_rollout(
        n_schools=20, teachers_per_school=3, years=6, first_year=2018, cohorts=(2020, 2021), seed=5
    )
    ours = twfe(
        panel,
        outcome="score",
        treated="coached",
        unit="teacher_id",
        time="year",
        cluster="school_id",
    )
    ols = smf.ols("score ~ coached + C(teacher_id) + C(year)", panel).fit(
        cov_type="cluster", cov_kwds={"groups": panel["school_id"]}
    )
    assert ours.params["coached"] == pytest.approx(ols.params["coached"], rel=1e-10)
    # Same small-sample scaling on both sides: G/(G − 1)·(N − 1)/(N − K), K counting
    # the fixed effects (statsmodels' dummies, linearmodels' absorbed effects).
    assert ours.std_errors["coached"] == pytest.approx(ols.bse["coached"], rel=1e-10)


def test_event_study_recovers_dynamic_effects() -> None:
    panel = simulate_rollout(n_schools=120, teachers_per_school=6, seed=8, cohort_shift=0.15)
    es = event_study(
        panel,
        outcome="score",
        unit="teacher_id",
        time="year",
        cohort="first_coached",
        cluster="school_id",
    )
    treated = panel[panel["coached"] == 1]
    cohort_share = treated.groupby(["event_time", "first_coached"])["teacher_id"].nunique()
    truth = treated.groupby(["event_time", "first_coached"])["true_effect"].mean()
    expected = (truth * cohort_share).groupby(level=0).sum() / cohort_share.groupby(level=0).sum()
    post = es.estimates.loc[es.estimates.index >= 0]
    z = (post["estimate"] - expected.loc[post.index]) / post["std_error"]
    assert np.all(np.abs(z) < 3.5)
    assert es.pretrend_p > 0.01  # no pre-trends in the simulation
    leads = es.estimates.loc[es.estimates.index <= -2]
    assert np.all(np.abs(leads["estimate"] / leads["std_error"]) < 3.5)


def test_treatment_on_treated_is_the_wald_ratio_and_flags_weak_instruments() -> None:
    d = _district(6, takeup=0.6, n_schools=40)
    st = d.students
    result = treatment_on_treated(
        st, outcome="achievement", received="received", assigned="coached", cluster="school_id"
    )
    ratio = (
        np.cov(st["achievement"], st["coached"])[0, 1] / np.cov(st["received"], st["coached"])[0, 1]
    )
    assert result.params["received"] == pytest.approx(ratio, rel=1e-10)
    assert result.facts["first_stage_F"] > 10 and not result.warnings
    noise = st.assign(fake=np.random.default_rng(0).integers(0, 2, len(st)))
    with pytest.warns(EvalkitWarning, match="weak instrument"):
        weak = treatment_on_treated(
            noise, outcome="achievement", received="received", assigned="fake", cluster="school_id"
        )
    assert any("weak instrument" in w for w in weak.warnings)


def test_districts_synthesis_and_four_levels_agree() -> None:
    sequences, frames = {}, []
    for k in range(4):
        d = _district(20 + k, n_schools=20)
        students = d.students.assign(district=f"D{k}")
        sequences[f"D{k}"] = achievement_models(students)
        frames.append(students)
    moderators = pd.DataFrame(
        {"district": [f"D{k}" for k in range(4)], "alignment": [0.1, 0.5, -0.3, 0.9]}
    )
    synthesis = synthesize_districts(sequences, district_data=moderators, moderators="alignment")
    assert synthesis.moderated is not None
    assert len(synthesis.estimates) == 4
    pooled = float(synthesis.pooled.params.iloc[0])
    combined = pd.concat(frames, ignore_index=True)
    combined["school_id"] = combined["district"] + "-" + combined["school_id"].astype(str)
    combined["teacher_id"] = combined["district"] + "-" + combined["teacher_id"].astype(str)
    _, delta, se = four_level(
        combined, "achievement ~ coached + prior + leadership + collaboration + readiness"
    )
    assert abs(pooled - delta) < 2 * max(se, float(synthesis.pooled.std_errors.iloc[0]))
    with pytest.raises(EvalkitInputError, match="no moderator values for district"):
        synthesize_districts(sequences, district_data=moderators.iloc[:3])


def test_outcome_domain_table_adjusts_p_values() -> None:
    d = _district(9)
    students = d.students.assign(
        math=d.students["achievement"],
        reading=d.students["achievement"] + np.random.default_rng(1).normal(0, 1, len(d.students)),
    )
    results = {name: achievement_models(students, outcome=name) for name in ("math", "reading")}
    table = outcome_domain_table(results)
    p = table.data["p_value"].to_numpy()
    order = np.argsort(p)
    expected = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    np.testing.assert_allclose(
        table.data["p_adjusted"].to_numpy()[order], np.minimum(expected, 1.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "BH-adjusted p" in table.body.columns


def test_instruction_models_with_crossed_raters() -> None:
    """raters='random': the rater is a crossed random factor, left out of the
    effect size's teacher-level SD; the reliability of teacher means is reported."""
    d = _district(4)
    random = instruction_models(d.observations, d.teachers, d.schools, raters="random")
    null = random.models["Null"]
    assert null.facts["engine"].startswith("crossed")
    components = null.variance_components
    assert components is not None
    variances = components.intercept_variances()
    assert "rater_id" in variances
    teacher_sd = np.sqrt(sum(v for k, v in variances.items() if k != "rater_id"))
    assert random.effects.loc["Treatment", "sd"] == pytest.approx(teacher_sd, rel=1e-12)
    # reliability: mean over teachers of tau / (tau + sigma2/n_j + rater variance/r_j)
    obs = d.observations
    n_j = obs.groupby("teacher_id").size()
    r_j = obs.groupby("teacher_id")["rater_id"].nunique()
    tau = teacher_sd**2
    expected = float((tau / (tau + null.sigma2 / n_j + variances["rater_id"] / r_j)).mean())
    assert random.reliability == pytest.approx(expected, rel=1e-12)
    assert any("Reliability of a teacher's mean score" in n for n in random.table().notes)
    fixed = instruction_models(d.observations, d.teachers, d.schools)
    assert fixed.reliability is not None and 0 < fixed.reliability < 1
    with pytest.raises(EvalkitInputError, match="raters='random' needs the rater column"):
        instruction_models(d.observations, d.teachers, d.schools, rater=None, raters="random")


def test_binary_achievement_sequence() -> None:
    """A 0/1 outcome in an export-shaped frame (Yes/No treatment codes, a few missing
    priors): logistic sequence, Cox index from the treatment coefficient, latent ICCs,
    and the notes say what was converted and dropped."""
    district = simulate_district(n_schools=16, seed=5)
    students = district.students.copy()
    students["proficient"] = (students["achievement"] > 0.3).astype(int)
    students["coached"] = students["coached"].map({1: "Yes", 0: "No"})
    students.loc[students.index[:7], "prior"] = np.nan
    sequence = achievement_models(students, outcome="proficient", family="binomial")
    assert list(sequence.models) == ["Null", "Treatment", "Covariates", "Moderation"]
    treatment = sequence.models["Treatment"]
    assert isinstance(treatment, GLMMResults)
    row = sequence.effects.loc["Treatment"]
    assert row["effect_size"] == pytest.approx(treatment.params["coached"] / 1.65)
    assert row["odds_ratio"] == pytest.approx(np.exp(treatment.params["coached"]))
    text = sequence.table().to_markdown()
    assert "Cox index [95% CI]" in text
    assert "ICC(school_id)" in text
    assert "7 rows" in text or "7 row" in text
    assert "Yes/No" in text or "yes" in text.lower()
    with pytest.raises(EvalkitInputError, match="family"):
        achievement_models(students, outcome="proficient", family="logistic")  # type: ignore[arg-type]
