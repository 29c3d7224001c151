"""Descriptive tables (n, mean, SD by group) with small-cell suppression."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, describe_rows, require_columns
from evalkit.tables._format import fmt_number
from evalkit.tables._suppression import DEFAULT_THRESHOLD, suppress_counts
from evalkit.tables._table import Table

SUPPRESSED = "—"
TOTAL = "Total"


def _variable_labels(variables: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(variables, Mapping):
        return dict(variables)
    return {name: name for name in variables}


def _group_stats(values: pd.Series, groups: list[pd.Series]) -> pd.DataFrame:
    present = values.notna()
    frame = pd.DataFrame({"value": values[present]})
    keys = [g[present].rename(f"g{i}") for i, g in enumerate(groups)]
    return frame.groupby(keys, observed=False)["value"].agg(["count", "mean", "std"])


def descriptive_table(
    data: pd.DataFrame,
    variables: Sequence[str] | Mapping[str, str],
    *,
    by: str | Sequence[str] | None = None,
    threshold: int | None = DEFAULT_THRESHOLD,
    digits: int = 2,
    unit: str = "students",
    title: str = "Descriptive statistics",
) -> Table:
    """n, mean and SD of each variable, by one or two grouping columns, with margins.

    Cells resting on fewer than ``threshold`` units are suppressed, and further
    cells are suppressed so that no suppressed value can be recovered from the
    totals (see :func:`evalkit.tables.suppress_counts`). ``threshold=None`` turns
    suppression off, for tables of aggregates that are not about students.

    Parameters
    ----------
    data
        One row per unit (student, teacher, school).
    variables
        Numeric columns to describe, or a mapping from column to display label.
    by
        None, one grouping column, or two (rows × columns of a two-way layout).
    threshold
        Smallest n a published cell may rest on (default 10).
    digits
        Decimals for means and SDs.
    unit
        What a row of ``data`` is, for the table note.
    title
        Table title.

    Returns
    -------
    Table
        Rows are variable × row group; columns are n, M, SD (per column group when
        ``by`` has two entries). ``n`` counts non-missing values.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"score": range(30), "coached": [0] * 25 + [1] * 5})
    >>> table = descriptive_table(frame, ["score"], by="coached")
    >>> table.body["n"].tolist()
    ['—', '—', '30']
    """
    labels = _variable_labels(variables)
    groups_by = [] if by is None else ([by] if isinstance(by, str) else list(by))
    if len(groups_by) > 2:
        raise EvalkitInputError("by takes at most two grouping columns.")
    require_columns(data, list(labels) + groups_by)
    for name in labels:
        if not pd.api.types.is_numeric_dtype(data[name]) or pd.api.types.is_bool_dtype(data[name]):
            raise EvalkitInputError(f"column {name!r} must be numeric to be described.")
        infinite = np.isinf(data[name].to_numpy(dtype=float, na_value=np.nan))
        if infinite.any():
            raise EvalkitInputError(
                f"column {name!r} has infinite values at {describe_rows(list(data.index), infinite)}."
            )
    for name in groups_by:
        missing = data[name].isna()
        if missing.any():
            rows = ", ".join(map(str, data.index[missing][:5]))
            raise EvalkitInputError(f"grouping column {name!r} has missing values at rows {rows}.")
    row_levels = sorted(data[groups_by[0]].unique()) if groups_by else []
    col_levels = sorted(data[groups_by[1]].unique()) if len(groups_by) == 2 else []
    blocks, numbers = [], []
    any_suppressed = False
    for column, label in labels.items():
        block, raw, hit = _variable_block(
            data, column, groups_by, row_levels, col_levels, threshold, digits
        )
        block.index = pd.MultiIndex.from_product([[label], block.index]) if groups_by else [label]
        raw.index = block.index
        blocks.append(block)
        numbers.append(raw)
        any_suppressed |= hit
    body = pd.concat(blocks)
    if groups_by:
        body.index = [f"{v} — {g}" for v, g in body.index]
    data_out = pd.concat(numbers)
    data_out.index = body.index
    notes = [f"n counts {unit} with a non-missing value; M = mean; SD = standard deviation."]
    if threshold is not None:
        notes.append(
            f"Cells resting on fewer than {threshold} {unit} are suppressed ({SUPPRESSED}), as are "
            "further cells chosen so that no suppressed value can be recovered from the totals."
        )
        if not any_suppressed:
            notes.append("No cell needed suppression.")
    return Table(body=body, title=title, notes=tuple(notes), data=data_out, stub_header="Variable")


def _variable_block(
    data: pd.DataFrame,
    column: str,
    groups_by: list[str],
    row_levels: list[object],
    col_levels: list[object],
    threshold: int | None,
    digits: int,
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    values = data[column].astype(float)
    row_keys = [*row_levels, TOTAL] if groups_by else [TOTAL]
    col_keys = [*col_levels, TOTAL] if col_levels else [TOTAL]
    stats = {
        key: np.full((len(row_keys), len(col_keys)), np.nan) for key in ("count", "mean", "std")
    }
    row_group = data[groups_by[0]] if groups_by else None
    col_group = data[groups_by[1]] if col_levels else None
    for i, r in enumerate(row_keys):
        for j, c in enumerate(col_keys):
            mask = pd.Series(True, index=data.index)
            if row_group is not None and r != TOTAL:
                mask &= row_group == r
            if col_group is not None and c != TOTAL:
                mask &= col_group == c
            cell = values[mask].dropna()
            stats["count"][i, j] = cell.size
            stats["mean"][i, j] = cell.mean() if cell.size else np.nan
            stats["std"][i, j] = cell.std(ddof=1) if cell.size > 1 else np.nan
    hidden = np.zeros_like(stats["count"], dtype=bool)
    if threshold is not None and not groups_by:
        hidden[:] = (stats["count"] > 0) & (stats["count"] < threshold)
    elif threshold is not None:
        inner = stats["count"][:-1, :-1] if col_levels else stats["count"][:-1, :1]
        result = suppress_counts(inner, threshold=threshold)
        hidden[:-1, : inner.shape[1]] = result.cells
        hidden[-1, -1] = result.grand_total
        if col_levels:
            hidden[:-1, -1] = result.row_totals
            hidden[-1, :-1] = result.col_totals
    formatted: dict[str, list[str]] = {}
    raw: dict[str, list[float]] = {}
    for j, c in enumerate(col_keys):
        prefix = "" if not col_levels else f"{c} "
        for key, name in (("count", "n"), ("mean", "M"), ("std", "SD")):
            column_values = []
            for i in range(len(row_keys)):
                value = stats[key][i, j]
                if hidden[i, j]:
                    column_values.append(SUPPRESSED)
                elif key == "count":
                    column_values.append(f"{int(value):,}")
                else:
                    column_values.append(fmt_number(value, digits))
            formatted[prefix + name] = column_values
            raw[prefix + name] = [
                np.nan if hidden[i, j] else stats[key][i, j] for i in range(len(row_keys))
            ]
    index = [str(r) for r in row_keys]
    return pd.DataFrame(formatted, index=index), pd.DataFrame(raw, index=index), bool(hidden.any())
