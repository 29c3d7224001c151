"""Write the data sets the mediation references (mediation_reference.R) are fitted to.

Run from the repository root:  python tests/reference/mediation/make_mediation_data.py
(then Rscript tests/reference/mediation/mediation_reference.R). Fixed seeds; no real
records (the HSB extract is the public High School and Beyond subsample bundled with
evalkit). The files are committed, so the tests need neither this script nor R.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evalkit import datasets
from evalkit.data import simulate_district

OUT = Path(__file__).parent


def teachers_221(seed: int = 20261204) -> pd.DataFrame:
    """Two levels, 2-2-1: 120 teachers (string IDs) with 6-24 students each; coaching
    and instruction at the teacher level, a teacher-level experience covariate, a
    student prior score; instruction carries part of coaching's effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(120):
        coached = int(t % 2 == 0)
        experience = rng.normal(0, 1)
        instruction = 3.2 + 0.3 * coached + 0.15 * experience + rng.normal(0, 0.45)
        teacher_effect = rng.normal(0, 0.3)
        for _ in range(int(rng.integers(6, 25))):
            prior = rng.normal(0, 1)
            achievement = (
                0.08 * coached
                + 0.35 * (instruction - 3.2)
                + 0.05 * experience
                + 0.55 * prior
                + teacher_effect
                + rng.normal(0, 0.75)
            )
            rows.append((f"T{t:03d}", coached, experience, instruction, prior, achievement))
    return pd.DataFrame(
        rows,
        columns=["teacher_id", "coached", "experience", "instruction", "prior", "achievement"],
    )


def students_211(seed: int = 20261205) -> pd.DataFrame:
    """Two levels, 2-1-1: 80 teachers, a student-level mediator (engagement) whose
    teacher mean and within-teacher deviation act differently on achievement."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(80):
        coached = int(rng.random() < 0.5)
        teacher_engagement = 0.35 * coached + rng.normal(0, 0.4)
        teacher_effect = rng.normal(0, 0.25)
        for _ in range(int(rng.integers(10, 26))):
            engagement = teacher_engagement + rng.normal(0, 1.0)
            achievement = (
                0.1 * coached
                + 0.45 * teacher_engagement
                + 0.2 * (engagement - teacher_engagement)
                + teacher_effect
                + rng.normal(0, 0.8)
            )
            rows.append((f"T{t:02d}", coached, engagement, achievement))
    return pd.DataFrame(rows, columns=["teacher_id", "coached", "engagement", "achievement"])


def district(assignment: str, seed: int) -> pd.DataFrame:
    """Three levels from the district simulator, instruction as the teacher's mean
    observation score, a path 0.49 teacher SD, b path 0.3 student SD per teacher SD."""
    sim = simulate_district(
        n_schools=30,
        teachers_per_school=6,
        students_per_teacher=12,
        assignment=assignment,  # type: ignore[arg-type]
        instruction_achievement=0.3,
        size_variation=0.3,
        seed=seed,
    )
    instruction = sim.observations.groupby("teacher_id")["score"].mean().rename("instruction")
    students = sim.students.merge(instruction, left_on="teacher_id", right_index=True)
    columns = ["school_id", "teacher_id", "coached", "instruction", "leadership", "prior"]
    frame = students[[*columns, "achievement"]].copy()
    frame["school_id"] = "S" + frame["school_id"].astype(str).str.zfill(2)
    frame["teacher_id"] = "T" + frame["teacher_id"].astype(str).str.zfill(3)
    return frame


def main() -> None:
    hsb = datasets.load("hsb")[["school", "sector", "disclim", "meanses", "ses", "mathach"]]
    hsb.to_csv(OUT / "hsb.csv.gz", index=False)
    teachers_221().to_csv(OUT / "teachers_221.csv", index=False, float_format="%.10g")
    students_211().to_csv(OUT / "students_211.csv", index=False, float_format="%.10g")
    district("within_school", 20261206).to_csv(
        OUT / "district_221.csv", index=False, float_format="%.10g"
    )
    district("by_school", 20261207).to_csv(
        OUT / "district_321.csv", index=False, float_format="%.10g"
    )


if __name__ == "__main__":
    main()
