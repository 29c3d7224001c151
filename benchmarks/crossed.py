"""Crossed random effects, against lme4 (and lmerTest) and statsmodels.

Run: ``python benchmarks/crossed.py [--quick]``.

* InstEval (lme4; 73,421 ratings, 2,972 students × 1,128 instructors):
  ``y ~ service * dept + (1 | s) + (1 | d)`` by REML, evalkit with z tests
  (``df_method="none"``, as ``lme4::lmer``) and with Satterthwaite df (as
  ``lmerTest::lmer``, which computes the Hessian it needs at fit time).
* A simulated school system over three years (students × teachers × schools, 10% of
  students change school each year, five teachers per grade and school):
  ``score ~ year + (1 | student) + (1 | teacher) + (1 | school)`` at 30,000 and (without
  ``--quick``) 90,000 rows; the 300,000-row version (100,000 students, 15,000
  teachers, 1,000 schools) is reported as what evalkit says about it.

evalkit's first call runs in a fresh process, its steady state is the best of
repeated calls; lme4/lmerTest run at their default settings in one R session when
Rscript is on the PATH. statsmodels' MixedLM (variance components, its way to write
crossed factors) runs on a 5,000-row InstEval subset, as on all rows it does not
finish in minutes. Prints peer / evalkit. BLAS threads are left to evalkit, which
uses one thread for dense factors below a side of 2,000 and the default above.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of, r_numbers

from evalkit import EvalkitInputError
from evalkit.multilevel import lmm

DATA = Path(__file__).parents[1] / "tests" / "reference" / "multilevel" / "insteval.csv.gz"
INSTEVAL = "y ~ service * dept + (1 | s) + (1 | d)"
SCHOOLS = "score ~ year + (1 | student) + (1 | teacher) + (1 | school)"


def insteval() -> pd.DataFrame:
    data = pd.read_csv(DATA, dtype={"s": str, "d": str, "dept": str})
    return data.assign(dept=pd.Categorical(data["dept"]))


def school_system(n_students: int, *, per_grade: int = 5, seed: int = 1) -> pd.DataFrame:
    """Three years of scores: students in ``n_students/100`` schools, a teacher per
    grade-year slot, 10% of students moving to a random school each year."""
    rng = np.random.default_rng(seed)
    n_schools = max(n_students // 100, 2)
    school = rng.integers(0, n_schools, n_students)
    school_effect = rng.normal(0, 0.25, n_schools)
    teacher_effect = rng.normal(0, 0.3, (n_schools, 3, per_grade))
    student_effect = rng.normal(0, 0.8, n_students)
    frames = []
    for year in range(3):
        if year:
            move = rng.random(n_students) < 0.10
            school = np.where(move, rng.integers(0, n_schools, n_students), school)
        slot = rng.integers(0, per_grade, n_students)
        score = (
            0.5 * year
            + school_effect[school]
            + teacher_effect[school, year, slot]
            + student_effect
            + rng.normal(0, 0.5, n_students)
        )
        frames.append(
            pd.DataFrame(
                {
                    "student": np.arange(n_students),
                    "teacher": (school * 3 + year) * per_grade + slot,
                    "school": school,
                    "year": year,
                    "score": score,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def run(case: str, data: pd.DataFrame) -> None:
    if case == "z":
        lmm(INSTEVAL, data, df_method="none")
    elif case == "satterthwaite":
        lmm(INSTEVAL, data)
    else:
        lmm(SCHOOLS, data, df_method="none")


def load(case: str) -> pd.DataFrame:
    if case in ("z", "satterthwaite"):
        return insteval()
    return school_system(int(case))


R_SCRIPT = """
suppressPackageStartupMessages({library(lme4)})
ie <- lme4::InstEval
t1 <- system.time(lme4::lmer(y ~ service * dept + (1 | s) + (1 | d), ie, REML = TRUE))[["elapsed"]]
suppressPackageStartupMessages({library(lmerTest)})
t2 <- system.time(lmerTest::lmer(y ~ service * dept + (1 | s) + (1 | d), ie, REML = TRUE))[["elapsed"]]
out <- c(t1, t2)
for (path in c(%s)) {
  d <- read.csv(path)
  d$student <- factor(d$student); d$teacher <- factor(d$teacher); d$school <- factor(d$school)
  out <- c(out, system.time(lme4::lmer(score ~ year + (1 | student) + (1 | teacher) + (1 | school),
                                       d, REML = TRUE))[["elapsed"]])
}
cat(out, "\\n")
"""


def statsmodels_subset(data: pd.DataFrame) -> tuple[float, float]:
    """MixedLM on 5,000 rows (students as groups, instructors as a variance component)
    against evalkit on the same rows."""
    import statsmodels.formula.api as smf

    subset = data.sample(5000, random_state=1)
    subset = subset.assign(dept=subset["dept"].cat.remove_unused_categories())
    start = time.perf_counter()
    smf.mixedlm("y ~ service + C(dept)", subset, groups="s", vc_formula={"d": "0 + C(d)"}).fit(
        reml=True
    )
    peer = time.perf_counter() - start
    ours = best_of(
        lambda: lmm("y ~ service + dept + (1 | s) + (1 | d)", subset, df_method="none"), 3
    )
    return peer, ours


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        data = load(sys.argv[2])
        start = time.perf_counter()
        run(sys.argv[2], data)
        print(time.perf_counter() - start)
        return
    sizes = [10_000] if "--quick" in sys.argv else [10_000, 30_000]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for students in sizes:
            path = Path(tmp) / f"schools_{students}.csv"
            school_system(students).to_csv(path, index=False)
            paths.append(f'"{path}"')
        r = r_numbers(R_SCRIPT % ", ".join(paths))
    cases = [
        ("InstEval, z tests (lme4::lmer)", "z"),
        ("InstEval, Satterthwaite (lmerTest)", "satterthwaite"),
    ]
    cases += [(f"schools, {3 * s:,} rows", str(s)) for s in sizes]
    print(f"{'case':40s} {'first call':>11s} {'steady':>9s} {'R':>9s} {'R/evalkit':>10s}")
    for index, (label, case) in enumerate(cases):
        first = subprocess.run(
            [sys.executable, __file__, "--once", case], capture_output=True, text=True, check=True
        )
        first_seconds = float(first.stdout.split()[-1])
        data = load(case)
        steady = best_of(lambda case=case, data=data: run(case, data), 3 if index < 3 else 1)
        peer = r[index] if r is not None else float("nan")
        ratio = peer / steady if np.isfinite(peer) else float("nan")
        print(f"{label:40s} {first_seconds:10.3f}s {steady:8.3f}s {peer:8.3f}s {ratio:9.1f}x")
    big = school_system(100_000)
    try:
        lmm(SCHOOLS, big, df_method="none")
    except EvalkitInputError as error:
        print(f"schools, 300,000 rows: refused — {str(error)[:160]}…")
    peer, ours = statsmodels_subset(insteval())
    print(
        f"{'statsmodels MixedLM, 5,000-row subset':40s} {'':11s} {ours:8.3f}s {peer:8.3f}s {peer / ours:9.1f}x"
    )


if __name__ == "__main__":
    main()
