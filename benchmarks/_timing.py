"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def best_of(function: Callable[[], object], repeats: int = 5) -> float:
    """Fastest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def r_numbers(script: str, timeout: float | None = None) -> list[float] | None:
    """Run an R script and read the numbers it prints (None without Rscript or on
    failure); ``NA`` reads as NaN, and a script still running after ``timeout``
    seconds is killed and reads as ``[nan]``."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.R"
        path.write_text(script)
        try:
            out = subprocess.run(
                ["Rscript", str(path)], capture_output=True, text=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return [float("nan")]
    if out.returncode != 0:
        return None
    return [float("nan") if x == "NA" else float(x) for x in out.stdout.split()]
