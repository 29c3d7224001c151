"""The one pass over the rows: cross-products per lowest-level cluster.

For nested grouping levels (lowest first: e.g. teacher within school) and the
column layout ``D = [Z_L, …, Z_1, X, y]`` (random-effect columns of each level from
the lowest up, then the fixed-effect design and the response), the sufficient
statistics of a linear mixed model are ``D_gᵀD_g`` for every lowest-level group g,
plus the map from each group to its parent. Every likelihood evaluation afterwards
costs time proportional to the number of groups, not rows. This step is separate so
that it can later run out of core (DuckDB or Dask over Parquet) and feed the same
optimiser.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError


@dataclass(frozen=True)
class SufficientStats:
    """Cross-products per lowest-level group and the nesting maps.

    Attributes
    ----------
    cross
        ``(G_L, c, c)`` cross-products of ``D = [Z_L, …, Z_1, X, y]`` per lowest group.
    starts
        For each level except the top (lowest first), the start index of each parent
        group's children in the (sorted) child order, for ``np.add.reduceat``.
    q
        Number of random-effect columns per level, lowest first.
    n_groups
        Number of groups per level, lowest first.
    p, n
        Number of fixed effects and of observations.
    group_codes
        For each level (lowest first), the group code (as in the model's labels) of
        each of its groups in the order of ``cross`` and ``starts``; ``None`` for
        statistics that were drawn rather than read from data.
    """

    cross: np.ndarray
    starts: list[np.ndarray]
    q: list[int]
    n_groups: list[int]
    p: int
    n: int
    group_codes: tuple[np.ndarray, ...] | None = None

    def ancestors(self, level: int) -> np.ndarray:
        """For each lowest group, the position of its group at ``level``."""
        position = np.arange(self.cross.shape[0])
        for starts in self.starts[:level]:
            position = np.searchsorted(starts, position, side="right") - 1
        return position

    def level_sums(self, level: int, rows: list[int], columns: list[int]) -> np.ndarray:
        """``Σ cross[:, rows, columns]`` over the rows of each group of ``level``."""
        block = self.cross[:, rows][:, :, columns]
        for starts in self.starts[:level]:
            block = np.add.reduceat(block, starts, axis=0)
        return block


@dataclass(frozen=True)
class Reduction:
    """What the profiled deviance needs at one θ: ``log|M|``, ``XᵀM⁻¹X``, ``XᵀM⁻¹y``
    and ``yᵀM⁻¹y`` (``M = V/σ²``)."""

    logdet: float
    xtmx: np.ndarray
    xtmy: np.ndarray
    ytmy: float


def nesting_order(
    data: pd.DataFrame, groupings: list[tuple[str, ...]], *, allow_crossed: bool = False
) -> tuple[list[int], list[np.ndarray], bool]:
    """Order grouping levels from the lowest (most groups) up and check whether they
    are nested.

    Returns the order, the integer group codes of every grouping (in the order given)
    and whether the levels are crossed (a group of a lower level appears in more than
    one group of the level above it). Crossed levels are an error naming the factors
    unless ``allow_crossed``.
    """
    codes = [group_codes(data, g) for g in groupings]
    counts = [int(c.max()) + 1 if c.size else 0 for c in codes]
    order = sorted(range(len(groupings)), key=lambda i: -counts[i])
    for lower, upper in itertools.pairwise(order):
        if _nested_in(codes[lower], codes[upper], counts[lower]):
            continue
        if allow_crossed:
            return order, codes, True
        pairs = np.unique(codes[lower].astype(np.int64) * counts[upper] + codes[upper])
        children = pairs // counts[upper]
        repeated = children[1:][children[1:] == children[:-1]]
        first = int(repeated[0])
        label = group_labels(data, groupings[lower], codes[lower])[first]
        spread = int(np.sum(children == first))
        low, up = ":".join(groupings[lower]), ":".join(groupings[upper])
        raise EvalkitInputError(
            f"grouping factors {low} and {up} are crossed, not nested ({low} {label} "
            f"appears in {spread} groups of {up}); this engine fits nested designs only "
            "(evalkit's own engine fits crossed ones). If the IDs restart within each "
            "group, write the nesting as (1 | upper/lower)."
        )
    return order, codes, False


def _nested_in(lower: np.ndarray, upper: np.ndarray, groups: int) -> bool:
    """Whether every group of ``lower`` sits in one group of ``upper`` (one pass: each
    row is compared with the upper group some row of its lower group has)."""
    parent = np.empty(groups, dtype=upper.dtype)
    parent[lower] = upper
    return bool(np.array_equal(parent[lower], upper))


def group_codes(data: pd.DataFrame, grouping: tuple[str, ...]) -> np.ndarray:
    """Integer group codes (0, 1, … in order of appearance) of a factor or an
    interaction of factors, for :func:`build`."""
    return data.groupby(list(grouping), sort=False).ngroup().to_numpy()


def group_labels(data: pd.DataFrame, grouping: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    """The label of each group code: the ID, or ``"a:b"`` for an interaction (as lme4)."""
    first = pd.Series(np.arange(codes.size)).groupby(codes).first().to_numpy()
    values = data[list(grouping)].iloc[first]
    if len(grouping) == 1:
        return values.iloc[:, 0].to_numpy()
    return np.array(
        [":".join(map(str, row)) for row in values.itertuples(index=False)], dtype=object
    )


CHUNK = 65_536
"""Rows per block when summing cross-products (bounds the temporary arrays)."""


def build(
    design: np.ndarray,
    levels_codes: list[np.ndarray],
    q: list[int],
    p: int,
) -> SufficientStats:
    """Cross-products per lowest group from the row-level layout ``design`` (n × c).

    ``levels_codes`` holds integer group codes per level, lowest first, each level
    nested in the next.
    """
    n = design.shape[0]
    # Sort rows by the hierarchy (top level first) so children sit next to their parents;
    # files usually arrive sorted, and then no copy is made.
    order = np.lexsort(tuple(levels_codes))
    if not np.all(order[1:] > order[:-1]):
        design = design[order]
        codes = [c[order] for c in levels_codes]
    else:
        codes = list(levels_codes)
    lowest = codes[0]
    boundaries = np.flatnonzero(np.r_[True, lowest[1:] != lowest[:-1]])
    c = design.shape[1]
    cross = np.empty((boundaries.size, c, c))
    # Row blocks of about CHUNK rows cut at group boundaries bound the temporaries.
    cuts = np.searchsorted(boundaries, np.arange(0, n, CHUNK), side="right") - 1
    cuts = np.unique(np.r_[cuts, boundaries.size])
    for first, last in itertools.pairwise(cuts):
        lo = boundaries[first]
        hi = boundaries[last] if last < boundaries.size else n
        block = design[lo:hi]
        local = boundaries[first:last] - lo
        sizes = np.diff(np.r_[local, hi - lo])
        if sizes.size * int(sizes.max()) <= PADDING * (hi - lo):
            cross[first:last] = _padded_products(block, local, sizes)
            continue
        for i in range(c):
            sums = np.add.reduceat(block[:, i : i + 1] * block[:, i:], local, axis=0)
            cross[first:last, i, i:] = sums
            cross[first:last, i:, i] = sums
    starts, group_codes = nesting_starts([lv[boundaries] for lv in codes])
    n_groups = [int(boundaries.size)] + [int(s.size) for s in starts]
    return SufficientStats(
        cross=cross, starts=starts, q=q, n_groups=n_groups, p=p, n=n, group_codes=group_codes
    )


def nesting_starts(
    codes_per_group: list[np.ndarray],
) -> tuple[list[np.ndarray], tuple[np.ndarray, ...]]:
    """From each level's code of every lowest group (groups sorted top level first), the
    start of each parent's children per level and each level's codes in group order."""
    starts = []
    first = np.arange(codes_per_group[0].size)  # first lowest group of each current group
    ordered = [codes_per_group[0]]
    for level in range(1, len(codes_per_group)):
        parent_codes = codes_per_group[level][first]
        child_starts = np.flatnonzero(np.r_[True, parent_codes[1:] != parent_codes[:-1]])
        starts.append(child_starts)
        first = first[child_starts]
        ordered.append(codes_per_group[level][first])
    return starts, tuple(ordered)


def stats_from_groups(
    cross: np.ndarray, codes_per_group: list[np.ndarray], q: list[int], p: int, n: int
) -> SufficientStats:
    """Sufficient statistics from cross-products already summed per lowest group (by a
    database ``GROUP BY``), in any order: sorted by the hierarchy here."""
    order = np.lexsort(tuple(codes_per_group))
    cross = cross[order]
    sorted_codes = [c[order] for c in codes_per_group]
    starts, group_codes = nesting_starts(sorted_codes)
    n_groups = [int(cross.shape[0])] + [int(s.size) for s in starts]
    return SufficientStats(
        cross=cross, starts=starts, q=q, n_groups=n_groups, p=p, n=n, group_codes=group_codes
    )


PADDING = 1.5
"""Groups of similar size are padded with zero rows to the largest one in the chunk and
their cross-products taken in one batched product, when that adds at most half again
as many rows; otherwise (very unequal groups) per-column sums are used."""


def _padded_products(block: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``D_gᵀD_g`` of consecutive groups (rows ``starts[g]`` … ``+ sizes[g]``) by
    padding each group to the largest size with zero rows, which add nothing."""
    groups, width = sizes.size, block.shape[1]
    padded = np.zeros((groups, int(sizes.max()), width))
    group = np.repeat(np.arange(groups), sizes)
    position = np.arange(block.shape[0]) - np.repeat(starts, sizes)
    padded[group, position] = block
    return np.einsum("gmi,gmj->gij", padded, padded, optimize=True)


def check_nested_ids(data: pd.DataFrame, upper: tuple[str, ...], lower: str) -> None:
    """For ``upper/lower``: IDs that restart within each upper group are fine (lme4's
    reading), but when only a few lower IDs appear under more than one upper group
    the IDs were meant to be unique and the data are inconsistent: raise, naming them."""
    spans = data.groupby(lower, sort=True)[list(upper)].nunique().max(axis=1)
    shared = spans[spans > 1]
    if 0 < len(shared) < 0.5 * len(spans):
        shown = ", ".join(str(i) for i in shared.index[:10])
        more = f" and {len(shared) - 10} more" if len(shared) > 10 else ""
        where = "/".join(upper)
        raise EvalkitInputError(
            f"{lower} IDs {shown}{more} appear under more than one {where} ({len(shared)} of "
            f"{len(spans)} IDs), while the rest are unique: the nesting {where}/{lower} is "
            f"inconsistent. Fix the IDs, or write (1 | {':'.join(upper)}:{lower}) to treat "
            "each combination as its own group."
        )
