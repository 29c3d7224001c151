"""Priors: validation, units (coefficient priors in outcome SDs per unit of the
predictor), the integrated and sampled coefficient paths, the compiled-model cache and
the reporting helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymc", reason="the bayes extra (pymc) is not installed")
pytest.importorskip("nutpie", reason="the bayes extra (nutpie) is not installed")

from evalkit import EvalkitInputError
from evalkit.bayes import Prior, lmm, prior_sensitivity, prob_greater, probability_table
from evalkit.bayes import _lmm as bayes_lmm
from evalkit.data import simulate_district

FORMULA = "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)"
QUICK = {"draws": 300, "tune": 300, "chains": 2}


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    return simulate_district(
        n_schools=12, teachers_per_school=4, students_per_teacher=8, seed=11
    ).students


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        (
            {"sd_school_id": Prior.half_normal(-1.0)},
            "prior for sd_school_id: sigma must be positive",
        ),
        ({"coached": Prior.half_normal(1.0)}, "prior for coached: 'half_normal' is not available"),
        ({"sigma": Prior.normal(0, 1)}, "prior for sigma: 'normal' is not available"),
        (
            {"coached": "wide"},
            "prior for coached: give an evalkit.bayes.Prior or a positive number",
        ),
        ({"coached": 0.0}, "prior for coached: sigma must be positive"),
        ({"coached": Prior("student_t", sigma=1.0)}, "give the degrees of freedom nu"),
        ({"coached": Prior.normal(float("nan"), 1.0)}, "mu must be finite"),
        (
            {"grit": 1.0},
            "unknown prior\\(s\\) grit; the model's are beta, Intercept, prior, coached",
        ),
    ],
)
def test_invalid_priors_are_named(
    students: pd.DataFrame, priors: dict[str, object], message: str
) -> None:
    with pytest.raises(EvalkitInputError, match=message):
        lmm(FORMULA, students, priors=priors, **QUICK)  # type: ignore[arg-type]


@pytest.mark.parametrize("prior", [Prior.normal(0.5, 0.002), Prior.student_t(30, 0.5, 0.002)])
def test_a_tight_coefficient_prior_is_in_outcome_sd_units(
    students: pd.DataFrame, prior: Prior
) -> None:
    """A prior pinned at 0.5 outcome SDs holds the coefficient at 0.5 × SD(outcome) on
    the original scale — through the integrated path (Normal) and the sampled path
    (Student-t)."""
    fit = lmm(FORMULA, students, priors={"coached": prior}, seed=3, **QUICK)
    spread = students["achievement"].std(ddof=1)
    assert fit.params["coached"] == pytest.approx(0.5 * spread, abs=0.01 * spread)
    assert fit.priors["beta[coached]"].startswith(prior.describe())
    assert fit.facts["collapsed"]


def test_sensitivity_sweep_reuses_the_compiled_model(students: pd.DataFrame) -> None:
    before = len(bayes_lmm._COMPILED)
    table = prior_sensitivity(
        FORMULA,
        students,
        {"default": {}, "sceptical": {"coached": Prior.normal(0.0, 0.02)}},
        term="coached",
        threshold=0.1,
        seed=5,
        **QUICK,
    )
    # One compiled model served both scenarios (they differ only in a Normal prior).
    assert len(bayes_lmm._COMPILED) <= before + 1
    assert list(table.index) == ["default", "sceptical"]
    assert table.loc["sceptical", "prior"] == "Normal(0, 0.02)"
    assert table.loc["default", "prior"] == "default"
    # The sceptical prior (SD 0.02 outcome SDs) pulls the effect toward zero.
    assert abs(table.loc["sceptical", "mean"]) < table.loc["default", "mean"]
    assert table.loc["sceptical", "sd"] < table.loc["default", "sd"]
    with pytest.raises(EvalkitInputError, match="at least one scenario"):
        prior_sensitivity(FORMULA, students, {}, term="coached")


def test_compiled_models_are_reused_only_for_the_same_structure(students: pd.DataFrame) -> None:
    """The cache key holds what the compiled graph fixes: terms, levels, slope
    variables (their SDs scale the slope priors) and SD priors — not Normal
    coefficient priors, which are data."""
    from evalkit.bayes._lmm import _build, _structure
    from evalkit.multilevel import specify

    def key(formula: str, priors: dict[str, object] | None = None) -> object:
        fit = specify(formula, students)
        model, info = _build(fit, "gaussian", True, priors)  # type: ignore[arg-type]
        return _structure(model, info, "gaussian")

    base = key(FORMULA)
    assert key(FORMULA, {"coached": Prior.normal(0.1, 0.1)}) == base
    assert key(FORMULA, {"sd_school_id": 0.5}) != base
    two = students.assign(leadership2=2 * students["leadership"])
    slope = "achievement ~ prior + coached + (1 + {} | school_id)"
    fit_a = specify(slope.format("leadership"), two)
    fit_b = specify(slope.format("leadership2"), two)
    key_a = _structure(*_build(fit_a, "gaussian", True, None), "gaussian")
    key_b = _structure(*_build(fit_b, "gaussian", True, None), "gaussian")
    assert key_a != key_b


def test_probability_table_states_thresholds(students: pd.DataFrame) -> None:
    fit = lmm(FORMULA, students, seed=2, **QUICK)
    table = probability_table(fit, "coached", thresholds=[0.0, 0.1], unit=" SD")
    assert list(table["statement"]) == ["P(coached > 0 SD)", "P(coached > 0.1 SD)"]
    assert table["probability"].iloc[1] == pytest.approx(prob_greater(fit, "coached", 0.1))
    draws = fit.draws["coached"].to_numpy()
    scaled = probability_table(fit, "coached", thresholds=[0.1], scale=2.0)
    assert scaled["probability"].iloc[0] == pytest.approx(np.mean(draws / 2.0 > 0.1))
    assert scaled["probability_below_negative"].iloc[0] == pytest.approx(
        np.mean(draws / 2.0 < -0.1)
    )
    with pytest.raises(EvalkitInputError, match="'grit' is not a parameter"):
        probability_table(fit, "grit")
    with pytest.raises(EvalkitInputError, match="scale must be positive"):
        probability_table(fit, "coached", scale=0.0)
