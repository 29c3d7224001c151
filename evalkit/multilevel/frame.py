"""Row-level model data kept on a fit, and its view one top-level cluster at a time.

The optimiser needs only the sufficient statistics; what comes after the fit
(Kenward–Roger, cluster-robust SEs, conditional modes) works one top-level cluster at
a time with that cluster's expanded random-effects design ``Z_k`` (one block of
columns per group of every level inside the cluster). ``Z_k`` has ``r_k`` columns —
the top-level effects plus those of every lower group in the cluster — so all the
algebra below stays in ``n_k × r_k`` arrays; no ``n_k × n_k`` matrix is formed
except where a method needs one by definition (CR2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from evalkit.core import EvalkitInputError

DENSE_CLUSTER_LIMIT = 50_000_000
"""Largest rows × effects (400 MB of doubles) of the one dense cluster a crossed model
is treated as by the methods that work cluster by cluster."""


@dataclass(frozen=True)
class ModelFrame:
    """The fitted rows: fixed design, response, random-effect columns and group codes.

    ``z`` and ``codes`` are per level, lowest level first (as in the sufficient
    statistics); ``z[l]`` is ``n × q_l``. When the levels cross (``crossed``) they are
    ordered by number of groups, most first, and the whole data form one cluster.
    """

    x: np.ndarray
    y: np.ndarray
    z: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    crossed: bool = False

    @property
    def n_levels(self) -> int:
        """Number of grouping levels."""
        return len(self.z)


@dataclass(frozen=True)
class Cluster:
    """One top-level cluster: its rows and its expanded random-effects design.

    Attributes
    ----------
    rows
        Row positions in the model frame.
    x, y
        Fixed design and response of those rows.
    z
        ``n_k × r_k`` expanded random-effects design.
    level, group, component
        For each column of ``z``: its level (lowest first), its group code at that
        level, and which random effect of the level it carries.
    """

    rows: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    level: np.ndarray
    group: np.ndarray
    component: np.ndarray

    def relative_factor(self, factors: list[np.ndarray]) -> np.ndarray:
        """``Λ_k``: block-diagonal, level l's ``T_l`` repeated for each of its groups."""
        r = self.z.shape[1]
        lam = np.zeros((r, r))
        same = (self.level[:, None] == self.level[None, :]) & (
            self.group[:, None] == self.group[None, :]
        )
        rows, cols = np.nonzero(same)
        for level, t in enumerate(factors):
            at = self.level[rows] == level
            lam[rows[at], cols[at]] = t[self.component[rows[at]], self.component[cols[at]]]
        return lam

    def pattern(self, level: int, a: int, b: int) -> np.ndarray:
        """``E``: ones where level ``level``'s effects a and b of the same group meet
        (both orders), so that ``Z E Zᵀ`` is that covariance element's derivative of V."""
        same = (
            (self.level[:, None] == level)
            & (self.level[None, :] == level)
            & (self.group[:, None] == self.group[None, :])
        )
        hit = same & (
            ((self.component[:, None] == a) & (self.component[None, :] == b))
            | ((self.component[:, None] == b) & (self.component[None, :] == a))
        )
        return hit.astype(np.float64)


def clusters(frame: ModelFrame) -> Iterator[Cluster]:
    """Yield the top-level clusters of a model frame, each with its expanded ``Z``
    (one cluster holding every row when the levels cross)."""
    top = frame.codes[-1]
    if frame.crossed:
        columns = sum(
            (int(c.max()) + 1) * z.shape[1] for c, z in zip(frame.codes, frame.z, strict=True)
        )
        if top.size * columns > DENSE_CLUSTER_LIMIT:
            raise EvalkitInputError(
                f"this method works on the dense random-effects design of a crossed model: "
                f"{top.size:,} rows × {columns:,} effects ({8 * top.size * columns / 2**30:.1f} "
                "GiB), more than it may use. Satterthwaite df, likelihood-ratio and F tests "
                "and profile CIs work at this size; Kenward–Roger and conditional modes "
                "need a smaller crossed model."
            )
        order = np.arange(top.size)
        bounds = np.array([0, top.size])
    else:
        order = np.lexsort(tuple(frame.codes))
        bounds = np.flatnonzero(np.r_[True, top[order][1:] != top[order][:-1], True])
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop]
        blocks, level, group, component = [], [], [], []
        for lv in range(frame.n_levels - 1, -1, -1):
            codes = frame.codes[lv][rows]
            unique, inverse = np.unique(codes, return_inverse=True)
            zl = frame.z[lv][rows]
            q = zl.shape[1]
            expanded = np.zeros((rows.size, unique.size * q))
            for k in range(q):
                expanded[np.arange(rows.size), inverse * q + k] = zl[:, k]
            blocks.append(expanded)
            level.append(np.full(unique.size * q, lv))
            group.append(np.repeat(unique, q))
            component.append(np.tile(np.arange(q), unique.size))
        yield Cluster(
            rows=rows,
            x=frame.x[rows],
            y=frame.y[rows],
            z=np.hstack(blocks),
            level=np.concatenate(level),
            group=np.concatenate(group),
            component=np.concatenate(component),
        )


@dataclass(frozen=True)
class Marginal:
    """``V_k⁻¹`` applied through Woodbury: ``V⁻¹A = (A − Z R ZᵀA)/σ²`` with
    ``R = Λ(I + ΛᵀZᵀZΛ)⁻¹Λᵀ``. ``σ²R`` is also the conditional covariance of the
    cluster's random effects (lme4's ``condVar``)."""

    cluster: Cluster
    lam: np.ndarray
    r: np.ndarray
    sigma2: float

    @classmethod
    def at(cls, cluster: Cluster, factors: list[np.ndarray], sigma2: float) -> Marginal:
        """The cluster's marginal covariance at relative factors ``factors`` and σ²."""
        lam = cluster.relative_factor(factors)
        ztz = cluster.z.T @ cluster.z
        c = np.eye(lam.shape[0]) + lam.T @ ztz @ lam
        r = lam @ np.linalg.solve(c, lam.T)
        return cls(cluster, lam, 0.5 * (r + r.T), sigma2)

    def solve(self, a: np.ndarray) -> np.ndarray:
        """``V_k⁻¹ a``."""
        z = self.cluster.z
        return (a - z @ (self.r @ (z.T @ a))) / self.sigma2

    def dense(self) -> np.ndarray:
        """``V_k`` itself (``n_k × n_k``), for methods defined on it (CR2)."""
        zl = self.cluster.z @ self.lam
        return self.sigma2 * (np.eye(zl.shape[0]) + zl @ zl.T)
