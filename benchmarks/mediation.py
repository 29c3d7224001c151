"""Multilevel mediation against lme4/lmerTest (R) and statsmodels.

Run: ``python benchmarks/mediation.py``.

A 2-2-1 coaching design of 100 schools × 20 teachers × 20 students (40,000 rows):
teachers coached within schools, instruction (the teacher's score) as the mediator,
achievement with a prior score.

* evalkit ``mediation()``: first call in a fresh process and steady state (best of
  repeated calls): both equations by REML with Satterthwaite df, the unconditional
  model for effect sizes, 20,000 Monte Carlo draws; and the Monte Carlo step alone
  after the fits (drawing the paths and reading the intervals).
* R: the same two equations by ``lmerTest::lmer`` (REML, Satterthwaite summary), the
  unconditional ``lmer`` fit and 20,000 Monte Carlo draws, in one session.
* statsmodels: ``MixedLM`` cannot fit two nested random intercepts without a dense
  variance-component design, so the comparison uses the two-level version (teachers
  as the only clusters: OLS for the a path, ``MixedLM`` with teacher groups for the b
  path) against ``mediation(..., clusters="teacher_id")``.

Prints peer / evalkit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from _timing import best_of, r_numbers

from evalkit.mediation import mediation
from evalkit.mediation._draws import draw_paths

ARGS = dict(treatment="coached", mediator="instruction", outcome="achievement")


def district(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    schools, teachers, students = 100, 20, 20
    n_t = schools * teachers
    school = np.repeat(np.arange(schools), teachers)
    coached = np.tile(np.arange(teachers) % 2, schools)
    instruction = 3 + 0.3 * coached + rng.normal(0, 0.2, schools)[school] + rng.normal(0, 0.45, n_t)
    teacher_y = 0.1 * coached + 0.3 * instruction + rng.normal(0, 0.25, schools)[school]
    teacher_y += rng.normal(0, 0.2, n_t)
    rows = np.repeat(np.arange(n_t), students)
    prior = rng.normal(0, 1, rows.size)
    return pd.DataFrame(
        {
            "school_id": school[rows],
            "teacher_id": rows,
            "coached": coached[rows],
            "instruction": instruction[rows],
            "prior": prior,
            "achievement": teacher_y[rows] + 0.5 * prior + rng.normal(0, 0.8, rows.size),
        }
    )


def fit(data: pd.DataFrame, clusters: object = ("school_id", "teacher_id")) -> object:
    return mediation(data, clusters=clusters, covariates=["prior"], seed=1, **ARGS)  # type: ignore[arg-type]


R_SCRIPT = """
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
d <- read.csv("%s")
d$school_id <- factor(d$school_id); d$teacher_id <- factor(d$teacher_id)
t <- system.time({
  teachers <- d[!duplicated(d$teacher_id), ]
  a_fit <- lmerTest::lmer(instruction ~ coached + (1 | school_id), teachers)
  b_fit <- lmerTest::lmer(achievement ~ coached + instruction + prior + (1 | school_id/teacher_id), d)
  null <- lmer(achievement ~ 1 + (1 | school_id/teacher_id), d)
  sa <- summary(a_fit)$coefficients; sb <- summary(b_fit)$coefficients
  draws <- rnorm(20000, sa["coached", 1], sa["coached", 2]) *
    rnorm(20000, sb["instruction", 1], sb["instruction", 2])
  ci <- quantile(draws, c(.025, .975))
})[["elapsed"]]
cat(sprintf("%%.3f %%.10f", t, sa["coached", 1] * sb["instruction", 1]), "\\n")
"""


def first_call(path: Path) -> float:
    """mediation() in a fresh process (imports excluded): the first call's time."""
    code = (
        "import sys, time; sys.path.insert(0, 'benchmarks'); import pandas as pd; "
        "from mediation import fit; d = pd.read_csv(sys.argv[1]); "
        "t = time.perf_counter(); fit(d); print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def statsmodels_fit(data: pd.DataFrame) -> float:
    teachers = data.drop_duplicates("teacher_id")
    a = smf.ols("instruction ~ coached", teachers).fit()
    b = smf.mixedlm("achievement ~ coached + instruction + prior", data, groups="teacher_id").fit(
        reml=True
    )
    rng = np.random.default_rng(1)
    draws = rng.normal(a.params["coached"], a.bse["coached"], 20000) * rng.normal(
        b.params["instruction"], b.bse["instruction"], 20000
    )
    np.quantile(draws, [0.025, 0.975])
    return float(a.params["coached"] * b.params["instruction"])


def main() -> None:
    data = district()
    print(f"2-2-1 mediation, {len(data):,} students, 2,000 teachers, 100 schools")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "district.csv"
        data.to_csv(path, index=False)
        first = first_call(path)
        result = fit(data)
        steady = best_of(lambda: fit(data), repeats=3)
        terms = result.terms  # type: ignore[attr-defined]
        rng = np.random.default_rng(2)

        def monte_carlo() -> None:
            draws = draw_paths(
                result.mediator_fit,  # type: ignore[attr-defined]
                result.outcome_fit,  # type: ignore[attr-defined]
                terms,
                n_draws=20_000,
                rng=rng,
            )
            np.quantile(draws["a"].to_numpy() * draws["b"].to_numpy(), [0.025, 0.975])
            result.tidy()  # type: ignore[attr-defined]

        mc = best_of(monte_carlo, repeats=5)
        print(f"evalkit mediation(): first call {first:.2f} s, steady {steady:.2f} s")
        print(f"  Monte Carlo interval after the fits (20,000 draws + table): {mc * 1000:.1f} ms")
        r = r_numbers(R_SCRIPT % path)
        if r is None:
            print("R: Rscript not available")
        else:
            indirect = result.indirect_effect  # type: ignore[attr-defined]
            print(
                f"R lmerTest (two equations + null + MC): {r[0]:.2f} s -> {r[0] / steady:.1f}x "
                f"steady, {r[0] / first:.1f}x first call; indirect {r[1]:.8f} vs {indirect:.8f}"
            )
    two_level = best_of(lambda: fit(data, "teacher_id"), repeats=3)
    start = time.perf_counter()
    sm_indirect = statsmodels_fit(data)
    sm = time.perf_counter() - start
    ours = fit(data, "teacher_id").indirect_effect  # type: ignore[attr-defined]
    print(
        f"two-level version: evalkit {two_level:.2f} s, statsmodels OLS + MixedLM {sm:.2f} s "
        f"-> {sm / two_level:.1f}x; indirect {sm_indirect:.8f} vs {ours:.8f}"
    )


if __name__ == "__main__":
    main()
