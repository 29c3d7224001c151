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

from evalkit.multilevel.frame import ModelFrame


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
    if constant.any():
        df[0] -= 1
    else:
        df[1:] += 1
    out = np.where(constant, np.max(df), df[stratum])
    return out
