"""The whole coaching analysis (scales, dosage, both model sequences, tables) on a
simulated district of 200,000 and 2,000,000 students: wall time, peak traced memory,
and the share of time per step.

Run: python benchmarks/coaching.py [--sizes 200000 2000000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import pandas as pd

from evalkit.coaching.evaluation import evaluate_district
from evalkit.data import simulate_district

SIZES = {200_000: (400, 20, 25), 2_000_000: (2000, 40, 25)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        schools, teachers, students = SIZES[n]
        start = time.perf_counter()
        district = simulate_district(
            n_schools=schools, teachers_per_school=teachers, students_per_teacher=students, seed=1
        )
        simulate_s = time.perf_counter() - start
        tracemalloc.start()
        start = time.perf_counter()
        evaluation = evaluate_district(district)
        total = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        row = {
            "students": f"{len(district.students):,}",
            "simulate_s": simulate_s,
            "analysis_s": total,
            "peak_MB": peak / 2**20,
        }
        row.update(
            {f"{step} %": 100 * seconds / total for step, seconds in evaluation.timings.items()}
        )
        rows.append(row)
        print(row, flush=True)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
