"""Conditional modes of the random effects (BLUPs), their conditional variances, the
reliability of each random coefficient, and a caterpillar plot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import INTERCEPT, EvalkitInputError, figure_and_axes
from evalkit.multilevel.crossed import CrossedReducer, CrossedStats
from evalkit.multilevel.frame import Marginal, clusters
from evalkit.multilevel.spec import require_fit

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults


def ranef(result: LMMResults) -> dict[str, pd.DataFrame]:
    """Conditional modes of the random effects with their conditional SDs, per level.

    For each top-level cluster, ``b̂ = σ²R Zᵀ(y − Xβ̂)/σ²`` and the conditional
    covariance is ``σ²R`` with ``R = Λ(I + ΛᵀZᵀZΛ)⁻¹Λᵀ``: lme4's ``ranef(condVar =
    TRUE)`` (conditional on θ̂, σ̂ and β̂). Each frame has one row per group, indexed by
    the group's labels, with columns ``<effect>`` (the mode), ``<effect>_sd`` (the
    conditional SD) and ``<effect>_reliability``: ``1 − Var(b̂ − b)/τ``, which for a
    random intercept equals HLM's ``λ_j = τ/(τ + σ²/n_j)`` at known β.
    """
    require_fit(result, "ranef()")
    if result.frame is None:
        raise EvalkitInputError(
            "this fit kept no model frame; refit it with evalkit.multilevel.lmm."
        )
    factors = result.factors
    beta = result.params.to_numpy()
    rows: dict[int, list[tuple[Any, ...]]] = {k: [] for k in range(len(result.levels))}
    stats = result.stats
    if isinstance(stats, CrossedStats) and all(k == 1 for k in stats.q):
        # crossed random intercepts: from the blocked factorisation, at any size
        modes, variances = CrossedReducer(stats).conditional_modes(result.theta)
        for index, (mode, var) in enumerate(zip(modes, variances, strict=True)):
            rows[index] = [
                (code, 0, float(m), result.sigma2 * float(v))
                for code, (m, v) in enumerate(zip(mode, var, strict=True))
            ]
    for cluster in clusters(result.frame) if not rows[0] else ():
        marginal = Marginal.at(cluster, factors, result.sigma2)
        resid = cluster.y - cluster.x @ beta
        modes = marginal.r @ (cluster.z.T @ resid)
        cond_var = result.sigma2 * np.diag(marginal.r)
        for col in range(modes.size):
            rows[int(cluster.level[col])].append(
                (int(cluster.group[col]), int(cluster.component[col]), modes[col], cond_var[col])
            )
    out = {}
    for k, level in enumerate(result.levels):
        table = pd.DataFrame(rows[k], columns=["code", "component", "mode", "cond_var"])
        names = [INTERCEPT if c == "1" else c for c in level.columns]
        assert result.variance_components is not None
        tau = np.diag(result.variance_components.matrix(level.name).to_numpy())
        wide = {}
        for j, name in enumerate(names):
            part = table[table["component"] == j].set_index("code").sort_index()
            wide[name] = part["mode"]
            wide[f"{name}_sd"] = np.sqrt(part["cond_var"].clip(lower=0.0))
            wide[f"{name}_reliability"] = (
                1.0 - part["cond_var"] / tau[j] if tau[j] > 0 else part["cond_var"] * 0.0
            )
        frame = pd.DataFrame(wide)
        frame.index = pd.Index(_labels(result, k, frame.index.to_numpy()), name=level.name)
        out[level.name] = frame
    return out


def _labels(result: LMMResults, level: int, codes: np.ndarray) -> list[Any]:
    labels = result.group_labels[level] if result.group_labels else None
    if labels is None:
        return list(codes)
    return [labels[c] for c in codes]


def reliability(result: LMMResults) -> dict[str, pd.Series]:
    """Average reliability of each random coefficient per level (HLM's table)."""
    require_fit(result, "reliability()")
    out = {}
    for name, frame in ranef(result).items():
        columns = [c for c in frame.columns if c.endswith("_reliability")]
        out[name] = frame[columns].mean().rename(lambda c: c.removesuffix("_reliability"))
    return out


def caterpillar_plot(
    result: LMMResults,
    level: str | None = None,
    effect: str = INTERCEPT,
    *,
    ax: Any = None,
    level_ci: float = 0.95,
) -> Any:
    """Conditional modes of one random effect, sorted, with intervals
    ``mode ± z·SD`` (lme4's dotplot of ``ranef(condVar = TRUE)``). Returns the Figure
    (drawn on ``ax`` when given)."""
    effects = ranef(result)
    name = level or result.levels[-1].name
    if name not in effects:
        raise EvalkitInputError(f"no grouping level {name!r}; the levels are {', '.join(effects)}.")
    frame = effects[name]
    if effect not in frame.columns:
        raise EvalkitInputError(f"level {name} has no random effect {effect!r}.")
    ordered = frame.sort_values(effect)
    crit = stats.norm.ppf(0.5 + level_ci / 2)
    figure, ax = figure_and_axes(ax, figsize=(6, max(3.0, 0.08 * len(ordered))))
    positions = np.arange(len(ordered))
    ax.errorbar(
        ordered[effect], positions, xerr=crit * ordered[f"{effect}_sd"], fmt="o", markersize=2,
        color="0.2", ecolor="0.6", linewidth=0.8,
    )  # fmt: skip
    ax.axvline(0.0, color="0.4", linestyle="--", linewidth=0.8)
    ax.set_yticks([])
    ax.set_ylabel(f"{name} (sorted)")
    ax.set_xlabel(f"conditional mode of {effect} ({level_ci:.0%} interval)")
    return figure
