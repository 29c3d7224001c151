"""The issue's identity check at scale: a 1,000,000-student district written to
Parquet, fitted in memory, by DuckDB over the file and by Dask, agrees to 1e-10
relative in every reported number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evalkit import simulate_district
from evalkit.multilevel import lmm, ranef

FORMULA = (
    "achievement ~ prior + coached * (leadership + collaboration + readiness)"
    " + (1 | school_id) + (1 | school_id:teacher_id)"
)


@pytest.mark.slow
def test_million_rows_in_parquet_equal_the_in_memory_fit(tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    students = simulate_district(
        n_schools=1000, teachers_per_school=40, students_per_teacher=25, seed=1
    ).students
    assert len(students) == 1_000_000
    path = tmp_path / "district.parquet"
    students.to_parquet(path, row_group_size=100_000)
    del students
    frame = pd.read_parquet(path)
    reference = lmm(FORMULA, frame)
    fits = {
        "duckdb": lmm(FORMULA, str(path)),
        "dask": lmm(FORMULA, dd.read_parquet(str(path))),
    }
    expected_modes = ranef(reference)["school_id"]
    for name, fit in fits.items():
        for quantity in ("params", "std_errors", "df", "pvalues"):
            np.testing.assert_allclose(
                getattr(fit, quantity), getattr(reference, quantity), rtol=1e-10,
                err_msg=f"{name} {quantity}",
            )  # fmt: skip
        np.testing.assert_allclose(
            fit.variance_components.frame["variance"],
            reference.variance_components.frame["variance"],
            rtol=1e-10,
        )
        for fact in ("reml_criterion", "AIC", "BIC", "r2_marginal", "r2_conditional"):
            np.testing.assert_allclose(fit.facts[fact], reference.facts[fact], rtol=1e-10)
        modes = ranef(fit)["school_id"].loc[expected_modes.index]
        np.testing.assert_allclose(
            modes.to_numpy(), expected_modes.to_numpy(), rtol=1e-10, atol=1e-12
        )
        assert fit.n_groups == reference.n_groups
