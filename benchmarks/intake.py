"""A district's own data, end to end: the evaluation on the simulated district (8,000
students, in memory) and a 200,000-student district read from CSV exports (mapping,
conversions, check, evaluation, report tables), first call and steady state."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from evalkit.coaching import DistrictData, evaluate_district
from evalkit.data import messy_exports, simulate_district, write_exports


def _timed(label: str, work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    print(f"{label:<58} {seconds:8.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 200,000-student district")
    args = parser.parse_args()
    small = simulate_district(n_schools=40, teachers_per_school=10, students_per_teacher=20, seed=1)
    _timed("simulated district, 8,000 students: first call", lambda: evaluate_district(small))
    _timed("simulated district, 8,000 students: steady state", lambda: evaluate_district(small))
    if args.quick:
        return
    large = simulate_district(
        n_schools=400, teachers_per_school=25, students_per_teacher=20, seed=2
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = write_exports(messy_exports(large), Path(folder))

        def from_files() -> None:
            data = DistrictData.from_files(
                schools=paths["schools"], teachers=paths["teachers"],
                coaching_log=paths["coaching_log"], observations=paths["observations"],
                students=paths["students"], survey=paths["survey"], mapping=paths["mapping"],
            )  # fmt: skip
            data.check()
            evaluate_district(data)

        _timed(f"{len(large.students):,} students from CSV exports: first call", from_files)
        _timed(f"{len(large.students):,} students from CSV exports: steady state", from_files)


if __name__ == "__main__":
    main()
