"""Data that live outside pandas: a DuckDB relation, a Parquet or CSV path (or glob),
or a Dask DataFrame, queried where they are.

Estimators that need only sums over rows (per-cluster cross-products, counts, means)
send those sums to the data as SQL and bring back one row per group, never the rows
themselves. DuckDB (https://duckdb.org) runs the SQL on a relation or on Parquet/CSV
files, streaming them from disk in parallel; on a Dask DataFrame the same SQL runs on
each partition (DuckDB over the partition's pandas frame) and the partial sums are
combined by Dask's tree reduction, on whatever scheduler is active or on a
``dask.distributed.Client`` passed in. Sums of floating-point numbers come back in a
different order than a pass in memory would add them, so results agree with the
in-memory path to rounding (about 1e-15 relative per sum), not bit for bit.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit.core.errors import EvalkitInputError

Combine = Literal["sum", "min", "max"]
SourceKind = Literal["integer", "float", "boolean", "text", "other"]

_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT")  # fmt: skip
_FLOAT = ("FLOAT", "DOUBLE", "REAL")


def quote(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of a query: ``how(expression) AS alias``."""

    alias: str
    expression: str
    how: Combine = "sum"

    def sql(self) -> str:
        """The aggregate as SQL."""
        how = "FSUM" if self.how == "sum" else self.how.upper()  # Kahan-Babuska: order-free
        return f"{how}({self.expression}) AS {quote(self.alias)}"


def _kind_of_sql(type_name: str) -> SourceKind:
    name = type_name.upper()
    if name in _INTEGER:
        return "integer"
    if name in _FLOAT or name.startswith("DECIMAL"):
        return "float"
    if name == "BOOLEAN":
        return "boolean"
    if name == "VARCHAR" or name.startswith("ENUM"):
        return "text"
    return "other"


def _kind_of_dtype(dtype: Any) -> SourceKind:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if (
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "text"
    return "other"


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as error:  # pragma: no cover - a core dependency
        raise EvalkitInputError(
            "fitting data where they live needs the duckdb package: pip install duckdb"
        ) from error
    return duckdb


class DataSource:
    """Rows that are queried, not loaded: the interface the estimators use."""

    description: str = "data"

    def kinds(self) -> dict[str, SourceKind]:
        """Each column's kind of values."""
        raise NotImplementedError

    def aggregate(
        self, aggregates: list[Aggregate], *, where: str, group_by: tuple[str, ...] = ()
    ) -> pd.DataFrame:
        """One row (or one row per ``group_by`` combination) of the aggregates over the
        rows satisfying ``where``; sums over no rows are 0."""
        raise NotImplementedError

    def distinct(self, expression: str, *, where: str) -> list[Any]:
        """The distinct non-missing values of ``expression`` over rows satisfying ``where``."""
        raise NotImplementedError

    def select(self, columns: list[str]) -> DataSource:
        """The same rows with only ``columns`` (what the queries read)."""
        raise NotImplementedError


class DuckDBSource(DataSource):
    """A DuckDB relation (or files opened as one), queried as the virtual table ``src``."""

    def __init__(self, relation: Any, description: str) -> None:
        self.relation = relation
        self.description = description

    def select(self, columns: list[str]) -> DuckDBSource:
        return DuckDBSource(
            self.relation.project(", ".join(quote(c) for c in columns)), self.description
        )

    def kinds(self) -> dict[str, SourceKind]:
        return {
            str(name): _kind_of_sql(str(kind))
            for name, kind in zip(self.relation.columns, self.relation.types, strict=True)
        }

    def _query(self, sql: str) -> pd.DataFrame:
        try:
            return self.relation.query("src", sql).df()
        except _duckdb().Error as error:
            raise EvalkitInputError(
                f"the query on {self.description} failed: {str(error).splitlines()[0]}"
            ) from None

    def aggregate(
        self, aggregates: list[Aggregate], *, where: str, group_by: tuple[str, ...] = ()
    ) -> pd.DataFrame:
        return _zero_sums(self._query(aggregate_sql(aggregates, where, group_by)), aggregates)

    def distinct(self, expression: str, *, where: str) -> list[Any]:
        frame = self._query(
            f"SELECT DISTINCT {expression} AS value FROM src WHERE {where} AND "
            f"{expression} IS NOT NULL"
        )
        return frame["value"].tolist()


def aggregate_sql(aggregates: list[Aggregate], where: str, group_by: tuple[str, ...]) -> str:
    """``SELECT keys, aggregates FROM src WHERE … GROUP BY keys``."""
    keys = ", ".join(quote(k) for k in group_by)
    select = ", ".join([*(quote(k) for k in group_by), *(a.sql() for a in aggregates)])
    sql = f"SELECT {select} FROM src WHERE {where}"
    return f"{sql} GROUP BY {keys}" if group_by else sql


def _zero_sums(frame: pd.DataFrame, aggregates: list[Aggregate]) -> pd.DataFrame:
    for aggregate in aggregates:
        column = frame[aggregate.alias]
        if aggregate.how == "sum":
            frame[aggregate.alias] = pd.to_numeric(column).fillna(0.0).astype(np.float64)
    return frame


class DaskSource(DataSource):
    """A Dask DataFrame: the SQL runs on each partition, the partial results are combined
    by Dask (``groupby(...).agg`` with a tree reduction), on ``client`` when one is given."""

    def __init__(self, frame: Any, client: Any = None) -> None:
        self.frame = frame
        self.client = client
        self.description = f"a Dask DataFrame of {frame.npartitions} partitions"

    def select(self, columns: list[str]) -> DaskSource:
        selected = DaskSource(self.frame[columns], self.client)
        selected.description = self.description
        return selected

    def kinds(self) -> dict[str, SourceKind]:
        return {str(name): _kind_of_dtype(dtype) for name, dtype in self.frame.dtypes.items()}

    def _compute(self, collection: Any) -> Any:
        if self.client is not None:
            return self.client.compute(collection).result()
        return collection.compute()

    def aggregate(
        self, aggregates: list[Aggregate], *, where: str, group_by: tuple[str, ...] = ()
    ) -> pd.DataFrame:
        sql = aggregate_sql(aggregates, where, group_by)
        meta = pd.DataFrame(
            {
                **{k: self.frame._meta[k].iloc[:0] for k in group_by},
                **{a.alias: pd.Series(dtype=np.float64) for a in aggregates},
            }
        )
        partials = self.frame.map_partitions(_partition_query, sql, aggregates, meta=meta)
        if not group_by:
            parts = self._compute(partials)
            return pd.DataFrame({a.alias: [_combine(parts[a.alias], a.how)] for a in aggregates})
        combined = partials.groupby(list(group_by), dropna=False, sort=False).agg(
            {a.alias: a.how for a in aggregates}, split_every=8
        )
        return self._compute(combined).reset_index()

    def distinct(self, expression: str, *, where: str) -> list[Any]:
        sql = (
            f"SELECT DISTINCT {expression} AS value FROM src WHERE {where} AND "
            f"{expression} IS NOT NULL"
        )
        meta = pd.DataFrame({"value": pd.Series(dtype=object)})
        parts = self._compute(self.frame.map_partitions(_partition_distinct, sql, meta=meta))
        return list(dict.fromkeys(parts["value"].tolist()))


def _partition_query(part: pd.DataFrame, sql: str, aggregates: list[Aggregate]) -> pd.DataFrame:
    duckdb = _duckdb()
    with duckdb.connect() as con:
        con.register("src", part)
        frame = con.sql(sql).df()
    return _zero_sums(frame, aggregates)


def _partition_distinct(part: pd.DataFrame, sql: str) -> pd.DataFrame:
    duckdb = _duckdb()
    with duckdb.connect() as con:
        con.register("src", part)
        frame = con.sql(sql).df()
    return frame.astype({"value": object})


def _combine(values: pd.Series, how: Combine) -> Any:
    present = values.dropna()
    if how == "sum":
        return float(present.sum())
    if present.empty:
        return np.nan
    return present.min() if how == "min" else present.max()


@dataclass(frozen=True)
class DataQuery:
    """Rows of Parquet/CSV files selected by a SQL condition: a description of data
    that any process (a Dask worker, a later ``refit``) can open again.

    Examples
    --------
    >>> DataQuery("state/*.parquet", where="district_id = 12")
    DataQuery(path='state/*.parquet', where='district_id = 12')
    """

    path: str
    where: str = "TRUE"


_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".txt")


def is_data_source(data: object) -> bool:
    """Whether ``data`` is something :func:`open_source` reads (not a pandas DataFrame)."""
    if isinstance(data, str | os.PathLike | DataQuery):
        return True
    module = type(data).__module__
    return module.startswith("duckdb") or (
        module.startswith("dask") and hasattr(data, "map_partitions")
    )


def open_source(data: object, *, client: Any = None) -> DataSource:
    """A :class:`DataSource` for a DuckDB relation, a Parquet/CSV path or glob, or a
    Dask DataFrame; anything else is an error naming what is accepted."""
    if isinstance(data, str | os.PathLike):
        return _open_path(str(data))
    if isinstance(data, DataQuery):
        opened = _open_path(data.path)
        return DuckDBSource(
            opened.relation.filter(data.where), f"{opened.description} where {data.where}"
        )
    module = type(data).__module__
    if module.startswith("dask") and hasattr(data, "map_partitions"):
        return DaskSource(data, client)
    if client is not None:
        raise EvalkitInputError(
            "client= runs a fit on a Dask cluster and needs a Dask DataFrame as data "
            f"(got {type(data).__name__})."
        )
    if module.startswith("duckdb") and hasattr(data, "query") and hasattr(data, "columns"):
        return DuckDBSource(data, "the DuckDB relation")
    raise EvalkitInputError(
        "data must be a pandas DataFrame, a DuckDB relation, a Parquet or CSV path (or "
        f"glob), or a Dask DataFrame; got {type(data).__name__}."
    )


def _open_path(path: str) -> DuckDBSource:
    duckdb = _duckdb()
    lower = path.lower()
    if lower.endswith(_PARQUET):
        reader = "read_parquet"
    elif lower.endswith(_CSV):
        reader = "read_csv_auto"
    else:
        raise EvalkitInputError(
            f"cannot tell the format of {path!r}: name Parquet files *.parquet and CSV "
            "files *.csv (a glob such as 'district/*.parquet' reads many)."
        )
    matches = sorted(glob.glob(path))
    if not matches:
        raise EvalkitInputError(f"no file matches {path!r}.")
    con = duckdb.connect()
    literal = "'" + path.replace("'", "''") + "'"
    relation = con.sql(f"SELECT * FROM {reader}({literal})")
    files = f"{len(matches)} files" if len(matches) > 1 else "file"
    return DuckDBSource(relation, f"{path} ({files})")
