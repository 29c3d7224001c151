"""Cluster-robust (CR2) standard errors for the fixed effects of a mixed model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalkit.core import EvalkitInputError, RobustResults, RobustType, check_option, sandwich
from evalkit.multilevel.frame import Marginal, clusters
from evalkit.multilevel.spec import require_fit

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults


def robust(result: LMMResults, *, type: RobustType = "CR2") -> RobustResults:
    """Sandwich SEs clustered at the top grouping level, with Satterthwaite df.

    The working model is the fitted marginal covariance ``V_k`` of each top-level
    cluster, so this is clubSandwich's ``vcovCR(type = "CR2")`` and
    ``coef_test(test = "Satterthwaite")`` applied to the same model fitted by
    ``nlme::lme`` (Pustejovsky & Tipton 2018, J. Bus. Econ. Stat. 36(4)). CR2 is
    defined on ``n_k × n_k`` matrices, so its cost grows with the square of the
    cluster size.
    """
    require_fit(result, "robust()")
    check_option("type", type, RobustType)
    if result.frame is None:
        raise EvalkitInputError(
            "this fit kept no model frame; refit it with evalkit.multilevel.lmm."
        )
    if result.frame.crossed:
        raise EvalkitInputError(
            "robust() clusters on the top level of nested random effects; this model's "
            "factors cross, so no clustering variable contains all the dependence (as "
            "clubSandwich, which refuses non-nested lmer fits). Use the model-based SEs "
            "with Satterthwaite or Kenward–Roger df."
        )
    factors = result.factors
    blocks = [
        (cluster.rows, Marginal.at(cluster, factors, result.sigma2).dense())
        for cluster in clusters(result.frame)
    ]
    top = result.levels[-1].name
    return sandwich(
        result.params,
        result.frame.x,
        result.frame.y,
        blocks,
        type=type,
        model=f"{result.model}, {type} SEs clustered by {top}",
        facts=dict(result.facts),
        warnings=result.warnings,
        n_groups=dict(result.n_groups),
        template=result,
    )
