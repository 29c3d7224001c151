"""Simulated studies drawn as sufficient statistics instead of student rows.

The nested engine needs only each teacher's cross-products of ``[1, 1, X, y]`` (the
random intercepts of teacher and school, the fixed design, the outcome). For the
planned coaching model everything in ``X`` except the prior score is constant within a
teacher, so those cross-products are functions of the teacher's systematic part μ and
of five student-level sums: Σp, Σe, Σp², Σe², Σpe (prior score p, residual e). For n
independent students these have an exact joint distribution: the means (p̄, ē) are
normal with variances 1/n and σ²/n, and the centred sums of squares and products form a
2 × 2 Wishart matrix with n − 1 degrees of freedom, drawn by Bartlett's decomposition
(Bartlett 1933; e.g. Anderson 2003, *An Introduction to Multivariate Statistical
Analysis*, §7.2). A replicate then costs one draw per teacher instead of one per
student, and the fit starts from its statistics (:func:`evalkit.multilevel.
fit_statistics`, the engine :func:`~evalkit.multilevel.lmm` uses), giving the same
estimates that fitting the rows would.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from evalkit.multilevel import SufficientStats, fit_statistics


def _bartlett(n: int, scale: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of the centred SSCP of n independent (p, e) pairs with variances
    (1, scale²): columns W_pp, W_pe, W_ee."""
    if n < 2:
        return np.zeros((size, 3))
    a11 = np.sqrt(rng.chisquare(n - 1, size))
    a21 = rng.standard_normal(size)
    a22_sq = rng.chisquare(n - 2, size) if n > 2 else np.zeros(size)
    return np.column_stack([a11**2, scale * a11 * a21, scale**2 * (a21**2 + a22_sq)])


def simulate_statistics(
    design: object, rng: np.random.Generator
) -> tuple[SufficientStats, int, np.ndarray]:
    """One simulated study as the nested engine's sufficient statistics.

    Returns the statistics, the position of the tested coefficient in ``X`` and each
    column's containment stratum (0 school, 1 teacher, 2 student; -1 the intercept).
    The columns of ``X`` are the intercept, ``treated``, then ``leadership`` and
    ``treated:leadership`` when the design has them, then ``prior`` when ``r21 > 0``.
    """
    from evalkit.power.simulation import SimulationDesign

    assert isinstance(design, SimulationDesign)
    k, j, n = design.n_schools, design.teachers_per_school, design.students_per_teacher
    g = k * j
    school_of_teacher = np.repeat(np.arange(k), j)
    if design.assignment == "school":
        treated_school = rng.permutation(k) < max(1, round(design.p * k))
        treated = treated_school[school_of_teacher].astype(float)
    else:
        per_school = max(1, round(design.p * j))
        ranks = np.argsort(rng.random((k, j)), axis=1).argsort(axis=1)
        treated = (ranks < per_school).ravel().astype(float)
    leadership = rng.standard_normal(k)[school_of_teacher]
    level1 = 1.0 - design.icc_school - design.icc_teacher
    school_effect = rng.normal(0.0, np.sqrt(design.icc_school), k)[school_of_teacher]
    teacher_effect = rng.normal(0.0, np.sqrt(design.icc_teacher), g)
    mu = (
        school_effect
        + teacher_effect
        + treated * (design.effect + design.moderation * leadership)
        + design.leadership * leadership
    )
    moderated = bool(design.moderation or design.leadership)
    with_prior = design.r21 > 0
    slope = np.sqrt(level1 * design.r21)
    sigma = np.sqrt(level1 * (1.0 - design.r21))
    # the five student-level sums of each teacher
    p_bar = rng.standard_normal(g) / np.sqrt(n)
    e_bar = sigma * rng.standard_normal(g) / np.sqrt(n)
    w = _bartlett(n, sigma, g, rng)
    sum_p, sum_e = n * p_bar, n * e_bar
    sum_pp = w[:, 0] + n * p_bar**2
    sum_pe = w[:, 1] + n * p_bar * e_bar
    sum_ee = w[:, 2] + n * e_bar**2
    sum_y = n * mu + slope * sum_p + sum_e
    sum_py = mu * sum_p + slope * sum_pp + sum_pe
    sum_yy = (
        n * mu**2 + slope**2 * sum_pp + sum_ee
        + 2.0 * mu * slope * sum_p + 2.0 * mu * sum_e + 2.0 * slope * sum_pe
    )  # fmt: skip
    constant = [np.ones(g), np.ones(g), np.ones(g), treated]  # Z_teacher, Z_school, 1, treated
    strata = [-1, 0 if design.assignment == "school" else 1]
    if moderated:
        constant += [leadership, treated * leadership]
        strata += [0, 0 if design.assignment == "school" else 1]
    v = np.column_stack(constant)
    m = v.shape[1]
    c = m + int(with_prior) + 1
    cross = np.empty((g, c, c))
    cross[:, :m, :m] = n * v[:, :, None] * v[:, None, :]
    y = c - 1
    cross[:, :m, y] = cross[:, y, :m] = v * sum_y[:, None]
    cross[:, y, y] = sum_yy
    if with_prior:
        pr = m
        cross[:, :m, pr] = cross[:, pr, :m] = v * sum_p[:, None]
        cross[:, pr, pr] = sum_pp
        cross[:, pr, y] = cross[:, y, pr] = sum_py
        strata.append(2)
    p = c - 3  # the fixed effects: all columns but the two Z's and y
    statistics = SufficientStats(
        cross=cross,
        starts=[np.arange(0, g, j)],
        q=[1, 1],
        n_groups=[g, k],
        p=p,
        n=g * n,
    )
    tested = 3 if moderated else 1  # treated:leadership, or treated
    return statistics, tested, np.asarray(strata)


def containment_df(strata: np.ndarray, n_schools: int, n_teachers: int, n: int) -> np.ndarray:
    """nlme's containment df for columns in the given strata (as
    :func:`evalkit.multilevel.lmm` assigns them with ``df_method="containment"``)."""
    df = np.array([n_schools, n_teachers - n_schools, n - n_teachers], dtype=float)
    for stratum in strata:
        df[stratum if stratum >= 0 else 0] -= 1
    return np.array([df.max() if s < 0 else df[s] for s in strata])


def replicate_statistics(
    design: object, rng: np.random.Generator
) -> tuple[float, float, float, float, bool, bool]:
    """Estimate, SE, p-value, df, converged and singular of one study's tested term."""
    from evalkit.power.simulation import SimulationDesign

    assert isinstance(design, SimulationDesign)
    statistics, tested, strata = simulate_statistics(design, rng)
    residual = (1.0 - design.icc_school - design.icc_teacher) * (1.0 - design.r21)
    truth = np.sqrt(np.array([design.icc_teacher, design.icc_school]) / residual)
    fit = fit_statistics(statistics, start=truth, fast=True)
    df = containment_df(
        strata,
        design.n_schools,
        design.n_schools * design.teachers_per_school,
        statistics.n,
    )[tested]
    estimate = float(fit.beta[tested])
    se = float(np.sqrt(fit.cov[tested, tested]))
    p_value = float(2.0 * scipy_stats.t.sf(abs(estimate / se), df))
    return estimate, se, p_value, float(df), fit.converged, fit.singular
