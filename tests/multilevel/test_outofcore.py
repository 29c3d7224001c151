"""Fits where the data live (DuckDB relation, Parquet/CSV files, Dask DataFrame) equal
the in-memory fit of the same rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.multilevel import LMMResults, lmm, r_squared, ranef, robust

FORMULA = (
    "achievement ~ prior + coached * leadership + band + center(collaboration) "
    "+ (1 | school) + (1 | school:teacher)"
)
IDENTITY = 1e-10  # the criterion: every reported number to 1e-10 relative


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """A district export shaped as evaluators' files are: text IDs, a text band, gaps."""
    students = evalkit.simulate_district(n_schools=24, seed=11).students.copy()
    rng = np.random.default_rng(5)
    students["school"] = "S-" + students["school_id"].astype(str)
    students["teacher"] = "T" + (students["teacher_id"] % 17).astype(str)  # restarts by school
    students["band"] = np.where(
        students["prior"] > 0.5, "high", np.where(students["prior"] < -0.5, "low", "mid")
    )
    students.loc[rng.choice(len(students), 30, replace=False), "prior"] = np.nan
    students.loc[rng.choice(len(students), 12, replace=False), "band"] = None
    students = students.sample(frac=1.0, random_state=3).reset_index(drop=True)  # unsorted
    folder = tmp_path_factory.mktemp("export")
    path = folder / "students.parquet"
    students.to_parquet(path)
    return pd.read_parquet(path), path


def _same(
    fit: LMMResults, reference: LMMResults, rtol: float = IDENTITY, atol: float = 1e-13
) -> None:
    for name in ("params", "std_errors", "df", "pvalues"):
        np.testing.assert_allclose(
            getattr(fit, name), getattr(reference, name), rtol=rtol, atol=atol, err_msg=name
        )
    np.testing.assert_allclose(
        fit.variance_components.frame["variance"],
        reference.variance_components.frame["variance"],
        rtol=rtol,
    )
    for fact in ("reml_criterion", "deviance", "AIC", "BIC", "r2_marginal", "r2_conditional"):
        if fact in reference.facts:
            np.testing.assert_allclose(fit.facts[fact], reference.facts[fact], rtol=rtol)
    for name in [k for k in reference.facts if k.startswith("icc_")]:
        np.testing.assert_allclose(fit.facts[name], reference.facts[name], rtol=rtol)
    assert fit.nobs == reference.nobs
    assert fit.n_groups == reference.n_groups
    assert fit.dropped.counts() == reference.dropped.counts()


def test_parquet_path_equals_the_in_memory_fit(export: tuple[pd.DataFrame, Path]) -> None:
    frame, path = export
    reference = lmm(FORMULA, frame)
    fit = lmm(FORMULA, str(path))
    _same(fit, reference)
    assert fit.facts["data_source"].startswith(str(path))
    assert reference.facts["data_source"] == "pandas"
    assert fit.dropped.describe() == "42 rows dropped: 30 missing prior, 12 missing band."
    modes, expected = ranef(fit), ranef(reference)
    for level, table in expected.items():
        other = modes[level].loc[table.index]
        np.testing.assert_allclose(other.to_numpy(), table.to_numpy(), rtol=1e-9, atol=1e-12)


def test_duckdb_relation_and_csv(export: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    frame, path = export
    reference = lmm(FORMULA, frame, method="ML", df_method="containment")
    with duckdb.connect() as con:
        relation = con.sql(f"SELECT * FROM read_parquet('{path}')")
        _same(lmm(FORMULA, relation, method="ML", df_method="containment"), reference)
    csv = tmp_path / "students.csv"
    frame.to_csv(csv, index=False)
    _same(lmm(FORMULA, str(csv), method="ML", df_method="containment"), reference)


def test_glob_of_files_per_school(export: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    frame, _ = export
    for k, (_, part) in enumerate(frame.groupby(frame["school_id"] % 4)):
        part.to_parquet(tmp_path / f"part{k}.parquet")
    _same(lmm(FORMULA, str(tmp_path / "part*.parquet")), lmm(FORMULA, frame))


def test_dask_dataframe_with_groups_across_partitions(
    export: tuple[pd.DataFrame, Path],
) -> None:
    dd = pytest.importorskip("dask.dataframe")
    frame, _ = export
    reference = lmm(FORMULA, frame)
    dask_frame = dd.from_pandas(frame, npartitions=5)  # shuffled rows: every group split
    _same(lmm(FORMULA, dask_frame), reference)


def test_dask_client(export: tuple[pd.DataFrame, Path]) -> None:
    distributed = pytest.importorskip("dask.distributed")
    dd = pytest.importorskip("dask.dataframe")
    frame, _ = export
    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        fit = lmm(FORMULA, dd.from_pandas(frame, npartitions=3), client=client)
    _same(fit, lmm(FORMULA, frame))


def test_slopes_and_transforms(export: tuple[pd.DataFrame, Path]) -> None:
    """Random slopes (the optimiser's gradient is then a central difference, whose
    rounding noise leaves θ determined to ~1e-8: agreement to 1e-6 relative, 1e-8
    absolute for a coefficient near 0),
    scale(), arithmetic in I() and np.log, a numeric C() and a categorical interaction."""
    frame, path = export
    formula = (
        "achievement ~ scale(prior) + I(leadership ** 2) + np.log(readiness + 10) + C(grade) "
        "+ coached:band + (1 + coached | school) + (1 | school:teacher)"
    )
    reference = lmm(formula, frame)
    # the column inside scale() takes part in the missing-value policy (formulaic's
    # required_variables leaves it out; the rows used to reach formulaic with gaps)
    assert reference.dropped.counts()["missing prior"] == 30
    fit = lmm(formula, str(path))
    assert list(fit.params.index) == list(reference.params.index)
    _same(fit, reference, rtol=1e-6, atol=1e-8)
    intercepts = "achievement ~ scale(prior) + I(leadership ** 2) + C(grade) + (1 | school)"
    _same(lmm(intercepts, str(path)), lmm(intercepts, frame))


def test_summaries_from_statistics(export: tuple[pd.DataFrame, Path]) -> None:
    """R², ICCs and the reference model's PRV come from per-group sums."""
    frame, path = export
    random = "(1 | school) + (1 | school:teacher)"
    formula = f"achievement ~ coached * leadership + center(collaboration) + {random}"
    null = lmm(f"achievement ~ 1 + {random}", str(path))
    fit = lmm(formula, str(path), reference=null)
    in_memory = lmm(formula, frame, reference=lmm(f"achievement ~ 1 + {random}", frame))
    assert any(k.startswith("prv_") for k in in_memory.facts)
    with pytest.raises(EvalkitInputError, match="same outcome to the same rows"):
        lmm(FORMULA, str(path), reference=null)  # rows with a missing prior left out
    for name in [k for k in in_memory.facts if k.startswith("prv_")]:
        np.testing.assert_allclose(
            fit.facts[name], in_memory.facts[name], rtol=IDENTITY, atol=1e-13
        )
    np.testing.assert_allclose(
        list(r_squared(fit).values()), list(r_squared(in_memory).values()), rtol=IDENTITY
    )
    again = fit.refit(method="ML")
    assert again.method == "ML" and again.facts["data_source"] == fit.facts["data_source"]


def test_what_needs_rows_is_refused(export: tuple[pd.DataFrame, Path]) -> None:
    _, path = export
    with pytest.raises(EvalkitInputError, match="needs the rows in memory"):
        lmm(FORMULA, str(path), df_method="kenward-roger")
    fit = lmm(FORMULA, str(path))
    with pytest.raises(EvalkitInputError, match="where its data live"):
        robust(fit, type="CR2")
    with pytest.raises(EvalkitInputError, match="where its data live"):
        fit.frame  # noqa: B018
    with pytest.raises(EvalkitInputError, match="pandas DataFrame"):
        lmm(FORMULA, str(path), engine="statsmodels")


def test_bad_sources_and_formulas(export: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    frame, path = export
    with pytest.raises(EvalkitInputError, match="no file matches"):
        lmm(FORMULA, str(tmp_path / "none*.parquet"))
    with pytest.raises(EvalkitInputError, match="cannot tell the format"):
        lmm(FORMULA, str(tmp_path / "students.xlsx"))
    with pytest.raises(EvalkitInputError, match=r"'np.sin\(prior\)' cannot be computed"):
        lmm("achievement ~ np.sin(prior) + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match="cannot be computed"):
        lmm("achievement ~ C(band, contr.treatment('mid')) + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match=r"'band' has 12 missing values"):
        lmm(FORMULA, str(path), missing="raise")
    with pytest.raises(EvalkitInputError, match="'ghost'"):
        lmm("achievement ~ ghost + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match="client= "):
        lmm(FORMULA, frame, client=object())


def test_text_ids_crossing_and_bad_values(tmp_path: Path) -> None:
    """Teachers who moved between schools (crossed), numbers stored as text, a
    single-category predictor, an undefined log: each an error naming it."""
    rng = np.random.default_rng(2)
    n = 400
    data = pd.DataFrame(
        {
            "score": rng.normal(size=n),
            "school": rng.choice(["A", "B", "C", "D"], n),
            "teacher": rng.choice([f"t{k}" for k in range(30)], n),
            "dose": rng.choice(["1", "2", "3", "x"], n, p=[0.3, 0.3, 0.39, 0.01]),
            "site": "only",
            "hours": rng.uniform(0, 5, n),
        }
    )
    data.loc[0, "hours"] = 0.0
    path = tmp_path / "moved.parquet"
    data.to_parquet(path)
    with pytest.raises(EvalkitInputError, match="cross"):
        lmm("score ~ 1 + (1 | school) + (1 | teacher)", str(path))
    with pytest.raises(EvalkitInputError, match="'dose' is numeric but has non-numeric"):
        lmm("score ~ dose + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match="'site' has a single category"):
        lmm("score ~ site + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match="infinite or undefined"):
        lmm("score ~ np.log(hours) + (1 | school)", str(path))
    with pytest.raises(EvalkitInputError, match=r"one row per group|single group"):
        lmm("score ~ 1 + (1 | site)", str(path))
