"""A simulated multi-year teacher panel with staggered coaching rollout by school."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError


def default_dynamic_effect(event_time: np.ndarray) -> np.ndarray:
    """0.10 SD in the first coached year, growing by 0.05 a year to 0.25; 0 before."""
    return np.where(event_time >= 0, np.minimum(0.10 + 0.05 * event_time, 0.25), 0.0)


def simulate_rollout(
    *,
    n_schools: int = 60,
    teachers_per_school: int = 8,
    years: int = 8,
    first_year: int = 2018,
    cohorts: tuple[int, ...] = (2020, 2021, 2022),
    never_share: float = 0.4,
    effect: Callable[[np.ndarray], np.ndarray] = default_dynamic_effect,
    cohort_shift: float = 0.0,
    seed: int | None = None,
) -> pd.DataFrame:
    """Teacher × year observation scores (teacher-level SD units) where schools start
    coaching in one of ``cohorts`` (or never), with a known dynamic effect.

    ``cohort_shift`` adds a cohort-specific effect (later cohorts gain more), which
    makes two-way fixed effects biased while Sun & Abraham's estimator stays
    unbiased. Columns: ``teacher_id``, ``school_id``, ``year``, ``first_coached``
    (0 for never), ``coached`` (in effect that year), ``event_time``, ``true_effect``
    and ``score``.
    """
    for name, value in {
        "n_schools": n_schools, "teachers_per_school": teachers_per_school, "years": years,
    }.items():  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise EvalkitInputError(f"{name} must be a whole number of at least 1, got {value!r}.")
    if not 0 <= never_share < 1:
        raise EvalkitInputError(f"never_share must lie in [0, 1), got {never_share!r}.")
    if any(c < first_year or c >= first_year + years for c in cohorts):
        raise EvalkitInputError("every cohort must start within the panel's years.")
    rng = np.random.default_rng(seed)
    school_cohort = np.where(
        rng.random(n_schools) < never_share, 0, rng.choice(np.array(cohorts), size=n_schools)
    )
    n_teachers = n_schools * teachers_per_school
    school = np.repeat(np.arange(1, n_schools + 1), teachers_per_school)
    teacher_effect = rng.normal(0.0, 0.8, n_teachers) + np.repeat(
        rng.normal(0.0, 0.4, n_schools), teachers_per_school
    )
    year_effect = rng.normal(0.0, 0.2, years)
    frame = pd.DataFrame(
        {
            "teacher_id": np.repeat(np.arange(1, n_teachers + 1), years),
            "school_id": np.repeat(school, years),
            "year": np.tile(np.arange(first_year, first_year + years), n_teachers),
        }
    )
    first = school_cohort[frame["school_id"].to_numpy() - 1]
    frame["first_coached"] = first
    event = np.where(first > 0, frame["year"].to_numpy() - first, -999)
    frame["event_time"] = event
    frame["coached"] = ((first > 0) & (event >= 0)).astype(int)
    shift = np.where(first > 0, cohort_shift * (first - min(cohorts)), 0.0)
    truth = np.where(frame["coached"] == 1, effect(event) + shift, 0.0)
    frame["true_effect"] = truth
    frame["score"] = (
        teacher_effect[frame["teacher_id"].to_numpy() - 1]
        + year_effect[frame["year"].to_numpy() - first_year]
        + truth
        + rng.normal(0.0, 0.5, len(frame))
    )
    return frame
