"""Crossed random effects, against lme4 (and lmerTest) and statsmodels.

Run: ``python benchmarks/crossed.py [--quick]``.

* InstEval (lme4; 73,421 ratings, 2,972 students × 1,128 instructors):
  ``y ~ service * dept + (1 | s) + (1 | d)`` by REML, evalkit with z tests
  (``df_method="none"``, as ``lme4::lmer``) and with Satterthwaite df (as
  ``lmerTest::lmer``, which computes the Hessian it needs at fit time).
* A simulated school system over three years (students × teachers × schools, 10% of
  students change school each year, five teachers per grade and school):
  ``score ~ year + (1 | student) + (1 | teacher) + (1 | school)`` at 30,000 and (without
  ``--quick``) 90,000 rows, by the exact blocked factorisation; the 300,000-row
  version (100,000 students, 15,000 teachers, 1,000 schools), whose teacher block no
  factorisation can handle, by the iterative engine (``solver="auto"`` picks it), with
  z tests and with Satterthwaite df, first call in a fresh process with its peak
  resident memory. lme4 on 300,000 rows was killed unfinished after 22 minutes when
  tried; it is run only with ``--r-300k SECONDS`` (killed at that limit, since lme4's
  compiled code does not see R's time limits, and reported as not finishing).

evalkit's first call runs in a fresh process, its steady state is the best of
repeated calls; lme4/lmerTest run at their default settings in one R session when
Rscript is on the PATH. statsmodels' MixedLM (variance components, its way to write
crossed factors) runs on a 5,000-row InstEval subset, as on all rows it does not
finish in minutes. Prints peer / evalkit. BLAS threads are left to evalkit, which
uses one thread for dense factors below a side of 2,000 and the default above.
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

from evalkit.data import simulate_student_panel
from evalkit.multilevel import lmm

DATA = Path(__file__).parents[1] / "tests" / "reference" / "multilevel" / "insteval.csv.gz"
INSTEVAL = "y ~ service * dept + (1 | s) + (1 | d)"
SCHOOLS = "score ~ year + (1 | student) + (1 | teacher) + (1 | school)"


def insteval() -> pd.DataFrame:
    data = pd.read_csv(DATA, dtype={"s": str, "d": str, "dept": str})
    return data.assign(dept=pd.Categorical(data["dept"]))


def school_system(n_students: int) -> pd.DataFrame:
    """Three years of scores (``evalkit.data.simulate_student_panel``): students in
    ``n_students/100`` schools, five teachers per grade-year, 10% of students moving to
    a random school each year; text IDs, as an export has them."""
    return simulate_student_panel(n_students, seed=1)


def run(case: str, data: pd.DataFrame) -> None:
    if case == "z":
        lmm(INSTEVAL, data, df_method="none")
    elif case == "satterthwaite":
        lmm(INSTEVAL, data)
    elif case.startswith("satt:"):
        lmm(SCHOOLS, data)
    else:
        lmm(SCHOOLS, data, df_method="none")


def load(case: str) -> pd.DataFrame:
    if case in ("z", "satterthwaite"):
        return insteval()
    return school_system(int(case.removeprefix("satt:")))


R_300K = """
suppressPackageStartupMessages({library(lme4)})
d <- read.csv("%s")
d$student <- factor(d$student); d$teacher <- factor(d$teacher); d$school <- factor(d$school)
t <- system.time(lme4::lmer(score ~ year + (1 | student) + (1 | teacher) + (1 | school),
                           d, REML = TRUE))[["elapsed"]]
cat(t, "\\n")
"""


def state_scale(r_limit: int | None) -> None:
    """The 300,000-row model in fresh processes (time and peak memory), and lme4 with a
    time limit when asked."""
    for label, case in (("z tests", "100000"), ("Satterthwaite df", "satt:100000")):
        out = subprocess.run(
            [sys.executable, __file__, "--once", case], capture_output=True, text=True, check=True
        )
        seconds, peak = (float(x) for x in out.stdout.split()[-2:])
        print(f"{'schools, 300,000 rows, ' + label:40s} {seconds:10.3f}s  peak {peak:.2f} GiB")
    if r_limit is None:
        print("lme4, 300,000 rows: not run (pass --r-300k SECONDS to try it with a time limit)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schools_100000.csv"
        school_system(100_000).to_csv(path, index=False)
        r = r_numbers(R_300K % path, timeout=r_limit)  # lme4's C++ ignores R's time limits
    if r is None:
        print("lme4, 300,000 rows: Rscript not available")
    elif not np.isfinite(r[0]):
        print(f"lme4, 300,000 rows: did not finish within {r_limit} s (killed)")
    else:
        print(f"lme4, 300,000 rows: {r[0]:.1f} s")


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
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
        print(time.perf_counter() - start, peak)
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
        first_seconds = float(first.stdout.split()[-2])
        data = load(case)
        steady = best_of(lambda case=case, data=data: run(case, data), 3 if index < 3 else 1)
        peer = r[index] if r is not None else float("nan")
        ratio = peer / steady if np.isfinite(peer) else float("nan")
        print(f"{label:40s} {first_seconds:10.3f}s {steady:8.3f}s {peer:8.3f}s {ratio:9.1f}x")
    limit = sys.argv[sys.argv.index("--r-300k") + 1] if "--r-300k" in sys.argv else None
    state_scale(None if limit is None else int(limit))
    peer, ours = statsmodels_subset(insteval())
    print(
        f"{'statsmodels MixedLM, 5,000-row subset':40s} {'':11s} {ours:8.3f}s {peer:8.3f}s {peer / ours:9.1f}x"
    )


if __name__ == "__main__":
    main()
