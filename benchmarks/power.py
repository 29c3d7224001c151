"""Simulation power at scale: 1,000 replications of a 40-school × 10-teacher × 20-student
design (8,000 students) fitted with the planned 3-level model — each study drawn as its
sufficient statistics (the default) and as student rows fitted by ``lmm`` — serially and
with joblib on all cores, against statsmodels' MixedLM as the engine (timed on fewer
replications and scaled, since it takes about a second per fit); and the issue's grid,
1,000 replications at each of 10 sample sizes (20 to 65 schools), serially.

Run: python benchmarks/power.py [--replications 1000] [--sm-replications 40]
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from evalkit.power import SimulationDesign, design_grid, simulate_power

DESIGN = SimulationDesign(n_schools=40, teachers_per_school=10, students_per_teacher=20, effect=0.2)


def timed(**kwargs: object) -> tuple[float, float]:
    start = time.perf_counter()
    result = simulate_power(DESIGN, seed=1, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - start, float(result.table["power"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replications", type=int, default=1000)
    parser.add_argument("--sm-replications", type=int, default=40)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    r = args.replications
    rows = []
    seconds, value = timed(replications=r)
    rows.append(
        {"engine": "evalkit (statistics)", "workers": 1, "replications": r, "seconds": seconds, "power": value}
    )  # fmt: skip
    seconds, value = timed(replications=r, simulation="rows")
    rows.append(
        {"engine": "evalkit (rows)", "workers": 1, "replications": r, "seconds": seconds, "power": value}
    )  # fmt: skip
    seconds, value = timed(replications=r, n_jobs=cores, chunk_size=50)
    rows.append(
        {
            "engine": "evalkit (statistics)",
            "workers": cores,
            "replications": r,
            "seconds": seconds,
            "power": value,
        }
    )
    small = args.sm_replications
    seconds, value = timed(replications=small, engine="statsmodels")
    rows.append(
        {"engine": "statsmodels MixedLM", "workers": 1, "replications": small, "seconds": seconds, "power": value,
         f"scaled to {r}": seconds * r / small}
    )  # fmt: skip
    seconds, value = timed(
        replications=small, n_jobs=cores, chunk_size=max(1, small // cores), engine="statsmodels"
    )
    rows.append(
        {"engine": "statsmodels MixedLM", "workers": cores, "replications": small, "seconds": seconds, "power": value,
         f"scaled to {r}": seconds * r / small}
    )  # fmt: skip
    table = pd.DataFrame(rows)
    serial = table.loc[0, "seconds"]
    table["per_fit_ms"] = 1000 * table["seconds"] / table["replications"]
    table["ratio_vs_evalkit_serial"] = table["per_fit_ms"] / (1000 * serial / r)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))
    grid = design_grid(DESIGN, n_schools=list(range(20, 70, 5)))
    start = time.perf_counter()
    curve = simulate_power(grid, replications=r, seed=2)
    seconds = time.perf_counter() - start
    print(
        f"{r} replications x {len(grid)} sample sizes (20-65 schools), serial, "
        f"{curve.simulation}: {seconds:.1f} s"
    )
    print(curve.table[["n_schools", "power", "analytic_power", "mc_se"]].to_string(index=False))


if __name__ == "__main__":
    main()
