"""The collapsed likelihood kernel against dense linear algebra: log|M|, the reduced
cross-products, both log-likelihoods (random effects, and β too, integrated out) and
their gradients, on 2-, 3- and 4-level designs with unequal cluster sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

pytest.importorskip("numba")

from evalkit.bayes._collapsed import (
    Layout,
    coefficient_draws,
    loglik_given_beta,
    loglik_integrated,
    reduce_with_gradient,
)
from evalkit.multilevel import lmm
from evalkit.multilevel.stats import build

DESIGNS = {
    "two levels": ["school"],
    "three levels": ["school", "school:teacher"],
    "four levels": ["district", "district:school", "district:school:teacher"],
}


def _data(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for district in range(3):
        for school in range(int(rng.integers(2, 4))):
            for teacher in range(int(rng.integers(1, 4))):
                for _ in range(int(rng.integers(2, 7))):
                    rows.append(
                        (district, f"{district}-{school}", f"{district}-{school}-{teacher}")
                    )
    frame = pd.DataFrame(rows, columns=["district", "school", "teacher"])
    n = len(frame)
    frame["x1"] = rng.normal(size=n)
    frame["x2"] = rng.binomial(1, 0.5, n).astype(float)
    frame["y"] = 0.3 * frame["x1"] + rng.normal(size=n) + rng.normal(size=3)[frame["district"]]
    return frame


@pytest.fixture(params=list(DESIGNS), scope="module")
def case(request: pytest.FixtureRequest) -> dict[str, object]:
    groupings = DESIGNS[request.param]
    formula = "y ~ x1 + x2 + " + " + ".join(f"(1 | {g})" for g in groupings)
    data = _data(7)
    fit = lmm(formula, data, df_method="none")
    frame = fit.frame
    assert frame is not None
    design = np.column_stack([*frame.z, frame.x, frame.y])
    stats = build(design, list(frame.codes), [1] * len(frame.z), frame.x.shape[1])
    memberships = []
    for codes in frame.codes:  # lowest level first, as s is ordered
        z = np.zeros((codes.size, int(codes.max()) + 1))
        z[np.arange(codes.size), codes] = 1.0
        memberships.append(z)
    return {
        "layout": Layout.from_stats(stats),
        "x": frame.x,
        "y": frame.y,
        "z": memberships,
        "s": np.linspace(0.3, 0.9, len(groupings)),
    }


def _dense(case: dict[str, object], s: np.ndarray) -> tuple[float, np.ndarray]:
    x, y, zs = case["x"], case["y"], case["z"]
    m = np.eye(len(y)) + sum(sl * z @ z.T for sl, z in zip(s, zs, strict=True))
    w = np.column_stack([x, y])
    return float(np.linalg.slogdet(m)[1]), w.T @ np.linalg.solve(m, w)


def test_reduction_matches_dense_algebra(case: dict[str, object]) -> None:
    layout, s = case["layout"], case["s"]
    logdet, total, dlogdet, dtotal = reduce_with_gradient(s, *layout.arrays())
    dense_logdet, dense_total = _dense(case, s)
    assert logdet == pytest.approx(dense_logdet, rel=1e-12)
    np.testing.assert_allclose(total, dense_total, rtol=1e-10, atol=1e-10)
    step = 1e-6
    for m in range(s.size):
        up, down = s.copy(), s.copy()
        up[m] += step
        down[m] -= step
        (lu, tu), (ld, td) = _dense(case, up), _dense(case, down)
        assert dlogdet[m] == pytest.approx((lu - ld) / (2 * step), rel=1e-6)
        np.testing.assert_allclose(dtotal[m], (tu - td) / (2 * step), rtol=1e-5, atol=1e-6)
    _, values_only, _, _ = reduce_with_gradient(s, *layout.arrays(), gradient=False)
    np.testing.assert_allclose(values_only, total, rtol=1e-14)


def test_log_likelihoods_match_multivariate_normal(case: dict[str, object]) -> None:
    layout, s, x, y, zs = case["layout"], case["s"], case["x"], case["y"], case["z"]
    variance = 0.8
    m = np.eye(len(y)) + sum(sl * z @ z.T for sl, z in zip(s, zs, strict=True))
    beta = np.linspace(-0.2, 0.4, x.shape[1])
    given, *_ = loglik_given_beta(s, variance, beta, *layout.arrays(), float(layout.n))
    assert given == pytest.approx(multivariate_normal(x @ beta, variance * m).logpdf(y), rel=1e-10)
    prior_sd, prior_mean = np.linspace(0.5, 2.0, x.shape[1]), np.linspace(0.3, -0.1, x.shape[1])
    integrated, *_ = loglik_integrated(
        s, variance, 1.0 / prior_sd**2, prior_mean, *layout.arrays(), float(layout.n)
    )
    marginal = variance * m + x @ np.diag(prior_sd**2) @ x.T
    assert integrated == pytest.approx(
        multivariate_normal(x @ prior_mean, marginal).logpdf(y), rel=1e-10
    )


def test_gradients_match_finite_differences(case: dict[str, object]) -> None:
    layout, s, x = case["layout"], case["s"], case["x"]
    data = (*layout.arrays(), float(layout.n))
    precision = 1.0 / np.linspace(0.5, 2.0, x.shape[1]) ** 2
    prior_mean = np.linspace(0.3, -0.1, x.shape[1])
    beta = np.linspace(-0.2, 0.4, x.shape[1])
    variance, step = 0.8, 1e-6

    def integrated(point: np.ndarray) -> float:
        return float(loglik_integrated(point[:-1], point[-1], precision, prior_mean, *data)[0])

    def given(point: np.ndarray) -> float:
        p = beta.size
        return float(loglik_given_beta(point[: -1 - p], point[-1 - p], point[-p:], *data)[0])

    def numeric(function: object, point: np.ndarray) -> np.ndarray:
        out = np.empty(point.size)
        for i in range(point.size):
            up, down = point.copy(), point.copy()
            up[i] += step
            down[i] -= step
            out[i] = (function(up) - function(down)) / (2 * step)  # type: ignore[operator]
        return out

    _, grad_s, grad_v = loglik_integrated(s, variance, precision, prior_mean, *data)
    np.testing.assert_allclose(
        np.r_[grad_s, grad_v], numeric(integrated, np.r_[s, variance]), rtol=1e-5, atol=1e-6
    )
    _, grad_s, grad_v, grad_beta = loglik_given_beta(s, variance, beta, *data)
    np.testing.assert_allclose(
        np.r_[grad_s, grad_v, grad_beta],
        numeric(given, np.r_[s, variance, beta]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_coefficient_draws_follow_the_conditional_posterior(case: dict[str, object]) -> None:
    """β | σ, τ, y is Normal with precision XᵀV⁻¹X + P and mean (…)⁻¹XᵀV⁻¹y; 20,000 draws
    at one (σ, τ) reproduce that mean and covariance within Monte Carlo error."""
    layout, s, x, y, zs = case["layout"], case["s"], case["x"], case["y"], case["z"]
    variance, prior_sd = 0.8, np.linspace(0.5, 2.0, x.shape[1])
    prior_mean = np.linspace(0.3, -0.1, x.shape[1])
    draws = 20_000
    sigma = np.full(draws, np.sqrt(variance))
    taus = np.tile(np.sqrt(s * variance), (draws, 1))
    beta = coefficient_draws(
        layout, sigma, taus, prior_sd, np.random.default_rng(3), prior_mean=prior_mean
    )
    v = variance * (np.eye(len(y)) + sum(sl * z @ z.T for sl, z in zip(s, zs, strict=True)))
    precision = x.T @ np.linalg.solve(v, x) + np.diag(1.0 / prior_sd**2)
    cov = np.linalg.inv(precision)
    mean = cov @ (x.T @ np.linalg.solve(v, y) + prior_mean / prior_sd**2)
    se = np.sqrt(np.diag(cov) / draws)
    assert np.all(np.abs(beta.mean(axis=0) - mean) < 4 * se)
    np.testing.assert_allclose(np.cov(beta, rowvar=False), cov, rtol=0.05, atol=0.05 * cov.max())
