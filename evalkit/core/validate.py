"""Input checks shared by every module.

Every check raises :class:`~evalkit.EvalkitInputError` with a message that names the
field and the first offending rows, so an evaluator can find the bad record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast, get_args

import numpy as np
import pandas as pd

from evalkit.core.errors import EvalkitInputError
from evalkit.core.typing import ArrayLike, FloatArray

MAX_ROWS_SHOWN = 5


def describe_rows(labels: Sequence[Any], mask: np.ndarray) -> str:
    """Return ``"rows 3, 8 (and 2 more)"`` for the labels where ``mask`` is true."""
    bad = [labels[int(i)] for i in np.flatnonzero(mask)]
    shown = ", ".join(str(label) for label in bad[:MAX_ROWS_SHOWN])
    extra = f" (and {len(bad) - MAX_ROWS_SHOWN} more)" if len(bad) > MAX_ROWS_SHOWN else ""
    noun = "row" if len(bad) == 1 else "rows"
    return f"{noun} {shown}{extra}"


def check_option(name: str, value: object, allowed_type: Any) -> None:
    """Check a keyword option against the values of its ``Literal`` type.

    Parameters
    ----------
    name
        The option's name, as the user typed it.
    value
        The value passed.
    allowed_type
        A ``typing.Literal`` whose arguments are the allowed values.
    """
    allowed = get_args(allowed_type)
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise EvalkitInputError(f"{name}={value!r} is not allowed; choose one of {options}.")


def as_float_array(value: ArrayLike, name: str) -> tuple[FloatArray, Sequence[Any]]:
    """Convert a scalar, sequence or Series to a 1-d float64 array and its row labels.

    Numeric input converts without a copy of Python objects; other input is checked
    entry by entry so that missing or non-numeric entries raise an error naming
    ``name`` and the rows. Labels are the Series index, else positions.
    """
    if isinstance(value, pd.Series):
        # An Index supports len() and positional lookup, all describe_rows needs.
        labels: Sequence[Any] = cast(Sequence[Any], value.index)
        raw = value.to_numpy()
    else:
        raw = np.asarray(value)
        if raw.ndim > 1:
            raise EvalkitInputError(
                f"{name} must be a scalar or one-dimensional, got shape {raw.shape}."
            )
        raw = np.atleast_1d(raw)
        labels = range(raw.shape[0])
    if raw.dtype.kind == "b":
        raise EvalkitInputError(f"{name} must be numeric, not true/false values.")
    if raw.dtype.kind in "iuf":
        out = raw.astype(np.float64, copy=False)
    else:
        out = _coerce_objects(raw, name, labels)
    missing = np.isnan(out)
    if missing.any():
        raise EvalkitInputError(f"{name} has missing values at {describe_rows(labels, missing)}.")
    infinite = np.isinf(out)
    if infinite.any():
        raise EvalkitInputError(f"{name} has infinite values at {describe_rows(labels, infinite)}.")
    return out, labels


def _coerce_objects(raw: np.ndarray, name: str, labels: Sequence[Any]) -> FloatArray:
    """Convert object or string entries to floats, naming the rows that are not numbers."""
    coerced = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64
    )
    present = ~pd.isna(pd.Series(raw, dtype=object)).to_numpy()
    flags = np.fromiter(
        (isinstance(item, bool | np.bool_) for item in raw), dtype=bool, count=raw.size
    )
    bad = (np.isnan(coerced) & present) | flags
    if bad.any():
        raise EvalkitInputError(
            f"{name} must be numeric; non-numeric values at {describe_rows(labels, bad)}."
        )
    return coerced


def require(mask_ok: np.ndarray, name: str, labels: Sequence[Any], what: str) -> None:
    """Raise unless every entry of ``mask_ok`` is true; ``what`` says what is required."""
    bad = ~np.asarray(mask_ok, dtype=bool)
    if bad.any():
        raise EvalkitInputError(f"{name} must be {what}; violated at {describe_rows(labels, bad)}.")


def broadcast_inputs(
    **fields: ArrayLike | None,
) -> tuple[dict[str, FloatArray], Sequence[Any], bool]:
    """Convert several inputs to float arrays of one common length.

    Returns the arrays (``None`` entries are left out), the row labels (taken from
    the first Series, else positions) and whether every input was a scalar.
    """
    arrays: dict[str, FloatArray] = {}
    labels: Sequence[Any] | None = None
    labels_from_series = False
    scalar = True
    length = 1
    fields = align_series(fields)
    for name, value in fields.items():
        if value is None:
            continue
        arr, lab = as_float_array(value, name)
        if arr.shape[0] != 1:
            scalar = False
            if length not in (1, arr.shape[0]):
                raise EvalkitInputError(
                    f"{name} has {arr.shape[0]} rows but other inputs have {length}."
                )
            length = arr.shape[0]
            if labels is None or (isinstance(value, pd.Series) and not labels_from_series):
                labels = lab
                labels_from_series = isinstance(value, pd.Series)
        arrays[name] = arr
    for name, arr in arrays.items():
        if arr.shape[0] == 1 and length > 1:
            arrays[name] = np.broadcast_to(arr, (length,))
    return arrays, labels if labels is not None else range(length), scalar


def align_series(fields: dict[str, Any]) -> dict[str, Any]:
    """Align pandas Series on their labels, never by position.

    Series whose index holds the same labels as the first Series (in another order)
    are reordered to it; Series with other labels are refused, naming the labels that
    do not match. Arrays, lists and scalars are left as they are (they pair by
    position, as NumPy does).
    """
    series = {n: v for n, v in fields.items() if isinstance(v, pd.Series) and v.size > 1}
    if len(series) < 2:
        return fields
    first_name, first = next(iter(series.items()))
    reference = first.index
    if reference.has_duplicates:
        return fields  # labels cannot identify rows; positions are all there is
    out = dict(fields)
    for name, value in series.items():
        if value.index.equals(reference):
            continue
        if value.index.has_duplicates or set(value.index) != set(reference):
            extra = [str(x) for x in value.index.difference(reference)[:MAX_ROWS_SHOWN]]
            missing = [str(x) for x in reference.difference(value.index)[:MAX_ROWS_SHOWN]]
            raise EvalkitInputError(
                f"{name} and {first_name} are Series with different row labels "
                f"({name} has {', '.join(extra) or 'duplicated labels'}; "
                f"{first_name} has {', '.join(missing) or 'none missing'}); "
                "align them or pass arrays."
            )
        out[name] = value.reindex(reference)
    return out


def declared_categorical(formula: str, name: str) -> bool:
    """Whether ``formula`` wraps ``name`` in ``C(…)``: numeric codes meant as categories
    (rater or school IDs), which :func:`check_text_in_numbers` leaves alone."""
    import re

    return re.search(rf"\bC\(\s*{re.escape(name)}\s*[,)]", formula) is not None


def check_text_in_numbers(name: str, column: pd.Series) -> None:
    """Refuse a column that is mostly numbers but holds text (or true/false) values."""
    numbers = pd.to_numeric(column, errors="coerce")
    flags = column.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    numeric = numbers.notna().to_numpy() & ~flags
    if numeric.mean() < 0.5:
        return  # text labels: a categorical predictor
    if numeric.all():
        raise EvalkitInputError(
            f"column {name!r} holds numbers stored as text; convert it with "
            "pandas.to_numeric (or read the file with the column's type) so that it is not "
            "treated as a categorical predictor."
        )
    bad = ~numeric
    examples = ", ".join(repr(v) for v in column[bad].head(3))
    raise EvalkitInputError(
        f"column {name!r} is numeric but has non-numeric values at "
        f"{describe_rows(list(column.index), bad)} ({examples}); fix or remove them."
    )


def merge_lookup(
    data: pd.DataFrame, table: pd.DataFrame, on: str | list[str], *, name: str
) -> pd.DataFrame:
    """Add the columns of a lookup ``table`` (one row per key) to ``data``.

    A key that appears twice in the lookup table would copy rows of ``data`` through
    the merge; it is refused, naming the duplicated IDs and the table."""
    keys = [on] if isinstance(on, str) else list(on)
    require_columns(table, keys, what=name)
    repeated = table.duplicated(subset=keys, keep=False)
    if repeated.any():
        ids = table.loc[repeated, keys].drop_duplicates().astype(str).agg("/".join, axis=1)
        shown = ", ".join(ids.iloc[:MAX_ROWS_SHOWN])
        more = f" (and {len(ids) - MAX_ROWS_SHOWN} more)" if len(ids) > MAX_ROWS_SHOWN else ""
        raise EvalkitInputError(
            f"{name} has several rows for {'/'.join(keys)} {shown}{more}; it must have one row "
            "per ID (remove the duplicates, or keep one row per ID on purpose)."
        )
    return data.merge(table, on=keys, how="left", validate="many_to_one")


def require_columns(data: pd.DataFrame, columns: Iterable[str], *, what: str = "data") -> None:
    """Raise if any of ``columns`` is missing from ``data``."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        have = ", ".join(map(str, data.columns[:12]))
        raise EvalkitInputError(
            f"{what} is missing required column(s) {', '.join(missing)}; it has: {have}."
        )


def collinear_terms(x: np.ndarray, terms: Sequence[str]) -> list[str]:
    """Names of the design columns that are linear combinations of earlier ones."""
    if np.linalg.matrix_rank(x) == x.shape[1]:
        return []
    return [
        terms[j]
        for j in range(1, x.shape[1])
        if np.linalg.matrix_rank(x[:, : j + 1]) <= np.linalg.matrix_rank(x[:, :j])
    ]


def check_correlation(name: str, value: float) -> None:
    """Raise unless ``value`` is a correlation in [0, 1] (an imputed ρ)."""
    if not 0.0 <= value <= 1.0:
        raise EvalkitInputError(f"{name} must lie in [0, 1], got {value!r}.")
