"""Cluster-robust variance estimation for meta-analytic models (clubSandwich's
CR0–CR2 on the fitted model's marginal covariance; the algebra is in
:mod:`evalkit.core.robust`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import (
    EvalkitInputError,
    RobustResults,
    RobustType,
    check_option,
    sandwich,
)
from evalkit.meta._results import MetaResults


def robust(result: MetaResults, cluster: Any, *, type: RobustType = "CR2") -> RobustResults:
    """Cluster-robust (sandwich) standard errors with small-sample corrections.

    Parameters
    ----------
    result
        A fitted model from :mod:`evalkit.meta`.
    cluster
        One cluster label per effect size (e.g. the study column); clusters must
        contain whole model blocks.
    type
        ``"CR2"`` (bias-reduced, default), ``"CR1"`` (J/(J−1) scaling) or ``"CR0"``.

    Returns
    -------
    RobustResults
        Coefficients with robust SEs and Satterthwaite degrees of freedom per
        coefficient; ``warnings`` flags df below 4, where CR2 t tests are unreliable
        and the cluster wild bootstrap is the better choice.
    """
    check_option("type", type, RobustType)
    labels = np.asarray(cluster)
    if labels.shape[0] != result.y.size:
        raise EvalkitInputError(
            f"cluster has {labels.shape[0]} labels for {result.y.size} effect sizes."
        )
    if pd.isna(pd.Series(labels)).any():
        raise EvalkitInputError("cluster has missing labels.")
    blocks = result.marginal_blocks(labels)
    facts = dict(result.facts)
    return sandwich(
        result.params,
        result.x,
        result.y,
        blocks,
        type=type,
        model=f"{result.model}, {type} robust SEs",
        facts=facts,
        warnings=result.warnings,
        n_groups=dict(result.n_groups),
        template=result,
    )
