"""Validation of IDs, nesting, column types and missing data."""

from __future__ import annotations

import pandas as pd
import pytest

from evalkit import EvalkitInputError
from evalkit.data import check_columns, check_nesting, check_unique, missing_report


def test_duplicated_ids_are_named() -> None:
    frame = pd.DataFrame({"teacher_id": [1, 2, 2, 3]})
    with pytest.raises(
        EvalkitInputError,
        match=r"teacher_id must be unique but repeats \(teacher_id=2\) at rows 1, 2",
    ):
        check_unique(frame, "teacher_id", table="teachers")


def test_badly_nested_ids_are_named() -> None:
    frame = pd.DataFrame({"teacher_id": [1, 1, 2, 3, 3], "school_id": [10, 10, 10, 11, 12]})
    with pytest.raises(
        EvalkitInputError, match="teacher_id 3 appears under school_id 11, 12 \\(rows 3, 4\\)"
    ):
        check_nesting(frame, "teacher_id", "school_id")
    check_nesting(frame.iloc[:3], "teacher_id", "school_id")


def test_column_kinds() -> None:
    frame = pd.DataFrame(
        {"score": ["1.5", "x", "3"], "coached": [0, 1, 2], "grade": [3, 4.5, 5], "id": [1, None, 3]}
    )
    with pytest.raises(
        EvalkitInputError, match="'score' must be numeric; non-numeric values at rows 1"
    ):
        check_columns(frame, {"score": "numeric"})
    with pytest.raises(EvalkitInputError, match="'coached' must be 0 or 1; rows 2"):
        check_columns(frame, {"coached": "binary"})
    with pytest.raises(EvalkitInputError, match="'grade' must hold whole numbers; rows 1"):
        check_columns(frame, {"grade": "integer"})
    with pytest.raises(EvalkitInputError, match="ID column 'id' is missing at rows 1"):
        check_columns(frame, {"id": "id"})
    with pytest.raises(EvalkitInputError, match="missing required column\\(s\\) prior"):
        check_columns(frame, {"prior": "numeric"})


def test_missing_report() -> None:
    frame = pd.DataFrame({"a": [1, None, None], "b": [1, 2, None], "c": [1, 2, 3]})
    report = missing_report(frame)
    assert list(report.index) == ["a", "b", "c"]
    assert report.loc["a", "n_missing"] == 2
    assert report.loc["b", "share_missing"] == pytest.approx(1 / 3)
