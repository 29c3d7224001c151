"""The record every effect-size function returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from evalkit.core import EvalkitInputError, FloatArray


@dataclass(frozen=True)
class EffectSize:
    """An effect size with its sampling variance, standard error and confidence interval.

    Fields are floats when the inputs were scalars and float arrays (one entry per
    input row) otherwise. Confidence intervals and p-values use the normal
    distribution, as the WWC and metafor do for effect sizes.

    Attributes
    ----------
    estimate, variance, std_error, ci_low, ci_high, p_value
        The effect size, its sampling variance and SE, the interval bounds and the
        two-sided p-value of the z test of zero.
    level
        Confidence level of the interval.
    method
        A short statement of the formula used, for table notes.
    index
        Row labels for vectorised results (the inputs' Series index, else positions);
        ``None`` for scalar results.
    """

    estimate: Any
    variance: Any
    std_error: Any
    ci_low: Any
    ci_high: Any
    p_value: Any
    level: float
    method: str
    index: pd.Index | None = None

    def to_frame(self) -> pd.DataFrame:
        """Return one row per effect size with the columns of the record."""
        columns = ["estimate", "variance", "std_error", "ci_low", "ci_high", "p_value"]
        frame = pd.DataFrame(
            {name: np.atleast_1d(getattr(self, name)) for name in columns},
            index=self.index,
        )
        frame["method"] = self.method
        return frame


def check_level(level: float) -> None:
    """Raise unless ``level`` is a probability strictly between 0 and 1."""
    if not 0.0 < float(level) < 1.0:
        raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")


def make_record(
    estimate: FloatArray,
    variance: FloatArray,
    *,
    level: float,
    method: str,
    labels: Sequence[Any],
    scalar: bool,
) -> EffectSize:
    """Build an :class:`EffectSize` from estimates and variances (normal-theory CI)."""
    check_level(level)
    se = np.sqrt(variance)
    z = stats.norm.ppf(0.5 + level / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2.0 * special.ndtr(-np.abs(estimate / se))
    values = {
        "estimate": estimate,
        "variance": variance,
        "std_error": se,
        "ci_low": estimate - z * se,
        "ci_high": estimate + z * se,
        "p_value": p_value,
    }
    if scalar:
        first = {k: float(v[0]) for k, v in values.items()}
        return EffectSize(**first, level=level, method=method)  # type: ignore[arg-type]
    return EffectSize(**values, level=level, method=method, index=pd.Index(labels))
