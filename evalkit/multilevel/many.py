"""Many fits of one model — per district, per subgroup, per bootstrap replicate —
serially or mapped over a ``dask.distributed.Client``.

A subgroup whose fit fails on its data (a district with one school, a subgroup where
a predictor is constant) is recorded with the reason and the others go on: an
evaluator fitting 1,200 districts needs the 1,196 results and the four reasons, not
a stack trace.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import (
    DataQuery,
    EvalkitInputError,
    is_data_source,
    open_source,
    quote,
)
from evalkit.multilevel.model import LMMResults, lmm
from evalkit.multilevel.pushdown import sql_literal


@dataclass(frozen=True)
class ManyFits:
    """Fits keyed by subgroup (or replicate), and the subgroups that could not be fitted.

    Attributes
    ----------
    fits
        One :class:`~evalkit.multilevel.LMMResults` per key, in key order.
    failures
        For each key whose fit failed on its data, the reason.
    key_name
        What the keys are (the ``by`` column, or ``"dataset"``).
    """

    fits: dict[Hashable, LMMResults]
    failures: dict[Hashable, str] = field(default_factory=dict)
    key_name: str = "dataset"

    def __len__(self) -> int:
        return len(self.fits)

    def __getitem__(self, key: Hashable) -> LMMResults:
        return self.fits[key]

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """Every fit's ``tidy()`` stacked, with the key as the first column."""
        frames = [_keyed(fit.tidy(level), self.key_name, key) for key, fit in self.fits.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def glance(self) -> pd.DataFrame:
        """One row per fit (``glance()``), then one row per failure with its reason."""
        rows = [_keyed(fit.glance(), self.key_name, key) for key, fit in self.fits.items()]
        rows += [
            _keyed(pd.DataFrame({"failed": [reason]}), self.key_name, key)
            for key, reason in self.failures.items()
        ]
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

    def estimates(self, term: str) -> pd.DataFrame:
        """One term's estimate, SE, df and interval across the fits."""
        table = self.tidy()
        if table.empty or term not in set(table["term"]):
            raise EvalkitInputError(f"no fit has a term {term!r}.")
        return table[table["term"] == term].set_index(self.key_name).drop(columns="term")


def _keyed(frame: pd.DataFrame, name: str, key: Hashable) -> pd.DataFrame:
    """``frame`` with the key as its first column."""
    out = frame.copy()
    out.insert(0, name, [key] * len(out))
    return out


def _fit_one(key: Hashable, formula: str, data: Any, options: dict[str, Any]) -> Any:
    """One fit, its failure on the data returned (not raised) as ``(key, reason)``."""
    try:
        return key, lmm(formula, data, **options)
    except (EvalkitInputError, np.linalg.LinAlgError) as error:
        return key, str(error)


def _subsets(data: object, by: str | list[str] | None) -> tuple[list[Hashable], list[Any], str]:
    """The keys and the data of each fit."""
    if isinstance(data, Mapping):
        if by is not None:
            raise EvalkitInputError("pass either several datasets or one dataset with by=.")
        return list(data.keys()), list(data.values()), "dataset"
    if by is None:
        raise EvalkitInputError(
            "fit_many needs by= (a column whose values split the data) or a mapping of "
            "datasets (e.g. {district: frame} or bootstrap replicates)."
        )
    columns = [by] if isinstance(by, str) else list(by)
    name = ":".join(columns)
    if isinstance(data, pd.DataFrame):
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise EvalkitInputError(f"by= column(s) {', '.join(missing)} not in the data.")
        groups = data.groupby(columns if len(columns) > 1 else columns[0], sort=True)
        keys: list[Hashable] = [key for key, _ in groups]
        return keys, [part.reset_index(drop=True) for _, part in groups], name
    if isinstance(data, str | DataQuery):
        query = data if isinstance(data, DataQuery) else DataQuery(str(data))
        source = open_source(query)
        kinds = source.kinds()
        absent = [c for c in columns if c not in kinds]
        if absent:
            raise EvalkitInputError(f"by= column(s) {', '.join(absent)} not in the data.")
        if len(columns) > 1:
            raise EvalkitInputError("fit_many on files takes one by= column.")
        values = sorted(source.distinct(quote(columns[0]), where="TRUE"))
        return (
            list(values),
            [DataQuery(query.path, f"({query.where}) AND {quote(columns[0])} = {sql_literal(v)}")
             for v in values],
            name,
        )  # fmt: skip
    if is_data_source(data):
        raise EvalkitInputError(
            "fit_many splits a pandas DataFrame or Parquet/CSV files (a path, glob or "
            "DataQuery): a DuckDB relation or Dask DataFrame lives in one process. Write "
            "the data to Parquet, or pass a mapping of datasets."
        )
    raise EvalkitInputError(
        f"data must be a DataFrame, files or a mapping; got {type(data).__name__}."
    )


def fit_many(
    formula: str,
    data: object,
    *,
    by: str | list[str] | None = None,
    client: Any = None,
    **options: Any,
) -> ManyFits:
    """Fit one mixed model to many datasets: the subgroups of ``data`` by ``by``, or
    each value of a mapping of datasets.

    Parameters
    ----------
    formula
        lme4 syntax, as for :func:`~evalkit.multilevel.lmm`.
    data
        A pandas DataFrame or Parquet/CSV files (path, glob or
        :class:`~evalkit.core.DataQuery`) split by ``by``; or a mapping
        ``{key: data}`` of datasets (districts' exports, bootstrap replicates),
        each a DataFrame or files.
    by
        Column(s) whose values define the subgroups.
    client
        A ``dask.distributed.Client``: the fits are mapped over its workers (DataFrames
        are scattered to them; files are read by the workers themselves, so the
        subgroups never pass through this process). Without a client, serially.
    **options
        Passed to :func:`~evalkit.multilevel.lmm` (``method``, ``df_method``, …).

    Returns
    -------
    ManyFits
        The fits by key, and the keys whose data could not be fitted, with the reason.

    Examples
    --------
    >>> import evalkit
    >>> students = evalkit.simulate_district(n_schools=12, seed=2).students
    >>> students["region"] = students["school_id"] % 2
    >>> fits = fit_many("achievement ~ coached + (1 | school_id)", students, by="region")
    >>> sorted(fits.fits), fits.failures
    ([0, 1], {})
    """
    keys, datasets, name = _subsets(data, by)
    if client is None:
        outcomes = [_fit_one(k, formula, d, options) for k, d in zip(keys, datasets, strict=True)]
    else:
        shipped = [client.scatter(d) if isinstance(d, pd.DataFrame) else d for d in datasets]
        futures = client.map(
            _fit_one, keys, [formula] * len(keys), shipped, [options] * len(keys), pure=False
        )
        outcomes = client.gather(futures)
    fits: dict[Hashable, LMMResults] = {}
    failures: dict[Hashable, str] = {}
    for key, outcome in outcomes:
        if isinstance(outcome, str):
            failures[key] = outcome
        else:
            fits[key] = outcome
    return ManyFits(fits, failures, name)
