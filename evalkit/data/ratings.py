"""Simulated classroom-observation scores for rater designs (G studies).

Each teacher is observed in ``lessons`` lessons; ``raters_per_teacher`` raters drawn
from a pool score every lesson of that teacher (the (l:p) × r design of
generalizability theory). Scores are the sum of a teacher effect, a lesson-within-
teacher effect, the rater's severity, a teacher × rater effect and error, with the
standard deviations given; the truth is returned beside the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError


@dataclass(frozen=True)
class RatingSDs:
    """Standard deviations of the facets of a simulated observation score."""

    teacher: float = 0.45
    lesson: float = 0.30
    rater: float = 0.25
    teacher_rater: float = 0.15
    error: float = 0.40


def simulate_observation_scores(
    n_teachers: int = 60,
    *,
    lessons: int = 4,
    raters_per_teacher: int = 2,
    n_raters: int = 10,
    sds: RatingSDs | None = None,
    mean: float = 4.0,
    seed: int | None = None,
) -> pd.DataFrame:
    """Observation scores with string IDs: ``teacher``, ``lesson``, ``rater``, ``score``.

    Examples
    --------
    >>> scores = simulate_observation_scores(n_teachers=5, seed=1)
    >>> scores.shape, sorted(scores.columns)
    ((40, 4), ['lesson', 'rater', 'score', 'teacher'])
    """
    if n_teachers < 2 or lessons < 1 or raters_per_teacher < 1:
        raise EvalkitInputError("need at least 2 teachers, 1 lesson and 1 rater per teacher.")
    if raters_per_teacher > n_raters:
        raise EvalkitInputError(
            f"raters_per_teacher ({raters_per_teacher}) exceeds the pool of {n_raters} raters."
        )
    sd = sds or RatingSDs()
    gen = np.random.default_rng(seed)
    severity = gen.normal(0.0, sd.rater, n_raters)
    rows = []
    for t in range(n_teachers):
        teacher = gen.normal(0.0, sd.teacher)
        chosen = gen.choice(n_raters, size=raters_per_teacher, replace=False)
        pair = gen.normal(0.0, sd.teacher_rater, raters_per_teacher)
        for lesson in range(lessons):
            occasion = gen.normal(0.0, sd.lesson)
            for k, r in enumerate(chosen):
                score = mean + teacher + occasion + severity[r] + pair[k] + gen.normal(0, sd.error)
                rows.append((f"T{t + 1:03d}", f"L{lesson + 1}", f"R{r + 1:02d}", score))
    return pd.DataFrame(rows, columns=["teacher", "lesson", "rater", "score"])
