"""How strong would mediator–outcome confounding have to be to explain the indirect
effect away?

Randomising the treatment does not randomise the mediator: an unmeasured cause of both
instruction and achievement biases b. Following Imai, Keele & Yamamoto (2010),
Statistical Science 25(1), 51-71 (linear structural equations), the sensitivity
parameter ρ is the correlation between the errors of the mediator and outcome equations
at the level of the b path (teachers for 2-2-1 and 2-1-1, schools for 3-2-1 and 3-3-1):
a confounder acting there, such as a teacher's unmeasured skill. With σ_m and σ_y the
residual SDs of the two equations at that level (the outcome's is its random-intercept
SD there), the indirect effect under confounding ρ is
a · (b − ρ σ_y / (σ_m √(1 − ρ²))); it vanishes at ρ₀ = k / √(1 + k²), k = b σ_m / σ_y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, ModelResults, figure_and_axes
from evalkit.mediation._design import MediationDesign

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SINGULAR_SD = 1e-4


def _level_variances(fit: ModelResults, lowest_level: int) -> list[tuple[int, float]]:
    """(level, intercept variance) of a multilevel fit whose lowest grouping level is
    ``lowest_level``; a single-level fit has none."""
    levels = getattr(fit, "levels", ())
    vc = fit.variance_components
    if vc is None or not levels:
        return []
    variances = vc.intercept_variances()
    return [(lowest_level + k, float(variances[lv.name])) for k, lv in enumerate(levels)]


def sensitivity_scales(
    found: MediationDesign, a_fit: ModelResults, b_fit: ModelResults
) -> tuple[float, float]:
    """Residual SDs (σ_m, σ_y) of the two equations at the b path's level: the
    mediator equation's residual (or, for a split mediator, its intercept variance at
    the treatment's level) and the outcome equation's intercept variance there."""
    level = found.b_level
    scale = float(np.sqrt(getattr(b_fit, "sigma2", 1.0)))
    if found.within_term is None:
        var_m = (
            float(getattr(a_fit, "sigma2", np.nan))
            if found.mediator_random
            else float(a_fit.facts["sigma2"])
        )
    else:
        var_m = dict(_level_variances(a_fit, found.mediator_level + 1)).get(level, 0.0)
    var_y = dict(_level_variances(b_fit, 2)).get(level, 0.0)
    sigma_m, sigma_y = float(np.sqrt(var_m)), float(np.sqrt(var_y))
    # a variance on its boundary (lme4's singular tolerance, 1e-4 of the residual SD)
    # leaves no error at that level to correlate: the analysis is undefined there
    return sigma_m, (sigma_y if sigma_y > SINGULAR_SD * scale else 0.0)


def sensitivity_table(
    a_draws: np.ndarray,
    b_draws: np.ndarray,
    a: float,
    b: float,
    scales: tuple[float, float],
    rho: np.ndarray,
    level: float,
) -> pd.DataFrame:
    """The indirect effect and its Monte Carlo interval over a grid of ρ."""
    sigma_m, sigma_y = scales
    if not (sigma_m > 0 and sigma_y > 0):
        raise EvalkitInputError(
            "the sensitivity analysis needs positive residual variances of both equations at "
            f"the b path's level (mediator {sigma_m:.3g}, outcome {sigma_y:.3g}); one is at "
            "its boundary (a singular fit)."
        )
    if np.any(np.abs(rho) >= 1.0):
        raise EvalkitInputError("rho values must lie strictly between -1 and 1.")
    tail = (1.0 - level) / 2.0
    rows = []
    for r in rho:
        shift = r * sigma_y / (sigma_m * np.sqrt(1.0 - r * r))
        values = a_draws * (b_draws - shift)
        low, high = np.quantile(values, [tail, 1.0 - tail])
        rows.append((float(r), a * (b - shift), float(low), float(high)))
    return pd.DataFrame(rows, columns=["rho", "indirect", "ci_low", "ci_high"])


def plot_sensitivity(table: pd.DataFrame, rho_zero: float, ax: Any = None) -> Figure:
    """The indirect effect against ρ, with its interval band and ρ₀ marked."""
    figure, axes = figure_and_axes(ax, figsize=(6.0, 4.0))
    axes.fill_between(table["rho"], table["ci_low"], table["ci_high"], alpha=0.25, color="C0")
    axes.plot(table["rho"], table["indirect"], color="C0")
    axes.axhline(0.0, color="0.4", linewidth=0.8)
    if np.isfinite(rho_zero):
        axes.axvline(rho_zero, color="C3", linestyle="--", linewidth=1.0)
        axes.annotate(
            f"ρ = {rho_zero:.2f}", (rho_zero, 0.0), xytext=(4, 8), textcoords="offset points"
        )
    axes.set_xlabel("ρ: correlation of mediator and outcome errors (unmeasured confounding)")
    axes.set_ylabel("indirect effect")
    return figure
