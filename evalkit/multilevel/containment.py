"""Containment ("between–within") degrees of freedom, as nlme's ``lme`` assigns them.

Each fixed-effect column belongs to the innermost level at which it varies: a column
constant within schools is a school-level term, one that varies within schools but
not within teachers a teacher-level term, and one that varies within teachers a
residual-level term. With ``N_0 = 1`` groups above the top, each level's df are
``N_l − N_{l−1}`` minus the columns assigned to it (the intercept counts at the top
level), the residual level's ``n − N_L`` minus its columns; a column takes its
level's df and the intercept the largest. For one grouping level this is HLM's
``J − q − 1`` for cluster-level terms. As in nlme, random slopes do not move a
column to another level (SAS's containment method would).
"""

from __future__ import annotations

import numpy as np

from evalkit.core import EvalkitInputError
from evalkit.multilevel.frame import ModelFrame
from evalkit.multilevel.stats import SufficientStats


def _varies_within(column: np.ndarray, codes: np.ndarray) -> bool:
    """Whether ``column`` takes more than one value inside any group of ``codes``."""
    order = np.lexsort((column, codes))
    sorted_codes, sorted_values = codes[order], column[order]
    same_group = sorted_codes[1:] == sorted_codes[:-1]
    return bool(np.any(same_group & (sorted_values[1:] != sorted_values[:-1])))


def containment_df(frame: ModelFrame) -> np.ndarray:
    """nlme's df per fixed-effect column of ``frame.x``."""
    x = frame.x
    n, p = x.shape
    top_down = list(reversed(frame.codes))  # outermost grouping first
    counts = [int(np.unique(c).size) for c in top_down]
    df = np.array([*counts, n], dtype=float) - np.array([0, *counts], dtype=float)
    constant = np.all(x == x[:1], axis=0)
    stratum = np.zeros(p, dtype=int)
    for j in np.flatnonzero(~constant):
        stratum[j] = 0
        for s, codes in enumerate(top_down, start=1):
            if _varies_within(x[:, j], codes):
                stratum[j] = s
        df[stratum[j]] -= 1
    return _assign(df, constant, stratum)


def _assign(df: np.ndarray, constant: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    """Each column's df from its stratum's (the intercept counts at the top level;
    without one, the strata below the top keep one more df)."""
    if constant.any():
        df[0] -= 1
    else:
        df[1:] += 1
    return np.where(constant, np.max(df), df[stratum])


VARIES = 1e-9
"""A column varies within groups when its within-group sum of squares exceeds this share
of its sum of squares (sums of per-group cross-products leave rounding of ~1e-16)."""


def containment_from_stats(stats: SufficientStats, ones: int | None) -> np.ndarray:
    """:func:`containment_df` from per-group sums (a fit whose rows were never loaded):
    a column varies within a level's groups when ``Σ_g (Σx² − (Σx)²/n_g)`` is not 0."""
    if ones is None:
        raise EvalkitInputError(
            "containment df from per-group sums need a column of ones (an intercept); "
            "use df_method='satterthwaite'."
        )
    q_total, p = sum(stats.q), stats.p
    columns = list(range(q_total, q_total + p))
    levels = len(stats.q)
    counts = list(reversed(stats.n_groups))  # outermost first
    n = stats.n
    df = np.array([*counts, n], dtype=float) - np.array([0, *counts], dtype=float)
    totals = stats.level_sums(levels - 1, [ones], [ones, *columns])[:, 0, :].sum(axis=0)
    squares = np.array([stats.cross[:, j, j].sum() for j in columns])
    constant = squares - totals[1:] ** 2 / n <= VARIES * np.maximum(squares, 1e-300)
    stratum = np.zeros(p, dtype=int)
    for j in np.flatnonzero(~constant):
        for s, level in enumerate(range(levels - 1, -1, -1), start=1):
            sums = stats.level_sums(level, [ones], [ones, columns[j]])[:, 0, :]
            own = stats.level_sums(level, [columns[j]], [columns[j]])[:, 0, 0]
            within = float(np.sum(own - sums[:, 1] ** 2 / sums[:, 0]))
            if within > VARIES * squares[j]:
                stratum[j] = s
        df[stratum[j]] -= 1
    return _assign(df, constant, stratum)
