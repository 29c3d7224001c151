"""Cluster bootstrap of a multilevel mediation model.

The highest-level clusters (schools, or teachers in a two-level design) are drawn with
replacement, each draw relabelled as a new cluster, and both equations refitted; the
percentile intervals of the replicates' paths and effects are the bootstrap intervals
(the cluster bootstrap respects the dependence within clusters; e.g. Field & Welsh
2007, J. R. Stat. Soc. B 69(3), 369-390). A moderator keeps the centring of the
original data, so every replicate estimates the same quantities.
"""

from __future__ import annotations

import warnings as pywarnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, EvalkitWarning
from evalkit.mediation._design import MediationDesign
from evalkit.mediation._draws import derived


def resample_clusters(
    frame: pd.DataFrame, clusters: tuple[str, ...], rng: np.random.Generator
) -> pd.DataFrame:
    """A bootstrap sample of whole top-level clusters, relabelled ``"b0"``, ``"b1"``, …
    (their lower units prefixed with the new label, so that a school drawn twice
    brings two sets of teachers)."""
    top = clusters[0]
    codes, uniques = pd.factorize(frame[top].to_numpy())
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    chosen = rng.integers(0, len(uniques), size=len(uniques))
    pieces = [order[starts[c] : starts[c + 1]] for c in chosen]
    sample = frame.iloc[np.concatenate(pieces)].copy()
    new = pd.Series(
        np.repeat([f"b{k}" for k in range(len(chosen))], [p.size for p in pieces]),
        index=sample.index,
    )
    sample[top] = new
    for lower in clusters[1:]:
        sample[lower] = new + "/" + sample[lower].astype(str)
    return sample.reset_index(drop=True)


def cluster_bootstrap(
    frame: pd.DataFrame,
    found: MediationDesign,
    refit: Callable[[pd.DataFrame], pd.Series],
    replicates: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Paths and effects of ``replicates`` cluster-bootstrap samples (one row each);
    ``attrs["failed"]`` counts samples whose equations could not be fitted."""
    rows = []
    failed = 0
    for _ in range(replicates):
        sample = resample_clusters(frame, found.clusters, rng)
        try:
            with pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore", EvalkitWarning)
                point = refit(sample)
        except (EvalkitInputError, np.linalg.LinAlgError):
            failed += 1
            continue
        values = {str(role): float(v) for role, v in point.items()}
        values.update(derived(values, found.moderation))
        rows.append(values)
    table = pd.DataFrame(rows)
    table.attrs["failed"] = failed
    return table
