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


def simple_slopes(
    result: ModelResults,
    treatment: str,
    moderator: str,
    at: Sequence[float] | np.ndarray = (-1.0, 0.0, 1.0),
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """The effect of ``treatment`` at given moderator values (default −1, 0, +1 SD of a
    z-scored moderator): ``b₁ + b₃m`` with SE ``sqrt(v₁₁ + 2m v₁₃ + m² v₃₃)``."""
    b1, b3, v11, v33, v13, df = _pieces(result, treatment, moderator)
    m = np.asarray(at, dtype=float)
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
    """Moderator values where the simple slope is significant at ``alpha``."""

    bounds: tuple[float, ...]
    significant_inside: bool
    description: str


def johnson_neyman(
    result: ModelResults, treatment: str, moderator: str, *, alpha: float = 0.05
) -> JohnsonNeyman:
    """Solve ``(b₁ + b₃m)² = t²(v₁₁ + 2m v₁₃ + m²v₃₃)`` for the moderator values ``m``
    where the simple slope's CI touches zero."""
    b1, b3, v11, v33, v13, df = _pieces(result, treatment, moderator)
    t2 = (stats.t.ppf(1 - alpha / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha / 2)) ** 2
    a = b3**2 - t2 * v33
    b = 2 * (b1 * b3 - t2 * v13)
    c = b1**2 - t2 * v11
    disc = b * b - 4 * a * c
    if disc < 0 or a == 0:
        significant = c > 0
        text = "significant at every value" if significant else "not significant at any value"
        return JohnsonNeyman((), significant, f"The {treatment} effect is {text} of {moderator}.")
    roots = tuple(sorted(((-b - np.sqrt(disc)) / (2 * a), (-b + np.sqrt(disc)) / (2 * a))))
    inside = a < 0  # the quadratic is positive (significant) between the roots when a < 0
    low, high = roots
    if inside:
        text = f"significant for {moderator} between {low:.2f} and {high:.2f}"
    else:
        text = f"significant for {moderator} below {low:.2f} or above {high:.2f}"
    return JohnsonNeyman(
        (float(low), float(high)),
        bool(inside),
        f"The {treatment} effect is {text} (α = {alpha:g}).",
    )


def moderation_plot(
    result: ModelResults,
    treatment: str,
    moderator: str,
    *,
    span: tuple[float, float] = (-2.5, 2.5),
    ax: Any = None,
) -> Any:
    """The simple slope of ``treatment`` across the moderator with its CI band, the
    −1/0/+1 SD points, and the Johnson–Neyman bounds. Returns the Figure (drawn on
    ``ax`` when given)."""
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
        fmt="o", color="C0", capsize=3, label="low / mean / high (±1 SD)",
    )  # fmt: skip
    for bound in region.bounds:
        if span[0] <= bound <= span[1]:
            ax.axvline(bound, color="C3", linestyle="--", linewidth=0.8)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlabel(f"{moderator} (SD units)")
    ax.set_ylabel(f"effect of {treatment}")
    ax.set_title(region.description, fontsize=8)
    ax.legend(frameon=False, fontsize=8)
    return figure
