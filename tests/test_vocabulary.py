"""One vocabulary in every model family: the same names for the same things.

One model of each family is fitted — evalkit's mixed model and its statsmodels engine,
univariate, multilevel and robust meta-analyses, robumeta, the statsmodels and
linearmodels adapters, the coaching QED fits, effect sizes and (with the extra)
Bayesian fits — and each is checked for the shared names: the tidy columns, one
intercept spelling, ``std_error`` (never ``se``), ``ci_low``/``ci_high``, and the
shared variance-components table on every model with random effects.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import evalkit
from evalkit import effectsize as es
from evalkit import meta
from evalkit.adapters import from_linearmodels, from_statsmodels
from evalkit.coaching import qed
from evalkit.core import (
    INTERCEPT,
    TIDY_COLUMNS,
    EvalkitInputError,
    ModelResults,
    VarianceComponents,
)
from evalkit.core.variance import COLUMNS
from evalkit.data import simulate_observation_scores, simulate_rollout
from evalkit.multilevel import effect_size, lmm, profile_intervals
from evalkit.power import mdes

OTHER_INTERCEPTS = {"intercept", "(Intercept)", "const", "intrcpt", "Intercept_"}


@pytest.fixture(scope="module")
def district() -> pd.DataFrame:
    return evalkit.simulate_district(n_schools=12, teachers_per_school=4, seed=11).students


@pytest.fixture(scope="module")
def studies() -> pd.DataFrame:
    sat = evalkit.datasets.load("kalaian1996").dropna(subset=["hrs"]).reset_index(drop=True)
    return sat.assign(es_id=range(len(sat)))


def _fits(district: pd.DataFrame, studies: pd.DataFrame) -> dict[str, ModelResults]:
    formula = "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)"
    che = meta.multilevel(studies, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.6)
    from linearmodels.panel import PooledOLS

    rollout = simulate_rollout(
        n_schools=10, teachers_per_school=3, years=4, first_year=2020, cohorts=(2022,), seed=2
    )
    panel = rollout.set_index(["teacher_id", "year"])
    pooled = PooledOLS.from_formula("score ~ 1 + coached", panel).fit()
    return {
        "lmm": lmm(formula, district),
        "lmm crossed": lmm(
            "score ~ 1 + (1 | teacher) + (1 | rater)",
            simulate_observation_scores(n_teachers=15, seed=1),
        ),
        "lmm statsmodels": lmm(
            "achievement ~ prior + coached + (1 | school_id)", district, engine="statsmodels"
        ),
        "random effects": meta.random_effects(studies, effect="yi", variance="vi"),
        "meta-regression": meta.meta_regression(
            studies, effect="yi", variance="vi", moderators="hrs"
        ),
        "multilevel meta": che,
        "robust": meta.robust(che, studies["study"]),
        "robumeta": meta.robumeta(studies, effect="yi", variance="vi", study="study"),
        "selection model": meta.selection_model(che, type="step", steps=(0.025,)),
        "multivariate meta": meta.multivariate(
            studies, effect="yi", variance="vi", outcome="outcome", study="study", rho=0.6
        ),
        "statsmodels OLS": from_statsmodels(smf.ols("achievement ~ coached", district).fit()),
        "statsmodels MixedLM": from_statsmodels(
            smf.mixedlm("achievement ~ coached", district, groups="school_id").fit(),
            level="school_id",
        ),
        "linearmodels": from_linearmodels(pooled),
        "coaching twfe": qed.twfe(
            rollout,
            outcome="score",
            treated="coached",
            unit="teacher_id",
            time="year",
            cluster="school_id",
        ),
    }


def _check_contract(name: str, fit: ModelResults, level: float = 0.95) -> None:
    tidy = fit.tidy(level)
    assert tuple(tidy.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS, name
    terms = set(map(str, fit.params.index))
    assert not terms & OTHER_INTERCEPTS, f"{name}: intercept spelled {terms & OTHER_INTERCEPTS}"
    assert list(tidy["term"]) == list(fit.params.index), name
    assert "se" not in tidy.columns and "se" not in fit.glance().columns, name
    ci = fit.conf_int(level)
    assert list(ci.columns) == ["ci_low", "ci_high"], name
    np.testing.assert_allclose(ci["ci_low"], tidy["ci_low"], err_msg=name)
    np.testing.assert_allclose(tidy["std_error"], fit.std_errors, err_msg=name)
    glance = fit.glance()
    assert {"model", "nobs", "n_dropped", "warnings"} <= set(glance.columns), name
    components = fit.variance_components
    if components is not None:
        assert isinstance(components, VarianceComponents), name
        assert tuple(components.frame.columns) == COLUMNS, name
        for level_name in components.levels:
            assert f"var_{level_name}" in glance.columns or any(
                c.startswith(f"var_{level_name}[") for c in glance.columns
            ), name
        assert not set(components.frame["term"]) & OTHER_INTERCEPTS, name


def test_every_family_speaks_one_vocabulary(district: pd.DataFrame, studies: pd.DataFrame) -> None:
    fits = _fits(district, studies)
    for name, fit in fits.items():
        _check_contract(name, fit)
    with_intercept = [n for n in fits if n not in {"coaching twfe", "multivariate meta"}]
    for name in with_intercept:
        assert INTERCEPT in fits[name].params.index, name
    # Every model with random effects reports them as the shared table.
    for name in (
        "lmm",
        "lmm statsmodels",
        "random effects",
        "multilevel meta",
        "robust",
        "statsmodels MixedLM",
        "selection model",
        "multivariate meta",
    ):
        assert isinstance(fits[name].variance_components, VarianceComponents), name
    # The same concept has the same key: the residual variance, the school variance.
    mixed = fits["lmm"].glance().iloc[0]
    second = fits["lmm statsmodels"].glance().iloc[0]
    adapted = fits["statsmodels MixedLM"].glance().iloc[0]
    for key in ("var_residual", "var_school_id"):
        assert key in mixed.index and key in second.index and key in adapted.index
    assert "var_study" in fits["random effects"].glance().columns
    assert {"var_study", "var_es_id"} <= set(fits["multilevel meta"].glance().columns)


def test_mediation_speaks_the_vocabulary(district: pd.DataFrame) -> None:
    from evalkit.mediation import mediation

    scores = district.groupby("teacher_id")["prior"].transform("mean")  # a teacher-level stand-in
    fit = mediation(
        district.assign(instruction=scores),
        treatment="coached",
        mediator="instruction",
        outcome="achievement",
        clusters=("school_id", "teacher_id"),
        seed=1,
    )
    _check_contract("mediation", fit)  # type: ignore[arg-type]
    assert fit.variance_components is None
    assert fit.outcome_fit.variance_components is not None


def test_side_results_use_the_same_names(district: pd.DataFrame, studies: pd.DataFrame) -> None:
    g = es.hedges_g(6, 5, 1, 1, 3, 3)
    assert {"estimate", "std_error", "ci_low", "ci_high", "p_value"} <= set(g.to_frame().columns)
    assert g.std_error == pytest.approx(np.sqrt(g.variance))
    null = lmm("achievement ~ 1 + (1 | school_id)", district)
    fit = lmm("achievement ~ coached + (1 | school_id)", district)
    standardized = effect_size(fit, "coached", reference=null)
    assert {"estimate", "std_error", "ci_low", "ci_high"} <= set(standardized.to_frame().columns)
    profile = profile_intervals(null)
    assert list(profile.columns) == ["parameter", "estimate", "ci_low", "ci_high"]
    assert list(profile["parameter"]) == ["sd_school_id", "sd_residual"]
    three = meta.multilevel(studies, effect="yi", variance="vi", levels=["study", "es_id"])
    assert list(meta.profile_intervals(three).columns) == list(profile.columns)
    predicted = meta.random_effects(studies, effect="yi", variance="vi").predict()
    assert {"estimate", "std_error", "ci_low", "ci_high", "pi_low", "pi_high"} <= set(
        predicted.columns
    )
    assert "std_error" in mdes("cra2r2", rho2=0.17, n=15, J=20).to_frame().columns
    loo = meta.leave_one_out(meta.random_effects(studies, effect="yi", variance="vi"))
    assert "std_error" in loo.columns and "se" not in loo.columns
    adjusted = meta.selection_model(three, type="step", steps=(0.025,))
    assert list(adjusted.selection.columns[:7]) == [
        "parameter", "estimate", "std_error", "statistic", "p_value", "ci_low", "ci_high",
    ]  # fmt: skip
    joint = meta.multivariate(
        studies, effect="yi", variance="vi", outcome="outcome", study="study", rho=0.6
    )
    assert {"estimate", "std_error", "ci_low", "ci_high", "pi_low", "pi_high"} <= set(
        joint.predict().columns
    )
    joint_profile = meta.profile_intervals(joint)
    assert list(joint_profile.columns) == list(profile.columns)
    glance = joint.glance().columns
    assert set(joint_profile["parameter"]) <= set(glance)


def test_moderators_are_a_right_hand_side_everywhere(studies: pd.DataFrame) -> None:
    regression = meta.meta_regression(studies, effect="yi", variance="vi", moderators="hrs")
    multilevel = meta.multilevel(
        studies, effect="yi", variance="vi", levels=["study", "es_id"], moderators="hrs"
    )
    robumeta = meta.robumeta(studies, effect="yi", variance="vi", study="study", moderators="hrs")
    for fit in (regression, multilevel, robumeta):
        assert list(fit.params.index) == [INTERCEPT, "hrs"]
    with pytest.raises(EvalkitInputError, match="give only the right-hand side"):
        meta.meta_regression(studies, effect="yi", variance="vi", moderators="yi ~ hrs")


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("pymc", "nutpie", "numba")),
    reason="the bayes extra is not installed",
)
def test_bayesian_fits_speak_it_too(district: pd.DataFrame, studies: pd.DataFrame) -> None:
    from evalkit import bayes

    quick = {"draws": 200, "tune": 200, "chains": 2, "seed": 4}
    fit = bayes.lmm("achievement ~ coached + (1 | school_id)", district, **quick)  # type: ignore[arg-type]
    pooled = bayes.meta_analysis(studies, effect="yi", variance="vi", **quick)  # type: ignore[arg-type]
    for name, result in (("bayes lmm", fit), ("bayes meta", pooled)):
        tidy = result.tidy()
        assert tuple(tidy.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS, name
        assert INTERCEPT in result.params.index, name
        # conf_int() gives the HDIs tidy() reports; p-values are refused, not invented.
        ci = result.conf_int()
        np.testing.assert_allclose(ci["ci_low"], tidy["ci_low"])
        np.testing.assert_allclose(ci["ci_high"], tidy["ci_high"])
        assert tidy["p_value"].isna().all()
        with pytest.raises(EvalkitInputError, match="no p-values"):
            _ = result.pvalues
        assert isinstance(result.variance_components, VarianceComponents), name
    assert fit.variance_components is not None
    assert fit.variance_components.residual == pytest.approx(
        float(np.mean(fit.draws["sigma"] ** 2))
    )
    assert "var_school_id" in fit.glance().columns and "var_study" in pooled.glance().columns
