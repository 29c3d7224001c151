"""G and D studies of observation scores (evalkit.multilevel.g_study) and crossed-design
input checks. Variance components against lme4 (crossed.json, key ``gstudy``); the
D-study coefficients are checked against Brennan's (2001) formulas evaluated here
from lme4's components."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import EvalkitInputError
from evalkit.data import simulate_observation_scores
from evalkit.multilevel import g_study, lmm, ranef

REFERENCE = Path(__file__).parents[1] / "reference" / "multilevel"
REF = json.loads((REFERENCE / "crossed.json").read_text())["gstudy"]


def _lme4_components() -> dict[str, float]:
    names = {
        "teacher": "teacher",
        "teacher:lesson": "lesson:teacher",
        "rater": "rater",
        "teacher:rater": "teacher:rater",
        "Residual": "residual",
    }
    return {names[g]: v for g, v in zip(REF["vc_grp"], REF["vc_vcov"], strict=True)}


def test_components_equal_lme4_and_d_study_follows() -> None:
    scores = pd.read_csv(REFERENCE / "observation_scores.csv")
    study = g_study(scores)
    lme4 = _lme4_components()
    for facet, value in lme4.items():
        np.testing.assert_allclose(study.variance(facet), value, rtol=1e-6)
    assert study.components["percent"].sum() == pytest.approx(100.0)
    # Brennan (2001), (l:p) x r design, with lme4's components:
    p, lp, r, pr, e = (
        lme4[k] for k in ("teacher", "lesson:teacher", "rater", "teacher:rater", "residual")
    )
    table = study.d_study(lessons=[1, 4, 6], raters=[1, 2]).set_index(["lessons", "raters"])
    for n_l, n_r in [(1, 1), (4, 2), (6, 1)]:
        rel = lp / n_l + pr / n_r + e / (n_l * n_r)
        ab = rel + r / n_r
        row = table.loc[(n_l, n_r)]
        np.testing.assert_allclose(row["G"], p / (p + rel), rtol=1e-6)
        np.testing.assert_allclose(row["Phi"], p / (p + ab), rtol=1e-6)
        np.testing.assert_allclose(row["sem_absolute"], np.sqrt(ab), rtol=1e-6)
    # the observed design: 4 lessons, 2 raters per lesson
    assert (study.lessons, study.raters) == (4.0, 2.0)
    np.testing.assert_allclose(study.observed()["G"], table.loc[(4, 2), "G"], rtol=1e-12)


def test_cheapest_design_reaches_the_target_at_least_cost() -> None:
    study = g_study(pd.read_csv(REFERENCE / "observation_scores.csv"))
    best = study.cheapest(0.8, lesson_cost=1.0, rating_cost=0.5)
    assert (best["G"] >= 0.8).all()
    assert best["cost"].is_monotonic_increasing
    everything = study.d_study(list(range(1, 21)), list(range(1, 6)))
    cost = everything["lessons"] * (1.0 + 0.5 * everything["raters"])
    assert best["cost"].iloc[0] == cost[everything["G"] >= 0.8].min()
    assert study.cheapest(0.999, max_lessons=3, max_raters=2).empty
    with pytest.raises(EvalkitInputError, match="target must be between 0 and 1"):
        study.cheapest(1.2)


def test_simulated_truth_is_recovered() -> None:
    """80 teachers × 4 lessons × 2 raters from a pool of 10: the teacher variance
    (truth 0.45² = 0.2025) within 3 of its REML standard errors' worth (a loose,
    seeded check of the wiring, not of REML)."""
    scores = simulate_observation_scores(n_teachers=200, seed=11)
    study = g_study(scores)
    assert study.variance("teacher") == pytest.approx(0.2025, abs=0.08)
    assert study.variance("residual") == pytest.approx(0.16, abs=0.03)


def test_designs_that_cannot_separate_facets() -> None:
    one_rater = simulate_observation_scores(n_teachers=20, raters_per_teacher=1, seed=2)
    with pytest.raises(EvalkitInputError, match="every lesson has a single score"):
        g_study(one_rater)
    # one lesson, two raters: each teacher x rater pair scored once, pooled and said so
    one_lesson = simulate_observation_scores(n_teachers=30, lessons=1, seed=2)
    study = g_study(one_lesson, lesson=None)
    assert study.variance("teacher:rater") == 0.0
    assert study.variance("lesson:teacher") == 0.0
    assert any("pooled into the residual" in note for note in study.notes)
    assert any("one lesson per teacher" in note for note in study.notes)
    with pytest.raises(EvalkitInputError, match="single rater"):
        g_study(one_lesson.assign(rater="R01"), lesson=None)
    with pytest.raises(EvalkitInputError, match="every teacher has one 'lesson'"):
        g_study(one_lesson)
    # a rater who scored one lesson once is named in the notes
    scores = simulate_observation_scores(n_teachers=30, seed=8)
    extra = pd.DataFrame({"teacher": ["T001"], "lesson": ["L1"], "rater": ["R99"], "score": [4.2]})
    study = g_study(pd.concat([scores, extra], ignore_index=True))
    assert any("1 rater(s) gave a single score (R99)" in note for note in study.notes)


def test_crossed_bad_input() -> None:
    scores = simulate_observation_scores(n_teachers=20, seed=4)
    with pytest.raises(EvalkitInputError, match="single group"):
        lmm("score ~ 1 + (1 | teacher) + (1 | rater)", scores.assign(rater="R1"))
    twin = scores.assign(classroom="C" + scores["teacher"])
    with pytest.raises(EvalkitInputError, match="group the rows identically"):
        lmm("score ~ 1 + (1 | teacher) + (1 | classroom) + (1 | rater)", twin)
    # a random factor whose groups the fixed effects already separate
    with pytest.raises(EvalkitInputError, match="rater is confounded with the fixed effects"):
        lmm(
            "score ~ C(rater_code) + (1 | teacher) + (1 | rater)",
            scores.assign(rater_code=scores["rater"]),
        )


def test_what_crossed_fits_refuse_say_why() -> None:
    from evalkit.multilevel import robust

    scores = simulate_observation_scores(n_teachers=20, seed=5)
    fit = lmm("score ~ 1 + (1 | teacher) + (1 | rater)", scores)
    with pytest.raises(EvalkitInputError, match="factors cross"):
        robust(fit)
    with pytest.raises(EvalkitInputError, match="containment"):
        lmm("score ~ 1 + (1 | teacher) + (1 | rater)", scores, df_method="containment")


def test_too_large_a_dense_remainder_is_refused_before_work() -> None:
    from evalkit.multilevel.crossed import check_memory

    with pytest.raises(EvalkitInputError, match=r"teacher \(15,000 groups × 1\).*16,004 × 16,004"):
        check_memory(["student", "teacher", "school"], [100_000, 15_000, 1_000], [1, 1, 1], 3)
    with pytest.raises(EvalkitInputError, match="GiB with working copies"):
        import evalkit.multilevel.crossed as crossed

        original = crossed.available_memory
        crossed.available_memory = lambda: 2**20  # a machine with 1 MiB free
        try:
            check_memory(["student", "teacher"], [1_000, 300], [1, 1], 2)
        finally:
            crossed.available_memory = original
    check_memory(["student", "teacher"], [1_000, 300], [1, 1], 2)  # fits: no error


def test_em_start_is_near_the_optimum() -> None:
    from evalkit.multilevel.crossed import em_start

    scores = pd.read_csv(REFERENCE / "student_panel.csv")
    fit = lmm("score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school)", scores)
    start = em_start(fit.specification.stats)
    # A start, not an estimate: the largest factor starts within 5% of the optimum; the
    # school (teachers are nested in it) starts far too low, as Gauss-Seidel EM hands
    # school differences to the teachers first. From there the optimiser reaches lme4's
    # optimum (the reference values, polished in R).
    np.testing.assert_allclose(start[0], fit.theta[0], rtol=0.05)
    assert 0 < start[2] < fit.theta[2]
    reference = json.loads((REFERENCE / "crossed.json").read_text())["panel"]
    np.testing.assert_allclose(fit.theta, reference["theta"], rtol=1e-5)
    assert fit.facts["converged"]


def test_crossed_conditional_modes_equal_the_dense_computation() -> None:
    """The blocked path of ranef() (no rows × effects matrix) equals the dense one."""
    import evalkit.multilevel.blups as blups
    from evalkit.multilevel import ranef

    panel = pd.read_csv(REFERENCE / "student_panel.csv")
    fit = lmm("score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school)", panel)
    blocked = ranef(fit)
    original = blups.CrossedStats
    blups.CrossedStats = type("NotCrossed", (), {})  # type: ignore[misc,assignment]
    try:
        dense = ranef(fit)
    finally:
        blups.CrossedStats = original  # type: ignore[misc]
    for level, frame in blocked.items():
        other = dense[level].loc[frame.index]
        np.testing.assert_allclose(frame.to_numpy(), other.to_numpy(), rtol=1e-9, atol=1e-12)


def test_tests_on_crossed_fits() -> None:
    """f_test, lrt and effect_size on a crossed fit (the model-comparison tools are
    engine-independent)."""
    from evalkit.multilevel import effect_size, f_test, lrt

    panel = pd.read_csv(REFERENCE / "student_panel.csv")
    random = "(1 | student) + (1 | teacher) + (1 | school)"
    small = lmm(f"score ~ year + {random}", panel, method="ML")
    large = lmm(f"score ~ year + coached + {random}", panel, method="ML")
    test = lrt(small, large)
    assert test.df == 1 and 0 <= test.p_value <= 1
    f = f_test(large, ["coached"])
    t = large.params["coached"] / large.std_errors["coached"]
    assert f.statistic == pytest.approx(t**2, rel=1e-10)  # one-df F is t²
    null = lmm(f"score ~ 1 + {random}", panel)
    fit = lmm(f"score ~ year + coached + {random}", panel)
    es = effect_size(fit, "coached", standardizer="total", reference=null)
    total = null.sigma2 + sum(null.variance_components.intercept_variances().values())
    assert es.estimate == pytest.approx(fit.params["coached"] / np.sqrt(total), rel=1e-12)
    with pytest.raises(EvalkitInputError, match="factors cross"):
        effect_size(fit, "coached", standardizer="between", reference=null)


def test_crossed_fit_on_an_export_shaped_table() -> None:
    """String IDs that look like numbers and a missing score:
    the missing row is dropped and reported; IDs are grouping labels, not numbers."""
    scores = simulate_observation_scores(n_teachers=25, seed=9)
    scores["teacher"] = scores["teacher"].str[1:]  # "001", "002", ...
    scores.loc[7, "score"] = np.nan
    fit = lmm("score ~ 1 + (1 | teacher) + (1 | rater)", scores)
    assert fit.nobs == len(scores) - 1
    assert fit.dropped.counts() == {"missing score": 1}
    assert any("1 row" in w for w in fit.warnings)
    labels = ranef(fit)["teacher"].index
    assert "001" in labels
