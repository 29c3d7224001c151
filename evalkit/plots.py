"""Figures for evaluation reports: each function returns a matplotlib Figure drawn
without pyplot, so no backend is chosen and nothing needs a display."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evalkit.core import EvalkitInputError, figure_and_axes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def effect_size_plot(
    effects: pd.DataFrame,
    *,
    title: str = "Effect sizes with 95% confidence intervals",
    reference_lines: tuple[float, ...] = (0.0, 0.25),
) -> Figure:
    """Dot-and-interval plot of effect sizes (one row per outcome).

    Parameters
    ----------
    effects
        Columns ``estimate``, ``ci_low``, ``ci_high``; the index labels the rows.
    title
        Figure title.
    reference_lines
        Vertical lines to draw (0 and the WWC substantive-importance threshold).
    """
    missing = [c for c in ("estimate", "ci_low", "ci_high") if c not in effects.columns]
    if missing:
        raise EvalkitInputError(f"effects is missing column(s) {', '.join(missing)}.")
    frame = effects.iloc[::-1]
    figure, axes = figure_and_axes(figsize=(6.5, 1.0 + 0.5 * len(frame)))
    positions = range(len(frame))
    axes.hlines(positions, frame["ci_low"], frame["ci_high"], color="0.3", linewidth=1.5)
    axes.plot(frame["estimate"], positions, "o", color="tab:blue")
    for x in reference_lines:
        axes.axvline(x, color="0.6", linestyle="--" if x else "-", linewidth=0.8)
    axes.set_yticks(list(positions), [str(i) for i in frame.index])
    axes.set_xlabel("Effect size (Hedges' g)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Save ``figure`` to ``path`` (the format follows the suffix: PNG, PDF, SVG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
