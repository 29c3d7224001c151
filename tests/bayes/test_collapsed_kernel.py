"""The collapsed likelihood kernels against dense linear algebra: log|M|, the reduced
cross-products, both log-likelihoods (random effects, and β too, integrated out) and
their gradients — random intercepts on 2-, 3- and 4-level designs (the intercept
kernel and the general one) and random slopes (the general kernel), all with unequal
cluster sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

pytest.importorskip("numba", reason="the bayes extra (numba) is not installed")

from evalkit.bayes._collapsed import Layout, reduce_with_gradient
from evalkit.bayes._collapsed_loglik import KERNELS, coefficient_draws
from evalkit.bayes._collapsed_slopes import SlopeLayout, reduce_general
from evalkit.multilevel import lmm
from evalkit.multilevel.stats import build

DESIGNS = {
    "two levels": "(1 | school)",
    "three levels": "(1 | school) + (1 | school:teacher)",
    "four levels": "(1 | district) + (1 | district:school) + (1 | district:school:teacher)",
    "slopes, two levels": "(1 + x1 + x2 | school)",
    "slopes at the top": "(1 + x1 | school) + (1 | school:teacher)",
    "slopes at two levels": "(1 + x1 | district) + (1 + x2 | district:school)",
    "intercept above slopes": "(1 | district) + (1 + x1 | district:school)",
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
    fit = lmm("y ~ x1 + x2 + " + DESIGNS[request.param], _data(7), df_method="none")
    frame = fit.frame
    assert frame is not None
    q = [z.shape[1] for z in frame.z]
    design = np.column_stack([*frame.z, frame.x, frame.y])
    stats = build(design, list(frame.codes), q, frame.x.shape[1])
    general = SlopeLayout.from_stats(stats)
    layouts: dict[str, object] = {"general": general}
    if max(q) == 1:
        layouts["intercepts"] = Layout.from_stats(stats)
    signs = np.where(np.arange(general.n_theta) % 2, -0.5, 1.0)  # negative off-diagonals too
    return {
        "layouts": layouts,
        "x": frame.x,
        "y": frame.y,
        "frame": frame,
        "theta": np.linspace(0.3, 0.9, general.n_theta) * signs,
        "q": q,
    }


def _factors(theta: np.ndarray, q: list[int]) -> list[np.ndarray]:
    out, start = [], 0
    for size in q:
        lam = np.zeros((size, size))
        rows, cols = np.tril_indices(size)
        lam[rows, cols] = theta[start : start + rows.size]
        start += rows.size
        out.append(lam)
    return out


def _dense_m(case: dict[str, object], theta: np.ndarray) -> np.ndarray:
    frame = case["frame"]
    n = len(case["y"])
    m = np.eye(n)
    for z, codes, lam in zip(frame.z, frame.codes, _factors(theta, case["q"]), strict=True):
        size = z.shape[1]
        full = np.zeros((n, (int(codes.max()) + 1) * size))
        for j in range(size):
            full[np.arange(n), codes * size + j] = z[:, j]
        m += full @ np.kron(np.eye(int(codes.max()) + 1), lam @ lam.T) @ full.T
    return m


def _dense(case: dict[str, object], theta: np.ndarray) -> tuple[float, np.ndarray]:
    m = _dense_m(case, theta)
    w = np.column_stack([case["x"], case["y"]])
    return float(np.linalg.slogdet(m)[1]), w.T @ np.linalg.solve(m, w)


def _reduce(kind: str, layout: object, theta: np.ndarray) -> tuple:
    if kind == "intercepts":
        logdet, total, dlogdet, dtotal = reduce_with_gradient(theta**2, *layout.arrays())
        return logdet, total, dlogdet * 2 * theta, dtotal * (2 * theta)[:, None, None]
    return reduce_general(theta, *layout.arrays())


def test_reduction_matches_dense_algebra(case: dict[str, object]) -> None:
    theta = case["theta"]
    dense_logdet, dense_total = _dense(case, theta)
    step = 1e-6
    numeric_logdet, numeric_total = [], []
    for m in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[m] += step
        down[m] -= step
        (lu, tu), (ld, td) = _dense(case, up), _dense(case, down)
        numeric_logdet.append((lu - ld) / (2 * step))
        numeric_total.append((tu - td) / (2 * step))
    for kind, layout in case["layouts"].items():
        logdet, total, dlogdet, dtotal = _reduce(kind, layout, theta)
        assert logdet == pytest.approx(dense_logdet, rel=1e-12), kind
        np.testing.assert_allclose(total, dense_total, rtol=1e-10, atol=1e-10, err_msg=kind)
        np.testing.assert_allclose(dlogdet, numeric_logdet, rtol=1e-6, atol=1e-7, err_msg=kind)
        np.testing.assert_allclose(dtotal, numeric_total, rtol=1e-5, atol=1e-6, err_msg=kind)
        np.testing.assert_allclose(layout.totals(theta), total, rtol=1e-14)


def test_log_likelihoods_match_multivariate_normal(case: dict[str, object]) -> None:
    theta, x, y = case["theta"], case["x"], case["y"]
    variance = 0.8
    m = _dense_m(case, theta)
    beta = np.linspace(-0.2, 0.4, x.shape[1])
    prior_sd, prior_mean = np.linspace(0.5, 2.0, x.shape[1]), np.linspace(0.3, -0.1, x.shape[1])
    expected_given = multivariate_normal(x @ beta, variance * m).logpdf(y)
    marginal = variance * m + x @ np.diag(prior_sd**2) @ x.T
    expected_integrated = multivariate_normal(x @ prior_mean, marginal).logpdf(y)
    for kind, layout in case["layouts"].items():
        slopes = kind == "general"
        data = (layout.arrays(), float(layout.n))
        given = KERNELS[(False, slopes)](theta, variance, beta, *data)[0]
        assert given == pytest.approx(expected_given, rel=1e-10), kind
        integrated = KERNELS[(True, slopes)](theta, variance, 1 / prior_sd**2, prior_mean, *data)[0]
        assert integrated == pytest.approx(expected_integrated, rel=1e-10), kind


def _numeric(function: object, point: np.ndarray, step: float = 1e-6) -> np.ndarray:
    out = np.empty(point.size)
    for i in range(point.size):
        up, down = point.copy(), point.copy()
        up[i] += step
        down[i] -= step
        out[i] = (function(up) - function(down)) / (2 * step)  # type: ignore[operator]
    return out


def test_gradients_match_finite_differences(case: dict[str, object]) -> None:
    theta, x = case["theta"], case["x"]
    precision = 1.0 / np.linspace(0.5, 2.0, x.shape[1]) ** 2
    prior_mean = np.linspace(0.3, -0.1, x.shape[1])
    beta = np.linspace(-0.2, 0.4, x.shape[1])
    variance, p, k = 0.8, beta.size, theta.size
    for kind, layout in case["layouts"].items():
        slopes = kind == "general"
        data = (layout.arrays(), float(layout.n))
        integrated, given = KERNELS[(True, slopes)], KERNELS[(False, slopes)]

        def f_integrated(point: np.ndarray) -> float:
            return float(integrated(point[:k], point[k], precision, prior_mean, *data)[0])  # noqa: B023

        def f_given(point: np.ndarray) -> float:
            return float(given(point[:k], point[k], point[k + 1 :], *data)[0])  # noqa: B023

        _, grad, grad_v = integrated(theta, variance, precision, prior_mean, *data)
        np.testing.assert_allclose(
            np.r_[grad, grad_v], _numeric(f_integrated, np.r_[theta, variance]),
            rtol=1e-5, atol=1e-6, err_msg=kind,
        )  # fmt: skip
        _, grad, grad_v, grad_beta = given(theta, variance, beta, *data)
        np.testing.assert_allclose(
            np.r_[grad, grad_v, grad_beta], _numeric(f_given, np.r_[theta, variance, beta]),
            rtol=1e-5, atol=1e-6, err_msg=kind,
        )  # fmt: skip
        assert grad_beta.size == p


def test_coefficient_draws_follow_the_conditional_posterior(case: dict[str, object]) -> None:
    """β | σ, θ, y is Normal with precision XᵀV⁻¹X + P and mean (…)⁻¹(XᵀV⁻¹y + Pm);
    20,000 draws at one (σ, θ) reproduce that mean and covariance within Monte Carlo
    error."""
    theta, x, y = case["theta"], case["x"], case["y"]
    variance, prior_sd = 0.8, np.linspace(0.5, 2.0, x.shape[1])
    prior_mean = np.linspace(0.3, -0.1, x.shape[1])
    v = variance * _dense_m(case, theta)
    precision = x.T @ np.linalg.solve(v, x) + np.diag(1.0 / prior_sd**2)
    cov = np.linalg.inv(precision)
    mean = cov @ (x.T @ np.linalg.solve(v, y) + prior_mean / prior_sd**2)
    draws = 20_000
    for layout in case["layouts"].values():
        beta = coefficient_draws(
            layout, np.full(draws, np.sqrt(variance)), np.tile(theta, (draws, 1)), prior_sd,
            np.random.default_rng(3), prior_mean=prior_mean,
        )  # fmt: skip
        assert np.all(np.abs(beta.mean(axis=0) - mean) < 4 * np.sqrt(np.diag(cov) / draws))
        np.testing.assert_allclose(
            np.cov(beta, rowvar=False), cov, rtol=0.05, atol=0.05 * cov.max()
        )
