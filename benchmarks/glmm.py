"""Binary-outcome GLMM against lme4's glmer (Laplace) and statsmodels.

Run: ``python benchmarks/glmm.py [--quick]``.

A three-level binary model on 200,000 students (40 schools × 25 teachers × 200
students; ``--quick``: 40 × 25 × 40): ``proficient ~ coached + prior + leadership +
(1 | school) + (1 | teacher)``, by the Laplace approximation.

* evalkit: first call in a fresh process, steady state the best of repeated calls;
  peak resident memory of a fit above what the loaded data frame took (in another
  fresh process, after a small warm-up fit so that modules loaded on first use are
  not counted), against the size of the model's design ``[X Z]`` in float64
  (``n × (p + q)``).
* glmer (lme4, default ``glmerControl``: bobyqa then Nelder–Mead, nAGQ = 1) on the same
  rows in one R session when Rscript is on the PATH.
* statsmodels has no maximum-likelihood GLMM; its ``BinomialBayesMixedGLM.fit_vb``
  (a variational Bayes approximation, a different estimator) is timed against evalkit
  on a 2,000-student version of the design (40 × 25 × 2; it takes about a minute there
  and over 90 s at 4,000 students).

Prints peer / evalkit.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of, r_numbers

from evalkit.multilevel import glmm

FORMULA = "proficient ~ coached + prior + leadership + (1 | school) + (1 | teacher)"


def district(students_per_teacher: int, seed: int = 11) -> pd.DataFrame:
    """40 schools × 25 teachers × ``students_per_teacher`` students, binary outcome."""
    rng = np.random.default_rng(seed)
    schools, teachers = 40, 25
    n_teachers = schools * teachers
    school = np.repeat(np.arange(schools), teachers * students_per_teacher)
    teacher = np.repeat(np.arange(n_teachers), students_per_teacher)
    coached = rng.integers(0, 2, n_teachers)[teacher]
    leadership = rng.normal(0, 1, schools)[school]
    prior = rng.normal(0, 1, school.size)
    eta = (
        -0.2 + 0.3 * coached + 0.2 * leadership + 0.8 * prior
        + rng.normal(0, 0.5, schools)[school] + rng.normal(0, 0.4, n_teachers)[teacher]
    )  # fmt: skip
    proficient = (rng.random(school.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame(
        {
            "school": school,
            "teacher": teacher,
            "coached": coached,
            "leadership": leadership,
            "prior": prior,
            "proficient": proficient,
        }
    )


R_SCRIPT = """
suppressPackageStartupMessages({library(lme4)})
d <- read.csv("%s")
d$school <- factor(d$school); d$teacher <- factor(d$teacher)
t <- system.time(fit <- glmer(proficient ~ coached + prior + leadership + (1 | school) +
                                (1 | teacher), d, family = binomial))[["elapsed"]]
cat(sprintf("%%.3f %%.8f", t, -2 * as.numeric(logLik(fit))), "\\n")
"""


def once(students_per_teacher: int) -> None:
    """Fit in this (fresh) process: the first call's time, its deviance."""
    data = district(students_per_teacher)
    start = time.perf_counter()
    fit = glmm(FORMULA, data)
    seconds = time.perf_counter() - start
    print(seconds, fit.facts["deviance"])


def memory(students_per_teacher: int) -> None:
    """Peak resident memory of a fit above the loaded data, in a fresh process after a
    small warm-up fit (so that loading modules on first use is not counted as data)."""
    glmm(FORMULA, district(2, seed=3))
    data = district(students_per_teacher)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    glmm(FORMULA, data)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)


def statsmodels_vb(data: pd.DataFrame) -> float:
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    start = time.perf_counter()
    model = BinomialBayesMixedGLM.from_formula(
        "proficient ~ coached + prior + leadership",
        {"school": "0 + C(school)", "teacher": "0 + C(teacher)"},
        data,
    )
    model.fit_vb()
    return time.perf_counter() - start


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        once(int(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        memory(int(sys.argv[2]))
        return
    per_teacher = 40 if "--quick" in sys.argv else 200
    data = district(per_teacher)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "students.csv"
        data.to_csv(path, index=False)
        r = r_numbers(R_SCRIPT % path)
    first = subprocess.run(
        [sys.executable, __file__, "--once", str(per_teacher)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    first_seconds, deviance = (float(x) for x in first.stdout.split())
    measured = subprocess.run(
        [sys.executable, __file__, "--memory", str(per_teacher)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    peak_bytes = float(measured.stdout.split()[-1])
    steady = best_of(lambda: glmm(FORMULA, data), 2)
    design = len(data) * (4 + 2) * 8
    label = f"three-level binary, {len(data):,} students"
    print(f"{'case':44s} {'first call':>11s} {'steady':>9s} {'glmer':>9s} {'glmer/evalkit':>14s}")
    peer = r[0] if r is not None else float("nan")
    print(f"{label:44s} {first_seconds:10.2f}s {steady:8.2f}s {peer:8.2f}s {peer / steady:13.1f}x")
    if r is not None:
        print(
            f"deviance: evalkit {deviance:.6f}, glmer {r[1]:.6f} (difference {deviance - r[1]:+.2e})"
        )
    print(
        f"peak memory above the data: {peak_bytes / 2**20:.0f} MiB = "
        f"{peak_bytes / design:.1f} × the design [X Z] ({design / 2**20:.1f} MiB)"
    )
    small = district(2)
    vb = statsmodels_vb(small)
    ours = best_of(lambda: glmm(FORMULA, small), 3)
    label = "statsmodels fit_vb, 2,000 students"
    print(f"{label:44s} {'':11s} {ours:8.2f}s {vb:8.2f}s {vb / ours:13.1f}x")


if __name__ == "__main__":
    main()
