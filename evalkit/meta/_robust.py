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
    describe_rows,
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
        The cluster of each effect size: a column name (``"study"``), a Series
        (aligned on the data's row labels) or an array in row order; clusters must
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
    labels = cluster_labels(result, cluster)
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


def cluster_labels(result: MetaResults, cluster: Any) -> np.ndarray:
    """One cluster label per effect size of ``result``.

    ``cluster`` is a column of the fitted data (by name), a Series — aligned on the
    fitted rows' labels, never by position — or an array in the rows' order.
    """
    if isinstance(cluster, str):
        if result.data is None or cluster not in result.data.columns:
            raise EvalkitInputError(
                f"cluster={cluster!r} is not a column of the data this model was fitted to."
            )
        cluster = result.data[cluster]
    aligned = len(result.labels) == result.y.size
    if isinstance(cluster, pd.Series) and aligned and not cluster.index.equals(result.labels):
        unknown = result.labels.difference(cluster.index)
        if len(unknown) or cluster.index.has_duplicates:
            shown = ", ".join(map(str, unknown[:5])) or "duplicated labels"
            raise EvalkitInputError(
                f"cluster's index does not match the effect sizes' rows ({shown}); "
                "pass the column name, a Series indexed like the data, or an array."
            )
        cluster = cluster.reindex(result.labels)
    labels = np.asarray(cluster)
    if labels.ndim != 1 or labels.shape[0] != result.y.size:
        raise EvalkitInputError(
            f"cluster has {labels.shape[0] if labels.ndim else 1} labels for "
            f"{result.y.size} effect sizes."
        )
    missing = pd.isna(pd.Series(labels)).to_numpy()
    if missing.any():
        rows = describe_rows(list(result.labels) or list(range(labels.size)), missing)
        raise EvalkitInputError(f"cluster has missing labels at {rows}.")
    return labels
