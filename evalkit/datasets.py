"""Public datasets bundled with evalkit (see ``evalkit/data/SOURCES.md`` for citations)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

from evalkit.core import EvalkitInputError

_CITATIONS: dict[str, str] = {
    "raudenbush1985": "Raudenbush (1984, 1985): teacher expectancy effects on pupil IQ, 19 experiments.",
    "konstantopoulos2011": "Konstantopoulos (2011): modified school calendars, three-level meta-analysis.",
    "bangertdrowns2004": "Bangert-Drowns, Hurley & Wilkinson (2004): writing-to-learn interventions.",
    "bcg": "Colditz et al. (1994): BCG vaccine trials.",
    "kalaian1996": "Kalaian & Raudenbush (1996): SAT coaching, verbal and math outcomes.",
    "hsb": "Raudenbush & Bryk (2002, ch. 4): High School and Beyond, 7,185 students in 160 schools.",
    "penicillin": "Davies & Goldsmith (1972) via lme4: penicillin assay, 24 plates x 6 samples (crossed).",
    "cbpp": "Lesnoff et al. (2004) via lme4: contagious bovine pleuropneumonia, 15 herds x 4 periods.",
}
_STRING_COLUMNS: dict[str, dict[str, Any]] = {
    "hsb": {"school": str},
    "penicillin": {"plate": str, "sample": str},
    "cbpp": {"herd": str, "period": "category"},
}


def names() -> list[str]:
    """Names of the bundled datasets.

    Examples
    --------
    >>> "hsb" in names()
    True
    """
    return sorted(_CITATIONS)


def citation(name: str) -> str:
    """A one-line citation for dataset ``name`` (full references in SOURCES.md)."""
    _check(name)
    return _CITATIONS[name]


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a DataFrame.

    Examples
    --------
    >>> load("bcg").shape
    (13, 9)
    """
    _check(name)
    source = resources.files("evalkit.data").joinpath("datasets", f"{name}.csv")
    with source.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=_STRING_COLUMNS.get(name))


def _check(name: str) -> None:
    if name not in _CITATIONS:
        raise EvalkitInputError(f"no bundled dataset {name!r}; available: {', '.join(names())}.")
