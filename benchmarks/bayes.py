"""The Bayesian 3-level coaching model at 10,000 and 200,000 students, 4 chains × 1,000
draws: wall time (compile and sampling) and the minimum bulk ESS per second over the
parameters, for evalkit's collapsed model and — in the same run, when a Python with
bambi is given — bambi with nutpie on the same data.

bambi pulls arviz-plots, which breaks with matplotlib 3.11 at import, so it lives in
its own environment: ``python benchmarks/bayes.py --bambi-python /path/to/venv/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from evalkit.data import simulate_district

FORMULA = "achievement ~ prior + coached * (leadership + collaboration + readiness) + (1 | school_id) + (1 | school_id:teacher_id)"
SLOPES = FORMULA.replace("(1 | school_id)", "(1 + coached | school_id)")
SIZES = {10_000: (25, 16, 25), 200_000: (500, 16, 25)}
# Equal class sizes are the collapsed kernel's best case (one (school, size) pair per
# school); ``--unequal`` adds the general case (class sizes vary).
UNEQUAL = 0.5

BAMBI = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import arviz as az, bambi as bmb, pandas as pd
data = pd.read_csv(sys.argv[1])
formula = "achievement ~ prior + coached * (leadership + collaboration + readiness) + (1 | school_id) + (1 | school_id:teacher_id)"
start = time.perf_counter()
model = bmb.Model(formula, data)
idata = model.fit(draws=1000, tune=1000, chains=4, inference_method="nutpie", random_seed=1)
seconds = time.perf_counter() - start
ess = az.ess(idata, method="bulk")
low = min(float(ess[v].min()) for v in ess.data_vars if not v.endswith("_offset") and v != "mu")
print(json.dumps({"seconds": seconds, "min_ess": low}))
"""


def evalkit_fit(data: pd.DataFrame, formula: str = FORMULA) -> dict[str, float]:
    from evalkit import bayes

    start = time.perf_counter()
    fit = bayes.lmm(formula, data, seed=1)
    seconds = time.perf_counter() - start
    low = float(fit.diagnostics["ess_bulk"].min())
    return {
        "seconds": seconds,
        "compile_s": float(fit.facts["compile_seconds"]),
        "sampling_s": float(fit.facts["sampling_seconds"]),
        "min_ess": low,
        "min_ess_per_s": low / seconds,
    }


def bambi_fit(python: str, path: Path) -> dict[str, float] | None:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(BAMBI)
    run = subprocess.run(
        [python, script.name, str(path)], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        print(run.stderr[-800:])
        return None
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["min_ess_per_s"] = out["min_ess"] / out["seconds"]
    return out


def district(n: int, *, unequal: bool = False) -> pd.DataFrame:
    """The benchmark district of about ``n`` students (class sizes vary if ``unequal``)."""
    schools, teachers, students = SIZES[n]
    return simulate_district(
        n_schools=schools,
        teachers_per_school=teachers,
        students_per_teacher=students,
        size_variation=UNEQUAL if unequal else 0.0,
        seed=1,
    ).students


def evalkit_row(label: str, data: pd.DataFrame, formula: str = FORMULA) -> dict[str, object]:
    """evalkit's fit of ``data`` as a table row."""
    ours = evalkit_fit(data, formula)
    return {
        "students": label,
        "evalkit_s": ours["seconds"],
        "evalkit_compile_s": ours["compile_s"],
        "evalkit_sampling_s": ours["sampling_s"],
        "evalkit_min_ess": ours["min_ess"],
        "evalkit_ess_per_s": ours["min_ess_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument(
        "--bambi-python", help="a Python interpreter with bambi and nutpie installed"
    )
    parser.add_argument(
        "--unequal", action="store_true", help="also fit unequal class sizes (evalkit only)"
    )
    parser.add_argument(
        "--bambi-sizes",
        type=int,
        nargs="*",
        default=[10_000],
        help="sizes at which bambi runs too (at 200,000 students it takes tens of minutes)",
    )
    parser.add_argument(
        "--slopes",
        action="store_true",
        help="also fit a random coaching slope across schools (evalkit only)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            data = district(n)
            row = evalkit_row(f"{n:,}", data)
            if args.bambi_python and n in args.bambi_sizes:
                path = Path(folder) / f"district_{n}.csv"
                data.to_csv(path, index=False)
                peer = bambi_fit(args.bambi_python, path)
                if peer:
                    row.update(
                        bambi_s=peer["seconds"],
                        bambi_min_ess=peer["min_ess"],
                        bambi_ess_per_s=peer["min_ess_per_s"],
                        ratio=float(row["evalkit_ess_per_s"]) / peer["min_ess_per_s"],  # type: ignore[arg-type]
                    )
            rows.append(row)
            print(row, flush=True)
            if args.slopes:
                rows.append(evalkit_row(f"{n:,} (random coaching slope)", data, SLOPES))
                print(rows[-1], flush=True)
            if args.unequal:
                unequal = district(n, unequal=True)
                rows.append(evalkit_row(f"{len(unequal):,} (unequal classes)", unequal))
                print(rows[-1], flush=True)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
