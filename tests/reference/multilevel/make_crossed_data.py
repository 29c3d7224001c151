"""Write the simulated crossed-design data sets the lme4 references are fitted to.

Run from the repository root:  python tests/reference/multilevel/make_crossed_data.py
(then Rscript tests/reference/multilevel/crossed_reference.R). Fixed seeds; no real
records. The files are committed, so the tests do not need this script or R.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent


def observation_scores(seed: int = 20261202) -> pd.DataFrame:
    """Raters × teachers: 60 teachers, 4 lessons each; two raters per teacher (of 10)
    score every lesson of that teacher, so teacher × rater cells hold 4 scores."""
    rng = np.random.default_rng(seed)
    rows = []
    teacher_sd, lesson_sd, rater_sd, pair_sd, error_sd = 0.45, 0.3, 0.25, 0.15, 0.4
    rater_effect = rng.normal(0, rater_sd, 10)
    slope = rng.normal(0, 0.12, 10)
    for t in range(60):
        coached = int(t % 2 == 0)
        teacher = rng.normal(0, teacher_sd)
        raters = rng.choice(10, size=2, replace=False)
        pair = {r: rng.normal(0, pair_sd) for r in raters}
        for lesson in range(4):
            occasion = rng.normal(0, lesson_sd)
            for r in raters:
                score = (
                    2.5
                    + 0.2 * coached
                    + teacher
                    + occasion
                    + rater_effect[r]
                    + slope[r] * coached
                    + pair[r]
                    + rng.normal(0, error_sd)
                )
                rows.append(
                    (f"T{t:03d}", f"L{lesson + 1}", f"R{r + 1:02d}", coached, round(score, 6))
                )
    return pd.DataFrame(rows, columns=["teacher", "lesson", "rater", "coached", "score"])


def student_panel(seed: int = 20261203) -> pd.DataFrame:
    """Students × teachers over three years: 12 schools with two teachers per grade
    (3–5); 600 students followed from grade 3, 10% change school each year."""
    rng = np.random.default_rng(seed)
    schools = 12
    school_effect = rng.normal(0, 0.25, schools)
    teacher_effect = rng.normal(0, 0.3, (schools, 3, 2))
    coached = rng.integers(0, 2, (schools, 3, 2))
    rows = []
    for s in range(600):
        student = rng.normal(0, 0.8)
        school = int(rng.integers(schools))
        for year in range(3):
            if year and rng.random() < 0.10:
                school = int((school + rng.integers(1, schools)) % schools)
            slot = int(rng.integers(2))
            teacher = f"S{school:02d}-G{year + 3}-{slot}"
            score = (
                0.5 * year
                + 0.15 * coached[school, year, slot]
                + school_effect[school]
                + teacher_effect[school, year, slot]
                + student
                + rng.normal(0, 0.5)
            )
            if rng.random() < 0.05:  # a missed test
                continue
            rows.append(
                (
                    f"P{s:04d}",
                    teacher,
                    f"S{school:02d}",
                    year,
                    int(coached[school, year, slot]),
                    round(score, 6),
                )
            )
    return pd.DataFrame(rows, columns=["student", "teacher", "school", "year", "coached", "score"])


if __name__ == "__main__":
    observation_scores().to_csv(OUT / "observation_scores.csv", index=False)
    student_panel().to_csv(OUT / "student_panel.csv", index=False)
