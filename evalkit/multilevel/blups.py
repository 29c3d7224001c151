"""Conditional modes of the random effects (BLUPs), their conditional variances, the
reliability of each random coefficient, and a caterpillar plot."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.linalg import block_diag

from evalkit.core import INTERCEPT, EvalkitInputError, figure_and_axes
from evalkit.multilevel.crossed import CrossedReducer, CrossedStats
from evalkit.multilevel.engine import reducer_for
from evalkit.multilevel.frame import Marginal, clusters
from evalkit.multilevel.iterative import IterativeReducer, IterativeStats
from evalkit.multilevel.spec import require_fit
from evalkit.multilevel.stats import SufficientStats

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults


def _crossed_rows(
    modes: list[np.ndarray], variances: list[np.ndarray], sigma2: float
) -> dict[int, list[tuple[Any, ...]]]:
    """(code, component, mode, conditional variance) per level of a crossed fit."""
    return {
        index: [
            (code, 0, float(m), sigma2 * float(v))
            for code, (m, v) in enumerate(zip(mode, var, strict=True))
        ]
        for index, (mode, var) in enumerate(zip(modes, variances, strict=True))
    }


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
    factors = result.factors
    beta = result.params.to_numpy()
    rows: dict[int, list[tuple[Any, ...]]] = {k: [] for k in range(len(result.levels))}
    stats = result.stats
    if isinstance(stats, SufficientStats):
        rows = _nested_modes(result, stats)
    elif isinstance(stats, CrossedStats) and all(k == 1 for k in stats.q):
        # crossed random intercepts: from the blocked factorisation, at any size
        modes, variances = CrossedReducer(stats).conditional_modes(result.theta)
        rows = _crossed_rows(modes, variances, result.sigma2)
    elif isinstance(stats, IterativeStats):
        # the iterative engine's modes are solved; their variances estimated (probes)
        reducer = reducer_for(stats)
        assert isinstance(reducer, IterativeReducer)
        modes, variances = reducer.conditional_modes(result.theta)
        rows = _crossed_rows(modes, variances, result.sigma2)
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


def _nested_modes(result: LMMResults, stats: SufficientStats) -> dict[int, list[tuple[Any, ...]]]:
    """Conditional modes of a nested model from its per-group statistics, one top-level
    cluster at a time: the cluster's ``ZᵀZ`` and ``Zᵀ(y − Xβ̂)`` are sums of its lowest
    groups' cross-products placed at their groups' effects (no rows needed)."""
    spec = result._spec()
    factors = result.factors
    q = list(stats.q)
    levels, q_total, p = len(q), sum(q), stats.p
    beta = result.params.to_numpy().copy()
    if spec.outcome_shift:
        beta[list(spec.terms).index(INTERCEPT)] -= spec.outcome_shift  # stats hold y − shift
    ztz = stats.cross[:, :q_total, :q_total]
    ztr = stats.cross[:, :q_total, -1] - stats.cross[:, :q_total, q_total : q_total + p] @ beta
    ancestors = [stats.ancestors(level) for level in range(levels)]
    top = ancestors[-1]
    bounds = np.flatnonzero(np.r_[True, top[1:] != top[:-1], True])
    component = np.concatenate([np.arange(k) for k in q])
    level_of = np.repeat(np.arange(levels), q)
    rows: dict[int, list[tuple[Any, ...]]] = {k: [] for k in range(levels)}
    for lo, hi in itertools.pairwise(bounds):
        first = [int(a[lo]) for a in ancestors]
        sizes = [int(a[hi - 1]) - f + 1 for a, f in zip(ancestors, first, strict=True)]
        bases = np.cumsum([0, *(s * k for s, k in zip(sizes, q, strict=True))])
        local = np.column_stack([ancestors[lv][lo:hi] - first[lv] for lv in level_of])
        index = bases[level_of] + local * np.array(q)[level_of] + component
        width = int(bases[-1])
        cluster_ztz = np.zeros((width, width))
        np.add.at(cluster_ztz, (index[:, :, None], index[:, None, :]), ztz[lo:hi])
        cluster_ztr = np.zeros(width)
        np.add.at(cluster_ztr, index, ztr[lo:hi])
        lam = block_diag(*(np.kron(np.eye(s), t) for s, t in zip(sizes, factors, strict=True)))
        c = np.eye(width) + lam.T @ cluster_ztz @ lam
        r = lam @ np.linalg.solve(c, lam.T)
        r = 0.5 * (r + r.T)
        modes = r @ cluster_ztr
        variances = result.sigma2 * np.diag(r)
        for level in range(levels):
            codes = stats.group_codes[level] if stats.group_codes is not None else None
            for g in range(sizes[level]):
                position = first[level] + g
                code = int(codes[position]) if codes is not None else position
                for k in range(q[level]):
                    at = int(bases[level]) + g * q[level] + k
                    rows[level].append((code, k, float(modes[at]), float(variances[at])))
    return rows


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
