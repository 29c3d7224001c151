"""The 3-level coaching model at 10,000, 200,000 and 1,000,000 students.

Run: ``python benchmarks/multilevel.py [--sizes 10000 200000]``. Fits
``achievement ~ prior + coached * (leadership + collaboration + readiness)
+ (1 | school) + (1 | school:teacher)`` with evalkit, statsmodels MixedLM (up to
200,000 rows; it takes minutes beyond) and lme4 through Rscript when present, all on
the same simulated district, and prints wall time (evalkit: the process's first fit
with Satterthwaite df, then steady states with and without df), evalkit's peak traced memory
against the size of the design matrix, and the ratios. A second table adds a random
slope for coaching across schools.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import statsmodels.formula.api as smf
from _timing import best_of

from evalkit import simulate_district
from evalkit.multilevel import lmm

INTERCEPTS = (
    "achievement ~ prior + coached * (leadership + collaboration + readiness)"
    " + (1 | school_id) + (1 | school_id:teacher_id)"
)
SLOPE = (
    "achievement ~ prior + coached * (leadership + collaboration + readiness)"
    " + (1 + coached | school_id) + (1 | school_id:teacher_id)"
)
SIZES = {10_000: (25, 16, 25), 200_000: (500, 16, 25), 1_000_000: (1000, 40, 25)}

R_SCRIPT = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv("{path}")
f <- {formula}
t <- system.time(fit <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
cat(format(c(t, REMLcrit(fit), fixef(fit)[["coached"]]), digits = 15))
"""


def evalkit_fit(
    data: pd.DataFrame, formula: str
) -> tuple[float, float, float, float, float, float]:
    """Wall time of the process's first fit with Satterthwaite df (what lmerTest
    reports), the steady state of the same (best of 3), the steady state with Wald z
    only (what lmer computes), then peak traced memory of one more fit."""
    start = time.perf_counter()
    fit = lmm(formula, data)
    first = time.perf_counter() - start
    steady = best_of(lambda: lmm(formula, data), 3)
    z_only = best_of(lambda: lmm(formula, data, df_method="none"), 3)
    tracemalloc.start()
    lmm(formula, data, df_method="none")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (
        first, steady, z_only, peak / 2**20, fit.facts["reml_criterion"],
        float(fit.params["coached"]),
    )  # fmt: skip


def statsmodels_fit(data: pd.DataFrame, slope: bool) -> tuple[float, float]:
    fixed = "achievement ~ prior + coached * (leadership + collaboration + readiness)"
    start = time.perf_counter()
    model = smf.mixedlm(
        fixed,
        data,
        groups="school_id",
        re_formula="~coached" if slope else "1",
        vc_formula={"teacher": "0 + C(teacher_id)"},
    )
    fit = model.fit(reml=True)
    return time.perf_counter() - start, float(fit.params["coached"])


def lme4_fit(path: Path, formula: str) -> tuple[float, float, float] | None:
    if shutil.which("Rscript") is None:
        return None
    script = R_SCRIPT.format(path=path, formula=formula)  # lme4 reads the same syntax
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-400:])
        return None
    seconds, criterion, coached = (float(v) for v in out.stdout.split())
    return seconds, criterion, coached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--no-slope", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            schools, teachers, students = SIZES[n]
            data = simulate_district(
                n_schools=schools,
                teachers_per_school=teachers,
                students_per_teacher=students,
                seed=1,
            ).students
            path = Path(folder) / f"district_{n}.csv"
            data.to_csv(path, index=False)
            design_mb = len(data) * 10 * 8 / 2**20  # 9 fixed effects + response, float64
            for label, formula in (("intercepts", INTERCEPTS), ("+ coaching slope", SLOPE)):
                if args.no_slope and formula is SLOPE:
                    continue
                first, steady, seconds, peak, criterion, coached = evalkit_fit(data, formula)
                lme4 = lme4_fit(path, formula)
                sm = statsmodels_fit(data, formula is SLOPE) if n <= 200_000 else None
                rows.append(
                    {
                        "students": f"{n:,}",
                        "model": label,
                        "evalkit_first_satt_s": first,
                        "evalkit_steady_satt_s": steady,
                        "evalkit_steady_z_s": seconds,
                        "peak_MB": peak,
                        "peak/design": peak / design_mb,
                        "lme4_s": lme4[0] if lme4 else None,
                        "lme4/first": lme4[0] / first if lme4 else None,
                        "lme4/steady_z": lme4[0] / seconds if lme4 else None,
                        "REMLcrit_diff": (criterion - lme4[1]) if lme4 else None,
                        "statsmodels_s": sm[0] if sm else None,
                        "statsmodels/evalkit": sm[0] / seconds if sm else None,
                        "coached (evalkit, lme4, sm)": f"{coached:.4f}, "
                        + (f"{lme4[2]:.4f}" if lme4 else "-")
                        + ", "
                        + (f"{sm[1]:.4f}" if sm else "-"),
                    }
                )
                print(rows[-1], flush=True)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
