"""Profile-likelihood confidence intervals for the random-effect SDs of a GLMM.

For each random effect alone at its level (a random intercept, or a single slope) the
deviance is minimised over every other parameter with that SD held fixed; the interval
is where the profiled deviance stays within ``χ²₁(level)`` of the minimum (Bates et al.
2015, §5.1 of the lme4 paper; Venzon & Moolgavkar 1988). The ends are found by root
finding on the profile itself, not by interpolating a grid, and a lower end at zero
means the profiled deviance never rises far enough there. Levels with several
correlated effects are not profiled here (their rows say so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize, stats

from evalkit.core import INTERCEPT, EvalkitInputError

if TYPE_CHECKING:
    from evalkit.multilevel.glmm import GLMMResults

UPPER_LIMIT = 1e3
"""Largest SD searched for an upper end (on the link scale, far beyond any real one)."""


def glmm_profile_intervals(result: GLMMResults, *, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals of the random-effect SDs: one row per effect
    (``level``, ``term``, ``sd``, ``ci_low``, ``ci_high``, ``note``)."""
    from evalkit.multilevel.glmm import scaled_deviance

    if not 0 < level < 1:
        raise EvalkitInputError(f"level must lie in (0, 1), got {level!r}.")
    spec, engine = result._parts()
    problem = scaled_deviance(spec, engine)
    best = np.r_[result.theta, result.params.to_numpy()] * problem.scale
    minimum = float(result.facts["deviance"])
    crit = float(stats.chi2.ppf(level, 1))
    rows = []
    for k, (lev, row, col) in enumerate(spec.layout.entries):
        names = spec.levels[lev].columns
        term = INTERCEPT if names[row] == "1" else names[row]
        if len(names) > 1:
            if row == col:
                rows.append((spec.levels[lev].name, term, float(result.theta[k]), np.nan, np.nan,
                             "several correlated effects at this level: not profiled"))  # fmt: skip
            continue
        sd = float(result.theta[k])

        def excess(value: float, k: int = k) -> float:
            return _profiled(problem, best, k, value) - minimum - crit

        low = 0.0 if excess(0.0) <= 0 else optimize.brentq(excess, 0.0, sd, xtol=1e-10)
        upper = max(2.0 * sd, 0.1)
        while excess(upper) <= 0:
            upper *= 2
            if upper > UPPER_LIMIT:
                upper = np.inf
                break
        high = upper if np.isinf(upper) else optimize.brentq(excess, sd, upper, xtol=1e-10)
        rows.append((spec.levels[lev].name, term, sd, float(low), float(high), ""))
    return pd.DataFrame(rows, columns=["level", "term", "sd", "ci_low", "ci_high", "note"])


def _profiled(problem: object, best: np.ndarray, k: int, value: float) -> float:
    """The deviance minimised over all parameters but the k-th, held at ``value``."""
    from evalkit.multilevel.glmm import Scaled

    assert isinstance(problem, Scaled)
    start = best.copy()
    start[k] = value
    bounds: list[tuple[float | None, float | None]] = [
        (float(low) if np.isfinite(low) else None, None) for low in problem.lower
    ]
    bounds[k] = (value, value)
    found = optimize.minimize(
        x0=start, method="L-BFGS-B", bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
        **problem.derivatives.lbfgs(start),
    )  # fmt: skip
    return float(problem.derivatives.value(np.asarray(found.x)))
