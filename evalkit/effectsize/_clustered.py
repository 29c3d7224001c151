"""Effect sizes from designs that assign clusters (Hedges 2007; WWC Procedures Handbook).

Notation follows Hedges (2007, *J. Educ. Behav. Stat.* 32(4), 341–370): ``N`` students
in clusters of average size ``n`` with intraclass correlation ``ρ``; the standardiser
is the **total** standard deviation. The WWC applies these corrections when a study
assigned clusters but analysed students as if independent (WWC Procedures Handbook
v4.1 Supplement and v5.0, Appendix E).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.core import ArrayLike, FloatArray, SmallSampleCorrection, broadcast_inputs, require
from evalkit.effectsize._corrections import small_sample_factor
from evalkit.effectsize._record import EffectSize, make_record


def check_cluster_inputs(
    n_total: FloatArray, cluster_size: FloatArray, icc: FloatArray, labels: Sequence[Any]
) -> None:
    """Validate ``N``, ``n`` and ``ρ`` for the clustered-design formulas."""
    require((icc >= 0.0) & (icc < 1.0), "icc", labels, "in [0, 1)")
    require(cluster_size >= 1.0, "cluster_size", labels, "at least 1")
    require(
        cluster_size <= n_total, "cluster_size", labels, "no larger than the total sample size N"
    )
    require(
        n_total - 2.0 - 2.0 * (cluster_size - 1.0) * icc > 0.0,
        "cluster_size",
        labels,
        "small enough that N - 2 - 2(n - 1)ρ > 0 (too few clusters for the correction)",
    )


def gamma_factor(n_total: FloatArray, cluster_size: FloatArray, icc: FloatArray) -> FloatArray:
    """Hedges' γ = 1 − 2(n−1)ρ / (N−2): the share of d_W that survives standardising by σ_T."""
    return 1.0 - 2.0 * (cluster_size - 1.0) * icc / (n_total - 2.0)


def design_effect(cluster_size: FloatArray, icc: FloatArray) -> FloatArray:
    """The design effect η = 1 + (n−1)ρ."""
    return 1.0 + (cluster_size - 1.0) * icc


def cluster_df(n_total: FloatArray, cluster_size: FloatArray, icc: FloatArray) -> FloatArray:
    """Hedges' (2007) degrees of freedom ``h`` for the total-SD effect size.

    ``h = [(N−2) − 2(n−1)ρ]² / [(N−2)(1−ρ)² + n(N−2n)ρ² + 2(N−2n)ρ(1−ρ)]``.
    """
    numerator = ((n_total - 2.0) - 2.0 * (cluster_size - 1.0) * icc) ** 2
    denominator = (
        (n_total - 2.0) * (1.0 - icc) ** 2
        + cluster_size * (n_total - 2.0 * cluster_size) * icc**2
        + 2.0 * (n_total - 2.0 * cluster_size) * icc * (1.0 - icc)
    )
    return np.asarray(numerator / denominator, dtype=np.float64)


def clustered_variance(
    g: FloatArray,
    n_t: FloatArray,
    n_c: FloatArray,
    cluster_size: FloatArray,
    icc: FloatArray,
    *,
    base_factor: FloatArray | float = 1.0,
) -> FloatArray:
    """Sampling variance of a cluster-adjusted effect size.

    ``v = base·(1/N_T + 1/N_C)·η + γ·g² / (2h)`` (Hedges 2007, eq. for equal cluster
    sizes; WWC v5.0 Appendix E). ``base`` is 1 for posttest comparisons and
    ``1 − R²`` or ``2(1 − r)`` for adjusted or gain-score contrasts.
    """
    n_total = n_t + n_c
    gamma = gamma_factor(n_total, cluster_size, icc)
    h = cluster_df(n_total, cluster_size, icc)
    eta = design_effect(cluster_size, icc)
    return np.asarray(
        base_factor * (1.0 / n_t + 1.0 / n_c) * eta + gamma * g**2 / (2.0 * h), dtype=np.float64
    )


def adjust_for_clustering(
    d: FloatArray,
    n_t: FloatArray,
    n_c: FloatArray,
    cluster_size: FloatArray,
    icc: FloatArray,
    *,
    correction: SmallSampleCorrection,
    base_factor: FloatArray | float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """Return the cluster-adjusted ``g_T = ω_h · d · sqrt(γ)`` and its variance.

    ``ω_h`` is the small-sample factor with ``h`` degrees of freedom (WWC v5.0,
    Appendix E applies the bias correction with Hedges' ``h`` in place of ``N − 2``).
    """
    n_total = n_t + n_c
    gamma = gamma_factor(n_total, cluster_size, icc)
    h = cluster_df(n_total, cluster_size, icc)
    g = small_sample_factor(h, correction=correction) * d * np.sqrt(gamma)
    variance = clustered_variance(g, n_t, n_c, cluster_size, icc, base_factor=base_factor)
    return g, variance


def cluster_adjusted_g(
    d: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    cluster_size: ArrayLike,
    icc: ArrayLike,
    *,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Correct a student-level SMD from a cluster-assigned study that ignored clustering.

    Parameters
    ----------
    d
        The naive standardised mean difference (students treated as independent).
    n_t, n_c
        Numbers of students in the treatment and comparison groups.
    cluster_size
        Average number of students per cluster (``n``).
    icc
        Intraclass correlation ρ; the WWC default when a study reports none is 0.20
        for achievement outcomes.
    correction
        Small-sample correction applied with ``h`` degrees of freedom
        (see :func:`evalkit.effectsize.small_sample_factor`); ``"none"`` returns
        ``d · sqrt(γ)`` as in Hedges (2007).
    level
        Confidence level.

    Returns
    -------
    EffectSize

    Examples
    --------
    >>> es = cluster_adjusted_g(0.30, 200, 200, 20, 0.2, correction="none")
    >>> round(es.estimate, 6), round(es.variance, 7)
    (0.297122, 0.0481869)
    """
    arrays, labels, scalar = broadcast_inputs(
        d=d, n_t=n_t, n_c=n_c, cluster_size=cluster_size, icc=icc
    )
    for name in ("n_t", "n_c"):
        require(arrays[name] >= 1, name, labels, "at least 1")
        require(arrays[name] == np.round(arrays[name]), name, labels, "a whole number")
    n_total = arrays["n_t"] + arrays["n_c"]
    check_cluster_inputs(n_total, arrays["cluster_size"], arrays["icc"], labels)
    g, variance = adjust_for_clustering(
        arrays["d"],
        arrays["n_t"],
        arrays["n_c"],
        arrays["cluster_size"],
        arrays["icc"],
        correction=correction,
    )
    method = f"Hedges (2007) total-SD effect size, clustering-corrected; correction={correction}"
    return make_record(g, variance, level=level, method=method, labels=labels, scalar=scalar)


def one_arm_gamma(
    n_total: ArrayLike, n_c: ArrayLike, cluster_size: ArrayLike, icc: ArrayLike
) -> Any:
    """γ₁ = 1 − (N_C + n − 2)ρ / (N − 2) when only the treatment arm is clustered.

    Hedges & Citkowicz (2015, *Behavior Research Methods* 47, 1295–1308).
    """
    arrays, _, scalar = broadcast_inputs(
        n_total=n_total, n_c=n_c, cluster_size=cluster_size, icc=icc
    )
    value = 1.0 - (arrays["n_c"] + arrays["cluster_size"] - 2.0) * arrays["icc"] / (
        arrays["n_total"] - 2.0
    )
    return float(value[0]) if scalar else value


def one_arm_design_effect(
    n_total: ArrayLike, n_c: ArrayLike, cluster_size: ArrayLike, icc: ArrayLike
) -> Any:
    """η₁ = 1 + (n·N_C/N − 1)ρ when only the treatment arm is clustered (Hedges & Citkowicz 2015)."""
    arrays, _, scalar = broadcast_inputs(
        n_total=n_total, n_c=n_c, cluster_size=cluster_size, icc=icc
    )
    value = 1.0 + (arrays["cluster_size"] * arrays["n_c"] / arrays["n_total"] - 1.0) * arrays["icc"]
    return float(value[0]) if scalar else value
