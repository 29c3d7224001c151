"""fit_many: one model per district (or replicate), serially or over a Dask client."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError
from evalkit.core import DataQuery
from evalkit.multilevel import fit_many, lmm

FORMULA = "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    students = evalkit.simulate_district(n_schools=32, seed=8).students.copy()
    students["district"] = np.where(students["school_id"] % 4 == 3, "East", "West")
    students.loc[students["school_id"] % 4 == 1, "district"] = "North"
    # every teacher in the South is coached: its coaching effect is not estimable
    south = students["school_id"] % 4 == 2
    students.loc[south, "district"] = "South"
    students.loc[south, "coached"] = 1
    path = tmp_path_factory.mktemp("state") / "state.parquet"
    students.to_parquet(path)
    return students, path


def test_subgroups_equal_separate_fits_and_failures_are_kept(
    state: tuple[pd.DataFrame, Path],
) -> None:
    students, _ = state
    fits = fit_many(FORMULA, students, by="district")
    assert sorted(fits.fits) == ["East", "North", "West"]
    assert list(fits.failures) == ["South"]
    assert "collinear" in fits.failures["South"]
    for district, fit in fits.fits.items():
        alone = lmm(FORMULA, students[students["district"] == district].reset_index(drop=True))
        np.testing.assert_allclose(fit.params, alone.params, rtol=1e-12)
        np.testing.assert_allclose(fit.df, alone.df, rtol=1e-12)
    table = fits.glance()
    assert list(table["district"]) == ["East", "North", "West", "South"]
    assert table.loc[table["district"] == "South", "failed"].str.contains("collinear").all()
    coached = fits.estimates("coached")
    assert list(coached.index) == ["East", "North", "West"]
    assert set(fits.tidy()["district"]) == {"East", "North", "West"}


def test_files_and_a_client_give_the_same_numbers(state: tuple[pd.DataFrame, Path]) -> None:
    distributed = pytest.importorskip("dask.distributed")
    students, path = state
    in_memory = fit_many(FORMULA, students, by="district")
    from_files = fit_many(FORMULA, str(path), by="district", method="REML")
    assert list(from_files.failures) == ["South"]
    with (
        distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        mapped_files = fit_many(FORMULA, str(path), by="district", client=client)
        mapped_frames = fit_many(FORMULA, students, by="district", client=client)
    for fits in (from_files, mapped_files, mapped_frames):
        assert sorted(fits.fits) == sorted(in_memory.fits)
        for key, fit in in_memory.fits.items():
            np.testing.assert_allclose(fits[key].params, fit.params, rtol=1e-10)
            np.testing.assert_allclose(fits[key].std_errors, fit.std_errors, rtol=1e-10)
            np.testing.assert_allclose(fits[key].df, fit.df, rtol=1e-10)
    # a fit on files can be refitted anywhere: its data are a DataQuery
    east = from_files["East"]
    assert isinstance(east.data, DataQuery)
    assert "district" in east.data.where
    np.testing.assert_allclose(east.refit(method="ML").nobs, east.nobs)


def test_bootstrap_replicates_as_a_mapping(state: tuple[pd.DataFrame, Path]) -> None:
    students, _ = state
    west = students[students["district"] == "West"]
    schools = west["school_id"].unique()
    rng = np.random.default_rng(4)
    replicates = {}
    for r in range(3):
        drawn = rng.choice(schools, schools.size, replace=True)
        parts = [
            west[west["school_id"] == s].assign(school_id=f"{k}-{s}") for k, s in enumerate(drawn)
        ]
        replicates[r] = pd.concat(parts, ignore_index=True)
    fits = fit_many(FORMULA, replicates)
    assert fits.key_name == "dataset" and sorted(fits.fits) == [0, 1, 2]
    assert fits.estimates("coached")["estimate"].nunique() == 3


def test_bad_requests(state: tuple[pd.DataFrame, Path]) -> None:
    students, path = state
    with pytest.raises(EvalkitInputError, match="needs by="):
        fit_many(FORMULA, students)
    with pytest.raises(EvalkitInputError, match="not in the data"):
        fit_many(FORMULA, students, by="region")
    with pytest.raises(EvalkitInputError, match="not in the data"):
        fit_many(FORMULA, str(path), by="region")
    with pytest.raises(EvalkitInputError, match="either several datasets"):
        fit_many(FORMULA, {"a": students}, by="district")
    with duckdb.connect() as con:
        relation = con.sql(f"SELECT * FROM read_parquet('{path}')")
        with pytest.raises(EvalkitInputError, match="lives in one process"):
            fit_many(FORMULA, relation, by="district")
    with pytest.raises(EvalkitInputError, match="no fit has a term"):
        fit_many(FORMULA, students, by="district").estimates("leadership")
