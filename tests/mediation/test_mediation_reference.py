"""Multilevel mediation against lme4 1.1-31 / lmerTest (both equations) and lavaan 0.6
(two-level SEM of the 2-2-1 models). References: tests/reference/mediation/
mediation_reference.R -> mediation.json, on HSB and simulated data written by
make_mediation_data.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import EvalkitInputError
from evalkit.mediation import MediationResults, mediation

REF = Path(__file__).resolve().parents[1] / "reference" / "mediation"
R = json.loads((REF / "mediation.json").read_text())

# (data file, reference key, mediation() arguments, R terms of the paths)
CASES = {
    "hsb": (
        "hsb.csv.gz",
        dict(
            treatment="sector",
            mediator="disclim",
            outcome="mathach",
            clusters="school",
            covariates=["meanses", "ses"],
        ),
        {"a": ("a", "sector"), "b": ("b", "disclim"), "direct": ("b", "sector")},
    ),
    "teachers_221": (
        "teachers_221.csv",
        dict(
            treatment="coached",
            mediator="instruction",
            outcome="achievement",
            clusters="teacher_id",
            covariates=["experience", "prior"],
        ),
        {"a": ("a", "coached"), "b": ("b", "instruction"), "direct": ("b", "coached")},
    ),
    "students_211": (
        "students_211.csv",
        dict(
            treatment="coached", mediator="engagement", outcome="achievement", clusters="teacher_id"
        ),
        {
            "a": ("a", "coached"),
            "b": ("b", "engagement_between"),
            "b_within": ("b", "engagement_within"),
            "direct": ("b", "coached"),
        },
    ),
    "district_221": (
        "district_221.csv",
        dict(
            treatment="coached",
            mediator="instruction",
            outcome="achievement",
            clusters=("school_id", "teacher_id"),
            covariates=["leadership", "prior"],
        ),
        {"a": ("a", "coached"), "b": ("b", "instruction"), "direct": ("b", "coached")},
    ),
    "district_321": (
        "district_321.csv",
        dict(
            treatment="coached",
            mediator="instruction",
            outcome="achievement",
            clusters=("school_id", "teacher_id"),
            covariates=["leadership", "prior"],
        ),
        {
            "a": ("a", "coached"),
            "b": ("b", "instruction_between"),
            "b_within": ("b", "instruction_within"),
            "direct": ("b", "coached"),
        },
    ),
}
DESIGNS = {
    "hsb": "2-2-1",
    "teachers_221": "2-2-1",
    "students_211": "2-1-1",
    "district_221": "2-2-1",
    "district_321": "3-2-1",
}


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / name)


def _r_value(entry: dict, term: str, what: str) -> float:
    return float(np.atleast_1d(entry[what])[list(np.atleast_1d(entry["terms"])).index(term)])


@pytest.fixture(
    scope="module",
    params=[(c, m) for c in CASES for m in ("REML", "ML")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def fitted(request: pytest.FixtureRequest) -> tuple[str, str, MediationResults]:
    case, method = request.param
    file, kwargs, _ = CASES[case]
    return case, method, mediation(_data(file), method=method, seed=1, **kwargs)  # type: ignore[arg-type]


def test_design_read_from_the_data(fitted: tuple[str, str, MediationResults]) -> None:
    case, _, result = fitted
    assert result.design.design == DESIGNS[case]


def test_paths_equal_lme4(fitted: tuple[str, str, MediationResults]) -> None:
    """Each path's estimate and SE equal lm/lmer's to 1e-6 relative and its df
    lmerTest's Satterthwaite df (lm's n - p) to 1e-5."""
    case, method, result = fitted
    ref = R[f"{case}_{method}"]
    table = result.tidy().set_index("term")
    for role, (equation, term) in CASES[case][2].items():
        entry = ref[equation]
        assert table.loc[role, "estimate"] == pytest.approx(_r_value(entry, term, "beta"), rel=1e-6)
        assert table.loc[role, "std_error"] == pytest.approx(_r_value(entry, term, "se"), rel=1e-6)
        assert table.loc[role, "df"] == pytest.approx(_r_value(entry, term, "df"), rel=1e-5)


def test_indirect_and_total_are_the_products(fitted: tuple[str, str, MediationResults]) -> None:
    """a·b from lme4's two fits, with the delta-method SE sqrt(b²se_a² + a²se_b²)
    (the two equations' estimates are independent)."""
    case, method, result = fitted
    ref = R[f"{case}_{method}"]
    paths = CASES[case][2]
    a, se_a = (_r_value(ref["a"], paths["a"][1], w) for w in ("beta", "se"))
    b, se_b = (_r_value(ref["b"], paths["b"][1], w) for w in ("beta", "se"))
    table = result.tidy().set_index("term")
    assert table.loc["indirect", "estimate"] == pytest.approx(a * b, rel=1e-6)
    assert table.loc["indirect", "std_error"] == pytest.approx(
        np.sqrt(b**2 * se_a**2 + a**2 * se_b**2), rel=1e-6
    )
    c = _r_value(ref["b"], paths["direct"][1], "beta")
    assert table.loc["total", "estimate"] == pytest.approx(c + a * b, rel=1e-6)


def test_monte_carlo_interval_matches_the_product_distribution(
    fitted: tuple[str, str, MediationResults],
) -> None:
    """The MC interval is the percentile interval of products of independent normal
    draws with lme4's estimates and SEs: checked against 400,000 fresh draws to
    within the Monte Carlo error of 20,000 draws (4 SE of a 2.5% quantile)."""
    case, method, result = fitted
    ref = R[f"{case}_{method}"]
    paths = CASES[case][2]
    a, se_a = (_r_value(ref["a"], paths["a"][1], w) for w in ("beta", "se"))
    b, se_b = (_r_value(ref["b"], paths["b"][1], w) for w in ("beta", "se"))
    rng = np.random.default_rng(99)
    products = rng.normal(a, se_a, 400_000) * rng.normal(b, se_b, 400_000)
    low, high = np.quantile(products, [0.025, 0.975])
    table = result.tidy().set_index("term")
    spread = np.std(products)
    # SE of a 2.5% sample quantile from 20,000 draws: sqrt(p(1-p)/n)/f(q); f(q) ≈ 0.058/sd
    tolerance = 4 * np.sqrt(0.025 * 0.975 / 20_000) / (0.058 / spread)
    assert table.loc["indirect", "ci_low"] == pytest.approx(low, abs=tolerance)
    assert table.loc["indirect", "ci_high"] == pytest.approx(high, abs=tolerance)


# --------------------------------------------------------------------- lavaan
@pytest.mark.parametrize(
    ("case", "file", "kwargs"),
    [
        ("hsb", "hsb.csv.gz", dict(treatment="sector", mediator="disclim", outcome="mathach",
                                    clusters="school", covariates=["meanses"])),
        ("teachers_221", "teachers_221.csv",
         dict(treatment="coached", mediator="instruction", outcome="achievement",
              clusters="teacher_id", covariates=["experience"])),
    ],
)  # fmt: skip
def test_two_level_sem_equals_lavaan(case: str, file: str, kwargs: dict) -> None:
    """By ML the 2-2-1 model is lavaan's two-level SEM (random intercepts): a, b,
    direct, indirect and total estimates agree to 1e-4 relative (lavaan stops ~3e-6
    short of the optimum), and with ``information="observed"`` (lavaan's default) so
    do their SEs. evalkit's default SEs, like lme4's, come from the expected
    information (X'V⁻¹X)⁻¹; they differ from lavaan's by the mean-variance cross term
    of the observed information (zero in expectation), here by less than 1e-3."""
    data = _data(file)
    sem = R[f"{case}_lavaan"]
    est = dict(zip(sem["labels"], sem["est"], strict=True))
    se = dict(zip(sem["labels"], sem["se"], strict=True))
    observed = mediation(data, method="ML", information="observed", seed=1, **kwargs)
    expected = mediation(data, method="ML", seed=1, **kwargs)
    table = observed.tidy().set_index("term")
    default = expected.tidy().set_index("term")
    for role in ("a", "b", "direct", "indirect", "total"):
        assert table.loc[role, "estimate"] == pytest.approx(est[role], rel=1e-4)
        assert table.loc[role, "std_error"] == pytest.approx(se[role], rel=1e-4)
        assert default.loc[role, "std_error"] == pytest.approx(se[role], rel=1e-3)
    assert observed.facts["information"] == "observed"
    # the observed information is not the expected one: b's SE moves
    assert table.loc["b", "std_error"] != pytest.approx(default.loc["b", "std_error"], rel=1e-6)


def test_observed_information_needs_ml_and_two_levels() -> None:
    data = _data("district_221.csv")
    args = dict(treatment="coached", mediator="instruction", outcome="achievement",
                clusters=("school_id", "teacher_id"), covariates=["prior"])  # fmt: skip
    with pytest.raises(EvalkitInputError, match="needs method='ML'"):
        mediation(data, information="observed", **args)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="two-level designs"):
        mediation(data, information="observed", method="ML", **args)  # type: ignore[arg-type]


def _moderated(data: pd.DataFrame, stage: str, method: str) -> pd.DataFrame:
    result = mediation(
        data,
        treatment="coached",
        mediator="instruction",
        outcome="achievement",
        clusters=("school_id", "teacher_id"),
        covariates=["prior"],
        moderator="leadership",
        moderation=stage,  # type: ignore[arg-type]
        method=method,  # type: ignore[arg-type]
        seed=2,
    )
    return result.tidy().set_index("term")


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_moderated_paths_equal_lme4(method: str) -> None:
    """First- and second-stage moderation by leadership (centred at the teachers'
    mean): the interaction coefficients and the paths at the mean equal lme4's."""
    data = _data("district_221.csv")
    ref = R[f"district_221_{method}"]
    first = _moderated(data, "first", method)
    a_ref = ref["a_first"]
    a3 = _r_value(a_ref, "coached:leadership_c", "beta")
    assert first.loc["a", "estimate"] == pytest.approx(_r_value(a_ref, "coached", "beta"), rel=1e-6)
    assert first.loc["a_moderated", "estimate"] == pytest.approx(a3, rel=1e-6)
    assert first.loc["a_moderated", "std_error"] == pytest.approx(
        _r_value(a_ref, "coached:leadership_c", "se"), rel=1e-6
    )
    b = _r_value(ref["b"], "instruction", "beta")
    assert first.loc["index", "estimate"] == pytest.approx(a3 * b, rel=1e-6)
    second = _moderated(data, "second", method)
    b_ref = ref["b_second"]
    b3 = _r_value(b_ref, "instruction:leadership_c", "beta")
    assert second.loc["b_moderated", "estimate"] == pytest.approx(b3, rel=1e-6)
    assert second.loc["b", "estimate"] == pytest.approx(
        _r_value(b_ref, "instruction", "beta"), rel=1e-6
    )
    a = _r_value(ref["a"], "coached", "beta")
    assert second.loc["index", "estimate"] == pytest.approx(a * b3, rel=1e-6)
