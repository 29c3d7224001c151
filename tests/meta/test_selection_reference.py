"""Selection models against metafor's selmodel (tests/reference/meta/selection_reference.R).

Every estimate, standard error, τ², selection parameter, log-likelihood and
likelihood-ratio test is compared at 1e-5 relative. selmodel's optim stops 1e-5 to 1e-3
short of the optimum on these flat likelihoods, so the R script polishes its solution
with Newton steps on metafor's own log-likelihood (integrals at ``rel.tol = 1e-10``) to a
gradient below 1e-9 and recomputes the standard errors as selmodel does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError, meta

REFERENCE = Path(__file__).parents[1] / "reference" / "meta"
REF: dict[str, Any] = json.loads((REFERENCE / "selection.json").read_text())
RTOL = 1e-5
# τ² at its boundary: metafor's optimiser works on log τ² and stops near 1e-10.
ATOL_TAU2 = 1e-8

CASES = {
    "step_025": {"type": "step", "steps": (0.025,)},
    "step_025_5": {"type": "step", "steps": (0.025, 0.5)},
    "step_two_sided_05": {"type": "step", "steps": (0.05,), "alternative": "two-sided"},
    "beta": {"type": "beta"},
    "halfnorm": {"type": "halfnorm"},
    "negexp": {"type": "negexp"},
    "logistic": {"type": "logistic"},
    "power": {"type": "power"},
    "halfnorm_05": {"type": "halfnorm", "steps": (0.05,)},
}


def _data(name: str) -> pd.DataFrame:
    if name == "bangertdrowns2004":
        return evalkit.datasets.load("bangertdrowns2004")
    return pd.read_csv(REFERENCE / f"{name}.csv")


def _check(fit: meta.SelectionResults, ref: dict[str, Any]) -> None:
    np.testing.assert_allclose(fit.params.to_numpy(), ref["beta"], rtol=RTOL)
    np.testing.assert_allclose(fit.std_errors.to_numpy(), ref["se"], rtol=RTOL)
    np.testing.assert_allclose(fit.tau2, ref["tau2"], rtol=RTOL, atol=ATOL_TAU2)
    np.testing.assert_allclose(fit.delta, ref["delta"], rtol=RTOL, atol=1e-8)
    table = fit.selection.set_index("parameter")
    se_delta = table["std_error"].to_numpy()[-len(fit.delta) :]
    ref_se = np.array(
        [np.nan if s is None else s for s in np.atleast_1d(ref["se_delta"])], dtype=float
    )
    np.testing.assert_allclose(se_delta, ref_se, rtol=RTOL)
    if ref["se_tau2"] is not None and "tau2" in table.index:
        np.testing.assert_allclose(table.loc["tau2", "std_error"], ref["se_tau2"], rtol=RTOL)
    facts = fit.glance().iloc[0]
    np.testing.assert_allclose(facts["logLik"], ref["ll"], rtol=1e-8)
    np.testing.assert_allclose(facts["logLik_unadjusted"], ref["ll0"], rtol=1e-8)
    np.testing.assert_allclose(facts["LRT"], ref["LRT"], rtol=RTOL, atol=1e-8)
    assert facts["LRT_df"] == ref["LRTdf"]
    np.testing.assert_allclose(facts["LRT_p"], ref["LRTp"], rtol=RTOL)


FITTED = [
    (dataset, case)
    for dataset in ("bangertdrowns2004", "hackshaw1998")
    for case in CASES
    if "failed" not in REF[f"{dataset}_{case}"]
]


def test_reference_failures_are_only_metafor_integration_failures() -> None:
    """The cases metafor could not fit at the tight integration tolerance are listed in
    the reference file; evalkit fits them, and its integrals are checked against adaptive
    quadrature in test_normalising_constants_match_adaptive_quadrature."""
    failed = {key for key, value in REF.items() if "failed" in value}
    assert len(FITTED) + len(failed) == 2 * len(CASES)
    for key in failed:
        dataset, case = key.split("_", 1)
        fit = meta.random_effects(_data(dataset), effect="yi", variance="vi")
        adjusted = meta.selection_model(fit, **CASES[case])  # type: ignore[arg-type]
        assert adjusted.facts["converged"]


@pytest.mark.parametrize(("dataset", "case"), FITTED)
def test_univariate_selection_models_match_selmodel(dataset: str, case: str) -> None:
    fit = meta.random_effects(_data(dataset), effect="yi", variance="vi")
    adjusted = meta.selection_model(fit, **CASES[case])  # type: ignore[arg-type]
    _check(adjusted, REF[f"{dataset}_{case}"])


@pytest.mark.parametrize("case", ["step_025", "beta"])
def test_meta_regression_under_selection(case: str) -> None:
    fit = meta.meta_regression(
        _data("bangertdrowns2004"), effect="yi", variance="vi", moderators="imag"
    )
    adjusted = meta.selection_model(fit, **CASES[case])  # type: ignore[arg-type]
    _check(adjusted, REF[f"bangertdrowns2004_imag_{case}"])
    assert list(adjusted.params.index) == ["Intercept", "imag"]


def test_fixed_effect_selection_model_keeps_tau2_at_zero() -> None:
    fit = meta.fixed_effect(_data("hackshaw1998"), effect="yi", variance="vi")
    adjusted = meta.selection_model(fit, type="step", steps=(0.025,))
    _check(adjusted, REF["hackshaw1998_fe_step_025"])
    assert adjusted.tau2 == 0.0 and "tau2" not in set(adjusted.selection["parameter"])


@pytest.mark.parametrize("case", ["step_025", "beta"])
def test_dependent_effects_cluster_robust(case: str) -> None:
    ref = REF[f"assink2016_cml_{case}"]
    data = _data("assink2016")
    che = meta.multilevel(data, effect="yi", variance="vi", levels=["study", "esid"])
    adjusted = meta.selection_model(che, **CASES[case])  # type: ignore[arg-type]
    np.testing.assert_allclose(adjusted.params.to_numpy(), ref["beta"], rtol=RTOL)
    np.testing.assert_allclose(adjusted.tau2, ref["tau2"], rtol=RTOL)
    np.testing.assert_allclose(adjusted.delta, ref["delta"], rtol=RTOL)
    free = np.asarray(ref["free"], dtype=bool)
    robust_se = np.concatenate(
        [adjusted.std_errors.to_numpy(), adjusted.selection["std_error"].to_numpy()]
    )
    np.testing.assert_allclose(robust_se[~np.isnan(robust_se)], ref["robust_se"], rtol=RTOL)
    assert free.sum() == np.isfinite(robust_se).sum()
    facts = adjusted.glance().iloc[0]
    assert facts["n_cluster"] == ref["n_clusters"]
    assert "LRT" not in facts.index
    # The same fit from a univariate model and an explicit cluster column.
    re = meta.random_effects(data, effect="yi", variance="vi")
    again = meta.selection_model(re, cluster="study", **CASES[case])  # type: ignore[arg-type]
    # Two paths to the same optimum from different starts (gradient below 1e-9).
    np.testing.assert_allclose(again.std_errors, adjusted.std_errors, rtol=1e-6)


def test_selection_inputs_are_checked() -> None:
    fit = meta.random_effects(_data("hackshaw1998"), effect="yi", variance="vi")
    with pytest.raises(EvalkitInputError, match="cut-points"):
        meta.selection_model(fit, type="step")
    with pytest.raises(EvalkitInputError, match="between 0 and 1"):
        meta.selection_model(fit, type="step", steps=(1.5,))
    with pytest.raises(EvalkitInputError, match="type"):
        meta.selection_model(fit, type="gaussian")  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="independent effects"):
        meta.selection_model(fit, type="halfnorm", cluster=np.arange(37) % 5)
    with pytest.raises(EvalkitInputError, match="give a cluster"):
        meta.selection_model(fit, type="step", steps=(0.025,), bootstrap=10)
    with pytest.raises(EvalkitInputError, match="two p-values"):
        meta.selection_model(fit, type="beta", steps=(0.5,))


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize(
    ("type", "steps", "delta"),
    [
        ("beta", None, [0.4, 1.7]),
        ("beta", (0.025, 0.975), [0.6, 2.0]),
        ("halfnorm", None, [2.5]),
        ("halfnorm", (0.05,), [1.2]),
        ("negexp", None, [3.0]),
        ("logistic", (0.1,), [4.0]),
        ("power", None, [0.8]),
    ],
)
def test_normalising_constants_match_adaptive_quadrature(
    type: str, steps: tuple[float, ...] | None, delta: list[float], alternative: str
) -> None:
    """evalkit's piecewise Gauss–Legendre integrals against scipy's adaptive quad at
    1e-13 for studies from tiny to large sampling variance relative to τ²."""
    from scipy import integrate
    from scipy import stats as st

    from evalkit.meta._selection_functions import p_values, selection_function

    sel = selection_function(type, steps, alternative)  # type: ignore[arg-type]
    v = np.array([1e-4, 0.01, 0.05, 0.3, 1.2])
    mu = np.array([0.4, -0.2, 0.1, 0.9, 0.0])
    s = np.sqrt(v + 0.04)
    d = np.asarray(delta)
    ours = sel.normaliser(mu, s, v, d)
    for i in range(v.size):

        def integrand(t: float, i: int = i) -> float:
            p = p_values(np.array([t]), np.array([v[i]]), alternative)  # type: ignore[arg-type]
            return float(sel.weight(p, d)[0] * st.norm.pdf(t, mu[i], s[i]))

        exact = integrate.quad(
            integrand, mu[i] - 14 * s[i], mu[i] + 14 * s[i], epsabs=0, epsrel=1e-13, limit=1000,
            points=[0.0, *np.sqrt(v[i]) * np.array([-4, -2, -1e-3, 1e-3, 2, 4])],
        )[0]  # fmt: skip
        np.testing.assert_allclose(ours[i], exact, rtol=1e-9)


def test_step_model_analytic_scores_match_differences() -> None:
    from evalkit.meta._numeric import gradient
    from evalkit.meta._selection_functions import selection_function
    from evalkit.meta._selection_likelihood import Problem

    data = _data("assink2016")
    x = np.ones((len(data), 1))
    theta = np.array([0.3, 0.05, 1.0, 0.6, 0.35])
    for alternative in ("greater", "less", "two-sided"):
        sel = selection_function("step", (0.025, 0.5), alternative)  # type: ignore[arg-type]
        problem = Problem(
            data["yi"].to_numpy(), data["vi"].to_numpy(), x, sel, True, np.ones(len(data))
        )
        numeric = gradient(problem.loglik, theta, np.ones(5, dtype=bool), np.full(5, 1e-4))
        np.testing.assert_allclose(problem.gradient(theta), numeric, rtol=1e-8)


def test_two_stage_bootstrap_weights() -> None:
    """Counts keep each drawn cluster's size times the number of times it was drawn, and
    never come from a single cluster."""
    codes = np.repeat(np.arange(3), [2, 3, 5])
    rng = np.random.default_rng(5)
    for _ in range(200):
        counts = meta.two_stage_weights(codes, rng)
        per_cluster = np.bincount(codes, weights=counts)
        sizes = np.bincount(codes)
        times = per_cluster / sizes
        assert np.allclose(times, np.round(times)) and times.sum() == 3
        assert np.count_nonzero(times) >= 2
