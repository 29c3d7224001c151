"""Speed of vectorised effect sizes and of the simulated district, against peers.

Run: ``python benchmarks/effectsize.py`` (``make bench``). Prints wall times and the
ratio peer / evalkit (above 1: evalkit is faster). Peers measured in the same run:
statsmodels' ``effectsize_smd`` always; metafor's ``escalc`` when ``Rscript`` is on
the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _timing import best_of
from statsmodels.stats.meta_analysis import effectsize_smd

from evalkit import effectsize as es
from evalkit import simulate_district


def smd_inputs(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "m1": rng.normal(10.5, 1, n),
            "m2": rng.normal(10, 1, n),
            "sd1": rng.uniform(1, 3, n),
            "sd2": rng.uniform(1, 3, n),
            "n1": rng.integers(10, 500, n),
            "n2": rng.integers(10, 500, n),
        }
    )


def r_escalc_seconds(frame: pd.DataFrame) -> float | None:
    """Time metafor::escalc(SMD) on the same rows in Rscript (inside R, excluding I/O)."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "smd.csv"
        frame.to_csv(path, index=False)
        script = (
            "suppressPackageStartupMessages(library(metafor));"
            f"d <- read.csv('{path}');"
            "t <- min(sapply(1:5, function(i) system.time(escalc('SMD', m1i=m1, sd1i=sd1, n1i=n1,"
            " m2i=m2, sd2i=sd2, n2i=n2, data=d))[['elapsed']]));"
            "cat(t)"
        )
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=False)
        return float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def main() -> None:
    rows = []
    for n in (1_000, 100_000, 1_000_000):
        frame = smd_inputs(n)
        columns = [frame[c].to_numpy() for c in ("m1", "m2", "sd1", "sd2", "n1", "n2")]
        # Like for like: statsmodels uses the WWC factor 1 - 3/(4N - 9); metafor the exact J(m).
        ours_wwc = best_of(lambda c=columns: es.hedges_g(*c, correction="wwc"))
        ours_exact = best_of(lambda c=columns: es.hedges_g(*c, correction="exact"))
        # statsmodels takes (mean1, sd1, n1, mean2, sd2, n2).
        peer = best_of(lambda c=columns: effectsize_smd(c[0], c[2], c[4], c[1], c[3], c[5]))
        r_time = r_escalc_seconds(frame)
        rows.append(
            {
                "task": f"Hedges' g, {n:,} rows",
                "evalkit_wwc_s": ours_wwc,
                "statsmodels_s": peer,
                "statsmodels/evalkit": peer / ours_wwc,
                "evalkit_exact_s": ours_exact,
                "metafor_s": r_time,
                "metafor/evalkit": (r_time / ours_exact) if r_time else None,
            }
        )
    simulation = []
    for n_schools in (25, 500, 1000):
        seconds = best_of(
            lambda k=n_schools: simulate_district(
                n_schools=k, teachers_per_school=40, students_per_teacher=25, seed=1
            ),
            repeats=3,
        )
        simulation.append({"students": f"{n_schools * 1000:,}", "simulate_district_s": seconds})
    with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
        print(pd.DataFrame(rows).to_string(index=False))
        print()
        print(pd.DataFrame(simulation).to_string(index=False))
    print(
        "\nNote: evalkit validates every input row (non-numeric, missing, impossible values) and "
        "returns SE, CI and p-value; statsmodels' effectsize_smd returns g and its variance only."
    )


if __name__ == "__main__":
    main()
