"""The collapsed reduction for random intercepts *and slopes*: one correlated block of
q random effects per level, ``Σ_l = σ² Λ_l Λ_lᵀ`` with Λ_l lower triangular.

For a group at level l with cross-products ``[[A, U], [Uᵀ, R]]`` (A: q × q, the
level's own random-effect columns) the reduction is
``M = I + ΛᵀAΛ``, ``log|·| += log|M|`` and ``R − Uᵀ V U`` with ``V = Λ M⁻¹ Λᵀ``, summed
into the parent group. Forward-mode derivatives with respect to every entry θ of the
Λ's (packed row by row, lowest level first, as ``np.tril_indices``) ride along:
``dM = dΛᵀAΛ + ΛᵀdAΛ + ΛᵀA dΛ``, ``d log|M| = tr(M⁻¹dM)``,
``dV = dΛ M⁻¹Λᵀ + Λ M⁻¹ dΛᵀ − Λ M⁻¹ dM M⁻¹ Λᵀ`` and
``d(R − UᵀVU) = dR − dUᵀVU − UᵀV dU − Uᵀ dV U``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from evalkit.bayes._collapsed import lowest_pairs, pair_level
from evalkit.multilevel import SufficientStats


@dataclass(frozen=True)
class SlopeLayout:
    """The data the general kernel reads.

    Attributes
    ----------
    cross
        ``(G, c, c)`` cross-products of ``[Z_lowest, …, Z_top, X, y]`` per lowest group.
    q
        Random effects per level, lowest first.
    parents, offsets, sizes
        Parent index of every group at every level (level l from ``offsets[l]``; the
        top level's parent is 0) and the number of groups per level (``sizes[k] = 1``).
    theta_start
        Where each level's packed Λ entries start in θ.
    n
        Number of observations.
    """

    cross: np.ndarray
    q: np.ndarray
    parents: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    theta_start: np.ndarray
    n: int
    pairs: tuple[np.ndarray, ...]
    """With one random effect at the lowest level: its (parent, size) pairs, as
    :func:`evalkit.bayes._collapsed.lowest_pairs` (``cross`` is then left empty);
    otherwise empty arrays."""

    @classmethod
    def from_stats(cls, stats: SufficientStats) -> SlopeLayout:
        """Prepare the kernel's data from the REML engine's sufficient statistics."""
        k = len(stats.q)
        maps = []
        for level in range(k):
            if level == k - 1:
                maps.append(np.zeros(stats.n_groups[level], dtype=np.int64))
            else:
                starts = stats.starts[level]
                counts = np.diff(np.r_[starts, stats.n_groups[level]])
                maps.append(np.repeat(np.arange(starts.size), counts))
        sizes = np.array([*stats.n_groups, 1], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(sizes[:-2])].astype(np.int64)[:k]
        q = np.array(stats.q, dtype=np.int64)
        packed = q * (q + 1) // 2
        c = stats.cross.shape[1]
        if q[0] == 1:
            pairs = lowest_pairs(stats)
            cross = np.zeros((0, c, c))
        else:
            pairs = (
                np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0),
                np.zeros((0, c - 1, c - 1)), np.zeros((0, c - 1, c - 1)),
            )  # fmt: skip
            cross = np.ascontiguousarray(stats.cross)
        return cls(
            cross=cross,
            pairs=pairs,
            q=q,
            parents=np.concatenate(maps).astype(np.int64),
            offsets=offsets,
            sizes=sizes,
            theta_start=np.r_[0, np.cumsum(packed)[:-1]].astype(np.int64),
            n=stats.n,
        )

    @property
    def n_theta(self) -> int:
        """Number of packed Λ entries."""
        return int((self.q * (self.q + 1) // 2).sum())

    def totals(self, theta: np.ndarray) -> np.ndarray:
        """``[X y]ᵀM⁻¹[X y]`` at θ (packed Λ entries)."""
        return reduce_general(theta, *self.arrays(), gradient=False)[1]

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The kernel's data arguments, in order."""
        return (
            self.cross, self.q, self.parents, self.offsets, self.sizes, self.theta_start,
            *self.pairs,
        )  # fmt: skip


@numba.njit(cache=True)
def _factor(theta: np.ndarray, start: int, q: int) -> np.ndarray:
    """Λ (q × q lower triangular) from its packed entries."""
    lam = np.zeros((q, q))
    index = start
    for i in range(q):
        for j in range(i + 1):
            lam[i, j] = theta[index]
            index += 1
    return lam


@numba.njit(cache=True)
def _scalar_level(
    cur: np.ndarray,
    dcur: np.ndarray,
    nxt: np.ndarray,
    dnxt: np.ndarray,
    dlogdet: np.ndarray,
    lam: float,
    own: int,
    level: int,
    parents: np.ndarray,
    offsets: np.ndarray,
    gradient: bool,
) -> float:
    """A level with one random effect, in scalar loops (no small-matrix algebra):
    ``M = 1 + λ²a``, ``V = λ²/M``; returns the level's ``Σ log M``."""
    width = cur.shape[1] - 1
    logdet = 0.0
    for g in range(cur.shape[0]):
        parent = parents[offsets[level] + g]
        a = cur[g, 0, 0]
        m = 1.0 + lam * lam * a
        v = lam * lam / m
        logdet += np.log(m)
        for r in range(width):
            vr = v * cur[g, 0, r + 1]
            for c in range(width):
                nxt[parent, r, c] += cur[g, r + 1, c + 1] - vr * cur[g, 0, c + 1]
        if not gradient:
            continue
        first = own if level == 0 else 0
        for index in range(first, own + 1):
            is_own = index == own
            da = 0.0 if level == 0 else dcur[index, g, 0, 0]
            dm = (2.0 * lam * a if is_own else 0.0) + lam * lam * da
            dlogdet[index] += dm / m
            dv = (2.0 * lam / m if is_own else 0.0) - lam * lam * dm / (m * m)
            for r in range(width):
                ur = cur[g, 0, r + 1]
                dur = 0.0 if level == 0 else dcur[index, g, 0, r + 1]
                for c in range(width):
                    uc = cur[g, 0, c + 1]
                    change = -dv * ur * uc
                    if level > 0:
                        duc = dcur[index, g, 0, c + 1]
                        change += dcur[index, g, r + 1, c + 1] - v * (dur * uc + ur * duc)
                    dnxt[index, parent, r, c] += change
    return logdet


@numba.njit(cache=True)
def _spd_inverse(m: np.ndarray, inverse: np.ndarray, chol: np.ndarray) -> float:
    """Inverse of a small symmetric positive-definite matrix by Cholesky, in loops;
    returns its log-determinant."""
    q = m.shape[0]
    logdet = 0.0
    for i in range(q):
        for j in range(i + 1):
            total = m[i, j]
            for k in range(j):
                total -= chol[i, k] * chol[j, k]
            if i == j:
                chol[i, i] = np.sqrt(total)
                logdet += 2.0 * np.log(chol[i, i])
            else:
                chol[i, j] = total / chol[j, j]
    for col in range(q):  # solve L Lᵀ x = e_col
        for i in range(q):
            total = 1.0 if i == col else 0.0
            for k in range(i):
                total -= chol[i, k] * inverse[k, col]
            inverse[i, col] = total / chol[i, i]
        for i in range(q - 1, -1, -1):
            total = inverse[i, col]
            for k in range(i + 1, q):
                total -= chol[k, i] * inverse[k, col]
            inverse[i, col] = total / chol[i, i]
    return logdet


@numba.njit(cache=True)
def _block_level(
    cur: np.ndarray,
    dcur: np.ndarray,
    nxt: np.ndarray,
    dnxt: np.ndarray,
    dlogdet: np.ndarray,
    lam: np.ndarray,
    own: int,
    level: int,
    parents: np.ndarray,
    offsets: np.ndarray,
    gradient: bool,
    out: np.ndarray,
) -> None:
    """A level with a q × q block, in loops over small work arrays allocated once per
    level; ``out[0]`` receives the level's ``Σ log|M|``."""
    q = lam.shape[0]
    rest = cur.shape[1] - q
    n_own = q * (q + 1) // 2
    al = np.zeros((q, q))
    m = np.zeros((q, q))
    m_inv = np.zeros((q, q))
    chol = np.zeros((q, q))
    lm = np.zeros((q, q))
    v = np.zeros((q, q))
    vu = np.zeros((q, rest))
    dm = np.zeros((q, q))
    dv = np.zeros((q, q))
    w = np.zeros((q, rest))
    out[0] = 0.0
    for g in range(cur.shape[0]):
        parent = parents[offsets[level] + g]
        for i in range(q):
            for j in range(q):
                total = 0.0
                for k in range(j, q):  # Λ is lower triangular
                    total += cur[g, i, k] * lam[k, j]
                al[i, j] = total
        for i in range(q):
            for j in range(q):
                total = 1.0 if i == j else 0.0
                for k in range(i, q):
                    total += lam[k, i] * al[k, j]
                m[i, j] = total
        out[0] += _spd_inverse(m, m_inv, chol)
        for i in range(q):
            for j in range(q):
                total = 0.0  # (Λ M⁻¹)[i, j] = Σ_{k ≤ i} Λ[i, k] M⁻¹[k, j]
                for k in range(i + 1):
                    total += lam[i, k] * m_inv[k, j]
                lm[i, j] = total
        for i in range(q):
            for j in range(q):
                total = 0.0
                for k in range(j + 1):
                    total += lm[i, k] * lam[j, k]
                v[i, j] = total
        for i in range(q):
            for j in range(rest):
                total = 0.0
                for k in range(q):
                    total += v[i, k] * cur[g, k, q + j]
                vu[i, j] = total
        for i in range(rest):
            for j in range(rest):
                total = cur[g, q + i, q + j]
                for k in range(q):
                    total -= cur[g, k, q + i] * vu[k, j]
                nxt[parent, i, j] += total
        if not gradient:
            continue
        first = own if level == 0 else 0
        for index in range(first, own + n_own):
            is_own = index >= own
            er, ec = -1, -1
            if is_own:
                position = index - own
                er = int((np.sqrt(8.0 * position + 1.0) - 1.0) / 2.0)
                ec = position - er * (er + 1) // 2
            for i in range(q):
                for j in range(q):
                    total = 0.0
                    if is_own:
                        if i == ec:
                            total += al[er, j]
                        if j == ec:
                            total += al[er, i]
                    if level > 0:
                        for k in range(q):
                            for k2 in range(q):
                                total += lam[k, i] * dcur[index, g, k, k2] * lam[k2, j]
                    dm[i, j] = total
            trace = 0.0
            for i in range(q):
                for j in range(q):
                    trace += m_inv[i, j] * dm[j, i]
            dlogdet[index] += trace
            for i in range(q):
                for j in range(q):
                    total = 0.0
                    if is_own:
                        if i == er:
                            total += lm[j, ec]
                        if j == er:
                            total += lm[i, ec]
                    for k in range(q):
                        for k2 in range(q):
                            total -= lm[i, k] * dm[k, k2] * lm[j, k2]
                    dv[i, j] = total
            for i in range(q):
                for j in range(rest):
                    total = 0.0
                    for k in range(q):
                        total += dv[i, k] * cur[g, k, q + j]
                    w[i, j] = total
            for i in range(rest):
                for j in range(rest):
                    total = 0.0
                    for k in range(q):
                        total -= cur[g, k, q + i] * w[k, j]
                    if level > 0:
                        total += dcur[index, g, q + i, q + j]
                        for k in range(q):
                            total -= dcur[index, g, k, q + i] * vu[k, j]
                            total -= vu[k, i] * dcur[index, g, k, q + j]
                    dnxt[index, parent, i, j] += total


@numba.njit(cache=True)
def reduce_general(
    theta: np.ndarray,
    cross: np.ndarray,
    qs: np.ndarray,
    parents: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    theta_start: np.ndarray,
    pair_parent: np.ndarray,
    pair_size: np.ndarray,
    pair_count: np.ndarray,
    pair_outer: np.ndarray,
    pair_rest: np.ndarray,
    gradient: bool = True,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``log|I + ZΛΛᵀZᵀ|``, the reduced cross-products of ``[X y]`` and (when
    ``gradient``) their derivatives with respect to θ."""
    k = qs.size
    n_theta = theta.size
    cur = cross
    dcur = np.zeros((n_theta, 1, 1, 1))
    logdet = 0.0
    dlogdet = np.zeros(n_theta)
    out = np.zeros(1)
    first_level = 0
    if pair_parent.size > 0:  # one random effect at the lowest level: its pairs
        lam = theta[0]
        cur = pair_rest.copy()
        dcur = np.zeros((n_theta if gradient else 1, cur.shape[0], cur.shape[1], cur.shape[2]))
        logdet, dlogdet[0] = pair_level(
            lam * lam, pair_parent, pair_size, pair_count, pair_outer, cur, dcur[0], gradient
        )
        dlogdet[0] *= 2.0 * lam
        for g in range(cur.shape[0]):
            for r in range(cur.shape[1]):
                for c in range(r + 1, cur.shape[2]):
                    cur[g, c, r] = cur[g, r, c]
                    dcur[0, g, c, r] = dcur[0, g, r, c] * 2.0 * lam
                dcur[0, g, r, r] *= 2.0 * lam
                for c in range(r + 1, cur.shape[2]):
                    dcur[0, g, r, c] *= 2.0 * lam
        first_level = 1
    for level in range(first_level, k):
        q = qs[level]
        rest = cur.shape[1] - q
        own = theta_start[level]
        lam = _factor(theta, own, q)
        nxt = np.zeros((sizes[level + 1], rest, rest))
        dnxt = np.zeros((n_theta if gradient else 1, sizes[level + 1], rest, rest))
        if q == 1:
            logdet += _scalar_level(
                cur, dcur, nxt, dnxt, dlogdet, theta[own], own, level, parents, offsets, gradient
            )
            cur = nxt
            dcur = dnxt
            continue
        _block_level(
            cur, dcur, nxt, dnxt, dlogdet, lam, own, level, parents, offsets, gradient, out
        )
        logdet += out[0]
        cur = nxt
        dcur = dnxt
    total = cur[0].copy()
    dtotal = np.zeros((n_theta, total.shape[0], total.shape[1]))
    if gradient:
        for index in range(n_theta):
            dtotal[index] = dcur[index, 0]
    return logdet, total, dlogdet, dtotal
