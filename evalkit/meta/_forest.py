"""Forest and orchard plots as evaluators publish them.

The forest plot follows the layout of metafor's ``forest.rma`` (Viechtbauer 2010):
study labels on the left, each effect with its CI (marker area ∝ weight), the columns
"estimate [95% CI]" and "weight" on the right, subgroup blocks with their own pooled
estimate, and the overall estimate of the model actually reported — the cluster-robust
one when a ``robust()`` fit is given — with its prediction interval. The orchard plot
(Nakagawa et al. 2021) shows every effect of a multilevel model, sized by precision,
around the pooled estimate, its CI and its prediction interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, RobustResults, figure_and_axes
from evalkit.meta._results import MetaResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SortOrder = Literal["estimate", "weight", "precision"]


def _column(result: MetaResults, values: Any, what: str) -> np.ndarray | None:
    """A column of the fit's data named by ``values``, or a sequence of per-effect values."""
    if values is None:
        return None
    if isinstance(values, str):
        if result.data is None or values not in result.data.columns:
            raise EvalkitInputError(f"{what}={values!r} is not a column of the fit's data.")
        return result.data[values].to_numpy()
    array = np.asarray(values, dtype=object)
    if array.shape != (result.y.size,):
        raise EvalkitInputError(
            f"{what} has {array.size} entries for {result.y.size} effect sizes."
        )
    return array


def effect_weights(result: MetaResults) -> np.ndarray:
    """Percentage weights: inverse marginal variances (univariate) or, for multilevel
    models, the diagonal of the inverse marginal covariance (metafor's ``weights.rma.mv``)."""
    if result.weights.size == result.y.size:
        return result.weights.to_numpy()
    if result.structure is None:
        w = 1.0 / (result.v + result.tau2)
    else:
        w = np.zeros(result.y.size)
        for rows, matrix in result.marginal_blocks(np.zeros(result.y.size)):
            w[rows] = np.diag(np.linalg.inv(matrix))
    return 100.0 * w / w.sum()


def forest_frame(
    result: MetaResults,
    *,
    labels: Any = None,
    subgroups: Any = None,
    sort: SortOrder | None = None,
    level: float | None = None,
) -> pd.DataFrame:
    """The rows of the forest plot as a table: label, group, estimate, CI and weight."""
    level = result.level if level is None else level
    names = _column(result, labels, "labels")
    if names is None:
        names = np.asarray([str(i) for i in result.labels], dtype=object)
    groups = _column(result, subgroups, "subgroups")
    z = stats.norm.ppf(0.5 + level / 2)
    se = np.sqrt(result.v)
    frame = pd.DataFrame(
        {
            "label": [str(n) for n in names],
            "group": groups if groups is not None else "",
            "estimate": result.y,
            "ci_low": result.y - z * se,
            "ci_high": result.y + z * se,
            "weight": effect_weights(result),
        }
    )
    if sort is not None:
        key = {"estimate": "estimate", "weight": "weight", "precision": "weight"}.get(sort)
        if key is None:
            raise EvalkitInputError(
                f"sort must be 'estimate', 'weight' or 'precision', got {sort!r}."
            )
        ascending = sort == "estimate"
        frame = frame.sort_values(key, ascending=ascending, kind="stable")
    if groups is not None:
        order = {g: i for i, g in enumerate(pd.unique(groups))}
        frame = frame.sort_values("group", key=lambda s: s.map(order), kind="stable")
    return frame


def _pooled_row(result: MetaResults, robust: RobustResults | None, level: float) -> dict[str, Any]:
    """Estimate, CI and prediction interval of the model reported."""
    pred = result.predict(level=level).iloc[0]
    total = float(result.tau2)
    if robust is None:
        est, low, high = pred["estimate"], pred["ci_low"], pred["ci_high"]
        label = f"Pooled ({result.method})"
        pi = (pred["pi_low"], pred["pi_high"])
    else:
        tidy = robust.tidy(level).iloc[0]
        est, low, high = tidy["estimate"], tidy["ci_low"], tidy["ci_high"]
        label = f"Pooled ({robust.vcov_type} robust CI)"
        crit = stats.t.ppf(0.5 + level / 2, tidy["df"])
        spread = crit * np.sqrt(tidy["std_error"] ** 2 + total)
        pi = (est - spread, est + spread) if result.method != "FE" else (np.nan, np.nan)
    return {"label": label, "estimate": est, "ci_low": low, "ci_high": high, "pi": pi}


def forest_plot(
    result: MetaResults,
    *,
    labels: Any = None,
    subgroups: Any = None,
    robust: RobustResults | None = None,
    sort: SortOrder | None = None,
    columns: bool = True,
    level: float | None = None,
    title: str = "",
    xlabel: str = "Effect size",
) -> Figure:
    """Forest plot with estimate [CI] and weight columns, subgroup blocks and the pooled
    estimate of the model reported.

    Parameters
    ----------
    result
        An intercept-only fit (``random_effects``, ``fixed_effect``, ``multilevel``).
    labels
        Study labels: a column of the fit's data (``"author"``) or one label per effect.
    subgroups
        A column (or per-effect values) defining blocks; each block shows its own
        random-effects (REML) estimate.
    robust
        The ``robust()`` fit of ``result``: the pooled row then shows the
        cluster-robust CI (t with Satterthwaite df), as reported.
    sort
        ``"estimate"`` (ascending) or ``"weight"``/``"precision"`` (largest first);
        within subgroups when there are subgroups.
    columns
        Draw the "estimate [CI]" and "weight" columns.
    level
        Confidence level (the fit's by default).
    """
    if result.x.shape[1] != 1:
        raise EvalkitInputError(
            "forest_plot draws intercept-only models; fit the subgroups separately or use "
            "subgroups= for blocks."
        )
    level = result.level if level is None else level
    frame = forest_frame(result, labels=labels, subgroups=subgroups, sort=sort, level=level)
    blocks: list[tuple[str, Any]] = []
    if subgroups is not None:
        for group, members in frame.groupby("group", sort=False):
            blocks.append(("header", str(group)))
            blocks.extend(("effect", row) for row in members.itertuples())
            if len(members) >= 2:
                blocks.append(("subgroup", members))
    else:
        blocks.extend(("effect", row) for row in frame.itertuples())
    blocks.append(("pooled", _pooled_row(result, robust, level)))
    n = len(blocks)
    figure, axes = figure_and_axes(figsize=(9.0 if columns else 7.0, 1.3 + 0.28 * n))
    from matplotlib import transforms  # imported when drawing (importing evalkit stays fast)

    text = transforms.blended_transform_factory(axes.transAxes, axes.transData)
    pct = round(100 * level)
    max_weight = float(frame["weight"].max())
    ticks, tick_labels = [], []
    for position, (kind, item) in enumerate(reversed(blocks)):
        ticks.append(position)
        if kind == "effect":
            axes.hlines(position, item.ci_low, item.ci_high, color="0.2", linewidth=1)
            size = 3 + 9 * np.sqrt(item.weight / max_weight)
            axes.plot(item.estimate, position, "s", color="tab:blue", markersize=size)
            tick_labels.append(item.label)
            cells = (_interval(item.estimate, item.ci_low, item.ci_high), f"{item.weight:.1f}%")
        elif kind == "header":
            tick_labels.append(item)
            cells = ("", "")
        elif kind == "subgroup":
            est, low, high = _subgroup(item, level)
            _diamond(axes, position, est, low, high, color="tab:gray")
            tick_labels.append("  RE model for subgroup")
            cells = (_interval(est, low, high), f"{item['weight'].sum():.1f}%")
        else:
            _diamond(
                axes, position, item["estimate"], item["ci_low"], item["ci_high"], color="black"
            )
            if np.all(np.isfinite(item["pi"])):
                axes.hlines(position - 0.38, *item["pi"], color="tab:red", linewidth=2)
            tick_labels.append(item["label"])
            cells = (_interval(item["estimate"], item["ci_low"], item["ci_high"]), "100%")
        if columns:
            axes.text(1.04, position, cells[0], transform=text, va="center", fontsize=8)
            axes.text(1.50, position, cells[1], transform=text, va="center", ha="right", fontsize=8)
    if columns:
        axes.text(1.04, n - 0.2, f"Estimate [{pct}% CI]", transform=text, fontsize=8, weight="bold")
        axes.text(1.50, n - 0.2, "Weight", transform=text, ha="right", fontsize=8, weight="bold")
    axes.set_ylim(-1, n + 0.4)
    axes.set_yticks(ticks, tick_labels, fontsize=8)
    axes.axvline(0.0, color="0.5", linewidth=0.8)
    axes.set_xlabel(xlabel)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    if columns:
        figure.subplots_adjust(right=0.63)
    return figure


def _interval(estimate: float, low: float, high: float) -> str:
    return f"{estimate:.2f} [{low:.2f}, {high:.2f}]"


def _subgroup(members: pd.DataFrame, level: float) -> tuple[float, float, float]:
    """Random-effects (REML) estimate of a block, from its effects and CIs."""
    from evalkit.meta._algebra import estimate_tau2, wls

    z = stats.norm.ppf(0.5 + level / 2)
    y = members["estimate"].to_numpy()
    v = ((members["ci_high"] - members["ci_low"]).to_numpy() / (2 * z)) ** 2
    x = np.ones((y.size, 1))
    fit = wls(y, v, x, estimate_tau2(y, v, x, "REML"))
    beta, se = float(fit.beta[0]), float(np.sqrt(fit.cov[0, 0]))
    return beta, beta - z * se, beta + z * se


def _diamond(
    axes: Any, position: float, centre: float, low: float, high: float, *, color: str
) -> None:
    axes.fill(
        [low, centre, high, centre],
        [position, position + 0.3, position, position - 0.3],
        color=color,
    )


def orchard_plot(
    result: MetaResults,
    *,
    robust: RobustResults | None = None,
    level: float | None = None,
    seed: int = 1,
    title: str = "",
    xlabel: str = "Effect size",
) -> Figure:
    """Orchard plot of an intercept-only (multilevel) model: every effect as a point
    sized by its precision (jittered vertically), the pooled estimate with its CI (thick
    bar) and prediction interval (thin bar), and k and the number of clusters."""
    if result.x.shape[1] != 1:
        raise EvalkitInputError("orchard_plot draws intercept-only models.")
    level = result.level if level is None else level
    pooled = _pooled_row(result, robust, level)
    rng = np.random.default_rng(seed)
    figure, axes = figure_and_axes(figsize=(7.0, 3.2))
    precision = 1.0 / np.sqrt(result.v)
    sizes = 8 + 60 * (precision / precision.max())
    axes.scatter(result.y, rng.uniform(-0.35, 0.35, result.y.size), s=sizes, alpha=0.45,
                 color="tab:green", edgecolors="none")  # fmt: skip
    if np.all(np.isfinite(pooled["pi"])):
        axes.hlines(0, *pooled["pi"], color="black", linewidth=1.2)
    axes.hlines(0, pooled["ci_low"], pooled["ci_high"], color="black", linewidth=5)
    axes.plot(pooled["estimate"], 0, "o", color="white", markeredgecolor="black", markersize=9)
    clusters = result.n_groups
    groups = ", ".join(f"{name}: {n}" for name, n in list(clusters.items())[:1])
    axes.text(0.99, 0.95, f"k = {result.y.size}" + (f" ({groups})" if groups else ""),
              transform=axes.transAxes, ha="right", va="top", fontsize=8)  # fmt: skip
    axes.axvline(0.0, color="0.5", linewidth=0.8, linestyle="--")
    axes.set_yticks([0], [pooled["label"]], fontsize=8)
    axes.set_ylim(-0.8, 0.8)
    axes.set_xlabel(xlabel)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def labelled(result: MetaResults, labels: Sequence[Any] | str | None) -> np.ndarray:
    """Per-effect labels: a column of the data, given values, or the data's row labels."""
    names = _column(result, labels, "labels")
    return np.asarray(list(result.labels), dtype=object) if names is None else names
