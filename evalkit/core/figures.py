"""Figures without pyplot: every plotting function in evalkit draws on a
:class:`matplotlib.figure.Figure` of its own (or on axes the caller passes) and returns
the Figure, so importing evalkit never chooses a backend and no figure is left open in
pyplot's registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_and_axes(
    ax: Any = None, *, figsize: tuple[float, float] = (6.0, 4.0)
) -> tuple[Figure, Any]:
    """The figure and axes to draw on: ``ax`` and its figure when given, else a new
    figure of ``figsize`` inches with one axes.

    Examples
    --------
    >>> figure, ax = figure_and_axes(figsize=(3, 2))
    >>> ax.figure is figure, figure.get_size_inches().tolist()
    (True, [3.0, 2.0])
    """
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure  # imported when a figure is drawn

    figure = Figure(figsize=figsize)
    return figure, figure.subplots()
