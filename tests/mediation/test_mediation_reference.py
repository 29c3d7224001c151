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
def _two_level_loglik(y: np.ndarray, x: np.ndarray, codes: np.ndarray, params: np.ndarray) -> float:
    """Log-likelihood of a random-intercept model in (β, τ², σ²), written out."""
    p = x.shape[1]
    beta, tau2, sigma2 = params[:p], params[p], params[p + 1]
    r = y - x @ beta
    n_j = np.bincount(codes)
    sum_r = np.bincount(codes, weights=r)
    sum_r2 = np.bincount(codes, weights=r * r)
    lam = sigma2 + n_j * tau2
    quad = (sum_r2 - tau2 * sum_r**2 / lam) / sigma2
    logdet = (n_j - 1) * np.log(sigma2) + np.log(lam)
    return float(-0.5 * np.sum(n_j * np.log(2 * np.pi) + logdet + quad))


def _observed_covariance(
    result: MediationResults, data: pd.DataFrame, cluster: str
) -> pd.DataFrame:
    """Inverse of the observed information of the outcome equation (central second
    differences of the written-out log-likelihood at evalkit's ML estimates)."""
    fit = result.outcome_fit
    terms = list(fit.params.index)
    x = np.column_stack([np.ones(len(data))] + [data[t].to_numpy(float) for t in terms[1:]])
    y = data[result.names["outcome"]].to_numpy(float)
    codes = pd.factorize(data[cluster])[0]
    vc = fit.variance_components
    assert vc is not None
    theta = np.r_[fit.params.to_numpy(), next(iter(vc.intercept_variances().values())), fit.sigma2]
    k = theta.size
    h = 1e-4 * np.maximum(np.abs(theta), 1e-2)
    hess = np.zeros((k, k))
    f = lambda t: _two_level_loglik(y, x, codes, t)  # noqa: E731
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            value = (
                f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)
            ) / (4 * h[i] * h[j])
            hess[i, j] = hess[j, i] = value
    cov = np.linalg.inv(-hess)[: len(terms), : len(terms)]
    return pd.DataFrame(cov, index=terms, columns=terms)


@pytest.mark.parametrize(
    ("case", "file", "kwargs", "cluster"),
    [
        (
            "hsb",
            "hsb.csv.gz",
            dict(
                treatment="sector",
                mediator="disclim",
                outcome="mathach",
                clusters="school",
                covariates=["meanses"],
            ),
            "school",
        ),
        (
            "teachers_221",
            "teachers_221.csv",
            dict(
                treatment="coached",
                mediator="instruction",
                outcome="achievement",
                clusters="teacher_id",
                covariates=["experience"],
            ),
            "teacher_id",
        ),
    ],
)
def test_two_level_sem_equals_lavaan(case: str, file: str, kwargs: dict, cluster: str) -> None:
    """By ML the 2-2-1 model is lavaan's two-level SEM (random intercepts): a, b,
    direct, indirect and total estimates agree to 1e-4 relative (lavaan stops ~3e-6
    short of the optimum). lavaan's SEs come from the *observed* information (the
    expected one treats the mediator as random); evalkit's, like lme4's, from
    (X'V⁻¹X)⁻¹. The two differ by ~2e-4 here through the mean-variance cross term of
    the observed information, which is zero in expectation; computing that
    information at evalkit's estimates reproduces lavaan's SEs to 1e-4, and
    evalkit's own SEs equal lme4's ML SEs (test_paths_equal_lme4)."""
    data = _data(file)
    result = mediation(data, method="ML", seed=1, **kwargs)
    sem = R[f"{case}_lavaan"]
    est = dict(zip(sem["labels"], sem["est"], strict=True))
    se = dict(zip(sem["labels"], sem["se"], strict=True))
    table = result.tidy().set_index("term")
    for role in ("a", "b", "direct", "indirect", "total"):
        assert table.loc[role, "estimate"] == pytest.approx(est[role], rel=1e-4)
    assert table.loc["a", "std_error"] == pytest.approx(se["a"], rel=1e-4)
    observed = _observed_covariance(result, data, cluster)
    b_term, c_term = result.terms.b, result.terms.direct
    a, b = table.loc["a", "estimate"], table.loc["b", "estimate"]
    var_a = table.loc["a", "std_error"] ** 2
    assert np.sqrt(observed.loc[b_term, b_term]) == pytest.approx(se["b"], rel=1e-4)
    assert np.sqrt(observed.loc[c_term, c_term]) == pytest.approx(se["direct"], rel=1e-4)
    indirect_se = np.sqrt(b**2 * var_a + a**2 * observed.loc[b_term, b_term])
    assert indirect_se == pytest.approx(se["indirect"], rel=1e-4)
    total_var = (
        observed.loc[c_term, c_term]
        + b**2 * var_a
        + a**2 * observed.loc[b_term, b_term]
        + 2 * a * observed.loc[b_term, c_term]
    )
    assert np.sqrt(total_var) == pytest.approx(se["total"], rel=1e-4)
    # and the expected-information SEs evalkit reports are within 1e-3 of lavaan's
    for role in ("b", "direct", "indirect", "total"):
        assert table.loc[role, "std_error"] == pytest.approx(se[role], rel=1e-3)


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
