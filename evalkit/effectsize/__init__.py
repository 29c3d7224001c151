"""Effect sizes under the What Works Clearinghouse conventions.

Every function returns an :class:`EffectSize` with ``estimate``, ``variance``,
``se``, ``ci_low``, ``ci_high`` and ``p_value``, scalar or one entry per input row.
"""

from evalkit.effectsize._clustered import (
    cluster_adjusted_g,
    cluster_df,
    clustered_variance,
    design_effect,
    gamma_factor,
    one_arm_design_effect,
    one_arm_gamma,
)
from evalkit.effectsize._corrections import small_sample_factor
from evalkit.effectsize._record import EffectSize
from evalkit.effectsize._smd import (
    COX_SCALE,
    cox_index,
    effect_size_difference,
    gain_difference,
    hedges_g,
    hedges_g_adjusted,
    hedges_g_from_f,
    hedges_g_from_t,
    pooled_sd,
)
from evalkit.effectsize._wwc import (
    ATTRITION_BOUNDARIES,
    SUBSTANTIVELY_IMPORTANT,
    Attrition,
    attrition,
    baseline_equivalence,
    benjamini_hochberg,
    improvement_index,
    pool_fixed,
    substantively_important,
)

__all__ = [
    "ATTRITION_BOUNDARIES",
    "COX_SCALE",
    "SUBSTANTIVELY_IMPORTANT",
    "Attrition",
    "EffectSize",
    "attrition",
    "baseline_equivalence",
    "benjamini_hochberg",
    "cluster_adjusted_g",
    "cluster_df",
    "clustered_variance",
    "cox_index",
    "design_effect",
    "effect_size_difference",
    "gain_difference",
    "gamma_factor",
    "hedges_g",
    "hedges_g_adjusted",
    "hedges_g_from_f",
    "hedges_g_from_t",
    "improvement_index",
    "one_arm_design_effect",
    "one_arm_gamma",
    "pool_fixed",
    "pooled_sd",
    "small_sample_factor",
    "substantively_important",
]
