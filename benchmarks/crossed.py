"""Crossed random effects, against lme4 (and lmerTest) and statsmodels.

Run: ``python benchmarks/crossed.py``. InstEval (lme4; 73,421 ratings, 2,972 students
× 1,128 instructors): ``y ~ service * dept + (1 | s) + (1 | d)`` by REML, evalkit with
z tests (``df_method="none"``, as ``lme4::lmer``) and with Satterthwaite df (as
``lmerTest::lmer``, which computes the Hessian it needs at fit time), the first call
in a fresh process and the steady state (best of 3); then the same with lme4/lmerTest
at their default settings when Rscript is on the PATH, and statsmodels' MixedLM with
variance components (its way to write crossed factors) on a 5,000-row subset, as
statsmodels on all rows does not finish in minutes. Prints peer / evalkit.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of, r_numbers

from evalkit.multilevel import lmm

DATA = Path(__file__).parents[1] / "tests" / "reference" / "multilevel" / "insteval.csv.gz"
FORMULA = "y ~ service * dept + (1 | s) + (1 | d)"


def insteval() -> pd.DataFrame:
    data = pd.read_csv(DATA, dtype={"s": str, "d": str, "dept": str})
    return data.assign(dept=pd.Categorical(data["dept"]))


def run(case: str, data: pd.DataFrame) -> None:
    lmm(FORMULA, data, df_method="none" if case == "z" else "satterthwaite")


R_SCRIPT = """
suppressPackageStartupMessages({library(lme4)})
ie <- lme4::InstEval
t1 <- system.time(lme4::lmer(y ~ service * dept + (1 | s) + (1 | d), ie, REML = TRUE))[["elapsed"]]
suppressPackageStartupMessages({library(lmerTest)})
t2 <- system.time(lmerTest::lmer(y ~ service * dept + (1 | s) + (1 | d), ie, REML = TRUE))[["elapsed"]]
cat(t1, t2, "\\n")
"""


def r_seconds() -> list[float] | None:
    return r_numbers(R_SCRIPT)


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
        data = insteval()
        start = time.perf_counter()
        run(sys.argv[2], data)
        print(time.perf_counter() - start)
        return
    data = insteval()
    r = r_seconds()
    print(f"{'InstEval, REML':40s} {'first call':>11s} {'steady':>9s} {'R':>9s} {'R/evalkit':>10s}")
    for index, (label, case) in enumerate(
        [("z tests (lme4::lmer)", "z"), ("Satterthwaite (lmerTest::lmer)", "satterthwaite")]
    ):
        first = subprocess.run(
            [sys.executable, __file__, "--once", case], capture_output=True, text=True, check=True
        )
        first_seconds = float(first.stdout.split()[-1])
        steady = best_of(lambda case=case: run(case, data), 3)
        peer = r[index] if r is not None else float("nan")
        ratio = peer / steady if np.isfinite(peer) else float("nan")
        print(f"{label:40s} {first_seconds:10.3f}s {steady:8.3f}s {peer:8.3f}s {ratio:9.1f}x")
    peer, ours = statsmodels_subset(data)
    print(
        f"{'statsmodels MixedLM, 5,000-row subset':40s} {'':11s} {ours:8.3f}s {peer:8.3f}s {peer / ours:9.1f}x"
    )


if __name__ == "__main__":
    main()
