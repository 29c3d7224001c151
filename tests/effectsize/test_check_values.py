"""Published check values of the WWC Procedures and Standards Handbook (v5.0, Appendix E
and the effect-size chapters) and Hedges (2007, J. Educ. Behav. Stat. 32(4)), to the
printed precision."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit import effectsize as es


def test_hedges_g_small_example() -> None:
    # T = {5, 6, 7}, C = {4, 5, 6}: means 6 and 5, SDs 1, omega = 1 - 3/15 = 0.8.
    treated, control = np.array([5.0, 6.0, 7.0]), np.array([4.0, 5.0, 6.0])
    g = es.hedges_g(treated.mean(), control.mean(), treated.std(ddof=1), control.std(ddof=1), 3, 3)
    assert g.estimate == pytest.approx(0.8, abs=1e-12)


def test_cox_index_before_omega() -> None:
    cox = es.cox_index(2 / 3, 1 / 3, 50, 50, correction="none")
    assert round(cox.estimate, 4) == 0.8402


def test_cox_index_applies_omega_by_default() -> None:
    raw = es.cox_index(2 / 3, 1 / 3, 50, 50, correction="none").estimate
    corrected = es.cox_index(2 / 3, 1 / 3, 50, 50).estimate
    assert corrected == pytest.approx(raw * (1 - 3 / (4 * 100 - 9)))


def test_improvement_index() -> None:
    assert round(es.improvement_index(0.25), 2) == 9.87


def test_cluster_df_check_value() -> None:
    assert round(float(es.cluster_df(100.0, 5.0, 0.1)), 2) == 94.40


def test_clustered_design_check_values() -> None:
    n, n_per, icc = 400.0, 20.0, 0.2
    assert round(float(es.gamma_factor(n, n_per, icc)), 6) == 0.980905
    assert round(float(es.cluster_df(n, n_per, icc)), 3) == 231.658
    adjusted = es.cluster_adjusted_g(0.30, 200, 200, 20, 0.2, correction="none")
    assert round(adjusted.estimate, 6) == 0.297122
    assert round(adjusted.variance, 7) == 0.0481869
    assert round(adjusted.std_error, 6) == 0.219515
    naive_se = float(np.sqrt(1 / 200 + 1 / 200 + 0.3**2 / 800))
    assert naive_se == pytest.approx(0.10, abs=0.005)


def test_clustered_variance_formula_matches_check_value() -> None:
    v = es.clustered_variance(
        np.array([0.297122]),
        np.array([200.0]),
        np.array([200.0]),
        np.array([20.0]),
        np.array([0.2]),
    )
    assert round(float(v[0]), 7) == 0.0481869


def test_cluster_correction_with_omega_uses_h() -> None:
    h = float(es.cluster_df(400.0, 20.0, 0.2))
    omega = 1 - 3 / (4 * h - 1)
    adjusted = es.cluster_adjusted_g(0.30, 200, 200, 20, 0.2)
    assert adjusted.estimate == pytest.approx(omega * 0.297122, abs=1e-6)


def test_one_arm_clustering_check_values() -> None:
    assert round(es.one_arm_gamma(100, 40, 5, 0.1) ** 0.5, 3) == 0.978
    assert es.one_arm_design_effect(100, 40, 5, 0.1) == pytest.approx(1.1)


def test_delta_total_from_within() -> None:
    # Hedges (2007): delta_T = delta_W * sqrt(1 - rho); 0.20 * sqrt(0.8) = 0.179.
    assert round(0.20 * np.sqrt(1 - 0.2), 3) == 0.179


def test_wwc_fixed_effect_pooling() -> None:
    pooled = es.pool_fixed([0.20, 0.10, 0.35], [0.10, 0.08, 0.15])
    assert round(pooled.estimate, 4) == 0.1702
    assert round(pooled.std_error, 4) == 0.0577


@pytest.mark.parametrize(
    ("g", "rating"),
    [
        (0.0, "satisfied"),
        (0.05, "satisfied"),
        (-0.05, "satisfied"),
        (0.051, "requires adjustment"),
        (0.25, "requires adjustment"),
        (-0.25, "requires adjustment"),
        (0.2501, "not satisfied"),
        (-0.4, "not satisfied"),
    ],
)
def test_baseline_equivalence_boundaries(g: float, rating: str) -> None:
    assert es.baseline_equivalence(g) == rating


def test_substantively_important_threshold() -> None:
    assert es.substantively_important(0.25)
    assert not es.substantively_important(0.2499)
    assert es.substantively_important(-0.3)


def test_attrition_anchor_boundaries() -> None:
    assert es.ATTRITION_BOUNDARIES["cautious"][0] == 5.7
    assert es.ATTRITION_BOUNDARIES["optimistic"][0] == 10.0


def test_attrition_rates_and_rating() -> None:
    # 0% overall is impossible with differential > 0; 100/100 randomised, 97/91 analysed:
    # a_T = 3%, a_C = 9%, overall 6%, differential 6 points -> low (cautious 6.2 at 6%).
    result = es.attrition(100, 100, 97, 91)
    assert result.overall == pytest.approx(0.06)
    assert result.differential == pytest.approx(0.06)
    assert result.max_differential == pytest.approx(0.062)
    assert result.rating == "low"
    # The same differential at 30% overall exceeds the cautious 4.1 but not the optimistic 8.4.
    high = es.attrition(100, 100, 73, 67)
    assert high.overall == pytest.approx(0.30)
    assert high.rating == "high"
    assert es.attrition(100, 100, 73, 67, boundary="optimistic").rating == "low"


def test_posttest_variance_formula() -> None:
    g = es.hedges_g(10.5, 10.0, 2.0, 2.0, 40, 60)
    n = 100
    assert g.variance == pytest.approx(1 / 40 + 1 / 60 + g.estimate**2 / (2 * n))


def test_gain_difference_formula() -> None:
    result = es.gain_difference(10, 15, 10, 13, 4.0, 4.0, 50, 50)
    omega = 1 - 3 / (4 * 100 - 9)
    assert result.estimate == pytest.approx(omega * 2 / 4)
    expected_v = 2 * (1 - 0.5) * (1 / 50 + 1 / 50) + result.estimate**2 / 200
    assert result.variance == pytest.approx(expected_v)


def test_adjusted_difference_uses_unadjusted_sd_and_r_squared() -> None:
    result = es.hedges_g_adjusted(2.0, 8.0, 8.0, 100, 100, r_squared=0.5)
    omega = 1 - 3 / (4 * 200 - 9)
    assert result.estimate == pytest.approx(omega * 0.25)
    assert result.variance == pytest.approx(0.5 * (2 / 100) + result.estimate**2 / 400)


def test_from_t_and_f_agree_with_means() -> None:
    from_means = es.hedges_g(11.0, 10.0, 2.0, 2.0, 30, 30)
    t = (11.0 - 10.0) / (2.0 * np.sqrt(1 / 30 + 1 / 30))
    assert es.hedges_g_from_t(t, 30, 30).estimate == pytest.approx(from_means.estimate)
    assert es.hedges_g_from_f(t**2, 30, 30, sign=1).estimate == pytest.approx(from_means.estimate)
    assert es.hedges_g_from_f(t**2, 30, 30, sign=-1).estimate == pytest.approx(-from_means.estimate)


def test_benjamini_hochberg_matches_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.001, 0.02, 0.03, 0.04, 0.2, 0.5])
    ours = es.benjamini_hochberg(p)
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(ours["p_adjusted"], adjusted)
    np.testing.assert_array_equal(ours["significant"], reject)
