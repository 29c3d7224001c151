"""The collapsed (marginal) likelihood of a Gaussian random-intercepts model as one
PyTensor operation whose value and gradient come from a compiled kernel.

With random intercepts only, V = σ²(I + Σ_l s_l Z_l Z_lᵀ) with s_l = τ_l²/σ². The
REML engine's recursive Woodbury reduction turns the per-cluster cross-products of
``[Z, X, y]`` into ``log|I + Z S Zᵀ|`` and the reduced cross-products
``[X y]ᵀ (I + Z S Zᵀ)⁻¹ [X y]``; forward-mode differentiation carries their
derivatives in s through the same recursion (see :mod:`evalkit.multilevel.gradient`).

Two things make a gradient cheap. At the lowest level the cross-products are data:
the reduction there is ``R_parent − Σ_children w(a) u uᵀ`` with ``w(a) = s/(1 + s a)``,
so the children's ``u uᵀ`` are summed in advance for every (parent, a) pair and the
work is proportional to the number of distinct cluster sizes per parent — with equal
class sizes, to the number of schools. Above it the kernel loops over groups in
compiled code (numba), so the cost of a gradient grows with the number of groups at
the upper levels, not with students or teachers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from evalkit.multilevel import SufficientStats


@dataclass(frozen=True)
class Layout:
    """The data the kernel reads, prepared once per model.

    Attributes
    ----------
    pair_parent, pair_size, pair_count, pair_outer
        For each (parent group, lowest-level cluster size) pair: the parent's index, the
        size ``a = zᵀz``, the number of clusters and ``Σ u uᵀ`` over them.
    rest
        ``Σ C[1:, 1:]`` over each parent's clusters.
    parents, offsets, sizes
        Parent index of every group at levels 1 … k−1 (concatenated, level l starting at
        ``offsets[l]``) and the number of groups per level (``sizes[k] = 1``).
    n
        Number of observations.
    """

    pair_parent: np.ndarray
    pair_size: np.ndarray
    pair_count: np.ndarray
    pair_outer: np.ndarray
    rest: np.ndarray
    parents: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    n: int

    @classmethod
    def from_stats(cls, stats: SufficientStats) -> Layout:
        """Prepare the kernel's data from the REML engine's sufficient statistics."""
        if any(q != 1 for q in stats.q):
            raise ValueError("the collapsed kernel handles one random intercept per level")
        k = len(stats.q)
        parent_of = [_parent_map(stats, level) for level in range(k)]
        sizes = np.array([*stats.n_groups, 1], dtype=np.int64)
        pair_parent, pair_size, pair_count, pair_outer, rest = lowest_pairs(stats)
        upper = parent_of[1:]
        offsets = np.zeros(k, dtype=np.int64)
        for level in range(2, k):
            offsets[level] = offsets[level - 1] + sizes[level - 1]
        parents = np.concatenate(upper) if upper else np.zeros(0, dtype=np.int64)
        return cls(
            pair_parent=pair_parent,
            pair_size=pair_size,
            pair_count=pair_count,
            pair_outer=pair_outer,
            rest=rest,
            parents=parents.astype(np.int64),
            offsets=offsets,
            sizes=sizes,
            n=stats.n,
        )

    def totals(self, theta: np.ndarray) -> np.ndarray:
        """``[X y]ᵀM⁻¹[X y]`` at θ = τ/σ per level."""
        return _totals(self, theta)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The kernel's data arguments, in order."""
        return (
            self.pair_parent,
            self.pair_size,
            self.pair_count,
            self.pair_outer,
            self.rest,
            self.parents,
            self.offsets,
            self.sizes,
        )


def _totals(layout: Layout, theta: np.ndarray) -> np.ndarray:
    """The reduced cross-products of ``[X y]`` at θ (no derivatives)."""
    return reduce_with_gradient(theta * theta, *layout.arrays(), gradient=False)[1]


def lowest_pairs(stats: SufficientStats) -> tuple[np.ndarray, ...]:
    """For a lowest level with one random intercept: the (parent, size) pairs — parent
    index, size ``a = zᵀz``, number of clusters, ``Σ u uᵀ`` — and ``Σ C[1:, 1:]`` per
    parent (see the module docs)."""
    cross = stats.cross
    first = _parent_map(stats, 0)
    keys, inverse, counts = np.unique(
        np.column_stack([first, cross[:, 0, 0]]), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.ravel()
    u = cross[:, 0, 1:]
    width = u.shape[1]
    pair_outer = np.zeros((keys.shape[0], width, width))
    np.add.at(pair_outer, inverse, u[:, :, None] * u[:, None, :])
    rest = np.zeros((int(first.max()) + 1, width, width))
    np.add.at(rest, first, cross[:, 1:, 1:])
    return (
        keys[:, 0].astype(np.int64),
        np.ascontiguousarray(keys[:, 1]),
        counts.astype(np.float64),
        pair_outer,
        rest,
    )


def _parent_map(stats: SufficientStats, level: int) -> np.ndarray:
    """Index of each level-``level`` group's parent (all zeros at the top level)."""
    if level == len(stats.q) - 1:
        return np.zeros(stats.n_groups[level], dtype=np.int64)
    starts = stats.starts[level]
    return np.repeat(np.arange(starts.size), np.diff(np.r_[starts, stats.n_groups[level]]))


@numba.njit(cache=True)
def _mirror(blocks: np.ndarray) -> None:
    """Copy the upper triangle of every trailing square block to the lower one."""
    flat = blocks.reshape(-1, blocks.shape[-2], blocks.shape[-1])
    width = flat.shape[1]
    for g in range(flat.shape[0]):
        for r in range(width):
            for c in range(r + 1, width):
                flat[g, c, r] = flat[g, r, c]


@numba.njit(cache=True)
def pair_level(
    s0: float,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    cur: np.ndarray,
    dcur: np.ndarray,
    gradient: bool,
) -> tuple[float, float]:
    """The lowest level from its (parent, size) pairs: ``cur`` (holding ``Σ C[1:, 1:]``
    per parent) loses ``Σ w(a) u uᵀ`` and ``dcur`` gains its derivative in s (upper
    triangles only); returns the level's ``Σ log d`` and its derivative."""
    width = cur.shape[1]
    logdet = 0.0
    dlogdet = 0.0
    for i in range(pair_parent.size):
        a = pair_size[i]
        d = 1.0 + s0 * a
        w = s0 / d
        dw = 1.0 / (d * d)
        logdet += pair_count[i] * np.log(d)
        dlogdet += pair_count[i] * a / d
        g = pair_parent[i]
        for r in range(width):
            for c in range(r, width):
                o = pair_outer[i, r, c]
                cur[g, r, c] -= w * o
                if gradient:
                    dcur[g, r, c] -= dw * o
    return logdet, dlogdet


@numba.njit(cache=True)
def reduce_with_gradient(
    s: np.ndarray,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    rest: np.ndarray,
    parents: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    gradient: bool = True,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``log|I + Z S Zᵀ|``, the reduced cross-products of ``[X y]`` and (when
    ``gradient``) their derivatives with respect to ``s`` (one variance ratio per level,
    lowest first). The blocks are symmetric: upper triangles are computed and mirrored."""
    k = s.size
    width = rest.shape[1]
    cur = rest.copy()
    dcur = np.zeros((k if gradient else 1, rest.shape[0], width, width))
    dlogdet = np.zeros(k)
    logdet, dlogdet[0] = pair_level(
        s[0], pair_parent, pair_size, pair_count, pair_outer, cur, dcur[0], gradient
    )
    for level in range(1, k):
        width = cur.shape[1] - 1
        nxt = np.zeros((sizes[level + 1], width, width))
        dnxt = np.zeros((k if gradient else 1, sizes[level + 1], width, width))
        sl = s[level]
        for g in range(cur.shape[0]):
            parent = parents[offsets[level] + g]
            a = cur[g, 0, 0]
            d = 1.0 + sl * a
            w = sl / d
            logdet += np.log(d)
            for r in range(width):
                ur = cur[g, 0, r + 1]
                for c in range(r, width):
                    nxt[parent, r, c] += cur[g, r + 1, c + 1] - w * ur * cur[g, 0, c + 1]
            if not gradient:
                continue
            for m in range(level + 1):
                own = 1.0 if m == level else 0.0
                dd = own * a + sl * dcur[m, g, 0, 0]
                dlogdet[m] += dd / d
                dw = (own - w * dd) / d
                for r in range(width):
                    ur = cur[g, 0, r + 1]
                    dur = dcur[m, g, 0, r + 1]
                    for c in range(r, width):
                        uc = cur[g, 0, c + 1]
                        duc = dcur[m, g, 0, c + 1]
                        dnxt[m, parent, r, c] += (
                            dcur[m, g, r + 1, c + 1] - dw * ur * uc - w * (dur * uc + ur * duc)
                        )
        _mirror(nxt)
        if gradient:
            _mirror(dnxt)
        cur = nxt
        dcur = dnxt
    if k == 1:
        _mirror(cur)
        if gradient:
            _mirror(dcur)
    total = np.zeros((cur.shape[1], cur.shape[2]))
    dtotal = np.zeros((k, cur.shape[1], cur.shape[2]))
    for g in range(cur.shape[0]):
        total += cur[g]
        if gradient:
            for m in range(k):
                dtotal[m] += dcur[m, g]
    return logdet, total, dlogdet, dtotal
