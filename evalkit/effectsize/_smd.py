"""Standardised mean differences under the What Works Clearinghouse conventions.

Sources: WWC Procedures Handbook v5.0 (2022), Appendix E; Hedges (1981); Borenstein
(2009) in *The Handbook of Research Synthesis and Meta-Analysis*, ch. 12.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.core import (
    ArrayLike,
    EvalkitInputError,
    FloatArray,
    SmallSampleCorrection,
    broadcast_inputs,
    require,
)
from evalkit.effectsize._clustered import adjust_for_clustering, check_cluster_inputs
from evalkit.effectsize._corrections import small_sample_factor
from evalkit.effectsize._record import EffectSize, make_record

COX_SCALE = 1.65
"""Cox (1970) logit-to-SMD divisor used by the WWC."""


def pooled_sd(sd_t: ArrayLike, sd_c: ArrayLike, n_t: ArrayLike, n_c: ArrayLike) -> Any:
    """Pooled SD ``sqrt(((n_T−1)s_T² + (n_C−1)s_C²) / (N−2))``.

    Examples
    --------
    >>> pooled_sd(1.0, 1.0, 3, 3)
    1.0
    """
    arrays, labels, scalar = broadcast_inputs(sd_t=sd_t, sd_c=sd_c, n_t=n_t, n_c=n_c)
    _check_groups(arrays, labels)
    value = _pooled(arrays)
    return float(value[0]) if scalar else value


def _pooled(arrays: dict[str, FloatArray]) -> FloatArray:
    n_t, n_c = arrays["n_t"], arrays["n_c"]
    pooled_var = ((n_t - 1.0) * arrays["sd_t"] ** 2 + (n_c - 1.0) * arrays["sd_c"] ** 2) / (
        n_t + n_c - 2.0
    )
    return np.asarray(np.sqrt(pooled_var), dtype=np.float64)


def _check_groups(arrays: dict[str, FloatArray], labels: Sequence[Any]) -> None:
    for name in ("n_t", "n_c"):
        if name in arrays:
            require(arrays[name] > 1.0, name, labels, "greater than 1")
            require(arrays[name] == np.round(arrays[name]), name, labels, "a whole number")
    for name in ("sd_t", "sd_c"):
        if name in arrays:
            require(arrays[name] > 0.0, name, labels, "positive")


def _cluster_arrays(
    icc: ArrayLike | None, cluster_size: ArrayLike | None
) -> dict[str, ArrayLike | None]:
    if (icc is None) != (cluster_size is None):
        raise EvalkitInputError(
            "icc and cluster_size go together: give both to correct for clustering, or neither."
        )
    return {"icc": icc, "cluster_size": cluster_size}


def _finish(
    d: FloatArray,
    arrays: dict[str, FloatArray],
    labels: Sequence[Any],
    scalar: bool,
    *,
    correction: SmallSampleCorrection,
    level: float,
    method: str,
    base_factor: FloatArray | float = 1.0,
) -> EffectSize:
    """Apply the small-sample (and, if asked, clustering) correction and the variance."""
    n_t, n_c = arrays["n_t"], arrays["n_c"]
    n_total = n_t + n_c
    if "icc" in arrays:
        check_cluster_inputs(n_total, arrays["cluster_size"], arrays["icc"], labels)
        g, variance = adjust_for_clustering(
            d,
            n_t,
            n_c,
            arrays["cluster_size"],
            arrays["icc"],
            correction=correction,
            base_factor=base_factor,
        )
        method += "; clustering-corrected (Hedges 2007)"
    else:
        g = small_sample_factor(n_total - 2.0, correction=correction) * d
        variance = base_factor * (1.0 / n_t + 1.0 / n_c) + g**2 / (2.0 * n_total)
    method += f"; small-sample correction={correction}"
    return make_record(g, variance, level=level, method=method, labels=labels, scalar=scalar)


def hedges_g(
    mean_t: ArrayLike,
    mean_c: ArrayLike,
    sd_t: ArrayLike,
    sd_c: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    icc: ArrayLike | None = None,
    cluster_size: ArrayLike | None = None,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Hedges' g from group means, SDs and sizes.

    ``g = ω (ȳ_T − ȳ_C) / S`` with ``S`` the pooled SD and ``ω = 1 − 3/(4N − 9)``
    (WWC v5.0, Appendix E); sampling variance ``1/n_T + 1/n_C + g²/(2N)``. With
    ``icc`` and ``cluster_size``, the Hedges (2007) clustering correction is applied
    (see :func:`cluster_adjusted_g`).

    Parameters
    ----------
    mean_t, mean_c, sd_t, sd_c, n_t, n_c
        Group means, standard deviations and sizes; scalars or one value per row.
    icc, cluster_size
        Intraclass correlation and average cluster size, for studies that assigned
        clusters but analysed students.
    correction
        ``"wwc"`` (default), ``"exact"`` (metafor's gamma-function form) or ``"none"``.
    level
        Confidence level of the interval.

    Returns
    -------
    EffectSize

    Examples
    --------
    >>> hedges_g(6, 5, 1, 1, 3, 3).estimate
    0.8
    """
    arrays, labels, scalar = broadcast_inputs(
        mean_t=mean_t,
        mean_c=mean_c,
        sd_t=sd_t,
        sd_c=sd_c,
        n_t=n_t,
        n_c=n_c,
        **_cluster_arrays(icc, cluster_size),
    )
    _check_groups(arrays, labels)
    d = (arrays["mean_t"] - arrays["mean_c"]) / _pooled(arrays)
    return _finish(
        d, arrays, labels, scalar, correction=correction, level=level, method="Hedges' g from means"
    )


def hedges_g_adjusted(
    adjusted_difference: ArrayLike,
    sd_t: ArrayLike,
    sd_c: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    r_squared: ArrayLike | None = None,
    icc: ArrayLike | None = None,
    cluster_size: ArrayLike | None = None,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Hedges' g from a covariate-adjusted difference or a regression coefficient.

    The numerator is the adjusted difference; the denominator is the **unadjusted**
    pooled SD (WWC v5.0, Appendix E). With the covariates' ``r_squared`` the variance
    is ``(1 − R²)(1/n_T + 1/n_C) + g²/(2N)`` (Borenstein 2009, §12.3.3); without it
    the posttest-only variance is used, which is conservative.

    Examples
    --------
    >>> round(hedges_g_adjusted(1.0, 1, 1, 3, 3).estimate, 6)
    0.8
    """
    arrays, labels, scalar = broadcast_inputs(
        adjusted_difference=adjusted_difference,
        sd_t=sd_t,
        sd_c=sd_c,
        n_t=n_t,
        n_c=n_c,
        r_squared=r_squared,
        **_cluster_arrays(icc, cluster_size),
    )
    _check_groups(arrays, labels)
    base: FloatArray | float = 1.0
    if "r_squared" in arrays:
        r2 = arrays["r_squared"]
        require((r2 >= 0.0) & (r2 < 1.0), "r_squared", labels, "in [0, 1)")
        base = 1.0 - r2
    d = arrays["adjusted_difference"] / _pooled(arrays)
    return _finish(
        d,
        arrays,
        labels,
        scalar,
        correction=correction,
        level=level,
        method="Hedges' g from an adjusted difference over the unadjusted pooled SD",
        base_factor=base,
    )


def hedges_g_from_t(
    t: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    icc: ArrayLike | None = None,
    cluster_size: ArrayLike | None = None,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Hedges' g from an independent-samples t statistic: ``d = t·sqrt(1/n_T + 1/n_C)``.

    Examples
    --------
    >>> round(hedges_g_from_t(1.0 / (2 / 3) ** 0.5, 3, 3).estimate, 6)
    0.8
    """
    arrays, labels, scalar = broadcast_inputs(
        t=t, n_t=n_t, n_c=n_c, **_cluster_arrays(icc, cluster_size)
    )
    _check_groups(arrays, labels)
    d = arrays["t"] * np.sqrt(1.0 / arrays["n_t"] + 1.0 / arrays["n_c"])
    return _finish(
        d, arrays, labels, scalar, correction=correction, level=level, method="Hedges' g from t"
    )


def hedges_g_from_f(
    f: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    sign: ArrayLike,
    icc: ArrayLike | None = None,
    cluster_size: ArrayLike | None = None,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Hedges' g from a two-group F statistic: ``d = sign·sqrt(F (n_T + n_C)/(n_T n_C))``.

    An F statistic has no direction, so ``sign`` (+1 if the treatment group scored
    higher, −1 otherwise) is required.
    """
    arrays, labels, scalar = broadcast_inputs(
        f=f, n_t=n_t, n_c=n_c, sign=sign, **_cluster_arrays(icc, cluster_size)
    )
    _check_groups(arrays, labels)
    require(arrays["f"] >= 0.0, "f", labels, "non-negative")
    require(np.isin(arrays["sign"], (-1.0, 1.0)), "sign", labels, "+1 or -1")
    n_t_, n_c_ = arrays["n_t"], arrays["n_c"]
    d = arrays["sign"] * np.sqrt(arrays["f"] * (n_t_ + n_c_) / (n_t_ * n_c_))
    return _finish(
        d, arrays, labels, scalar, correction=correction, level=level, method="Hedges' g from F"
    )


def cox_index(
    p_t: ArrayLike,
    p_c: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """The Cox index for a binary outcome: ``ω [logit(p_T) − logit(p_C)] / 1.65``.

    The WWC applies the small-sample factor ω to the Cox index as to g (WWC v5.0,
    Appendix E); ``correction="none"`` gives the uncorrected index. The variance is
    ``(1/1.65²)[1/(n_T p_T) + 1/(n_T(1−p_T)) + 1/(n_C p_C) + 1/(n_C(1−p_C))]``
    (Sánchez-Meca, Marín-Martínez & Chacón-Moscoso 2003).

    Examples
    --------
    >>> round(cox_index(2 / 3, 1 / 3, 30, 30, correction="none").estimate, 4)
    0.8402
    """
    arrays, labels, scalar = broadcast_inputs(p_t=p_t, p_c=p_c, n_t=n_t, n_c=n_c)
    _check_groups(arrays, labels)
    for name in ("p_t", "p_c"):
        require(
            (arrays[name] > 0.0) & (arrays[name] < 1.0), name, labels, "strictly between 0 and 1"
        )
    p_t_, p_c_, n_t_, n_c_ = arrays["p_t"], arrays["p_c"], arrays["n_t"], arrays["n_c"]
    log_odds_ratio = np.log(p_t_ / (1.0 - p_t_)) - np.log(p_c_ / (1.0 - p_c_))
    omega = small_sample_factor(n_t_ + n_c_ - 2.0, correction=correction)
    estimate = omega * log_odds_ratio / COX_SCALE
    variance = (
        1.0 / (n_t_ * p_t_)
        + 1.0 / (n_t_ * (1.0 - p_t_))
        + 1.0 / (n_c_ * p_c_)
        + 1.0 / (n_c_ * (1.0 - p_c_))
    ) / COX_SCALE**2
    method = f"Cox index (logit difference / 1.65); small-sample correction={correction}"
    return make_record(estimate, variance, level=level, method=method, labels=labels, scalar=scalar)


def gain_difference(
    pre_t: ArrayLike,
    post_t: ArrayLike,
    pre_c: ArrayLike,
    post_c: ArrayLike,
    sd_post_t: ArrayLike,
    sd_post_c: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    pre_post_correlation: ArrayLike = 0.5,
    icc: ArrayLike | None = None,
    cluster_size: ArrayLike | None = None,
    correction: SmallSampleCorrection = "wwc",
    level: float = 0.95,
) -> EffectSize:
    """Difference-in-differences effect size from group gains.

    ``g = ω[(ȳ_T,post − ȳ_T,pre) − (ȳ_C,post − ȳ_C,pre)] / S_post`` with variance
    ``2(1 − r)(1/n_T + 1/n_C) + g²/(2N)``; the WWC imputes ``r = 0.5`` when the
    pre–post correlation is not reported (WWC v5.0, Appendix E).
    """
    arrays, labels, scalar = broadcast_inputs(
        pre_t=pre_t,
        post_t=post_t,
        pre_c=pre_c,
        post_c=post_c,
        sd_t=sd_post_t,
        sd_c=sd_post_c,
        n_t=n_t,
        n_c=n_c,
        pre_post_correlation=pre_post_correlation,
        **_cluster_arrays(icc, cluster_size),
    )
    _check_groups(arrays, labels)
    r = arrays["pre_post_correlation"]
    require((r > -1.0) & (r < 1.0), "pre_post_correlation", labels, "strictly between -1 and 1")
    gain = (arrays["post_t"] - arrays["pre_t"]) - (arrays["post_c"] - arrays["pre_c"])
    d = gain / _pooled(arrays)
    return _finish(
        d,
        arrays,
        labels,
        scalar,
        correction=correction,
        level=level,
        method="difference-in-differences of gains over the posttest pooled SD",
        base_factor=2.0 * (1.0 - r),
    )


def effect_size_difference(
    g_post: ArrayLike,
    g_pre: ArrayLike,
    n_t: ArrayLike,
    n_c: ArrayLike,
    *,
    pre_post_correlation: ArrayLike = 0.5,
    level: float = 0.95,
) -> EffectSize:
    """Difference-in-differences as the posttest g minus the baseline g (WWC's fallback).

    Both inputs should already carry the small-sample correction. The variance is
    ``2(1 − r)(1/n_T + 1/n_C) + g²/(2N)`` with ``g = g_post − g_pre``.
    """
    arrays, labels, scalar = broadcast_inputs(
        g_post=g_post, g_pre=g_pre, n_t=n_t, n_c=n_c, pre_post_correlation=pre_post_correlation
    )
    _check_groups(arrays, labels)
    r = arrays["pre_post_correlation"]
    require((r > -1.0) & (r < 1.0), "pre_post_correlation", labels, "strictly between -1 and 1")
    g = arrays["g_post"] - arrays["g_pre"]
    n_t_, n_c_ = arrays["n_t"], arrays["n_c"]
    variance = 2.0 * (1.0 - r) * (1.0 / n_t_ + 1.0 / n_c_) + g**2 / (2.0 * (n_t_ + n_c_))
    return make_record(
        g,
        variance,
        level=level,
        method="difference of posttest and baseline effect sizes",
        labels=labels,
        scalar=scalar,
    )
