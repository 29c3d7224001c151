"""The levels of a multilevel mediation design and the two equations it implies.

A variable's level is the highest grouping level within whose units it is constant
(level 1: it varies between rows). The design is written treatment-mediator-outcome
("2-2-1": teacher-level coaching and instruction, student achievement). Only the part
of the mediator that varies at the treatment's level or above can carry a treatment
assigned at that level (Krull & MacKinnon 2001, Multivariate Behav. Res. 36(2);
Zhang, Zyphur & Preacher 2009, Organ. Res. Methods 12(4), 695-719), so a mediator
measured below the treatment's level is split into its mean over the treatment's
units (the *between* part, whose coefficient is the b path) and the deviation from
that mean (the *within* part).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, describe_rows

Design = Literal["2-2-1", "2-1-1", "3-3-1", "3-2-1", "3-1-1"]
Moderation = Literal["first", "second", "both"]
SUPPORTED: tuple[str, ...] = ("2-2-1", "2-1-1", "3-3-1", "3-2-1", "3-1-1")


@dataclass(frozen=True)
class MediationDesign:
    """What varies where, and the formulas of the two equations.

    Attributes
    ----------
    design
        ``"2-2-1"`` and so on: the levels of treatment, mediator and outcome.
    treatment, mediator, outcome
        Their column names.
    clusters
        Grouping columns, highest level first.
    level_of
        Level (1 = rows) of each variable used.
    treatment_level, mediator_level
        Levels of the treatment and the mediator.
    mediator_formula, outcome_formula
        The lme4-style formulas of the a and b equations (``None`` random part
        when the mediator's units are the highest clusters: a single-level model).
    mediator_units
        The grouping column whose units carry one mediator value each (``None`` when
        the mediator varies between rows).
    b_term
        The outcome equation's coefficient that is the b path.
    within_term
        The within part of a split mediator (``None`` when the mediator is not split).
    a_covariates, b_covariates
        Covariates in each equation (the moderator, centred, is among both).
    moderator_centre
        The moderator's mean over the mediator's units, subtracted before fitting.
    """

    design: str
    treatment: str
    mediator: str
    outcome: str
    clusters: tuple[str, ...]
    level_of: dict[str, int]
    treatment_level: int
    mediator_level: int
    mediator_formula: str
    mediator_random: bool
    outcome_formula: str
    mediator_units: str | None
    b_term: str
    within_term: str | None
    a_covariates: tuple[str, ...]
    b_covariates: tuple[str, ...]
    moderator: str | None
    moderation: str | None
    moderator_centre: float

    @property
    def b_level(self) -> int:
        """The level of the mediator part whose coefficient is the b path."""
        return self.treatment_level if self.within_term is not None else self.mediator_level


def unit_keys(data: pd.DataFrame, clusters: Sequence[str], level: int) -> pd.Series:
    """One integer key per row naming its unit at ``level`` (2 = lowest cluster), the
    grouping columns taken together so that teacher "3" in school "A" differs from
    teacher "3" in "B"."""
    columns = list(clusters[: len(clusters) - level + 2])
    return data.groupby(columns, sort=False, dropna=False).ngroup()


def level_of(data: pd.DataFrame, column: str, clusters: Sequence[str]) -> int:
    """The highest level within whose units ``column`` is constant (1: varies by row)."""
    found = 1
    for level in range(2, len(clusters) + 2):
        keys = unit_keys(data, clusters, level)
        if (data[column].groupby(keys.to_numpy()).nunique(dropna=False) > 1).any():
            break
        found = level
    return found


def check_nesting(data: pd.DataFrame, clusters: Sequence[str]) -> None:
    """Each unit of a lower grouping column lies in one unit of the column above it."""
    for upper, lower in itertools.pairwise(clusters):
        homes = data.groupby(lower, sort=False)[upper].nunique()
        moved = homes[homes > 1]
        if len(moved):
            labels = ", ".join(map(str, moved.index[:5]))
            raise EvalkitInputError(
                f"{lower!r} is not nested in {upper!r}: {len(moved)} {lower} ID(s) appear in "
                f"more than one {upper} ({labels}). Give such units distinct IDs (one per "
                f"{upper}) or drop the rows that moved; mediation needs nested units."
            )


def _numeric(data: pd.DataFrame, column: str, role: str) -> None:
    values = data[column]
    if not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)):
        text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        where = describe_rows(list(data.index), text) if text.any() else "its values"
        raise EvalkitInputError(
            f"the {role} column {column!r} must be numeric (0/1 for a treatment); it holds "
            f"text or true/false at {where}. Recode it, e.g. "
            f"data[{column!r}].map({{'Yes': 1, 'No': 0}})."
        )


def _identifier(name: str, role: str) -> None:
    if not name.isidentifier():
        raise EvalkitInputError(
            f"the {role} column {name!r} is not a plain name (letters, digits, underscores); "
            "rename it, e.g. data.rename(columns={...}), so that it can enter a formula."
        )


def build_design(
    data: pd.DataFrame,
    *,
    treatment: str,
    mediator: str,
    outcome: str,
    clusters: tuple[str, ...],
    covariates: tuple[str, ...],
    moderator: str | None,
    moderation: str | None,
    design: str | None,
) -> tuple[MediationDesign, pd.DataFrame]:
    """Identify the design and return it with the working frame (split mediator and
    centred moderator added)."""
    roles = {"treatment": treatment, "mediator": mediator, "outcome": outcome}
    for role, name in roles.items():
        _identifier(name, role)
        _numeric(data, name, role)
    for name in covariates:
        _identifier(name, "covariate")
    if moderator is not None:
        _identifier(moderator, "moderator")
        _numeric(data, moderator, "moderator")
    check_nesting(data, clusters)
    levels = {
        treatment: level_of(data, treatment, clusters),
        mediator: level_of(data, mediator, clusters),
        outcome: level_of(data, outcome, clusters),
    }
    found = f"{levels[treatment]}-{levels[mediator]}-{levels[outcome]}"
    names = {1: "rows", **{k + 2: c for k, c in enumerate(reversed(clusters))}}
    where = (
        f"{treatment!r} varies at level {levels[treatment]} ({names[levels[treatment]]}), "
        f"{mediator!r} at level {levels[mediator]} ({names[levels[mediator]]}), "
        f"{outcome!r} at level {levels[outcome]} ({names[levels[outcome]]})"
    )
    if found not in SUPPORTED:
        raise EvalkitInputError(
            f"the data make a {found} design ({where}); supported designs are "
            f"{', '.join(SUPPORTED)}: the outcome varies between rows and the treatment "
            "is assigned at the mediator's level or above. Check that the outcome is a "
            "student-level column and the cluster columns are the right ones."
        )
    if design is not None and design != found:
        raise EvalkitInputError(f"design={design!r} was given, but {where}: a {found} design.")
    frame = data.copy()
    treat_level, med_level = levels[treatment], levels[mediator]
    b_term, within_term = mediator, None
    if med_level < treat_level:
        b_term, within_term = f"{mediator}_between", f"{mediator}_within"
        for name in (b_term, within_term):
            if name in data.columns:
                raise EvalkitInputError(
                    f"the data already hold a column {name!r}; mediation() adds it to split "
                    f"the mediator. Rename that column."
                )
        frame[b_term] = _between(frame, mediator, clusters, treat_level, med_level)
        frame[within_term] = frame[mediator] - frame[b_term]
    for name in covariates:
        levels[name] = level_of(data, name, clusters)
    a_covariates = tuple(c for c in covariates if levels[c] >= med_level)
    centre = 0.0
    if moderator is not None:
        levels[moderator] = level_of(data, moderator, clusters)
        if levels[moderator] < med_level:
            raise EvalkitInputError(
                f"the moderator {moderator!r} varies below the mediator's units "
                f"({names[med_level]}); a moderator of the mediation paths must be constant "
                f"within each unit of {names[med_level]}."
            )
        unit = units_mask(frame, clusters, med_level)
        centre = float(frame.loc[unit, moderator].mean())
        frame[moderator] = frame[moderator] - centre
    formulas = _formulas(
        treatment=treatment,
        mediator=mediator,
        outcome=outcome,
        clusters=clusters,
        med_level=med_level,
        b_terms=(b_term,) if within_term is None else (within_term, b_term),
        b_term=b_term,
        a_covariates=a_covariates,
        b_covariates=covariates,
        moderator=moderator,
        moderation=moderation,
    )
    return (
        MediationDesign(
            design=found,
            treatment=treatment,
            mediator=mediator,
            outcome=outcome,
            clusters=clusters,
            level_of=levels,
            treatment_level=treat_level,
            mediator_level=med_level,
            mediator_formula=formulas[0],
            mediator_random=med_level <= len(clusters),
            outcome_formula=formulas[1],
            mediator_units=None if med_level == 1 else clusters[len(clusters) - med_level + 1],
            b_term=b_term,
            within_term=within_term,
            a_covariates=a_covariates,
            b_covariates=covariates,
            moderator=moderator,
            moderation=moderation,
            moderator_centre=centre,
        ),
        frame,
    )


def units_mask(frame: pd.DataFrame, clusters: Sequence[str], level: int) -> np.ndarray:
    """Boolean mask selecting one row per unit at ``level`` (all rows at level 1)."""
    if level == 1:
        return np.ones(len(frame), dtype=bool)
    return ~unit_keys(frame, clusters, level).duplicated().to_numpy()


def _between(
    frame: pd.DataFrame, mediator: str, clusters: Sequence[str], treat_level: int, med_level: int
) -> np.ndarray:
    """Mean of the mediator over its units within each unit of the treatment's level."""
    one = units_mask(frame, clusters, med_level)
    keys = unit_keys(frame, clusters, treat_level).to_numpy()
    means = pd.Series(frame[mediator].to_numpy()[one]).groupby(keys[one]).mean()
    return means.reindex(keys).to_numpy()


def _random_part(clusters: Sequence[str], above_level: int) -> str:
    """lme4 random intercepts for every grouping level above ``above_level``."""
    kept = list(clusters[: len(clusters) - above_level + 1])
    if not kept:
        return ""
    return f" + (1 | {'/'.join(kept)})"


def _formulas(
    *,
    treatment: str,
    mediator: str,
    outcome: str,
    clusters: Sequence[str],
    med_level: int,
    b_terms: tuple[str, ...],
    b_term: str,
    a_covariates: tuple[str, ...],
    b_covariates: tuple[str, ...],
    moderator: str | None,
    moderation: str | None,
) -> tuple[str, str]:
    a_rhs = [treatment]
    b_rhs = [treatment, *b_terms]
    if moderator is not None:
        a_rhs.append(moderator)
        b_rhs.append(moderator)
        if moderation in ("first", "both"):
            a_rhs.append(f"{treatment}:{moderator}")
        if moderation in ("second", "both"):
            b_rhs.append(f"{b_term}:{moderator}")
    a_formula = f"{mediator} ~ {' + '.join([*a_rhs, *a_covariates])}"
    a_formula += _random_part(clusters, med_level)
    b_formula = f"{outcome} ~ {' + '.join([*b_rhs, *b_covariates])}"
    b_formula += _random_part(clusters, 1)
    return a_formula, b_formula
