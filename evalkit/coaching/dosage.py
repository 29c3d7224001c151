"""Coaching dosage from a coaching log (one row per session)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, require_columns

OPENING = ("observe", "model")
CLOSING = ("debrief", "feedback")


def _cycles(activities: pd.Series) -> int:
    """Completed cycles: an observation or modelling session followed (later) by a
    debrief or feedback session; each closing session completes at most one cycle.
    Activity labels are compared without case or surrounding spaces ("Observe")."""
    open_cycle = False
    count = 0
    for raw in activities:
        activity = str(raw).strip().lower() if isinstance(raw, str) else raw
        if activity in OPENING:
            open_cycle = True
        elif activity in CLOSING and open_cycle:
            count += 1
            open_cycle = False
    return count


def school_year(dates: pd.Series) -> pd.Series:
    """The school year a date falls in, named by its autumn (Aug–Jul): 2025-09 → 2025."""
    dates = pd.to_datetime(dates)
    return (dates.dt.year - (dates.dt.month < 8).astype(int)).rename("school_year")


def parse_dates(values: pd.Series, name: str, date_format: str | None = None) -> pd.Series:
    """Dates from text or datetimes; unreadable or missing dates are an error naming
    the rows and the values found there."""
    from evalkit.core import describe_rows

    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif date_format is not None:
        parsed = pd.to_datetime(values, format=date_format, errors="coerce")
    else:
        parsed = pd.to_datetime(values, format="mixed", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        examples = ", ".join(repr(v) for v in values[bad].head(3))
        hint = "" if date_format else "; pass date_format= (e.g. '%d/%m/%Y') for other layouts"
        raise EvalkitInputError(
            f"column {name!r} has missing or unreadable dates at "
            f"{describe_rows(list(values.index), bad)} ({examples}){hint}."
        )
    return parsed


def coaching_dosage(
    log: pd.DataFrame,
    teachers: pd.DataFrame,
    *,
    teacher: str = "teacher_id",
    assigned: str = "coached",
    minutes: str = "minutes",
    activity: str | None = "activity",
    date: str | None = "date",
    by_year: bool = False,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Hours, sessions and completed cycles per teacher (and per school year).

    Every teacher in ``teachers`` gets a row; assigned teachers without log rows get
    zero dosage (not a missing value), as do comparison teachers. Log rows for
    teachers absent from ``teachers`` are an error that names them, as are negative
    or missing session lengths. Dates are parsed (ISO, US month/day/year text, Excel
    dates read by pandas; ``date_format`` for anything else, e.g. ``"%d.%m.%Y"``) so that
    sessions are ordered in time, never as text; a date that cannot be read is an error
    naming its rows.
    """
    require_columns(
        log, [teacher, minutes] + ([activity] if activity else []) + ([date] if date else [])
    )
    require_columns(teachers, [teacher])
    if teachers[teacher].duplicated().any():
        dup = teachers.loc[teachers[teacher].duplicated(), teacher].unique()[:10]
        raise EvalkitInputError(
            f"teacher IDs appear twice in the teacher table: {', '.join(map(str, dup))}."
        )
    unknown = sorted(set(log[teacher]) - set(teachers[teacher]))
    if unknown:
        shown = ", ".join(map(str, unknown[:10]))
        raise EvalkitInputError(
            f"the coaching log has sessions for {len(unknown)} teacher(s) absent from the teacher table: {shown}."
        )
    length = pd.to_numeric(log[minutes], errors="coerce")
    bad = length.isna() | (length < 0) | ~np.isfinite(length.fillna(0.0))
    if bad.any():
        from evalkit.core import describe_rows

        raise EvalkitInputError(
            f"column {minutes!r} has missing, negative or infinite session lengths at "
            f"{describe_rows(list(log.index), bad.to_numpy())}."
        )
    frame = log.assign(_minutes=length)
    if date:
        frame["_date"] = parse_dates(log[date], date, date_format)
    keys = [teacher]
    if by_year:
        if not date:
            raise EvalkitInputError("by_year=True needs the session date column.")
        frame["school_year"] = school_year(frame["_date"]).to_numpy()
        keys.append("school_year")
    if date:
        frame = frame.sort_values([*keys, "_date"], kind="stable")
    grouped = frame.groupby(keys)
    out = pd.DataFrame(
        {
            "coaching_hours": grouped["_minutes"].sum() / 60.0,
            "coaching_sessions": grouped.size(),
        }
    )
    if activity:
        out["coaching_cycles"] = grouped[activity].apply(_cycles)
    base = teachers[[teacher] + ([assigned] if assigned in teachers else [])].copy()
    if by_year:
        years = sorted(frame["school_year"].unique()) or [np.nan]
        base = base.merge(pd.DataFrame({"school_year": years}), how="cross")
    result = base.merge(out.reset_index(), on=keys, how="left")
    for column in out.columns:
        result[column] = (
            result[column].fillna(0).astype(float if column == "coaching_hours" else int)
        )
    return result
