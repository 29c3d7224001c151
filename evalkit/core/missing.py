"""Complete-case handling: the one place that leaves rows out and records why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from evalkit.core.errors import EvalkitInputError
from evalkit.core.results import Dropped
from evalkit.core.validate import describe_rows

MissingPolicy = Literal["drop", "raise"]


def complete_cases(
    data: pd.DataFrame, columns: Sequence[str], missing: MissingPolicy
) -> tuple[pd.DataFrame, Dropped]:
    """The rows of ``data`` with every one of ``columns`` present.

    Parameters
    ----------
    data
        One row per observation.
    columns
        The columns a model uses.
    missing
        ``"drop"``: leave incomplete rows out and record each with the first missing
        column as its reason; ``"raise"``: an error naming the column and the rows.

    Returns
    -------
    tuple of DataFrame and Dropped
        The complete rows (``data`` itself when nothing is missing) and the record
        of what was left out.

    Examples
    --------
    >>> frame = pd.DataFrame({"y": [1.0, None, 3.0], "x": [1, 2, None]})
    >>> kept, dropped = complete_cases(frame, ["y", "x"], "drop")
    >>> len(kept), dropped.describe()
    (1, '2 rows dropped: 1 missing y, 1 missing x.')
    """
    present = data[list(columns)].notna()
    incomplete = ~present.all(axis=1)
    if not incomplete.any():
        return data, Dropped()
    if missing == "raise":
        first = next(c for c in columns if data[c].isna().any())
        rows = describe_rows(list(data.index), data[first].isna().to_numpy())
        raise EvalkitInputError(f"column {first!r} has missing values at {rows} (missing='raise').")
    reasons = tuple(
        f"missing {present.columns[~row].tolist()[0]}" for row in present[incomplete].to_numpy()
    )
    return data.loc[~incomplete], Dropped(rows=tuple(data.index[incomplete]), reasons=reasons)
