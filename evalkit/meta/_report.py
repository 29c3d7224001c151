"""Reporting for meta-analyses: ρ-sensitivity of CHE models, forest and funnel plots
(Figures drawn without pyplot). The MARS-style summary table is
:func:`evalkit.tables.meta_summary_table`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import INTERCEPT, EvalkitInputError, figure_and_axes
from evalkit.meta._results import MetaResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_RHOS = tuple(round(0.1 * i, 1) for i in range(10))


def rho_sensitivity(
    data: pd.DataFrame,
    *,
    variance: str,
    levels: list[str],
    effect: str,
    moderators: str | None = None,
    rhos: Sequence[float] = DEFAULT_RHOS,
    term: str = INTERCEPT,
) -> pd.DataFrame:
    """Refit a CHE model over imputed correlations ρ and report how the results move.

    Returns one row per ρ with the estimate of ``term``, its CR2 SE, Satterthwaite
    df, 95% CI, p-value, the SD at each level (τ for the top level, ω below) and
    the 95% prediction interval ``estimate ± t_df·sqrt(SE² + Σσ²)``.
    """
    from evalkit.meta import multilevel
    from evalkit.meta._robust import robust

    rows = []
    for rho in rhos:
        fit = multilevel(
            data,
            effect=effect,
            variance=variance,
            levels=levels,
            moderators=moderators,
            rho=float(rho),
        )
        robust_fit = robust(fit, data[levels[0]].to_numpy())
        if term not in robust_fit.params.index:
            raise EvalkitInputError(f"term {term!r} is not in the model.")
        tidy = robust_fit.tidy().set_index("term").loc[term]
        assert fit.variance_components is not None
        variances = fit.variance_components.intercept_variances()
        spread = np.sqrt(tidy["std_error"] ** 2 + sum(variances.values()))
        crit = stats.t.ppf(0.975, tidy["df"])
        row: dict[str, Any] = {
            "rho": rho,
            "estimate": tidy["estimate"],
            "std_error": tidy["std_error"],
            "df": tidy["df"],
            "ci_low": tidy["ci_low"],
            "ci_high": tidy["ci_high"],
            "p_value": tidy["p_value"],
        }
        for name, value in variances.items():
            row[f"sd_{name}"] = float(np.sqrt(value))
        row.update(
            pi_low=tidy["estimate"] - crit * spread, pi_high=tidy["estimate"] + crit * spread
        )
        rows.append(row)
    return pd.DataFrame(rows)


def rho_sensitivity_plot(
    frame: pd.DataFrame, *, title: str = "Sensitivity to the imputed correlation ρ"
) -> Figure:
    """Estimate with CR2 confidence band and prediction interval across ρ."""
    figure, axes = figure_and_axes(figsize=(6.5, 3.8))
    axes.fill_between(
        frame["rho"],
        frame["pi_low"],
        frame["pi_high"],
        color="0.9",
        label="95% prediction interval",
    )
    axes.fill_between(
        frame["rho"],
        frame["ci_low"],
        frame["ci_high"],
        color="tab:blue",
        alpha=0.25,
        label="95% CI (CR2)",
    )
    axes.plot(frame["rho"], frame["estimate"], "o-", color="tab:blue", label="estimate")
    axes.axhline(0.0, color="0.4", linewidth=0.8)
    axes.set_xlabel("imputed within-study correlation ρ")
    axes.set_ylabel("effect size")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def funnel_plot(result: MetaResults, *, contour: bool = False, title: str = "") -> Figure:
    """Funnel plot of effects against standard errors (inverted axis), with the
    pseudo-95% region around the pooled estimate; ``contour=True`` shades the regions
    where a study's two-sided p-value against zero falls below .10, .05 and .01."""
    se = np.sqrt(result.v)
    centre = float(result.params.iloc[0]) if result.x.shape[1] == 1 else 0.0
    top = se.max() * 1.05
    grid = np.linspace(0.0, top, 100)
    figure, axes = figure_and_axes(figsize=(5.5, 4.5))
    if contour:
        for p_level, shade in ((0.10, "0.92"), (0.05, "0.82"), (0.01, "0.70")):
            crit = stats.norm.ppf(1 - p_level / 2)
            axes.fill_betweenx(grid, crit * grid, crit * grid + 10 * top, color=shade, linewidth=0)
            axes.fill_betweenx(
                grid, -crit * grid - 10 * top, -crit * grid, color=shade, linewidth=0
            )
    axes.plot(centre - 1.959964 * grid, grid, "--", color="0.3", linewidth=0.8)
    axes.plot(centre + 1.959964 * grid, grid, "--", color="0.3", linewidth=0.8)
    axes.axvline(centre, color="0.3", linewidth=0.8)
    residual = (
        result.y if result.x.shape[1] == 1 else result.y - result.x @ result.params.to_numpy()
    )
    axes.plot(residual, se, "o", color="tab:blue", markersize=4)
    spread = np.max(np.abs(residual - centre)) + 1.96 * top
    axes.set_xlim(centre - spread, centre + spread)
    axes.set_ylim(top, 0.0)
    axes.set_xlabel("Effect size" if result.x.shape[1] == 1 else "Residual effect size")
    axes.set_ylabel("Standard error")
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure
