"""Write the simulated data sets the glmer references (glmm_reference.R) are fitted to.

Run from the repository root:  python tests/reference/multilevel/make_glmm_data.py
(then Rscript tests/reference/multilevel/glmm_reference.R). Fixed seeds; no real
records. The files are committed, so the tests need neither this script nor R.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent


def proficiency(seed: int = 20261203) -> pd.DataFrame:
    """Students in teachers in schools: a binary proficiency outcome, coaching at the
    teacher level, leadership at the school level, a student prior score whose slope
    varies across schools, and a count of absences over a number of enrolled days.
    IDs are strings, as in a district export."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(30):
        school = f"S{s:02d}"
        leadership = rng.normal(0, 1)
        school_effect = rng.normal(0, 0.5)
        slope_effect = rng.normal(0, 0.25)
        absence_school = rng.normal(0, 0.3)
        for t in range(8):
            teacher = f"T{s:02d}{t}"
            coached = int(rng.random() < 0.5)
            teacher_effect = rng.normal(0, 0.4)
            absence_teacher = rng.normal(0, 0.2)
            for k in range(int(rng.integers(8, 19))):
                prior = rng.normal(0, 1)
                eta = (
                    -0.3 + 0.35 * coached + 0.2 * leadership + (0.8 + slope_effect) * prior
                    + school_effect + teacher_effect
                )  # fmt: skip
                days = int(rng.integers(100, 181))
                rate = np.exp(
                    -3.2 - 0.15 * coached - 0.2 * prior + absence_school + absence_teacher
                )
                rows.append(
                    {
                        "student_id": f"{teacher}-{k:02d}",
                        "school_id": school,
                        "teacher_id": teacher,
                        "coached": coached,
                        "leadership": round(leadership, 4),
                        "prior": round(prior, 4),
                        "proficient": int(rng.random() < 1 / (1 + np.exp(-eta))),
                        "days_enrolled": days,
                        "absences": int(rng.poisson(rate * days)),
                    }
                )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    proficiency().to_csv(OUT / "proficiency.csv", index=False)
