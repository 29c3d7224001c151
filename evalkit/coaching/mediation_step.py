"""The evaluation's mediation step: does coaching raise achievement through instruction?

A teacher's instruction is the mean of their observation scores; coaching and
instruction are teacher-level and achievement student-level (a 2-2-1 design when
teachers are coached within schools, 3-2-1 when whole schools are), fitted by
:func:`evalkit.mediation.mediation` with the prior score and the school conditions in
the equations. Observation scores carry rater and lesson error, so the b path is also
reported corrected for the reliability of a teacher's mean score that the instruction
models estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from evalkit.coaching.models import ModelSequence
from evalkit.core import EvalkitInputError, merge_lookup
from evalkit.mediation import MediationResults, mediation
from evalkit.tables import Table, fmt_number

ROWS = {
    "a": "a: coaching → instruction (rubric points)",
    "b": "b: instruction → achievement (per rubric point)",
    "direct": "Direct effect on achievement",
    "indirect": "Indirect effect through instruction",
    "total": "Total effect on achievement",
}


@dataclass(frozen=True)
class MediationStep:
    """The mediation analysis as observed and with b corrected for measurement error
    (``None`` when the instruction models report no reliability)."""

    observed: MediationResults
    corrected: MediationResults | None
    table: Table


def teacher_instruction(observations: pd.DataFrame, *, score: str = "score") -> pd.Series:
    """Each teacher's mean observation score (the mediator), indexed by ``teacher_id``."""
    if score not in observations.columns:
        raise EvalkitInputError(f"the observations table has no {score!r} column.")
    return observations.groupby("teacher_id")[score].mean().rename("instruction")


def mediation_step(
    students: pd.DataFrame,
    observations: pd.DataFrame,
    instruction: ModelSequence,
    *,
    conditions: Sequence[str],
    covariates: Sequence[str] = (),
    seed: int = 20261203,
) -> MediationStep:
    """Fit the mediation model on the students table (with ``coached`` and the school
    conditions merged in) and the teachers' mean observation scores."""
    if "instruction" in students.columns:
        raise EvalkitInputError(
            "the students table already has an 'instruction' column; the mediation step "
            "adds the teachers' mean observation scores under that name."
        )
    scores = teacher_instruction(observations).reset_index()
    frame = merge_lookup(students, scores, "teacher_id", name="the teachers' observation scores")
    prior = ["prior"] if "prior" in frame.columns else []
    arguments = dict(
        treatment="coached",
        mediator="instruction",
        outcome="achievement",
        clusters=("school_id", "teacher_id"),
        covariates=[*prior, *conditions, *covariates],
        seed=seed,
    )
    observed = mediation(frame, **arguments)  # type: ignore[arg-type]
    corrected = None
    if instruction.reliability is not None:
        corrected = mediation(frame, mediator_reliability=instruction.reliability, **arguments)  # type: ignore[arg-type]
    return MediationStep(observed, corrected, mediation_table(observed, corrected))


def _cells(result: MediationResults) -> dict[str, list[str]]:
    table = result.tidy().set_index("term")
    cells = {}
    for term in ROWS:
        estimate, low, high = table.loc[term, ["estimate", "ci_low", "ci_high"]].to_numpy(float)
        cells[term] = [
            fmt_number(float(estimate), 3),
            f"[{fmt_number(float(low), 3)}, {fmt_number(float(high), 3)}]",
        ]
    return cells


def mediation_table(observed: MediationResults, corrected: MediationResults | None) -> Table:
    """Paths, direct, indirect and total effects, as observed and corrected."""
    columns = ["Estimate", "95% CI"]
    first = _cells(observed)
    second = _cells(corrected) if corrected is not None else None
    body = {}
    for term, label in ROWS.items():
        body[label] = first[term] + (second[term] if second else [])
    if second:
        columns += ["Corrected", "95% CI (corrected)"]
    facts = observed.facts
    notes = [
        f"Multilevel mediation ({facts['design']}): mediator equation "
        f"{facts['mediator_equation']}; outcome equation {facts['outcome_equation']} "
        "(REML, Satterthwaite df for the paths).",
        f"Indirect and total effects: {facts['n_draws']:,}-draw Monte Carlo percentile "
        "intervals (Preacher & Selig 2012). Effects on achievement are in its SD units "
        "(the achievement scale is a z metric).",
        f"Unmeasured confounding of instruction and achievement: the indirect effect "
        f"vanishes if the teacher-level errors of the two equations correlate "
        f"ρ = {facts['rho_at_zero']:.2f} (Imai, Keele & Yamamoto 2010).",
    ]
    if corrected is not None:
        notes.append(
            f"Corrected: b and the direct effect corrected for the unreliability of a "
            f"teacher's mean observation score (reliability "
            f"{corrected.facts['mediator_reliability']:.2f} from the instruction models; "
            f"attenuation factor given coaching and covariates "
            f"{corrected.facts['attenuation']:.2f})."
        )
    if observed.dropped.n:
        notes.append(observed.dropped.describe())
    notes.extend(observed.warnings)
    return Table(
        body=pd.DataFrame(body, index=columns).T,
        title="Coaching → instruction → achievement (mediation)",
        notes=tuple(notes),
        stub_header="Path",
    )
