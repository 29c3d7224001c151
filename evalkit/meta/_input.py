"""Validation of meta-analytic data: effects, variances, study labels, moderators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from formulaic import ModelSpec

from evalkit.core import (
    INTERCEPT,
    EvalkitInputError,
    as_float_array,
    check_text_in_numbers,
    collinear_terms,
    declared_categorical,
    describe_rows,
    read_formula,
    require_columns,
)


@dataclass(frozen=True)
class MetaData:
    """Validated inputs: effects, variances, design matrix and labels."""

    y: np.ndarray
    v: np.ndarray
    x: np.ndarray
    terms: list[str]
    labels: pd.Index
    spec: ModelSpec | None
    has_intercept: bool
    source: pd.DataFrame | None = None


def _effects_and_variances(
    data: pd.DataFrame, effect: str, variance: str
) -> tuple[np.ndarray, np.ndarray]:
    require_columns(data, [effect, variance])
    y, _ = as_float_array(data[effect], effect)
    v, labels = as_float_array(data[variance], variance)
    huge = (np.abs(y) > 1e100) | (v > 1e200)
    if huge.any():
        raise EvalkitInputError(
            f"{effect} or {variance} is beyond what double precision can square at "
            f"{describe_rows(labels, huge)}; rescale the effect sizes."
        )
    bad = v <= 0
    if bad.any():
        raise EvalkitInputError(
            f"{variance} must be positive (sampling variances); non-positive at {describe_rows(labels, bad)}."
        )
    return y, v


def prepare(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    moderators: str | None = None,
) -> MetaData:
    """Check the columns and build the moderator matrix (intercept only without
    ``moderators``, a formulaic right-hand side such as ``"dosage + C(format)"``)."""
    if not isinstance(data, pd.DataFrame):
        raise EvalkitInputError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    y, v = _effects_and_variances(data, effect, variance)
    if moderators is None:
        return MetaData(y, v, np.ones((y.size, 1)), [INTERCEPT], data.index, None, True, data)
    spec_formula = read_formula(moderator_formula(moderators), what="moderator formula")
    used = sorted(spec_formula.required_variables)
    require_columns(data, [str(u) for u in used])
    for name in used:
        column = data[str(name)]
        text = column.dtype == object or pd.api.types.is_string_dtype(column)
        if text and not declared_categorical(moderators, str(name)):
            check_text_in_numbers(str(name), column.dropna())
        missing = data[str(name)].isna().to_numpy()
        if missing.any():
            raise EvalkitInputError(
                f"moderator {name!r} has missing values at {describe_rows(list(data.index), missing)}; "
                "drop or impute those rows first (nothing is dropped silently)."
            )
    matrix = spec_formula.get_model_matrix(data)
    x = np.asarray(matrix, dtype=np.float64)
    terms = [str(c) for c in matrix.columns]
    _check_design(x, terms)
    has_intercept = INTERCEPT in terms
    return MetaData(y, v, x, terms, data.index, matrix.model_spec, has_intercept, data)


def _check_design(x: np.ndarray, terms: list[str]) -> None:
    for j, term in enumerate(terms):
        if term != INTERCEPT and np.ptp(x[:, j]) == 0:
            raise EvalkitInputError(f"moderator term {term!r} does not vary across effect sizes.")
    collinear = collinear_terms(x, terms)
    if collinear:
        raise EvalkitInputError(
            f"moderators are collinear: {', '.join(collinear)} add nothing to the terms before them."
        )
    if x.shape[0] <= x.shape[1]:
        raise EvalkitInputError(
            f"{x.shape[0]} effect sizes cannot estimate {x.shape[1]} coefficients."
        )


def new_design(spec: ModelSpec | None, newdata: Any) -> np.ndarray:
    """Model matrix for new moderator values, reusing the fitted encoding."""
    if spec is None:
        raise EvalkitInputError("this model has no moderators; predict() takes no new data.")
    frame = pd.DataFrame(newdata)
    needed = sorted(str(v) for v in spec.formula.required_variables)
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise EvalkitInputError(
            f"predict() needs the moderator column(s) {', '.join(missing)}; "
            f"the new data has {', '.join(map(str, frame.columns)) or 'none'}."
        )
    return np.asarray(spec.get_model_matrix(frame), dtype=np.float64)


def moderator_formula(moderators: str) -> str:
    """The right-hand side of a moderator formula, refusing a two-sided one (the effect
    column is named by ``effect=``)."""
    if not isinstance(moderators, str) or not moderators.strip():
        raise EvalkitInputError(
            f"moderators must be a formula's right-hand side such as 'dosage + C(format)', got {moderators!r}."
        )
    if "~" in moderators:
        raise EvalkitInputError(
            f"moderators={moderators!r} has a '~': give only the right-hand side "
            "(the effect column is named by effect=)."
        )
    return moderators


def model_label(effect: str, moderators: str | None) -> str:
    """A formula naming the model, for summaries: ``"yi ~ dosage"`` or ``"yi ~ 1"``."""
    return f"{effect} ~ {moderators if moderators is not None else '1'}"
