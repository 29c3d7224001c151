"""Checks on the tables an evaluation starts from: IDs, nesting, columns, missing data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd

from evalkit.core import MAX_ROWS_SHOWN, EvalkitInputError, check_option, require_columns

ColumnKind = Literal["numeric", "integer", "binary", "id", "any"]


def _rows(index: pd.Index) -> str:
    shown = ", ".join(map(str, index[:MAX_ROWS_SHOWN]))
    extra = f" (and {len(index) - MAX_ROWS_SHOWN} more)" if len(index) > MAX_ROWS_SHOWN else ""
    return f"{shown}{extra}"


def check_unique(data: pd.DataFrame, columns: str | Sequence[str], *, table: str = "data") -> None:
    """Raise if the ``columns`` do not identify rows uniquely.

    Examples
    --------
    >>> import pandas as pd
    >>> check_unique(pd.DataFrame({"teacher_id": [1, 2, 3]}), "teacher_id")
    """
    keys = [columns] if isinstance(columns, str) else list(columns)
    require_columns(data, keys, what=table)
    duplicated = data.duplicated(subset=keys, keep=False)
    if duplicated.any():
        values = data.loc[duplicated, keys].drop_duplicates().head(MAX_ROWS_SHOWN)
        shown = "; ".join(
            ", ".join(f"{k}={v}" for k, v in row.items()) for _, row in values.iterrows()
        )
        raise EvalkitInputError(
            f"{table}: {' + '.join(keys)} must be unique but repeats ({shown}) "
            f"at rows {_rows(data.index[duplicated])}."
        )


def check_nesting(data: pd.DataFrame, child: str, parent: str, *, table: str = "data") -> None:
    """Raise if any ``child`` ID appears under more than one ``parent`` ID.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"teacher_id": [1, 1, 2], "school_id": [10, 11, 10]})
    >>> check_nesting(frame, "teacher_id", "school_id")
    Traceback (most recent call last):
    ...
    evalkit.EvalkitInputError: data: teacher_id must be nested in school_id, but teacher_id 1 appears under school_id 10, 11 (rows 0, 1).
    """
    require_columns(data, [child, parent], what=table)
    parents = data.groupby(child, observed=True)[parent].nunique(dropna=False)
    crossed = parents[parents > 1]
    if len(crossed):
        first = crossed.index[0]
        rows = data.index[data[child] == first]
        under = ", ".join(map(str, sorted(data.loc[rows, parent].unique())))
        more = f"; {len(crossed) - 1} more {child} values are crossed" if len(crossed) > 1 else ""
        raise EvalkitInputError(
            f"{table}: {child} must be nested in {parent}, but {child} {first} appears under "
            f"{parent} {under} (rows {_rows(rows)}){more}."
        )


def check_columns(
    data: pd.DataFrame, required: Mapping[str, ColumnKind], *, table: str = "data"
) -> None:
    """Raise if a required column is absent or cannot be used as the stated kind.

    Kinds: ``numeric`` (numbers), ``integer`` (whole numbers), ``binary`` (0/1),
    ``id`` (no missing values), ``any`` (present).
    """
    for name, kind in required.items():
        check_option(f"kind of column {name!r}", kind, ColumnKind)
    require_columns(data, required, what=table)
    for name, kind in required.items():
        column = data[name]
        if kind == "any":
            continue
        if kind == "id":
            missing = column.isna()
            if missing.any():
                raise EvalkitInputError(
                    f"{table}: ID column {name!r} is missing at rows {_rows(data.index[missing])}."
                )
            continue
        numeric = pd.to_numeric(column, errors="coerce")
        bad = numeric.isna() & column.notna()
        if bad.any():
            raise EvalkitInputError(
                f"{table}: column {name!r} must be numeric; non-numeric values at rows {_rows(data.index[bad])}."
            )
        present = numeric.dropna()
        if kind == "integer":
            bad = present != present.round()
            if bad.any():
                raise EvalkitInputError(
                    f"{table}: column {name!r} must hold whole numbers; rows {_rows(bad[bad].index)}."
                )
        if kind == "binary":
            bad = ~present.isin([0, 1])
            if bad.any():
                raise EvalkitInputError(
                    f"{table}: column {name!r} must be 0 or 1; rows {_rows(bad[bad].index)}."
                )


def missing_report(data: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Count and share of missing values per column, most missing first.

    Examples
    --------
    >>> import pandas as pd
    >>> int(missing_report(pd.DataFrame({"a": [1, None], "b": [1, 2]})).loc["a", "n_missing"])
    1
    """
    chosen = list(columns) if columns is not None else list(data.columns)
    require_columns(data, chosen)
    n_missing = data[chosen].isna().sum()
    report = pd.DataFrame(
        {
            "n": len(data),
            "n_missing": n_missing.astype(int),
            "share_missing": n_missing / max(len(data), 1),
        }
    )
    return report.sort_values("n_missing", ascending=False, kind="stable")
