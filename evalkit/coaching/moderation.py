"""Simple slopes of coaching across a moderator, the Johnson–Neyman region, and the
moderation figure (Preacher, Curran & Bauer 2006, J. Educ. Behav. Stat. 31(4))."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, ModelResults, figure_and_axes


def _pieces(
    result: ModelResults, treatment: str, moderator: str
) -> tuple[float, float, float, float, float, float]:
    interaction = next(
        (
            t
            for t in (f"{treatment}:{moderator}", f"{moderator}:{treatment}")
            if t in result.params.index
        ),
        None,
    )
    if treatment not in result.params.index or interaction is None:
        raise EvalkitInputError(f"the model has no {treatment} and {treatment}:{moderator} terms.")
    b1, b3 = float(result.params[treatment]), float(result.params[interaction])
    index = list(result.params.index)
    cov = result.cov.to_numpy()
    i, k = index.index(treatment), index.index(interaction)
    return (
        b1, b3, float(cov[i, i]), float(cov[k, k]), float(cov[i, k]),
        float(min(result.df[treatment], result.df[interaction])),
    )  # fmt: skip


def observed_moderator(result: ModelResults, moderator: str) -> np.ndarray | None:
    """The moderator's values in the rows the model was fitted to (``None`` when the
    fit kept no design, as adapted statsmodels or linearmodels fits)."""
    specification = getattr(result, "specification", None)
    if specification is None or moderator not in specification.terms:
        return None
    values = specification.frame.x[:, list(specification.terms).index(moderator)]
    return np.asarray(values, dtype=float)


def _default_points(result: ModelResults, moderator: str) -> np.ndarray:
    values = observed_moderator(result, moderator)
    if values is None:
        raise EvalkitInputError(
            f"this fit kept no data to tell the mean and SD of {moderator!r}; pass at= with "
            "the moderator values (in its own units)."
        )
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    return np.array([mean - sd, mean, mean + sd])


def simple_slopes(
    result: ModelResults,
    treatment: str,
    moderator: str,
    at: Sequence[float] | np.ndarray | None = None,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """The effect of ``treatment`` at moderator values ``at`` (default: the mean and
    ±1 SD of the moderator in the fitted rows, in its own units): ``b₁ + b₃m`` with SE
    ``sqrt(v₁₁ + 2m v₁₃ + m² v₃₃)`` (Preacher, Curran & Bauer 2006)."""
    b1, b3, v11, v33, v13, df = _pieces(result, treatment, moderator)
    m = _default_points(result, moderator) if at is None else np.asarray(at, dtype=float)
    if m.ndim != 1 or m.size == 0 or not np.all(np.isfinite(m)):
        raise EvalkitInputError(f"at must be finite values of {moderator}, got {at!r}.")
    slope = b1 + b3 * m
    se = np.sqrt(v11 + 2 * m * v13 + m**2 * v33)
    crit = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
    p = 2 * (
        stats.t.sf(np.abs(slope / se), df) if np.isfinite(df) else stats.norm.sf(np.abs(slope / se))
    )
    return pd.DataFrame(
        {
            moderator: m,
            "slope": slope,
            "std_error": se,
            "ci_low": slope - crit * se,
            "ci_high": slope + crit * se,
            "p_value": p,
            "df": df,
        }
    )


@dataclass(frozen=True)
class JohnsonNeyman:
    """Moderator values where the simple slope is significant at ``alpha``.

    ``bounds`` are the roots of the Johnson–Neyman equation (which may lie outside the
    data); ``observed_range`` the moderator's range in the fitted rows (when known),
    and ``description`` states the region within that range, as R's interactions
    package reports it.
    """

    bounds: tuple[float, ...]
    significant_inside: bool
    description: str
    observed_range: tuple[float, float] | None = None


def johnson_neyman(
    result: ModelResults, treatment: str, moderator: str, *, alpha: float = 0.05
) -> JohnsonNeyman:
    """Solve ``(b₁ + b₃m)² = t²(v₁₁ + 2m v₁₃ + m²v₃₃)`` for the moderator values ``m``
    where the simple slope's CI touches zero; the region is described within the
    moderator's observed range."""
    b1, b3, v11, v33, v13, df = _pieces(result, treatment, moderator)
    values = observed_moderator(result, moderator)
    observed = None if values is None else (float(values.min()), float(values.max()))
    t2 = (stats.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha / 2)) ** 2
    a = b3**2 - t2 * v33
    b = 2 * (b1 * b3 - t2 * v13)
    c = b1**2 - t2 * v11
    disc = b * b - 4 * a * c
    if disc < 0 or a == 0:
        significant = c > 0
        text = "significant at every value" if significant else "not significant at any value"
        return JohnsonNeyman(
            (), significant, f"The {treatment} effect is {text} of {moderator}.", observed
        )
    low, high = sorted(((-b - np.sqrt(disc)) / (2 * a), (-b + np.sqrt(disc)) / (2 * a)))
    inside = a < 0  # the quadratic is positive (significant) between the roots when a < 0
    text = _region_text(moderator, float(low), float(high), bool(inside), observed)
    return JohnsonNeyman(
        (float(low), float(high)),
        bool(inside),
        f"The {treatment} effect is {text} (α = {alpha:g}).",
        observed,
    )


def _region_text(
    moderator: str,
    low: float,
    high: float,
    inside: bool,
    observed: tuple[float, float] | None,
) -> str:
    """Where the slope is significant, clipped to the observed range when known."""
    if observed is None:
        if inside:
            return f"significant for {moderator} between {low:.2f} and {high:.2f}"
        return f"significant for {moderator} below {low:.2f} or above {high:.2f}"
    lo, hi = observed
    span = f"(observed {moderator}: {lo:.2f} to {hi:.2f})"
    if inside:
        start, end = max(low, lo), min(high, hi)
        if start > end:
            return f"not significant anywhere in the observed range {span}"
        return f"significant for {moderator} from {start:.2f} to {end:.2f} {span}"
    parts = []
    if low > lo:
        parts.append(f"from {lo:.2f} to {min(low, hi):.2f}")
    if high < hi:
        parts.append(f"from {max(high, lo):.2f} to {hi:.2f}")
    if not parts:
        return f"not significant anywhere in the observed range {span}"
    if low <= lo and high >= hi:
        return f"not significant anywhere in the observed range {span}"
    return f"significant for {moderator} {' and '.join(parts)} {span}"


def moderation_plot(
    result: ModelResults,
    treatment: str,
    moderator: str,
    *,
    span: tuple[float, float] | None = None,
    ax: Any = None,
) -> Any:
    """The simple slope of ``treatment`` across the moderator (in its own units) with
    its CI band, the mean and ±1 SD points, and the Johnson–Neyman bounds. ``span``
    defaults to the moderator's observed range. Returns the Figure (drawn on ``ax``
    when given)."""
    if span is None:
        values = observed_moderator(result, moderator)
        if values is None:
            raise EvalkitInputError(
                f"pass span=(low, high) for {moderator!r}: the fit kept no data."
            )
        span = (float(values.min()), float(values.max()))
    if not (np.all(np.isfinite(span)) and span[0] < span[1]):
        raise EvalkitInputError(f"span must be two finite values, low < high; got {span!r}.")
    grid = np.linspace(*span, 101)
    curve = simple_slopes(result, treatment, moderator, grid)
    points = simple_slopes(result, treatment, moderator)
    region = johnson_neyman(result, treatment, moderator)
    figure, ax = figure_and_axes(ax)
    ax.plot(curve[moderator], curve["slope"], color="0.15")
    ax.fill_between(
        curve[moderator], curve["ci_low"], curve["ci_high"], color="0.6", alpha=0.3, linewidth=0
    )
    ax.errorbar(
        points[moderator], points["slope"],
        yerr=[points["slope"] - points["ci_low"], points["ci_high"] - points["slope"]],
        fmt="o", color="C0", capsize=3, label="mean − 1 SD / mean / mean + 1 SD",
    )  # fmt: skip
    for bound in region.bounds:
        if span[0] <= bound <= span[1]:
            ax.axvline(bound, color="C3", linestyle="--", linewidth=0.8)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlabel(moderator)
    ax.set_ylabel(f"effect of {treatment}")
    ax.set_title(region.description, fontsize=8)
    ax.legend(frameon=False, fontsize=8)
    return figure
