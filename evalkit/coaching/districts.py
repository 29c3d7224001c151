"""Several districts: analyse each and synthesise with a meta-analysis, or fit the
districts as a fourth level; and Benjamini–Hochberg across outcomes in a domain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from evalkit.coaching.models import ModelSequence
from evalkit.core import EvalkitInputError
from evalkit.effectsize import benjamini_hochberg
from evalkit.meta import MetaResults, meta_regression, random_effects
from evalkit.multilevel import LMMResults, effect_size, lmm
from evalkit.tables import Table, fmt_number, fmt_p


@dataclass(frozen=True)
class DistrictSynthesis:
    """District estimates and their random-effects synthesis."""

    estimates: pd.DataFrame  # district, effect_size, variance, n, moderators
    pooled: MetaResults
    moderated: MetaResults | None


def district_estimates(
    sequences: Mapping[str, ModelSequence],
    *,
    model: str = "Covariates",
    district_data: pd.DataFrame | None = None,
    district: str = "district",
) -> pd.DataFrame:
    """One standardised coaching effect per district (from each district's ``model``)
    with its sampling variance, joined to ``district_data`` (one row per district with
    the district-level moderators)."""
    rows = []
    for name, sequence in sequences.items():
        if model not in sequence.effects.index:
            raise EvalkitInputError(
                f"district {name}: the sequence has no {model!r} model with a treatment effect."
            )
        e = sequence.effects.loc[model]
        rows.append(
            {
                district: name,
                "effect_size": e["effect_size"],
                "variance": e["effect_size_std_error"] ** 2,
                "n": sequence.models[model].nobs,
            }
        )
    frame = pd.DataFrame(rows)
    if district_data is not None:
        if district not in district_data.columns:
            raise EvalkitInputError(f"district_data needs a {district!r} column.")
        ids = district_data[district]
        missing = sorted(set(frame[district]) - set(ids.astype(str)) - set(ids))
        if missing:
            raise EvalkitInputError(
                f"no moderator values for district(s) {', '.join(map(str, missing))}."
            )
        repeated = ids[ids.duplicated()].unique().tolist()
        if repeated:
            raise EvalkitInputError(
                f"district_data has several rows for district(s) {', '.join(map(str, repeated))}."
            )
        frame = frame.merge(district_data, on=district, how="left")
    return frame


def synthesize_districts(
    sequences: Mapping[str, ModelSequence],
    *,
    model: str = "Covariates",
    district_data: pd.DataFrame | None = None,
    moderators: str | None = None,
    district: str = "district",
    test: str = "knha",
) -> DistrictSynthesis:
    """Random-effects synthesis of the district effects (Knapp–Hartung by default:
    few districts), and a meta-regression on district moderators such as the
    instructional infrastructure's specificity, inclusivity, authority and alignment
    (``moderators="specificity + alignment"``, a right-hand side over the columns of
    ``district_data``)."""
    estimates = district_estimates(
        sequences, model=model, district_data=district_data, district=district
    )
    if len(estimates) < 2:
        raise EvalkitInputError("a synthesis needs at least two districts.")
    pooled = random_effects(estimates, effect="effect_size", variance="variance", test=test)  # type: ignore[arg-type]
    moderated = None
    if moderators:
        moderated = meta_regression(
            estimates,
            effect="effect_size",
            variance="variance",
            moderators=moderators,
            test=test,  # type: ignore[arg-type]
        )
    return DistrictSynthesis(estimates, pooled, moderated)


def four_level(
    data: pd.DataFrame,
    formula_fixed: str,
    *,
    district: str = "district",
    school: str = "school_id",
    teacher: str = "teacher_id",
    treatment: str = "coached",
    reference_fixed: str | None = None,
) -> tuple[LMMResults, float, float]:
    """The districts as a fourth level: ``fixed + (1 | district) + (1 | district:school)
    + (1 | district:school:teacher)``; returns the fit and δ_T with its SE against the
    null model of the same levels (comparable to the synthesis's pooled estimate)."""
    random = f"(1 | {district}) + (1 | {district}:{school}) + (1 | {district}:{school}:{teacher})"
    outcome = formula_fixed.split("~")[0].strip()
    null = lmm(f"{outcome} ~ 1 + {random}", data)
    fit = lmm(f"{formula_fixed} + {random}", data, reference=null)
    es = effect_size(fit, treatment, reference=null)
    return fit, es.estimate, es.std_error


def outcome_domain_table(
    results: Mapping[str, LMMResults | ModelSequence],
    *,
    term: str = "coached",
    alpha: float = 0.05,
    title: str = "Coaching effects across outcomes (Benjamini–Hochberg within the domain)",
    effect: Callable[[str, LMMResults | ModelSequence], float] | None = None,
) -> Table:
    """Estimates of ``term`` for several outcomes in one domain with unadjusted and
    Benjamini–Hochberg-adjusted p-values (WWC's correction for multiple comparisons)."""
    rows = []
    for name, result in results.items():
        fit = list(result.models.values())[-1] if isinstance(result, ModelSequence) else result
        if term not in fit.params.index:
            raise EvalkitInputError(f"outcome {name}: the model has no {term!r} term.")
        rows.append(
            {
                "outcome": name,
                "estimate": float(fit.params[term]),
                "std_error": float(fit.std_errors[term]),
                "p_value": float(fit.pvalues[term]),
                "effect_size": effect(name, result) if effect else float("nan"),
            }
        )
    frame = pd.DataFrame(rows).set_index("outcome")
    adjusted = benjamini_hochberg(frame["p_value"].to_numpy(), alpha=alpha)
    frame["p_adjusted"] = adjusted["p_adjusted"].to_numpy()
    frame["significant"] = (
        adjusted["reject"].to_numpy() if "reject" in adjusted else frame["p_adjusted"] < alpha
    )
    body = pd.DataFrame(
        {
            "Estimate": [fmt_number(v, 2) for v in frame["estimate"]],
            "SE": [fmt_number(v, 2) for v in frame["std_error"]],
            "Effect size": ["" if pd.isna(v) else fmt_number(v, 2) for v in frame["effect_size"]],
            "p": [fmt_p(v) for v in frame["p_value"]],
            "BH-adjusted p": [fmt_p(v) for v in frame["p_adjusted"]],
            "Significant after adjustment": ["yes" if s else "no" for s in frame["significant"]],
        },
        index=frame.index,
    )
    notes = (
        f"p-values adjusted across the {len(frame)} outcomes of the domain by Benjamini–Hochberg at α = {alpha:g}.",
    )
    return Table(body=body, title=title, notes=notes, data=frame, stub_header="Outcome")
