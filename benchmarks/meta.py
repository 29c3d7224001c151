"""CHE + CR2 robust variance on simulated syntheses, against metafor + clubSandwich.

Run: ``python benchmarks/meta.py [--quick]``. For each size (1,500 effect sizes in 200
studies; 10,000 in 1,500), with and without 5 moderators, it times the CHE fit
(rho = 0.6) plus CR2 standard errors with Satterthwaite df in evalkit, and the same
in R (``rma.mv(..., sparse = TRUE)`` + ``clubSandwich::coef_test``) when Rscript is
on the PATH, and prints the ratio R / evalkit. pimeta (a Python port of metafor)
is timed on the smaller size (its rma_mv works with a dense k × k covariance, 800 MB
at 10,000 effects). Also times a leave-one-study-out on the smaller size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of

from evalkit import meta

MODERATORS = ["dosage", "program_size", "virtual", "content_focus", "paired_training"]


def synthesis(n_effects: int, n_studies: int, seed: int = 1) -> pd.DataFrame:
    """Simulated coaching studies with several effect sizes each and 5 moderators."""
    rng = np.random.default_rng(seed)
    study = np.sort(rng.integers(0, n_studies, n_effects))
    study = np.unique(study, return_inverse=True)[1]  # no empty studies
    k_studies = study.max() + 1
    moderators = {
        "dosage": rng.uniform(5, 60, k_studies),
        "program_size": rng.lognormal(4, 1, k_studies),
        "virtual": rng.integers(0, 2, k_studies).astype(float),
        "content_focus": rng.integers(0, 2, k_studies).astype(float),
        "paired_training": rng.integers(0, 2, k_studies).astype(float),
    }
    vi = rng.uniform(0.01, 0.08, n_effects)
    study_effect = rng.normal(0, 0.15, k_studies)[study]
    effect = 0.2 + 0.003 * moderators["dosage"][study] + study_effect
    yi = effect + rng.normal(0, 0.08, n_effects) + rng.normal(0, np.sqrt(vi))
    frame = pd.DataFrame({"study": study, "es_id": np.arange(n_effects), "yi": yi, "vi": vi})
    for name, values in moderators.items():
        frame[name] = values[study]
    return frame


def evalkit_seconds(data: pd.DataFrame, moderators: str | None, repeats: int) -> float:
    def run() -> None:
        fit = meta.multilevel(
            data,
            effect="yi",
            variance="vi",
            moderators=moderators,
            levels=["study", "es_id"],
            rho=0.6,
        )
        meta.robust(fit, data["study"])

    return best_of(run, repeats)


def pimeta_seconds(data: pd.DataFrame, moderators: list[str] | None) -> float | None:
    """pimeta's rma_mv + robust(clubSandwich = True, CR2) on the same data."""
    try:
        import pimeta
    except ImportError:
        return None
    start = time.perf_counter()
    v = pimeta.vcalc(
        data["vi"].to_numpy(),
        cluster=data["study"].to_numpy(),
        obs=data["es_id"].to_numpy(),
        rho=0.6,
    )
    mods = data[moderators].to_numpy() if moderators else None
    fit = pimeta.rma_mv(
        data["yi"].to_numpy(), V=v, mods=mods, data=data, random="~ 1 | study/es_id"
    )
    pimeta.robust(fit, cluster=data["study"].to_numpy(), clubSandwich=True, vcov="CR2")
    return time.perf_counter() - start


def loo_seconds(data: pd.DataFrame) -> float:
    start = time.perf_counter()
    for study in data["study"].unique():
        subset = data[data["study"] != study]
        meta.multilevel(subset, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.6)
    return time.perf_counter() - start


R_TEMPLATE = """
suppressPackageStartupMessages({{library(metafor); library(clubSandwich); library(Matrix)}})
d <- read.csv("{path}")
run <- function() {{
  V <- bdiag(impute_covariance_matrix(d$vi, cluster = d$study, r = 0.6))
  fit <- rma.mv(yi, V, {mods} random = ~ 1 | study/es_id, data = d, sparse = TRUE)
  coef_test(fit, vcov = "CR2", cluster = d$study)
}}
t <- min(sapply(1:{repeats}, function(i) system.time(run())[["elapsed"]]))
cat(t)
"""

R_LOO = """
suppressPackageStartupMessages({{library(metafor); library(clubSandwich); library(Matrix)}})
d <- read.csv("{path}")
t <- system.time(for (s in unique(d$study)) {{
  e <- d[d$study != s, ]
  V <- bdiag(impute_covariance_matrix(e$vi, cluster = e$study, r = 0.6))
  rma.mv(yi, V, random = ~ 1 | study/es_id, data = e, sparse = TRUE)
}})[["elapsed"]]
cat(t)
"""


def r_seconds(script: str) -> float | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr[-500:])
        return None
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller size only")
    parser.add_argument("--no-loo", action="store_true", help="skip the leave-one-study-out timing")
    args = parser.parse_args()
    sizes = [(1500, 200)] if args.quick else [(1500, 200), (10_000, 1500)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n_effects, n_studies in sizes:
            data = synthesis(n_effects, n_studies)
            path = Path(folder) / f"synthesis_{n_effects}.csv"
            data.to_csv(path, index=False)
            repeats = 3 if n_effects < 5000 else 1
            for label, formula, mods, names in (
                ("intercept only", None, "", None),
                (
                    "5 moderators",
                    " + ".join(MODERATORS),
                    "mods = ~ " + " + ".join(MODERATORS) + ",",
                    MODERATORS,
                ),
            ):
                ours = evalkit_seconds(data, formula, repeats)
                theirs = r_seconds(R_TEMPLATE.format(path=path, mods=mods, repeats=repeats))
                python_peer = pimeta_seconds(data, names) if n_effects <= 2000 else None
                rows.append(
                    {
                        "task": f"CHE + CR2, {n_effects:,} effects / {data['study'].nunique():,} studies, {label}",
                        "evalkit_s": ours,
                        "R_s": theirs,
                        "R/evalkit": theirs / ours if theirs else None,
                        "pimeta_s": python_peer,
                        "pimeta/evalkit": python_peer / ours if python_peer else None,
                    }
                )
            if n_effects == 1500 and not args.no_loo:
                ours = loo_seconds(data)
                theirs = r_seconds(R_LOO.format(path=path))
                rows.append(
                    {
                        "task": f"leave-one-study-out CHE, {n_effects:,} effects",
                        "evalkit_s": ours,
                        "R_s": theirs,
                        "R/evalkit": theirs / ours if theirs else None,
                    }
                )
    with pd.option_context(
        "display.width", 160, "display.max_colwidth", 80, "display.float_format", "{:.3g}".format
    ):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
