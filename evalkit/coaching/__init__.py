"""The coaching evaluation: dosage, instruction and achievement model sequences,
moderation by school conditions, quasi-experimental designs and several districts."""

from evalkit.coaching import qed
from evalkit.coaching.districts import (
    DistrictSynthesis,
    district_estimates,
    four_level,
    outcome_domain_table,
    synthesize_districts,
)
from evalkit.coaching.dosage import coaching_dosage, school_year
from evalkit.coaching.evaluation import (
    Evaluation,
    effect_summary,
    evaluate_district,
    moderation_table,
    write_report,
)
from evalkit.coaching.intake import LIKERT_SCALES, REQUIRED, DistrictData
from evalkit.coaching.mediation_step import MediationStep, mediation_step, mediation_table
from evalkit.coaching.models import (
    ModelSequence,
    achievement_models,
    fit_sequence,
    instruction_models,
    standardize_within,
)
from evalkit.coaching.moderation import (
    JohnsonNeyman,
    johnson_neyman,
    moderation_plot,
    simple_slopes,
)
from evalkit.coaching.synthesis import (
    PROGRAM_FEATURES,
    Synthesis,
    effect_sizes_from_reports,
    moderator_table,
    selection_sensitivity,
    synthesize,
)

__all__ = [
    "LIKERT_SCALES",
    "PROGRAM_FEATURES",
    "REQUIRED",
    "DistrictData",
    "DistrictSynthesis",
    "Evaluation",
    "JohnsonNeyman",
    "MediationStep",
    "ModelSequence",
    "Synthesis",
    "achievement_models",
    "coaching_dosage",
    "district_estimates",
    "effect_sizes_from_reports",
    "effect_summary",
    "evaluate_district",
    "fit_sequence",
    "four_level",
    "instruction_models",
    "johnson_neyman",
    "mediation_step",
    "mediation_table",
    "moderation_plot",
    "moderation_table",
    "moderator_table",
    "outcome_domain_table",
    "qed",
    "school_year",
    "selection_sensitivity",
    "simple_slopes",
    "standardize_within",
    "synthesize",
    "synthesize_districts",
    "write_report",
]
