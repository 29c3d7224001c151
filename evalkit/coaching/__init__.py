"""The coaching evaluation: dosage, instruction and achievement model sequences,
moderation by school conditions, quasi-experimental designs and several districts."""

from evalkit.coaching.dosage import coaching_dosage, school_year
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

__all__ = [
    "JohnsonNeyman",
    "ModelSequence",
    "achievement_models",
    "coaching_dosage",
    "fit_sequence",
    "instruction_models",
    "johnson_neyman",
    "moderation_plot",
    "school_year",
    "simple_slopes",
    "standardize_within",
]
