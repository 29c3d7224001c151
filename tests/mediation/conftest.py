"""Simulated 2-2-1 coaching data with known paths, for the mediation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_221(
    rng: np.random.Generator,
    *,
    n_schools: int = 60,
    teachers: int = 4,
    students: int = 10,
    a: float = 0.5,
    b: float = 0.3,
    direct: float = 0.1,
    confounding: float = 0.0,
    error_sd: float = 0.0,
) -> pd.DataFrame:
    """Teachers randomised within schools; true instruction M* = a·X + school part +
    teacher part (+ confounding·U); observed instruction M = M* + N(0, error_sd²);
    achievement = direct·X + b·M* + prior + school + teacher (+ confounding·U) + noise.
    U is an unmeasured teacher-level cause of both instruction and achievement."""
    n_t = n_schools * teachers
    school = np.repeat(np.arange(n_schools), teachers)
    x = np.tile((np.arange(teachers) % 2 == 0).astype(float), n_schools)
    u = rng.standard_normal(n_t)
    school_m = rng.normal(0, 0.4, n_schools)[school]
    true_m = a * x + school_m + rng.normal(0, 0.9, n_t) + confounding * u
    observed_m = true_m + rng.normal(0, error_sd, n_t) if error_sd > 0 else true_m
    school_y = rng.normal(0, 0.3, n_schools)[school]
    teacher_y = direct * x + b * true_m + school_y + rng.normal(0, 0.25, n_t) + confounding * u
    rows = np.repeat(np.arange(n_t), students)
    prior = rng.standard_normal(rows.size)
    y = teacher_y[rows] + 0.5 * prior + rng.normal(0, 0.8, rows.size)
    return pd.DataFrame(
        {
            "school_id": [f"S{s:03d}" for s in school[rows]],
            "teacher_id": [f"T{t:04d}" for t in rows],
            "coached": x[rows].astype(int),
            "instruction": observed_m[rows],
            "prior": prior,
            "achievement": y,
        }
    )
