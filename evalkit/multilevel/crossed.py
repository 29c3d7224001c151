"""Profiled (RE)ML for crossed and partially crossed random effects.

With ``Λ̃ = blockdiag(Λ, I)`` and ``A = [Z X y]ᵀ[Z X y]``, the matrix
``Ω = Λ̃ᵀAΛ̃ + blockdiag(I_Q, 0)`` holds everything lme4's profiled deviance needs:
the Cholesky factor of its random-effects block gives ``log|M|`` and the Schur
complement of that block is ``[XᵀM⁻¹X, XᵀM⁻¹y; ·, yᵀM⁻¹y]`` (Woodbury, as in
Bates et al. 2015, J. Stat. Softw. 67(1), section 3). As in MixedModels.jl
(Bates et al., "MixedModels.jl", doi:10.5281/zenodo.596435), the factor with the most
groups comes first: every row belongs to one of its groups, so its block of ``A`` is
block-diagonal and is eliminated group by group. What remains — the other factors'
effects, X and y — is a dense matrix whose size is the number of groups of the
smaller factors, not the number of rows. The θ-free products (``A``'s blocks and the
index pairs of the elimination update) are computed once.

For random intercepts only, the gradient of the deviance is exact and cheap:
``∂log|Ω_S|/∂t_l = (2/t_l) Σ_{i∈l} (1 − (Ω_S⁻¹)_ii)`` and
``∂r²/∂t_l = −(2/t_l) Σ_{i∈l} ũ_i²`` (ũ the spherical conditional modes).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse

from evalkit.core import EvalkitInputError
from evalkit.multilevel.stats import Reduction

DENSE_MEMORY_SHARE = 0.5
"""Largest share of the machine's available memory the dense remainder (with its
working copies) may take before the fit is refused with an explanation."""


@dataclass(frozen=True)
class CrossedStats:
    """The θ-free cross-products of a crossed design.

    Attributes
    ----------
    n, p
        Rows and fixed effects.
    q
        Random effects per group, per level (level 0 has the most groups).
    n_groups
        Groups per level.
    first
        ``(G_0, q_0, q_0)``: level 0's blocks of ``ZᵀZ``.
    first_rest
        ``Z_0ᵀ[Z_rest]`` as a sparse ``(G_0 q_0) × Q_rest`` matrix.
    first_xy
        ``Z_0ᵀ[X y]``, ``(G_0, q_0, p + 1)``.
    rest
        ``[Z_rest X y]ᵀ[Z_rest X y]`` (dense, column-major as LAPACK works on it).
    pairs
        For the update ``Z_restᵀZ_0 D Z_0ᵀZ_rest`` (its lower triangle): a sparse
        ``Q_rest² × (G_0 q_0²)`` matrix whose product with the flattened level-0
        blocks ``D`` is the block in column-major order — one entry per pair of
        nonzeros of ``Z_0ᵀZ_rest`` in the same group (row: the position in the block;
        column: the entry of ``D``; value: the product of the two nonzeros).
    """

    n: int
    p: int
    q: list[int]
    n_groups: list[int]
    first: np.ndarray
    first_rest: sparse.csr_matrix
    first_xy: np.ndarray
    rest: np.ndarray
    pairs: sparse.csc_matrix

    @property
    def q_rest(self) -> int:
        """Random effects of the levels after the first."""
        return int(sum(g * q for g, q in zip(self.n_groups[1:], self.q[1:], strict=True)))


def dense_bytes(n_groups: list[int], q: list[int], p: int) -> int:
    """Memory the dense remainder needs (about four copies of it)."""
    r = sum(g * k for g, k in zip(n_groups[1:], q[1:], strict=True)) + p + 1
    return 4 * 8 * r * r


def available_memory() -> int:
    """Bytes of physical memory available now (Linux; the total elsewhere)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


DENSE_SIDE_LIMIT = 8000
"""Largest dense remainder side fitted: its Cholesky factor costs side³/3 flops per
evaluation (about 7 s at 8,000 on one core), and a fit needs ten or more."""


def check_memory(names: list[str], n_groups: list[int], q: list[int], p: int) -> None:
    """Refuse, before any work, a remainder that would not fit in memory or would take
    too long to factor at every evaluation."""
    side = sum(g * k for g, k in zip(n_groups[1:], q[1:], strict=True)) + p + 1
    sizes = ", ".join(
        f"{name} ({g:,} groups × {k})"
        for name, g, k in zip(names[1:], n_groups[1:], q[1:], strict=True)
    )
    if side > DENSE_SIDE_LIMIT:
        raise EvalkitInputError(
            f"the crossed factors {sizes} leave a dense {side:,} × {side:,} factor after "
            f"{names[0]} ({n_groups[0]:,} groups) is eliminated; factoring it at every "
            f"likelihood evaluation would take minutes (the limit is {DENSE_SIDE_LIMIT:,}). "
            + _larger_designs(q)
        )
    need = dense_bytes(n_groups, q, p)
    have = available_memory()
    if need > DENSE_MEMORY_SHARE * have:
        raise EvalkitInputError(
            f"the crossed factors {sizes} need a dense {side:,} × {side:,} factor after "
            f"{names[0]} is eliminated: about {need / 2**30:.1f} GiB with working copies, "
            f"and this machine has {have / 2**30:.1f} GiB available. " + _larger_designs(q)
        )


def _larger_designs(q: list[int]) -> str:
    """What to do about a crossed design too large to factor."""
    if all(k == 1 for k in q):
        return (
            "Random intercepts this large are fitted by the iterative engine "
            "(solver='iterative', which solver='auto' chooses), with a Monte Carlo error "
            "it reports."
        )
    return (
        "The iterative engine fits crossed random intercepts only: this model has random "
        "slopes. Put the slopes on a factor with fewer groups, nest a factor in another "
        "(e.g. (1 | school:teacher) in a nested model), or fit a subset of the data."
    )


def build_crossed(
    z: tuple[np.ndarray, ...], codes: tuple[np.ndarray, ...], x: np.ndarray, y: np.ndarray
) -> CrossedStats:
    """The cross-products from the row-level design (levels ordered, most groups first)."""
    n = y.size
    q = [zl.shape[1] for zl in z]
    n_groups = [int(c.max()) + 1 for c in codes]
    expanded = [_expand(zl, c, g) for zl, c, g in zip(z, codes, n_groups, strict=True)]
    xy = np.column_stack([x, y])
    z0 = expanded[0].T.tocsr()
    first = _first_blocks(z[0], codes[0], n_groups[0])
    first_xy = np.asarray(z0 @ xy).reshape(n_groups[0], q[0], -1)
    if len(expanded) > 1:
        z_rest = sparse.hstack(expanded[1:], format="csc")
        first_rest = (z0 @ z_rest).tocsr()
        q_rest = z_rest.shape[1]
        zxy = np.asarray(z_rest.T @ xy)
        rest = np.empty((q_rest + xy.shape[1],) * 2, order="F")
        rest[:q_rest, :q_rest] = (z_rest.T @ z_rest).toarray().T  # symmetric: a plain copy
        rest[:q_rest, q_rest:] = zxy
        rest[q_rest:, :q_rest] = zxy.T
        rest[q_rest:, q_rest:] = xy.T @ xy
    else:
        first_rest = sparse.csr_matrix((n_groups[0] * q[0], 0))
        rest = np.asfortranarray(xy.T @ xy)
    first_rest.sum_duplicates()  # canonical: sorted columns, each once per row (_pairs)
    return CrossedStats(
        n=n,
        p=x.shape[1],
        q=q,
        n_groups=n_groups,
        first=first,
        first_rest=first_rest,
        first_xy=first_xy,
        rest=rest,
        pairs=_pairs(first_rest, q[0]),
    )


def _expand(zl: np.ndarray, codes: np.ndarray, groups: int) -> sparse.csr_matrix:
    """``n × (G q)`` sparse random-effects design of one level."""
    n, q = zl.shape
    cols = (codes[:, None] * q + np.arange(q)[None, :]).ravel()
    rows = np.repeat(np.arange(n), q)
    return sparse.csr_matrix((zl.ravel(), (rows, cols)), shape=(n, groups * q))


def _first_blocks(z0: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    q = z0.shape[1]
    out = np.zeros((groups, q, q))
    for a in range(q):
        for b in range(q):
            out[:, a, b] = np.bincount(codes, weights=z0[:, a] * z0[:, b], minlength=groups)
    return out


def _pairs(first_rest: sparse.csr_matrix, q0: int) -> sparse.csc_matrix:
    """Every pair of nonzeros of ``Z_0ᵀZ_rest`` in the same level-0 group, as the
    sparse map from level-0 blocks to the update (:class:`CrossedStats`). Its product
    with a vector scatters each pair once, without the gathered temporaries a
    weighted ``bincount`` needs (5 ms against 13 ms on InstEval's 1.3 million pairs)."""
    if q0 == 1:
        return _intercept_pairs(first_rest)
    width = first_rest.shape[1]
    indptr = first_rest.indptr
    rows = np.repeat(np.arange(first_rest.shape[0]), np.diff(indptr))
    group = rows // q0
    component = rows % q0
    # entries are in row order, rows in (group, component) order: groups are contiguous
    bounds = np.searchsorted(group, np.arange(first_rest.shape[0] // q0 + 1))
    sizes = np.diff(bounds)
    starts = np.repeat(bounds[:-1], sizes)
    per_entry = np.repeat(sizes, sizes)  # every entry of its group ...
    left = np.repeat(np.arange(group.size), per_entry)
    offsets = np.arange(left.size) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    right = np.repeat(starts, per_entry) + offsets
    cols = first_rest.indices
    lower = cols[left] >= cols[right]  # ... in the lower triangle, all the factor reads
    left, right = left[lower], right[lower]
    flat = cols[right].astype(np.int64) * width + cols[left]  # (left, right), column-major
    d_index = group[left] * q0 * q0 + component[left] * q0 + component[right]
    product = first_rest.data[left] * first_rest.data[right]
    shape = (width * width, first_rest.shape[0] * q0)
    return sparse.csc_matrix((product, (flat, d_index)), shape=shape)


def _intercept_pairs(first_rest: sparse.csr_matrix) -> sparse.csc_matrix:
    """:func:`_pairs` for a random intercept: one row per group with sorted columns, so
    an entry's lower-triangle partners are the entries before it in its row and
    itself, and the pairs come group by group (the matrix's columns in order). Indices
    are 32-bit where they fit (the block's side is at most ``DENSE_SIDE_LIMIT``), which
    halves the memory traffic of the million-element index arrays."""
    width = first_rest.shape[1]
    indptr = first_rest.indptr
    cols = first_rest.indices
    sizes = np.diff(indptr)
    row_start = np.repeat(indptr[:-1], sizes)
    per_entry = np.arange(cols.size) - row_start + 1
    total = int(per_entry.sum())
    index = np.int32 if max(total, width * width) < 2**31 else np.int64
    # pair k of entry e has partner row_start[e] + (k − first pair of e)
    shift = np.repeat((np.cumsum(per_entry) - per_entry - row_start).astype(index), per_entry)
    right = np.subtract(np.arange(total, dtype=index), shift, out=shift)
    flat = cols.astype(index)[right]
    flat *= width
    flat += np.repeat(cols.astype(index), per_entry)  # (left, right) in column-major order
    product = np.repeat(first_rest.data, per_entry)
    product *= first_rest.data[right]
    out_ptr = np.zeros(sizes.size + 1, dtype=index)
    np.cumsum(sizes * (sizes + 1) // 2, out=out_ptr[1:])
    return sparse.csc_matrix((product, flat, out_ptr), shape=(width * width, sizes.size))


@dataclass(frozen=True)
class Derivatives:
    """``log|Ω_S|``, the penalised RSS, their gradients in θ, and ``XᵀM⁻¹X``."""

    logdet: float
    rss: float
    dlogdet: np.ndarray
    drss: np.ndarray
    xtmx: np.ndarray


@dataclass
class _State:
    """One evaluation's pieces, kept for the gradient and the conditional modes."""

    chol: np.ndarray  # lower Cholesky factor of Λ̃_rᵀ W Λ̃_r + I_random (column-major)
    reduction: Reduction


class CrossedReducer:
    """``log|M|``, ``XᵀM⁻¹X``, ``XᵀM⁻¹y`` and ``yᵀM⁻¹y`` at given relative factors."""

    def __init__(self, stats: CrossedStats) -> None:
        self.stats = stats
        self.n = stats.n
        self.p = stats.p
        self._last: tuple[bytes, _State] | None = None

    def evaluate(self, factors: list[np.ndarray]) -> _State:
        """The factorisation at ``factors`` (the T of every level); the last one is
        remembered (the results and the df at the optimum ask for it again)."""
        key = b"".join(np.ascontiguousarray(t, dtype=np.float64).tobytes() for t in factors)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        state = self._evaluate(factors)
        self._last = (key, state)
        return state

    def _evaluate(self, factors: list[np.ndarray]) -> _State:
        s = self.stats
        t0 = factors[0]
        q0 = t0.shape[0]
        if q0 == 1:
            scale = float(t0[0, 0]) ** 2
            c = 1.0 + scale * s.first
            logdet = float(np.log(c).sum())
            weights = scale / c
        else:
            c = t0.T @ s.first @ t0 + np.eye(q0)  # I + Tᵀ A_g T
            c_chol = np.linalg.cholesky(c)
            logdet = 2.0 * float(np.log(np.diagonal(c_chol, axis1=1, axis2=2)).sum())
            weights = t0 @ np.linalg.solve(c, np.broadcast_to(t0.T, c.shape))  # T C⁻¹ Tᵀ
        q_rest = s.q_rest
        # One factor of [random effects, X, y]: its leading block is the random
        # effects' factor, its trailing block that of the Schur complement. Factored in
        # place (the remainder is a fresh column-major array).
        chol = linalg.cholesky(
            self._remainder(weights, factors[1:]), lower=True, overwrite_a=True, check_finite=False
        )
        logdet += 2.0 * float(np.log(np.diag(chol)[:q_rest]).sum())
        tail = chol[q_rest:, q_rest:]
        schur = tail @ tail.T
        p = s.p
        reduction = Reduction(logdet, schur[:p, :p], schur[:p, p], float(schur[p, p]))
        return _State(chol, reduction)

    def __call__(self, factors: list[np.ndarray]) -> Reduction:
        """The totals the profiled deviance needs."""
        return self.evaluate(factors).reduction

    def update(self, weights: np.ndarray) -> np.ndarray:
        """``[Z_r X y]ᵀ Z_0 D Z_0ᵀ [Z_r X y]`` for level-0 blocks ``D`` (unscaled; the
        lower triangle, column-major, with zeros above the random-effect block)."""
        s = self.stats
        q_rest = s.q_rest
        out = np.empty_like(s.rest)
        if q_rest:
            out[:q_rest, :q_rest] = self.block_update(weights)
            cross, tail = self.cross_update(weights)
            out[q_rest:, :q_rest] = cross.T
            out[:q_rest, q_rest:] = 0.0
        else:
            tail = self.cross_update(weights)[1]
        out[q_rest:, q_rest:] = tail
        return out

    def block_update(self, weights: np.ndarray) -> np.ndarray:
        """The random-effect block of :meth:`update` (lower triangle, column-major)."""
        q_rest = self.stats.q_rest
        return (self.stats.pairs @ weights.reshape(-1)).reshape(q_rest, q_rest, order="F")

    def cross_update(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rest of :meth:`update`: ``Z_rᵀZ_0 D Z_0ᵀ[X y]`` and ``[X y]ᵀZ_0 D Z_0ᵀ[X y]``."""
        s = self.stats
        weighted = (weights @ s.first_xy).reshape(-1, s.first_xy.shape[2])
        wide = s.first_xy.reshape(-1, s.first_xy.shape[2])
        return np.asarray(s.first_rest.T @ weighted), wide.T @ weighted

    def _remainder(self, weights: np.ndarray, factors: list[np.ndarray]) -> np.ndarray:
        """``Λ̃_rᵀ(rest − update)Λ̃_r`` plus the identity on the random-effect diagonal."""
        s = self.stats
        if all(t.shape[0] == 1 for t in factors):
            return self._intercept_remainder(weights, [float(t[0, 0]) for t in factors])
        w = self.update(weights)
        np.subtract(s.rest, w, out=w)
        # a k × k block of T mixes both triangles of each group's block
        w = np.asfortranarray(np.tril(w) + np.tril(w, -1).T)
        start = 0
        for t, groups in zip(factors, s.n_groups[1:], strict=True):
            k = t.shape[0]
            stop = start + groups * k
            if k == 1:
                w[start:stop, :] *= t[0, 0]
                w[:, start:stop] *= t[0, 0]
            else:
                w[start:stop, :] = _left_t(w[start:stop, :], t, groups)
                w[:, start:stop] = _left_t(w[:, start:stop].T, t, groups).T
            start = stop
        index = np.arange(s.q_rest)
        w[index, index] += 1.0
        return w

    def _spans(self) -> list[tuple[int, int]]:
        """Column ranges of the levels after the first (random intercepts)."""
        bounds = np.cumsum([0, *self.stats.n_groups[1:]])
        return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def _intercept_remainder(self, weights: np.ndarray, t: list[float]) -> np.ndarray:
        """:meth:`_remainder` for random intercepts, on the lower triangle (the upper
        one is never read: zero beside X and y, partly scaled within the random
        effects), in as few passes over the large block as possible: each block of a
        pair of levels is ``t_l t_m (rest − update)``; with one level ``t²`` goes into
        the update's weights."""
        s = self.stats
        q_rest = s.q_rest
        w = np.empty_like(s.rest)
        spans = self._spans()
        big = w[:q_rest, :q_rest]
        if len(spans) == 1:
            t2 = t[0] ** 2
            np.multiply(s.rest[:q_rest, :q_rest], t2, out=big)
            big -= self.block_update(weights * t2)
        else:
            np.subtract(s.rest[:q_rest, :q_rest], self.block_update(weights), out=big)
            for m, (a_m, b_m) in enumerate(spans):
                for level in range(m, len(spans)):
                    a_l, b_l = spans[level]
                    w[a_l:b_l, a_m:b_m] *= t[level] * t[m]
        cross, tail = self.cross_update(weights)
        scale = np.repeat(t, s.n_groups[1:])
        w[q_rest:, :q_rest] = (s.rest[q_rest:, :q_rest] - cross.T) * scale
        w[:q_rest, q_rest:] = 0.0
        w[q_rest:, q_rest:] = s.rest[q_rest:, q_rest:] - tail
        index = np.arange(q_rest)
        w[index, index] += 1.0
        return w

    def value_and_gradient(self, theta: np.ndarray, *, reml: bool) -> tuple[float, np.ndarray]:
        """Profiled deviance and its exact gradient (random intercepts only)."""
        parts = self.derivatives(theta, reml=reml)
        dof = self.n - self.p if reml else self.n
        value = parts.logdet + dof * (1.0 + np.log(2.0 * np.pi * parts.rss / dof))
        return value, parts.dlogdet + dof * parts.drss / parts.rss

    def derivatives(self, theta: np.ndarray, *, reml: bool) -> Derivatives:
        """``log|Ω_S|`` (S: random effects, and X for REML), the penalised RSS and
        their exact derivatives in θ (random intercepts only)."""
        s = self.stats
        factors = [np.array([[t]]) for t in theta]
        state = self.evaluate(factors)
        red = state.reduction
        p = s.p
        beta = np.linalg.solve(red.xtmx, red.xtmy)
        rss = red.ytmy - float(beta @ red.xtmy)
        logdet = red.logdet
        if reml:
            # the factor's trailing block is that of [XᵀM⁻¹X, ·; ·, ·]: its first p
            # diagonal entries are those of XᵀM⁻¹X's own factor
            logdet += 2.0 * float(np.log(np.diag(state.chol)[s.q_rest : s.q_rest + p]).sum())
        q_rest = s.q_rest
        size = q_rest + (p if reml else 0)
        modes = self._spherical_modes(state, theta, beta)
        inverse = _inverse_from_factor(state.chol[:size, :size])  # lower triangle
        # level 0: Σ(1 − 1/d_g) − tr(S⁻¹N), N = Λ̃ᵀ(Bᵀ diag(t²/d²) B)Λ̃
        d = 1.0 + theta[0] ** 2 * s.first[:, 0, 0]
        second = (theta[0] ** 2 / d**2).reshape(-1, 1, 1)
        trace_n = self._update_trace(inverse, second, theta[1:], reml=reml)
        diag = np.diag(inverse)
        traces = [float(np.sum(1.0 - 1.0 / d)) - trace_n]
        start = 0
        for groups in s.n_groups[1:]:
            traces.append(float(np.sum(1.0 - diag[start : start + groups])))
            start += groups
        dlogdet = np.zeros(theta.size)
        drss = np.zeros(theta.size)
        for level, t in enumerate(theta):
            if t > 1e-12:  # the deviance is even in each t: flat at 0
                dlogdet[level] = 2.0 * traces[level] / t
                drss[level] = -2.0 * modes[level] / t
        return Derivatives(logdet, rss, dlogdet, drss, red.xtmx)

    def _update_trace(
        self, inverse: np.ndarray, second: np.ndarray, t: np.ndarray, *, reml: bool
    ) -> float:
        """``tr(S⁻¹N)`` for ``N = Λ̃ᵀ update(second) Λ̃`` over the random effects (and X
        for REML), from the lower triangle of ``S⁻¹`` (zeros above): twice the sum over
        the lower triangle less the diagonal, block by block, without forming ``N``."""
        s = self.stats
        q_rest = s.q_rest
        block = self.block_update(second)
        lower = 0.0
        on_diagonal = 0.0
        spans = self._spans()
        for m, (a_m, b_m) in enumerate(spans):
            for level in range(m, len(spans)):
                a_l, b_l = spans[level]
                part = float(
                    np.einsum("ij,ij->", inverse[a_l:b_l, a_m:b_m], block[a_l:b_l, a_m:b_m])
                )
                lower += t[level] * t[m] * part
            on_diagonal += t[m] ** 2 * float(
                np.diagonal(inverse)[a_m:b_m] @ np.diagonal(block)[a_m:b_m]
            )
        if reml:
            p = s.p
            cross, tail = self.cross_update(second)
            scale = np.repeat(t, s.n_groups[1:])
            lower += float(np.einsum("xj,jx,j->", inverse[q_rest:, :q_rest], cross[:, :p], scale))
            lower += float(np.einsum("ij,ij->", np.tril(inverse[q_rest:, q_rest:]), tail[:p, :p]))
            on_diagonal += float(np.diagonal(inverse)[q_rest:] @ np.diagonal(tail)[:p])
        return 2.0 * lower - on_diagonal

    def _spherical_modes(self, state: _State, theta: np.ndarray, beta: np.ndarray) -> list[float]:
        """``Σ ũ_i²`` per level at θ and β̂ (ũ = Λ⁻¹b̂, lme4's ``u``)."""
        return [float(u @ u) for u in self.spherical_modes(state, theta, beta)]

    def spherical_modes(
        self, state: _State, theta: np.ndarray, beta: np.ndarray
    ) -> list[np.ndarray]:
        """ũ per level at θ and β (random intercepts), from the factorisation ``state``."""
        s = self.stats
        q_rest = s.q_rest
        # The factor's X and y rows against the random effects are L₁₁⁻¹ times theirs
        # in the factored matrix, so L₁₁⁻¹(b_y − B_X β) is read off them and only the
        # back substitution is left. The full factor is solved with zeros below (its
        # trailing unknowns come out exactly 0), which needs no copy of its block.
        chol = state.chol
        forward = np.zeros(chol.shape[0])
        forward[:q_rest] = chol[q_rest + s.p, :q_rest] - beta @ chol[q_rest : q_rest + s.p, :q_rest]
        u_rest = linalg.blas.dtrsv(chol, forward, lower=1, trans=1)[:q_rest]
        # level 0: ũ_g = C_g⁻¹ t (Z_gᵀ(y − Xβ) − Z_gᵀZ_r Λ_r ũ_r)
        lam_u = u_rest.copy()
        start = 0
        for t, groups in zip(theta[1:], s.n_groups[1:], strict=True):
            lam_u[start : start + groups] *= t
            start += groups
        resid = s.first_xy[:, 0, -1] - s.first_xy[:, 0, :-1] @ beta
        if q_rest:
            resid = resid - s.first_rest @ lam_u
        d = 1.0 + theta[0] ** 2 * s.first[:, 0, 0]
        u0 = theta[0] * resid / d
        bounds = np.cumsum([0, *s.n_groups[1:]])
        return [u0] + [u_rest[a:b] for a, b in itertools.pairwise(bounds)]

    def conditional_modes(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Conditional modes ``b̂ = Λũ`` per level (random intercepts) and the diagonal
        of ``Λ(ΛᵀZᵀZΛ + I)⁻¹Λᵀ`` (σ² times it is lme4's ``condVar``), at β̂(θ).

        Level 0's diagonal is ``t²(1/d_g + c_gᵀS⁻¹c_g/d_g²)`` with ``S`` the Schur
        complement of the other levels and ``c_g`` its row of the elimination update;
        theirs is ``t²·diag(S⁻¹)``. No rows × effects matrix is formed."""
        s = self.stats
        state = self.evaluate([np.array([[t]]) for t in theta])
        red = state.reduction
        beta = np.linalg.solve(red.xtmx, red.xtmy)
        spherical = self.spherical_modes(state, theta, beta)
        q_rest = s.q_rest
        d = 1.0 + theta[0] ** 2 * s.first[:, 0, 0]
        variances = [theta[0] ** 2 / d]
        if q_rest:
            lower = _inverse_from_factor(state.chol[:q_rest, :q_rest])
            inverse = lower + np.tril(lower, -1).T
            scale = np.repeat(theta[1:], s.n_groups[1:])
            rows = sparse.csr_matrix(s.first_rest.multiply(theta[0] * scale[None, :]))
            quad = np.asarray(rows.multiply(rows @ inverse).sum(axis=1)).ravel()
            variances[0] = theta[0] ** 2 * (1.0 / d + quad / d**2)
            diag = np.diag(inverse) * scale**2
            bounds = np.cumsum([0, *s.n_groups[1:]])
            variances += [diag[a:b] for a, b in itertools.pairwise(bounds)]
        modes = [t * u for t, u in zip(theta, spherical, strict=True)]
        return modes, variances


def _left_t(block: np.ndarray, t: np.ndarray, groups: int) -> np.ndarray:
    """Rows of ``block`` in groups of ``k`` multiplied by ``Tᵀ`` (i.e. ``(I⊗T)ᵀ block``)."""
    k = t.shape[0]
    shaped = block.reshape(groups, k, -1)
    return np.einsum("ba,gbj->gaj", t, shaped).reshape(groups * k, -1)


def _inverse_from_factor(factor: np.ndarray) -> np.ndarray:
    """Lower triangle of ``(LLᵀ)⁻¹`` from the lower Cholesky factor L (LAPACK dpotri)."""
    inverse, info = linalg.lapack.dpotri(factor, lower=1)
    if info:
        raise np.linalg.LinAlgError("the factor is singular")
    return np.asarray(inverse)


EM_SWEEPS = 60
"""Most EM sweeps; they stop earlier once every variance ratio moves by less than
``EM_TOLERANCE`` (relative). A factor nested in a smaller one (teachers in schools)
hands its parent's variance over slowly, so the cap is generous: a sweep costs a
product with the θ-free blocks, far less than one likelihood evaluation."""

EM_TOLERANCE = 2e-3


@dataclass(frozen=True)
class EMParts:
    """What the EM sweeps read: per level the groups' ``Σz²``, ``ZᵀX`` and ``Zᵀy``;
    ``Z_rᵀZ_r`` (dense or sparse), ``Z₀ᵀZ_r`` and ``XᵀX``, ``Xᵀy``, ``yᵀy``."""

    n: int
    counts: list[np.ndarray]
    zx: list[np.ndarray]
    zy: list[np.ndarray]
    rest_rest: np.ndarray | sparse.csr_matrix
    first_rest: sparse.csr_matrix
    xtx: np.ndarray
    xty: np.ndarray
    yty: float


def em_parts(stats: CrossedStats) -> EMParts:
    """The EM pieces of the dense engine's statistics."""
    s = stats
    p, q_rest = s.p, s.q_rest
    xy = s.rest[q_rest:, q_rest:]
    bounds = np.cumsum([0, *s.n_groups[1:]])
    spans = list(itertools.pairwise(bounds))
    return EMParts(
        n=s.n,
        counts=[s.first[:, 0, 0]] + [np.diag(s.rest)[a:b] for a, b in spans],
        zx=[s.first_xy[:, 0, :p]] + [s.rest[a:b, q_rest : q_rest + p] for a, b in spans],
        zy=[s.first_xy[:, 0, p]] + [s.rest[a:b, q_rest + p] for a, b in spans],
        rest_rest=s.rest[:q_rest, :q_rest],
        first_rest=s.first_rest,
        xtx=xy[:p, :p],
        xty=xy[:p, p],
        yty=float(xy[p, p]),
    )


def em_start(stats: CrossedStats) -> np.ndarray:
    """A starting θ for random intercepts from a few EM sweeps (:func:`em_sweeps`)."""
    return em_sweeps(em_parts(stats))


def em_sweeps(parts: EMParts) -> np.ndarray:
    """A starting θ for random intercepts from a few EM sweeps on the cross-products.

    Each sweep updates every factor's conditional modes given the others (a
    Gauss–Seidel pass), its variance ``τ_l = mean(b̂_g² + v_g)`` with the conditional
    variance ``v_g = σ²/(n_g + σ²/τ_l)`` of a group taken alone, then β and σ². The
    cross-covariances of the modes are ignored, so this is only a start for the exact
    optimiser — but a start near the optimum halves its evaluations. Everything it
    needs is in the cross-products: ``Z_lᵀ(y − Xβ − Σ_m Z_m b_m)`` from the blocks of
    ``ZᵀZ``.
    """
    e = parts
    p = e.xtx.shape[0]
    beta = np.linalg.solve(e.xtx, e.xty)
    sigma2 = max((e.yty - float(beta @ e.xty)) / max(e.n - p, 1), 1e-12)
    sizes = [c.size for c in e.counts]
    bounds = np.cumsum([0, *sizes[1:]])
    tau = [0.5 * sigma2] * len(sizes)
    modes = [np.zeros(g) for g in sizes]
    for _ in range(EM_SWEEPS):
        before = np.array(tau) / sigma2
        for level in range(len(sizes)):
            rhs = e.zy[level] - e.zx[level] @ beta - _cross_modes(e, level, modes, bounds)
            shrink = e.counts[level] + sigma2 / max(tau[level], 1e-12 * sigma2)
            modes[level] = rhs / shrink
            tau[level] = float(np.mean(modes[level] ** 2 + sigma2 / shrink))
        z_b = sum(e.zx[level].T @ modes[level] for level in range(len(sizes)))
        beta = np.linalg.solve(e.xtx, e.xty - z_b)
        resid = (
            e.yty
            - 2 * float(beta @ e.xty)
            - 2 * sum(float(e.zy[m] @ modes[m]) for m in range(len(sizes)))
        )
        resid += _fitted_square(e, modes, beta)
        trace = sum(
            float(
                np.sum(e.counts[m] * sigma2 / (e.counts[m] + sigma2 / max(tau[m], 1e-12 * sigma2)))
            )
            for m in range(len(sizes))
        )
        sigma2 = max((resid + trace) / e.n, 1e-12)
        ratio = np.array(tau) / sigma2
        if np.all(np.abs(ratio - before) <= EM_TOLERANCE * np.maximum(ratio, 1e-3)):
            break
    return np.sqrt(np.maximum(np.array(tau) / sigma2, 0.0))


def _cross_modes(e: EMParts, level: int, modes: list[np.ndarray], bounds: np.ndarray) -> np.ndarray:
    """``Σ_{m≠l} Z_lᵀZ_m b_m`` from the blocks of ``ZᵀZ``."""
    lam_rest = np.concatenate(modes[1:]) if len(modes) > 1 else np.zeros(0)
    if level == 0:
        return np.asarray(e.first_rest @ lam_rest) if lam_rest.size else 0.0 * modes[0]
    a, b = bounds[level - 1], bounds[level]
    own = lam_rest.copy()
    own[a:b] = 0.0  # Z_lᵀZ_l is diagonal (one group per row): the level's own modes out
    full = e.rest_rest[a:b, :] @ own
    return np.asarray(full).ravel() + np.asarray(e.first_rest[:, a:b].T @ modes[0])


def _fitted_square(e: EMParts, modes: list[np.ndarray], beta: np.ndarray) -> float:
    """``β'X'Xβ + 2β'X'Zb + b'Z'Zb`` from the cross-products."""
    b0 = modes[0]
    b_rest = np.concatenate(modes[1:]) if len(modes) > 1 else np.zeros(0)
    value = float(beta @ e.xtx @ beta)
    value += 2 * float(beta @ (e.zx[0].T @ b0))
    value += float(np.sum(e.counts[0] * b0**2))
    if b_rest.size:
        value += 2 * float(b_rest @ (np.concatenate(e.zx[1:]) @ beta))
        value += 2 * float(b0 @ (e.first_rest @ b_rest))
        value += float(b_rest @ (e.rest_rest @ b_rest))
    return value
