"""Behaviour of mediation(): designs read from the data, corrections, sensitivity,
bootstrap, moderated mediation, and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from evalkit import EvalkitInputError
from evalkit.mediation import mediation
from evalkit.multilevel import lmm
from tests.mediation.conftest import simulate_221

ARGS = dict(
    treatment="coached",
    mediator="instruction",
    outcome="achievement",
    clusters=("school_id", "teacher_id"),
    covariates=["prior"],
)


@pytest.fixture(scope="module")
def district() -> pd.DataFrame:
    return simulate_221(np.random.default_rng(5), n_schools=40)


def test_designs_are_read_from_where_variables_vary(district: pd.DataFrame) -> None:
    result = mediation(district, seed=1, **ARGS)  # type: ignore[arg-type]
    assert result.design.design == "2-2-1"
    assert result.design.mediator_formula == "instruction ~ coached + (1 | school_id)"
    assert "prior" not in result.design.a_covariates  # a student-level covariate
    # schools randomised: the same data with coaching assigned by school
    by_school = district.assign(coached=(district["school_id"].str[-1].astype(int) % 2))
    result = mediation(by_school, seed=1, **ARGS)  # type: ignore[arg-type]
    assert result.design.design == "3-2-1"
    assert result.design.b_term == "instruction_between"
    with pytest.raises(EvalkitInputError, match="design='2-2-1' was given"):
        mediation(by_school, design="2-2-1", **ARGS)  # type: ignore[arg-type]


def test_unsupported_designs_are_refused(district: pd.DataFrame) -> None:
    student_treatment = district.assign(coached=np.arange(len(district)) % 2)
    with pytest.raises(EvalkitInputError, match="1-2-1 design"):
        mediation(student_treatment, **ARGS)  # type: ignore[arg-type]
    teacher_outcome = district.assign(
        achievement=district.groupby("teacher_id")["achievement"].transform("mean")
    )
    with pytest.raises(EvalkitInputError, match="2-2-2 design"):
        mediation(teacher_outcome, **ARGS)  # type: ignore[arg-type]


def test_text_codes_and_moved_teachers_are_named(district: pd.DataFrame) -> None:
    coded = district.assign(coached=district["coached"].map({1: "Yes", 0: "No"}))
    with pytest.raises(EvalkitInputError, match=r"'coached' must be numeric.*'Yes': 1"):
        mediation(coded, **ARGS)  # type: ignore[arg-type]
    moved = district.copy()
    moved.loc[moved.index[:3], "school_id"] = "S999"  # three rows of one teacher elsewhere
    with pytest.raises(
        EvalkitInputError, match=r"'teacher_id' is not nested in 'school_id'.*T0000"
    ):
        mediation(moved, **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="not a plain name"):
        mediation(
            district.rename(columns={"prior": "prior score"}),
            **{**ARGS, "covariates": ["prior score"]},
        )  # type: ignore[arg-type]


def test_option_refusals(district: pd.DataFrame) -> None:
    with pytest.raises(EvalkitInputError, match="moderator= and moderation= together"):
        mediation(district, moderator="prior", **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="varies below the mediator's units"):
        mediation(district, moderator="prior", moderation="first", **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="n_draws"):
        mediation(district, n_draws=100, **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="at least 200"):
        mediation(district, bootstrap=50, **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match=r"must lie in \(0, 1\]"):
        mediation(district, mediator_reliability=1.4, **ARGS)  # type: ignore[arg-type]
    schools = district["school_id"].unique()
    lead = district["school_id"].map(
        dict(zip(schools, np.linspace(-1, 1, len(schools)), strict=True))
    )
    with pytest.raises(EvalkitInputError, match="cannot correct a b path moderated"):
        mediation(
            district.assign(leadership=lead),
            moderator="leadership",
            moderation="second",
            mediator_reliability=0.8,
            **ARGS,  # type: ignore[arg-type]
        )
    with pytest.raises(EvalkitInputError, match="R² ="):
        mediation(district, mediator_reliability=0.01, **ARGS)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="clusters names one or two"):
        mediation(district, **{**ARGS, "clusters": ()})  # type: ignore[arg-type]
    taken = district.assign(instruction_between=1.0, coached=0)
    taken["coached"] = taken["school_id"].str[-1].astype(int) % 2
    with pytest.raises(EvalkitInputError, match="already hold a column 'instruction_between'"):
        mediation(taken, **ARGS)  # type: ignore[arg-type]


def test_missing_rows_are_dropped_and_counted(district: pd.DataFrame) -> None:
    holes = district.copy()
    holes.loc[holes.index[[3, 50, 51]], "prior"] = np.nan
    holes.loc[holes.index[[7]], "instruction"] = np.nan
    result = mediation(holes, seed=1, **ARGS)  # type: ignore[arg-type]
    assert result.dropped.n == 4
    assert result.dropped.counts() == {"missing prior": 3, "missing instruction": 1}
    assert result.nobs == len(district) - 4
    assert "4 rows dropped" in result.summary()
    with pytest.raises(EvalkitInputError, match="'instruction' has missing values"):
        mediation(holes, missing="raise", **ARGS)  # type: ignore[arg-type]


def test_row_order_does_not_matter(district: pd.DataFrame) -> None:
    first = mediation(district, seed=3, **ARGS).tidy()  # type: ignore[arg-type]
    shuffled = district.sample(frac=1.0, random_state=1)
    second = mediation(shuffled, seed=3, **ARGS).tidy()  # type: ignore[arg-type]
    cols = ["estimate", "std_error", "df", "ci_low", "ci_high"]
    np.testing.assert_allclose(first[cols].to_numpy(), second[cols].to_numpy(), rtol=1e-7)


def test_effect_sizes_use_the_unconditional_total_sd(district: pd.DataFrame) -> None:
    result = mediation(district, seed=1, **ARGS)  # type: ignore[arg-type]
    null = lmm("achievement ~ 1 + (1 | school_id/teacher_id)", district)
    vc = null.variance_components
    assert vc is not None
    sd = np.sqrt(sum(vc.intercept_variances().values()) + null.sigma2)
    sizes = result.effect_sizes().set_index("term")
    assert sizes.loc["indirect", "effect_size"] == pytest.approx(
        result.indirect_effect / sd, rel=1e-9
    )
    teachers = district.drop_duplicates("teacher_id")
    assert sizes.loc["a", "effect_size"] == pytest.approx(
        result.params["a"] / teachers["instruction"].std(), rel=1e-9
    )


def test_reliability_correction_recovers_the_true_b_path() -> None:
    """Instruction observed with error of known reliability (true teacher-level
    variance 0.4² + 0.9² + a²/4, error variance 0.6²): the uncorrected b is attenuated
    by λ, the corrected b recovers the truth, the total effect is unchanged."""
    rng = np.random.default_rng(11)
    data = simulate_221(rng, n_schools=1500, teachers=4, students=5, error_sd=0.6)
    true_var = 0.4**2 + 0.9**2 + 0.5**2 / 4
    reliability = true_var / (true_var + 0.6**2)
    plain = mediation(data, seed=1, **ARGS)  # type: ignore[arg-type]
    fixed = mediation(data, seed=1, mediator_reliability=reliability, **ARGS)  # type: ignore[arg-type]
    factor = fixed.facts["attenuation"]
    assert 0.6 < factor < reliability
    b_se = float(fixed.std_errors["b"])
    assert abs(fixed.params["b"] - 0.3) < 3 * b_se
    assert abs(plain.params["b"] - 0.3 * factor) < 3 * float(plain.std_errors["b"])
    assert fixed.params["b"] == pytest.approx(plain.params["b"] / factor, rel=1e-12)
    assert abs(fixed.params["direct"] - 0.1) < 3 * float(fixed.std_errors["direct"])
    assert fixed.params["total"] == pytest.approx(plain.params["total"], abs=0.002)


def test_total_effect_is_unchanged_by_the_correction_exactly() -> None:
    """With two levels and the same predictors in both equations, γ = a, so the
    corrected total c' − (1−λ)γb/λ + a b/λ equals c' + a b exactly."""
    rng = np.random.default_rng(12)
    data = simulate_221(rng, n_schools=1, teachers=200, students=8, error_sd=0.5)
    args = {**ARGS, "clusters": "teacher_id"}
    plain = mediation(data, seed=1, **args)  # type: ignore[arg-type]
    fixed = mediation(data, seed=1, mediator_reliability=0.8, **args)  # type: ignore[arg-type]
    assert fixed.params["total"] == pytest.approx(plain.params["total"], rel=1e-10)


def test_sensitivity_at_the_true_confounding_recovers_the_indirect_effect() -> None:
    """An unmeasured teacher-level cause U of instruction and achievement biases b.
    The correlation of the two equations' teacher-level errors it induces is
    ρ = c²/√((0.9² + c²)(0.25² + c²)) (teacher-level residual SDs given coaching and
    school); at that ρ the sensitivity curve gives back a·b_true = 0.5·0.3, to within
    the sampling error of 6,000 teachers."""
    rng = np.random.default_rng(13)
    c = 0.4
    data = simulate_221(rng, n_schools=1500, teachers=4, students=5, confounding=c)
    result = mediation(data, seed=1, **ARGS)  # type: ignore[arg-type]
    rho = c**2 / np.sqrt((0.9**2 + c**2) * (0.25**2 + c**2))
    naive = result.indirect_effect
    assert naive > 0.15 + 0.05  # confounding inflates the naive indirect effect
    table = result.sensitivity([0.0, rho])
    assert table.loc[0, "indirect"] == pytest.approx(naive, rel=1e-12)
    row = table.iloc[1]
    se = (row["ci_high"] - row["ci_low"]) / (2 * 1.96)
    assert abs(row["indirect"] - 0.15) < 2 * se
    assert abs(row["indirect"] - 0.15) < 0.2 * abs(naive - 0.15)
    zero = result.facts["rho_at_zero"]
    assert result.sensitivity([zero])["indirect"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert isinstance(result.plot_sensitivity(), Figure)


def test_bootstrap_intervals(district: pd.DataFrame) -> None:
    small = district[district["school_id"] < "S020"]
    result = mediation(small, seed=4, bootstrap=200, **ARGS)  # type: ignore[arg-type]
    assert result.bootstrap is not None and len(result.bootstrap) == 200
    assert result.glance().loc[0, "bootstrap_replicates"] == 200
    boot = result.tidy(interval="bootstrap").set_index("term")
    delta = result.tidy().set_index("term")
    # bootstrap and delta-method SEs of the indirect effect agree within 30%
    ratio = boot.loc["indirect", "std_error"] / delta.loc["indirect", "std_error"]
    assert 0.7 < ratio < 1.3
    again = mediation(small, seed=4, bootstrap=200, **ARGS)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(again.bootstrap, result.bootstrap)
    with pytest.raises(EvalkitInputError, match="no bootstrap replicates"):
        mediation(small, seed=4, **ARGS).tidy(interval="bootstrap")  # type: ignore[arg-type]


def test_conditional_indirect_effects_follow_the_moderated_paths(district: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    schools = district["school_id"].unique()
    climate = pd.Series(rng.normal(50, 20, len(schools)), index=schools)
    data = district.assign(leadership=district["school_id"].map(climate))
    result = mediation(
        data,
        moderator="leadership",
        moderation="first",
        seed=1,
        **ARGS,  # type: ignore[arg-type]
    )
    centre = result.facts["moderator_centre"]
    teachers = data.drop_duplicates("teacher_id")
    assert centre == pytest.approx(teachers["leadership"].mean(), rel=1e-12)
    table = result.conditional_indirect([centre, centre + 10])
    p = result.params
    assert table.loc[0, "indirect"] == pytest.approx(p["indirect"], rel=1e-12)
    assert table.loc[1, "indirect"] == pytest.approx(
        (p["a"] + 10 * p["a_moderated"]) * p["b"], rel=1e-12
    )
    assert table.loc[1, "indirect"] - table.loc[0, "indirect"] == pytest.approx(
        10 * p["index"], rel=1e-9
    )
    assert isinstance(result.plot_conditional_indirect(), Figure)
    with pytest.raises(EvalkitInputError, match="no moderator"):
        mediation(data, seed=1, **ARGS).conditional_indirect()  # type: ignore[arg-type]


def test_sensitivity_is_undefined_on_a_boundary_fit() -> None:
    """No teacher-level variation left in the outcome: the outcome equation is
    singular there, so no teacher-level confounder can be correlated with it; the
    analysis says so instead of reporting ρ₀ = ±1."""
    data = simulate_221(np.random.default_rng(3), n_schools=15)
    rng = np.random.default_rng(1)
    data["achievement"] = 0.5 * data["prior"] + 0.2 * data["coached"] + rng.normal(0, 1, len(data))
    result = mediation(data, seed=1, **ARGS)  # type: ignore[arg-type]
    assert np.isnan(result.facts["rho_at_zero"])
    assert any("sensitivity analysis undefined" in w for w in result.warnings)
    with pytest.raises(EvalkitInputError, match="at its boundary"):
        result.sensitivity([0.1])


def test_text_covariates_enter_both_equations_and_the_correction() -> None:
    data = simulate_221(np.random.default_rng(3), n_schools=15, error_sd=0.4)
    data["region"] = np.where(data["school_id"] < "S008", "north", "south")
    args = {**ARGS, "covariates": ["prior", "region"]}
    result = mediation(data, mediator_reliability=0.85, seed=1, **args)  # type: ignore[arg-type]
    assert result.design.a_covariates == ("region",)
    assert "region[T.south]" in result.mediator_fit.params.index
    assert 0 < result.facts["attenuation"] < 0.85
