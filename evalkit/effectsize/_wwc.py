"""WWC reporting rules: improvement index, pooling, baseline equivalence, attrition, BH."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import (
    ArrayLike,
    AttritionBoundary,
    EvalkitInputError,
    EvalkitWarning,
    broadcast_inputs,
    check_option,
    require,
)
from evalkit.effectsize._record import EffectSize, make_record

# WWC Standards Handbook v4.0 (2017), Table II.1 / v4.1 Table II.1: the largest
# differential attrition (percentage points) that still counts as low attrition,
# by whole-percent overall attrition 0, 1, 2, ... The cautious boundary reaches 0
# at 57% overall attrition; beyond the transcribed range attrition is high.
_CAUTIOUS = (
    5.7, 5.8, 5.9, 5.9, 6.0, 6.1, 6.2, 6.3, 6.3, 6.3, 6.3, 6.2, 6.2, 6.1, 6.0, 5.9, 5.9, 5.8,
    5.7, 5.5, 5.4, 5.3, 5.2, 5.1, 4.9, 4.8, 4.7, 4.5, 4.4, 4.3, 4.1, 4.0, 3.8, 3.6, 3.5, 3.3,
    3.2, 3.1, 2.9, 2.8, 2.6, 2.5, 2.3, 2.1, 2.0, 1.8, 1.6, 1.5, 1.3, 1.2, 1.0, 0.9, 0.7, 0.6,
    0.4, 0.3, 0.2, 0.0,
)  # fmt: skip
_OPTIMISTIC = (
    10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.7, 10.8, 10.9, 10.9, 10.9, 10.9, 10.9, 10.9, 10.8,
    10.8, 10.7, 10.6, 10.5, 10.3, 10.2, 10.0, 9.9, 9.7, 9.5, 9.4, 9.2, 9.0, 8.8, 8.6, 8.4, 8.2,
    8.0, 7.8, 7.6, 7.4, 7.2, 7.0, 6.7, 6.5, 6.3, 6.0, 5.8, 5.6, 5.3, 5.1, 4.9, 4.6, 4.4, 4.2,
    3.9, 3.7, 3.5, 3.2, 3.0, 2.8, 2.6, 2.3,
)  # fmt: skip
ATTRITION_BOUNDARIES: dict[str, tuple[float, ...]] = {
    "cautious": _CAUTIOUS,
    "optimistic": _OPTIMISTIC,
}
"""Maximum differential attrition (percentage points) for low attrition, indexed by
whole-percent overall attrition (WWC Standards Handbook v4.0, Table II.1)."""

SUBSTANTIVELY_IMPORTANT = 0.25
"""WWC threshold for a substantively important effect size."""

BaselineRating = Literal["satisfied", "requires adjustment", "not satisfied"]


def improvement_index(g: ArrayLike) -> Any:
    """WWC improvement index ``100·Φ(g) − 50``: the expected percentile gain of the
    average comparison-group member had they received the intervention.

    Examples
    --------
    >>> round(improvement_index(0.25), 2)
    9.87
    """
    arrays, _, scalar = broadcast_inputs(g=g)
    value = 100.0 * stats.norm.cdf(arrays["g"]) - 50.0
    return float(value[0]) if scalar else value


def pool_fixed(effect: ArrayLike, std_error: ArrayLike, *, level: float = 0.95) -> EffectSize:
    """WWC pooling of several findings: fixed-effect, inverse-variance (``w = 1/SE²``).

    Examples
    --------
    >>> pooled = pool_fixed([0.20, 0.10, 0.35], [0.10, 0.08, 0.15])
    >>> round(pooled.estimate, 4), round(pooled.std_error, 4)
    (0.1702, 0.0577)
    """
    arrays, labels, _ = broadcast_inputs(effect=effect, std_error=std_error)
    if arrays["effect"].size == 0:
        raise EvalkitInputError("pool_fixed needs at least one finding; none were given.")
    require(arrays["std_error"] > 0.0, "std_error", labels, "positive")
    weights = 1.0 / arrays["std_error"] ** 2
    estimate = np.sum(weights * arrays["effect"]) / np.sum(weights)
    variance = 1.0 / np.sum(weights)
    return make_record(
        np.array([estimate]),
        np.array([variance]),
        level=level,
        method=f"fixed-effect inverse-variance pooling of {len(weights)} findings",
        labels=range(0),
        scalar=True,
    )


def baseline_equivalence(g: ArrayLike) -> Any:
    """Classify baseline differences by the WWC rule.

    ``|g| ≤ 0.05``: satisfied; ``0.05 < |g| ≤ 0.25``: satisfied only with statistical
    adjustment for the baseline measure; ``|g| > 0.25``: not satisfied (WWC v5.0).
    Use g for continuous and the Cox index for binary baseline measures.

    Examples
    --------
    >>> baseline_equivalence(0.04), baseline_equivalence(-0.2), baseline_equivalence(0.3)
    ('satisfied', 'requires adjustment', 'not satisfied')
    """
    arrays, _, scalar = broadcast_inputs(g=g)
    size = np.abs(arrays["g"])
    # Round to avoid floating-point noise at the published boundaries (e.g. 0.05).
    size = np.round(size, 10)
    rating = np.where(
        size <= 0.05, "satisfied", np.where(size <= 0.25, "requires adjustment", "not satisfied")
    )
    return str(rating[0]) if scalar else rating


def substantively_important(g: ArrayLike) -> Any:
    """True where ``g ≥ 0.25`` (positive) or ``g ≤ −0.25`` (negative), the WWC threshold."""
    arrays, _, scalar = broadcast_inputs(g=g)
    value = np.abs(arrays["g"]) >= SUBSTANTIVELY_IMPORTANT
    return bool(value[0]) if scalar else value


@dataclass(frozen=True)
class Attrition:
    """Overall and differential attrition, judged against a WWC boundary.

    Rates are proportions (0–1); ``max_differential`` is in proportions too.
    """

    overall: float
    differential: float
    attrition_t: float
    attrition_c: float
    boundary: str
    max_differential: float
    rating: Literal["low", "high"]

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the attrition facts."""
        return pd.DataFrame([self.__dict__])


def attrition(
    randomized_t: int,
    randomized_c: int,
    analyzed_t: int,
    analyzed_c: int,
    *,
    boundary: AttritionBoundary = "cautious",
) -> Attrition:
    """Overall and differential attrition, rated low or high by the WWC boundary.

    Overall attrition is ``1 − analysed/randomised``; differential attrition is
    ``|a_T − a_C|``. The rating looks up the largest differential attrition allowed
    at the overall rate rounded to a whole percent (WWC Standards Handbook v4.0,
    Table II.1); attrition is low when the differential, rounded to 0.1 percentage
    point, does not exceed it.

    Examples
    --------
    >>> attrition(100, 100, 95, 90).rating
    'low'
    """
    check_option("boundary", boundary, AttritionBoundary)
    counts = {
        "randomized_t": randomized_t,
        "randomized_c": randomized_c,
        "analyzed_t": analyzed_t,
        "analyzed_c": analyzed_c,
    }
    for name, value in counts.items():
        if isinstance(value, bool) or not float(value).is_integer() or value < 0:
            raise EvalkitInputError(f"{name} must be a non-negative whole number, got {value!r}.")
    for arm in ("t", "c"):
        if counts[f"randomized_{arm}"] < 1:
            raise EvalkitInputError(f"randomized_{arm} must be at least 1.")
        if counts[f"analyzed_{arm}"] > counts[f"randomized_{arm}"]:
            raise EvalkitInputError(
                f"analyzed_{arm} ({counts[f'analyzed_{arm}']}) exceeds "
                f"randomized_{arm} ({counts[f'randomized_{arm}']})."
            )
    a_t = 1.0 - analyzed_t / randomized_t
    a_c = 1.0 - analyzed_c / randomized_c
    overall = 1.0 - (analyzed_t + analyzed_c) / (randomized_t + randomized_c)
    differential = abs(a_t - a_c)
    table = ATTRITION_BOUNDARIES[boundary]
    row = int(np.floor(overall * 100.0 + 0.5))
    if row >= len(table):
        max_diff = 0.0
        rating: Literal["low", "high"] = "high"
        if boundary == "optimistic":
            warnings.warn(
                f"overall attrition of {row}% lies beyond the transcribed optimistic boundary "
                f"(0-{len(table) - 1}%); rated high. Check the WWC Standards Handbook table.",
                EvalkitWarning,
                stacklevel=2,
            )
    else:
        max_diff = table[row] / 100.0
        rating = "low" if round(differential * 100.0, 1) <= table[row] else "high"
    return Attrition(
        overall=overall,
        differential=differential,
        attrition_t=a_t,
        attrition_c=a_c,
        boundary=boundary,
        max_differential=max_diff,
        rating=rating,
    )


def benjamini_hochberg(p_values: ArrayLike, *, alpha: float = 0.05) -> pd.DataFrame:
    """Benjamini–Hochberg step-up adjustment across outcomes in one domain.

    Returns a DataFrame with the original ``p_value``, the BH-adjusted ``p_adjusted``
    (monotone, capped at 1) and ``significant`` at ``alpha`` (WWC v5.0 applies BH to
    findings within an outcome domain).

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03]).p_adjusted.round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    if not 0.0 < alpha < 1.0:
        raise EvalkitInputError(f"alpha must lie strictly between 0 and 1, got {alpha!r}.")
    arrays, labels, _ = broadcast_inputs(p_value=p_values)
    p = arrays["p_value"]
    require((p >= 0.0) & (p <= 1.0), "p_values", labels, "in [0, 1]")
    m = p.shape[0]
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return pd.DataFrame(
        {"p_value": p, "p_adjusted": adjusted, "significant": adjusted <= alpha},
        index=pd.Index(labels),
    )
