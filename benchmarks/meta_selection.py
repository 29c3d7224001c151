"""Selection models and multivariate meta-analysis, against metafor.

Run: ``python benchmarks/meta_selection.py``. Times, in a fresh process for the first
call and then as the best of repeated calls (steady state), evalkit's
``selection_model`` (3PSM step model and the beta model on Bangert-Drowns et al.'s
48 writing-to-learn studies; the step model with cluster-robust SEs and 199 two-stage
bootstrap replicates on 100 effects in 17 studies of Assink et al. 2016) and
``multivariate`` (UN, Berkey et al. 1998), and the same metafor calls
(``selmodel``, ``rma.mv(..., struct = "UN")``) at metafor's default settings when
Rscript is on the PATH; prints R / evalkit. statsmodels has neither model, so R is
the only peer. One BLAS thread: the matrices are tiny.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of, r_numbers

import evalkit
from evalkit import meta

REFERENCE = Path(__file__).parents[1] / "tests" / "reference" / "meta"

CASES = {
    "3PSM step, k = 48": "step",
    "beta, k = 48": "beta",
    "step CR + 199 bootstrap, 100 effects": "bootstrap",
    "multivariate UN, Berkey": "multivariate",
}


def _berkey() -> tuple[pd.DataFrame, np.ndarray]:
    data = pd.read_csv(REFERENCE / "berkey1998.csv")
    return data, meta.sampling_covariance(data, study="trial", columns=["v1i", "v2i"])


def run(case: str) -> None:
    if case in ("step", "beta"):
        writing = evalkit.datasets.load("bangertdrowns2004")
        fit = meta.random_effects(writing, effect="yi", variance="vi")
        options = {"steps": (0.025,)} if case == "step" else {}
        meta.selection_model(fit, type=case, **options)  # type: ignore[arg-type]
    elif case == "bootstrap":
        data = pd.read_csv(REFERENCE / "assink2016.csv")
        fit = meta.multilevel(data, effect="yi", variance="vi", levels=["study", "esid"])
        meta.selection_model(fit, type="step", steps=(0.025,), bootstrap=199, seed=1)
    else:
        data, covariance = _berkey()
        meta.multivariate(
            data,
            effect="yi",
            variance="vi",
            outcome="outcome",
            study="trial",
            covariance=covariance,
        )


R_SCRIPT = """
suppressPackageStartupMessages({library(metafor); library(metadat)})
time_of <- function(f, n) { f(); min(sapply(seq_len(n), function(i) system.time(f())[["elapsed"]])) }
bd <- dat.bangertdrowns2004
fit <- rma(yi, vi, data = bd, method = "ML")
berkey <- dat.berkey1998
V <- bldiag(lapply(split(berkey[, c("v1i", "v2i")], berkey$trial), as.matrix))
cat(time_of(function() selmodel(fit, type = "stepfun", steps = 0.025), 5), "\\n")
cat(time_of(function() selmodel(fit, type = "beta"), 2), "\\n")
cat(NA, "\\n")
cat(time_of(function() rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial,
                              struct = "UN", data = berkey), 5), "\\n")
"""


def r_seconds() -> list[float] | None:
    return r_numbers(R_SCRIPT)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--once":
        start = time.perf_counter()
        run(sys.argv[2])
        print(time.perf_counter() - start)
        return
    r = r_seconds()
    print(f"{'case':40s} {'first call':>11s} {'steady':>9s} {'R':>9s} {'R/evalkit':>10s}")
    for index, (label, case) in enumerate(CASES.items()):
        first = subprocess.run(
            [sys.executable, __file__, "--once", case], capture_output=True, text=True, check=True
        )
        first_seconds = float(first.stdout.split()[-1])
        steady = best_of(lambda case=case: run(case), 3)
        peer = r[index] if r is not None else float("nan")
        ratio = peer / steady if np.isfinite(peer) else float("nan")
        print(f"{label:40s} {first_seconds:10.3f}s {steady:8.3f}s {peer:8.3f}s {ratio:9.1f}x")


if __name__ == "__main__":
    main()
