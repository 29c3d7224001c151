"""Crossed random intercepts too large to factor: conjugate gradients and stochastic
traces (an approximate fit, flagged as such).

The crossed engine (:mod:`evalkit.multilevel.crossed`) eliminates the factor with the
most groups and factors what remains densely. When the other factors have tens of
thousands of groups that remainder cannot be factored: on a school system where a
tenth of the students change school each year, students link teachers of random
schools, the graph of the remainder is an expander and even a sparse Cholesky factor
fills in almost completely. The same property makes the remainder well conditioned,
so preconditioned conjugate gradients (CG) converge in a few dozen iterations
(Papaspiliopoulos, Stumpf-Fétizon & Zanella 2023, "Scalable Bayesian computation for
crossed and nested hierarchical models", Electron. J. Stat. 17(2)).

With ``S`` the remainder (other factors' effects; the first factor is eliminated
exactly, being diagonal), ``P = LLᵀ`` its block-diagonal part (blocks: the groups of
the coarsest other factor with the effects mostly inside them), and ``m`` Rademacher
probes ``z``, each evaluation solves ``S x = L z`` and ``S F = [Bₓ b_y]`` by CG:

* ``XᵀM⁻¹X``, ``XᵀM⁻¹y``, ``yᵀM⁻¹y``, β̂, the penalised RSS and the conditional modes
  come from ``F`` — exact up to the CG tolerance;
* ``tr(E S⁻¹) = E[(L⁻ᵀz)ᵀE x]`` for the diagonal blocks and the first factor's term
  (Hutchinson 1990), with the preconditioner's own traces as control variates, gives
  the deviance gradient;
* ``log|S| = log|P| + tr log(L⁻¹SL⁻ᵀ)``: the second term by stochastic Lanczos
  quadrature (Ubaru, Chen & Saad 2017, SIAM J. Matrix Anal. Appl. 38(4)), with the
  Lanczos tridiagonal matrix read off each probe's CG coefficients.

The probes are fixed (seeded) for a fit, so the estimated gradient is a smooth,
deterministic function of θ and its root is found by quasi-Newton steps from the EM
start. The Monte Carlo error of θ̂ is ``J⁻¹ Cov(ĝ) J⁻ᵀ`` (J the Jacobian of the
estimated gradient, ``Cov(ĝ)`` from the spread of the probes' terms); it is reported
with the fit, as is the Monte Carlo error of the deviance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, sparse

from evalkit.core import EvalkitInputError
from evalkit.multilevel.crossed import (
    DENSE_MEMORY_SHARE,
    Derivatives,
    EMParts,
    available_memory,
    check_memory,
    em_sweeps,
)
from evalkit.multilevel.quasi_newton import quasi_newton
from evalkit.multilevel.stats import Reduction

PROBES = 64
"""Rademacher probes per fit (the default of ``lmm``'s ``n_probes``)."""

MIN_PROBES = 16
"""Fewest probes accepted: the Monte Carlo covariance is estimated from their spread."""

SOLVE_TOLERANCE = 1e-10
"""Relative residual at which CG stops for the fixed-effect and outcome columns."""

PROBE_TOLERANCE = 1e-8
"""Relative residual at which CG stops for the probe columns."""

MAX_ITERATIONS = 2000
"""Most CG iterations; a system not solved by then is reported as an error."""

BLOCK_LIMIT = 256
"""Largest block of the block-Jacobi preconditioner (larger: plain Jacobi)."""


@dataclass(frozen=True)
class IterativeStats:
    """θ-free pieces of a crossed random-intercept design for the iterative engine.

    Attributes
    ----------
    n, p
        Rows and fixed effects.
    q
        Effects per group (1 for every level).
    n_groups
        Groups per level, the first (eliminated) level first.
    first_counts
        ``Σ z²`` per group of the first level.
    first_xy
        ``Z₀ᵀ[X y]`` (``G₀ × (p + 1)``).
    first_rest
        ``Z₀ᵀZ_r`` (``G₀ × Q_r``, CSR).
    rest_xy
        ``Z_rᵀ[X y]`` (``Q_r × (p + 1)``).
    xy
        ``[X y]ᵀ[X y]``.
    rest_rest
        ``Z_rᵀZ_r`` (CSR).
    pattern
        Row and column of every stored entry of the remainder ``S`` (row-sorted).
    base
        ``Z_rᵀZ_r`` at the pattern's entries.
    pairs
        ``(nnz × G₀)``: ``pairs @ w`` is ``Z_rᵀZ₀ diag(w) Z₀ᵀZ_r`` at the entries.
    blocks
        Block of each of the remainder's effects (the preconditioner's layout).
    """

    n: int
    p: int
    q: list[int]
    n_groups: list[int]
    first_counts: np.ndarray
    first_xy: np.ndarray
    first_rest: sparse.csr_matrix
    rest_xy: np.ndarray
    xy: np.ndarray
    rest_rest: sparse.csr_matrix
    pattern: tuple[np.ndarray, np.ndarray, np.ndarray]
    base: np.ndarray
    pairs: sparse.csr_matrix
    blocks: np.ndarray
    seed: int = 20261203
    probes: int = PROBES

    @property
    def q_rest(self) -> int:
        """Effects of the levels after the first."""
        return int(sum(self.n_groups[1:]))

    @property
    def xtx(self) -> np.ndarray:
        """``XᵀX``."""
        return self.xy[: self.p, : self.p]


def build_iterative(
    z: tuple[np.ndarray, ...],
    codes: tuple[np.ndarray, ...],
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_probes: int = PROBES,
) -> IterativeStats:
    """The θ-free products from the rows (levels ordered, most groups first; one
    random effect per level) and the number of random probes."""
    n = y.size
    n_groups = [int(c.max()) + 1 for c in codes]
    values = [np.asarray(zl[:, 0], dtype=np.float64) for zl in z]
    xy = np.column_stack([x, y])
    z0 = sparse.csr_matrix((values[0], (codes[0], np.arange(n))), shape=(n_groups[0], n))
    offsets = np.cumsum([0, *n_groups[1:]])
    rest_cols = np.concatenate([c + off for c, off in zip(codes[1:], offsets[:-1], strict=True)])
    rest_vals = np.concatenate(values[1:])
    rows = np.tile(np.arange(n), len(codes) - 1)
    z_rest = sparse.csr_matrix((rest_vals, (rows, rest_cols)), shape=(n, int(offsets[-1])))
    first_rest = sparse.csr_matrix(z0 @ z_rest)
    first_rest.sum_duplicates()
    rest_rest = sparse.csr_matrix(z_rest.T @ z_rest)
    rest_rest.sum_duplicates()
    pattern, base, pairs = _pattern(rest_rest, first_rest)
    return IterativeStats(
        n=n,
        p=x.shape[1],
        q=[1] * len(codes),
        n_groups=n_groups,
        first_counts=np.bincount(codes[0], weights=values[0] ** 2, minlength=n_groups[0]),
        first_xy=np.asarray(z0 @ xy),
        first_rest=first_rest,
        rest_xy=np.asarray(z_rest.T @ xy),
        xy=xy.T @ xy,
        rest_rest=rest_rest,
        pattern=pattern,
        base=base,
        pairs=pairs,
        blocks=_blocks(rest_rest, n_groups[1:]),
        probes=n_probes,
    )


def _pattern(
    rest_rest: sparse.csr_matrix, first_rest: sparse.csr_matrix
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, sparse.csr_matrix]:
    """The union of the nonzeros of ``Z_rᵀZ_r`` and ``Z_rᵀZ₀Z₀ᵀZ_r`` (CSR order),
    ``Z_rᵀZ_r`` on it, and the matrix that maps first-level weights to the update."""
    width = rest_rest.shape[0]
    indptr = first_rest.indptr
    sizes = np.diff(indptr)
    group = np.repeat(np.arange(first_rest.shape[0]), sizes)
    starts = np.repeat(indptr[:-1], sizes)
    per_entry = np.repeat(sizes, sizes).astype(np.int64)  # every pair within a group
    left = np.repeat(np.arange(group.size), per_entry)
    offsets = np.arange(left.size) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    right = np.repeat(starts, per_entry) + offsets
    cols = first_rest.indices.astype(np.int64)
    coo = rest_rest.tocoo()
    keys = np.concatenate(
        [coo.row.astype(np.int64) * width + coo.col, cols[left] * width + cols[right]]
    )
    unique, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    row, col = unique // width, unique % width
    indptr_s = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=width))])
    base = np.bincount(inverse[: coo.nnz], weights=coo.data, minlength=unique.size)
    product = first_rest.data[left] * first_rest.data[right]
    pairs = sparse.csr_matrix(
        (product, (inverse[coo.nnz :], group[left])), shape=(unique.size, first_rest.shape[0])
    )
    return (indptr_s, row, col), base, pairs


def _blocks(rest_rest: sparse.csr_matrix, n_groups: list[int]) -> np.ndarray:
    """Block of each effect: the coarsest factor's groups, each other effect in the
    group it shares most rows with (a plain diagonal when that makes blocks too big
    or there is one factor)."""
    total = int(sum(n_groups))
    if len(n_groups) < 2:
        return np.arange(total)
    offsets = np.cumsum([0, *n_groups])
    coarse = int(np.argmin(n_groups))
    a, b = offsets[coarse], offsets[coarse + 1]
    link = sparse.csr_matrix(rest_rest[:, a:b])
    has = np.diff(link.indptr) > 0
    block = np.asarray(link.argmax(axis=1)).ravel().astype(np.int64)
    block[a:b] = np.arange(b - a)
    lonely = ~has
    lonely[a:b] = False
    block[lonely] = (b - a) + np.arange(int(lonely.sum()))
    if np.bincount(block).max() > BLOCK_LIMIT:
        return np.arange(total)
    return block


class BlockJacobi:
    """``P = LLᵀ``: the diagonal blocks of ``S``, factored block by block."""

    def __init__(self, blocks: np.ndarray) -> None:
        order = np.argsort(blocks, kind="stable")
        counts = np.bincount(blocks)
        self.n_blocks = counts.size
        self.width = int(counts.max())
        firsts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.empty(blocks.size, dtype=np.int64)
        position[order] = np.arange(blocks.size) - np.repeat(firsts, counts)
        self.block = blocks
        self.position = position
        self.factor = np.zeros((self.n_blocks, self.width, self.width))
        self.inverse = np.zeros_like(self.factor)
        self._inverse_t = self.inverse
        self._solver = self.inverse

    def set(self, matrix: sparse.csr_matrix, rows: np.ndarray) -> None:
        """Factor the diagonal blocks of ``matrix`` (entries in CSR order, ``rows``)."""
        cols = matrix.indices
        inside = self.block[rows] == self.block[cols]
        dense = np.zeros((self.n_blocks, self.width, self.width))
        dense[
            self.block[rows[inside]], self.position[rows[inside]], self.position[cols[inside]]
        ] = matrix.data[inside]
        used = np.zeros((self.n_blocks, self.width), dtype=bool)
        used[self.block, self.position] = True
        pad = np.flatnonzero(~used.ravel())
        dense.reshape(-1, self.width)[pad, pad % self.width] = 1.0  # identity padding
        self.factor = np.asarray(np.linalg.cholesky(dense), dtype=np.float64)
        self.inverse = np.asarray(np.linalg.inv(self.factor), dtype=np.float64)
        self._inverse_t = np.ascontiguousarray(np.swapaxes(self.inverse, 1, 2))
        self._solver = np.matmul(self._inverse_t, self.inverse)  # P⁻¹ per block

    def _gather(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_blocks, self.width, v.shape[1]))
        out[self.block, self.position] = v
        return out

    def _scatter(self, b: np.ndarray) -> np.ndarray:
        return b[self.block, self.position]

    def times_factor(self, v: np.ndarray) -> np.ndarray:
        """``L v``."""
        return self._scatter(np.matmul(self.factor, self._gather(v)))

    def inverse_transpose(self, v: np.ndarray) -> np.ndarray:
        """``L⁻ᵀ v``."""
        return self._scatter(np.matmul(self._inverse_t, self._gather(v)))

    def solve(self, v: np.ndarray) -> np.ndarray:
        """``P⁻¹ v``."""
        return self._scatter(np.matmul(self._solver, self._gather(v)))

    def inverse_diagonal(self) -> np.ndarray:
        """``diag(P⁻¹)`` per effect."""
        squares = np.einsum("bji,bji->bi", self.inverse, self.inverse)
        return squares[self.block, self.position]

    def logdet(self) -> float:
        """``log|P|``."""
        diag = np.diagonal(self.factor, axis1=1, axis2=2)[self.block, self.position]
        return 2.0 * float(np.log(diag).sum())


@dataclass(frozen=True)
class Solved:
    """CG solutions and, per column, the Lanczos coefficients of its iterations."""

    x: np.ndarray
    alphas: list[list[float]]
    betas: list[list[float]]
    iterations: int


def conjugate_gradients(
    matrix: sparse.csr_matrix, rhs: np.ndarray, precond: BlockJacobi, tolerances: np.ndarray
) -> Solved:
    """Preconditioned CG for every column of ``rhs`` (each with its own step sizes),
    recording each column's coefficients until it converges. Converged columns leave
    the working arrays, which stay contiguous."""
    k = rhs.shape[1]
    solution = np.zeros_like(rhs)
    alphas: list[list[float]] = [[] for _ in range(k)]
    betas: list[list[float]] = [[] for _ in range(k)]
    target = tolerances * np.linalg.norm(rhs, axis=0)
    columns = np.arange(k)
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precond.solve(r)
    d = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    iterations = 0
    while True:
        still = np.sqrt(np.einsum("ij,ij->j", r, r)) > target[columns]
        if not still.all():
            solution[:, columns[~still]] = x[:, ~still]
            columns, x, r, d, rz = columns[still], x[:, still], r[:, still], d[:, still], rz[still]
        if not columns.size:
            break
        if iterations >= MAX_ITERATIONS:
            raise np.linalg.LinAlgError(
                f"conjugate gradients did not converge in {MAX_ITERATIONS} iterations"
            )
        iterations += 1
        sd = matrix @ d
        alpha = rz / np.einsum("ij,ij->j", d, sd)
        x += alpha * d
        r -= alpha * sd
        z = precond.solve(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = rz_new / rz
        for j, a, b in zip(columns, alpha, beta, strict=True):
            alphas[j].append(float(a))
            betas[j].append(float(b))
        d = z + beta * d
        rz = rz_new
    return Solved(solution, alphas, betas, iterations)


def lanczos_log(alphas: list[float], betas: list[float]) -> float:
    """``e₁ᵀ log(T) e₁`` for the Lanczos matrix ``T`` of one CG run (Gauss quadrature)."""
    a = np.asarray(alphas)
    b = np.asarray(betas)
    size = a.size
    if size == 0:
        return 0.0
    diag = 1.0 / a
    diag[1:] += b[:-1] / a[:-1]
    off = np.sqrt(b[:-1]) / a[:-1]
    t = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
    values, vectors = np.linalg.eigh(t)
    return float(np.sum(vectors[0] ** 2 * np.log(values)))


@dataclass(frozen=True)
class Estimate:
    """One evaluation: the totals, the gradient pieces and their Monte Carlo spread."""

    reduction: Reduction
    reml: Derivatives
    ml: Derivatives
    gradient_terms: np.ndarray  # (probes, levels): each probe's estimate of dlogdet
    logdet_terms: np.ndarray  # each probe's estimate of tr log(L⁻¹SL⁻ᵀ)
    modes: list[np.ndarray]  # spherical conditional modes ũ per level
    iterations: int
    variances: list[np.ndarray]  # diag of Λ(ΛᵀZᵀZΛ + I)⁻¹Λᵀ per level (estimated)

    def derivatives(self, *, reml: bool) -> Derivatives:
        """The REML or ML pieces."""
        return self.reml if reml else self.ml


class IterativeReducer:
    """``log|M|`` (estimated), ``XᵀM⁻¹X``, ``XᵀM⁻¹y``, ``yᵀM⁻¹y`` (solved) at θ."""

    def __init__(self, stats: IterativeStats) -> None:
        self.stats = stats
        self.n = stats.n
        self.p = stats.p
        rng = np.random.default_rng(stats.seed)
        self.probes = rng.choice([-1.0, 1.0], size=(stats.q_rest, stats.probes))
        self.precond = BlockJacobi(stats.blocks)
        indptr, self._rows, self._cols = stats.pattern
        self._indptr = indptr
        self._diag = np.flatnonzero(self._rows == self._cols)
        self._last: dict[bytes, Estimate] = {}
        self.evaluations = 0
        """θ at which the CG solves ran (remembered ones are not counted again)."""
        self.cg_iterations = 0

    def matrix(self, theta: np.ndarray) -> sparse.csr_matrix:
        """The remainder ``S = Λ_r(Z_rᵀZ_r − Z_rᵀZ₀ W Z₀ᵀZ_r)Λ_r + I``."""
        s = self.stats
        weights = theta[0] ** 2 / (1.0 + theta[0] ** 2 * s.first_counts)
        scale = np.repeat(theta[1:], s.n_groups[1:])
        data = (s.base - s.pairs @ weights) * scale[self._rows] * scale[self._cols]
        data[self._diag] += 1.0
        return sparse.csr_matrix((data, self._cols, self._indptr), shape=(s.q_rest, s.q_rest))

    def estimate(self, theta: np.ndarray) -> Estimate:
        """Everything at θ (the last few evaluations are remembered)."""
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if key not in self._last:
            if len(self._last) > 4:
                self._last.clear()
            found = self._estimate(np.asarray(theta, dtype=np.float64))
            self._last[key] = found
            self.evaluations += 1
            self.cg_iterations += found.iterations
        return self._last[key]

    def __call__(self, factors: list[np.ndarray]) -> Reduction:
        """The totals the profiled deviance needs (``log|M|`` estimated)."""
        return self.estimate(np.array([float(t[0, 0]) for t in factors])).reduction

    def derivatives(self, theta: np.ndarray, *, reml: bool) -> Derivatives:
        """``log|Ω_S|``, the penalised RSS and their gradients in θ (estimated traces)."""
        return self.estimate(theta).derivatives(reml=reml)

    def value_and_gradient(self, theta: np.ndarray, *, reml: bool) -> tuple[float, np.ndarray]:
        """Profiled deviance and its gradient (both estimated with the fixed probes)."""
        return deviance_parts(self.estimate(theta), self.n, self.p, reml)

    def conditional_modes(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Conditional modes ``b̂ = Λũ`` and the diagonal of ``Λ(ΛᵀZᵀZΛ + I)⁻¹Λᵀ`` per
        level (σ² times it is lme4's ``condVar``; here a Monte Carlo estimate)."""
        est = self.estimate(theta)
        modes = [t * u for t, u in zip(theta, est.modes, strict=True)]
        return modes, est.variances

    def _estimate(self, theta: np.ndarray) -> Estimate:
        s = self.stats
        p = s.p
        t0 = theta[0]
        d = 1.0 + t0**2 * s.first_counts
        weights = t0**2 / d
        scale = np.repeat(theta[1:], s.n_groups[1:])
        mat = self.matrix(theta)
        self.precond.set(mat, self._rows)
        weighted = weights[:, None] * s.first_xy
        bxy = scale[:, None] * (s.rest_xy - s.first_rest.T @ weighted)
        cxy = s.xy - s.first_xy.T @ weighted
        start = self.precond.times_factor(self.probes)
        rhs = np.column_stack([bxy, start])
        tolerances = np.r_[np.full(p + 1, SOLVE_TOLERANCE), np.full(s.probes, PROBE_TOLERANCE)]
        solved = conjugate_gradients(mat, rhs, self.precond, tolerances)
        f = solved.x[:, : p + 1]
        schur = cxy - bxy.T @ f
        xtmx, xtmy, ytmy = schur[:p, :p], schur[:p, p], float(schur[p, p])
        xtmx = 0.5 * (xtmx + xtmx.T)
        beta = np.linalg.solve(xtmx, xtmy)
        rss = ytmy - float(beta @ xtmy)
        # log|Ω|: the first level exactly, S by Lanczos quadrature on L⁻¹SL⁻ᵀ with
        # zᵀ(L⁻¹SL⁻ᵀ − I)z (mean 0: P holds S's diagonal blocks) as control variate
        a = self.precond.inverse_transpose(self.probes)
        quad = s.q_rest * np.array(
            [lanczos_log(solved.alphas[j], solved.betas[j]) for j in range(p + 1, p + 1 + s.probes)]
        )
        first_order = np.einsum("ij,ij->j", a, mat @ a) - s.q_rest
        logdet_terms = quad - first_order
        logdet = float(np.log(d).sum()) + self.precond.logdet() + float(logdet_terms.mean())
        # traces of S⁻¹: Hutchinson on (S⁻¹ − P⁻¹) with P's exact traces added
        excess = solved.x[:, p + 1 :] - a
        bounds = np.cumsum([0, *s.n_groups[1:]])
        spans = list(itertools.pairwise(bounds))
        inverse_diag = self.precond.inverse_diagonal()
        levels = len(s.n_groups)
        terms = np.zeros((s.probes, levels))
        exact = np.zeros(levels)
        g = sparse.csr_matrix(s.first_rest.multiply((t0 / d)[:, None]).multiply(scale[None, :]))
        gt_a = np.asarray(g @ a)
        gt_excess = np.asarray(g @ excess)
        terms[:, 0] = -np.einsum("ij,ij->j", gt_a, gt_excess)
        # g_gᵀS⁻¹g_g per first-level group (its conditional variance): P's exactly, the
        # rest estimated; their sum is tr(S⁻¹N)
        first_exact = _preconditioned_rows(self.precond, g)
        quad_first = first_exact + np.einsum("gj,gj->g", gt_a, gt_excess) / s.probes
        exact[0] = float(np.sum(1.0 - 1.0 / d)) - float(first_exact.sum())
        diag_rest = inverse_diag + np.einsum("ij,ij->i", a, excess) / s.probes
        for level, (lo, hi) in enumerate(spans, start=1):
            terms[:, level] = -np.einsum("ij,ij->j", a[lo:hi], excess[lo:hi])
            exact[level] = float(np.sum(1.0 - inverse_diag[lo:hi]))
        # REML: S's inverse within [random effects, X] gains F H⁻¹ Fᵀ (F = S⁻¹Bₓ)
        fx = f[:, :p]
        inv_h = np.linalg.inv(xtmx)
        exact_reml = exact.copy()
        rowwise = np.einsum("ij,jk,ik->i", fx, inv_h, fx)
        for level, (lo, hi) in enumerate(spans, start=1):
            exact_reml[level] -= float(rowwise[lo:hi].sum())
        u = np.asarray(g @ fx).T - (s.first_xy[:, :p] * (t0 / d)[:, None]).T
        exact_reml[0] -= float(np.einsum("ij,jg,ig->", inv_h, u, u))
        u_rest = f[:, p] - fx @ beta
        resid = s.first_xy[:, p] - s.first_xy[:, :p] @ beta - s.first_rest @ (scale * u_rest)
        u0 = t0 * resid / d
        modes = [u0] + [u_rest[lo:hi] for lo, hi in spans]
        per_probe = np.zeros_like(terms)
        drss = np.zeros(levels)
        dlog = {True: np.zeros(levels), False: np.zeros(levels)}
        for level, t in enumerate(theta):
            if t > 1e-12:  # the deviance is even in each t: flat at 0
                per_probe[:, level] = 2.0 * terms[:, level] / t
                drss[level] = -2.0 * float(modes[level] @ modes[level]) / t
                for reml, base in ((True, exact_reml), (False, exact)):
                    dlog[reml][level] = 2.0 * (base[level] + terms[:, level].mean()) / t
        logdet_x = float(np.linalg.slogdet(xtmx)[1])
        variances = [t0**2 * (1.0 / d + quad_first)]
        variances += [scale[lo:hi] ** 2 * diag_rest[lo:hi] for lo, hi in spans]
        return Estimate(
            reduction=Reduction(logdet, xtmx, xtmy, ytmy),
            reml=Derivatives(logdet + logdet_x, rss, dlog[True], drss, xtmx),
            ml=Derivatives(logdet, rss, dlog[False], drss, xtmx),
            gradient_terms=per_probe,
            logdet_terms=logdet_terms,
            modes=modes,
            iterations=solved.iterations,
            variances=variances,
        )


def _preconditioned_rows(precond: BlockJacobi, g: sparse.csr_matrix) -> np.ndarray:
    """``g_gᵀP⁻¹g_g`` for every row ``g_g`` of ``g`` (``‖L⁻¹g_g‖²``)."""
    used = np.zeros((precond.n_blocks, precond.width), dtype=np.int64) - 1
    used[precond.block, precond.position] = np.arange(precond.block.size)
    ii, jj = np.tril_indices(precond.width)
    ok = (used[:, ii] >= 0) & (used[:, jj] >= 0)
    size = precond.block.size
    inverse = sparse.csr_matrix(
        (precond.inverse[:, ii, jj][ok], (used[:, ii][ok], used[:, jj][ok])), shape=(size, size)
    )
    product = sparse.csr_matrix(g @ inverse.T)  # rows: (L⁻¹g_g)ᵀ
    return np.asarray(product.multiply(product).sum(axis=1)).ravel()


def iterative_em_parts(stats: IterativeStats) -> EMParts:
    """The EM pieces (:func:`~evalkit.multilevel.crossed.em_sweeps`) of the statistics."""
    s = stats
    p = s.p
    bounds = np.cumsum([0, *s.n_groups[1:]])
    spans = list(itertools.pairwise(bounds))
    diag = s.rest_rest.diagonal()
    return EMParts(
        n=s.n,
        counts=[s.first_counts] + [diag[a:b] for a, b in spans],
        zx=[s.first_xy[:, :p]] + [s.rest_xy[a:b, :p] for a, b in spans],
        zy=[s.first_xy[:, p]] + [s.rest_xy[a:b, p] for a, b in spans],
        rest_rest=s.rest_rest,
        first_rest=s.first_rest,
        xtx=s.xy[:p, :p],
        xty=s.xy[:p, p],
        yty=float(s.xy[p, p]),
    )


@dataclass(frozen=True)
class IterativeOptimum:
    """The root of the estimated gradient and its Monte Carlo error."""

    theta: np.ndarray
    deviance: float
    deviance_mc_se: float
    theta_mc_cov: np.ndarray
    evaluations: int
    cg_iterations: int
    gradient_norm: float
    converged: bool
    attempts: tuple[str, ...]


STEP_TOLERANCE = 1e-7
"""Relative change of θ below which the root search stops."""


def deviance_parts(estimate: Estimate, n: int, p: int, reml: bool) -> tuple[float, np.ndarray]:
    """Profiled deviance and its gradient in θ from one evaluation."""
    parts = estimate.derivatives(reml=reml)
    dof = n - p if reml else n
    value = parts.logdet + dof * (1.0 + np.log(2.0 * np.pi * parts.rss / dof))
    return float(value), parts.dlogdet + dof * parts.drss / parts.rss


def find_root(reducer: IterativeReducer, *, reml: bool) -> IterativeOptimum:
    """Minimise the estimated deviance, then solve the estimated gradient for 0.

    With the probes fixed, the estimated deviance and gradient are smooth functions of
    θ that agree up to Monte Carlo error. Descent (bounded quasi-Newton steps with a
    line search on the deviance, L-BFGS-B if they stall) runs from the EM start until
    the gradient is at its Monte Carlo noise — which keeps the search away from the
    spurious stationary points at θ_l = 0; Newton steps with a forward-difference
    Jacobian then find the gradient's root to ``STEP_TOLERANCE``, whose Monte Carlo
    error ``J⁻¹ Cov(ĝ) J⁻ᵀ`` is reported."""
    from evalkit.multilevel.engine import EM_FLOOR, THETA_MAX  # engine imports this module

    s = reducer.stats
    n, p = s.n, s.p
    before = (reducer.evaluations, reducer.cg_iterations)

    def fun_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            est = reducer.estimate(theta)
        except np.linalg.LinAlgError:  # CG could not solve there (far off): step back
            return np.inf, np.zeros_like(theta)
        return deviance_parts(est, n, p, reml)

    theta = np.clip(em_sweeps(iterative_em_parts(s)), EM_FLOOR, THETA_MAX)
    attempts = [f"EM start {np.array2string(theta, precision=4)}"]
    noise = float(np.max(np.std(reducer.estimate(theta).gradient_terms, axis=0, ddof=1)))
    noise /= np.sqrt(s.probes)
    lower = np.zeros(theta.size)
    upper = np.full(theta.size, THETA_MAX)
    quick = quasi_newton(fun_and_grad, theta, lower, upper, lambda _value: max(noise, 1e-8))
    theta = quick.theta
    if not quick.converged:
        result = optimize.minimize(
            fun_and_grad, theta, jac=True, method="L-BFGS-B",
            bounds=list(zip(lower, upper, strict=True)),
            options={"gtol": max(noise, 1e-8), "ftol": 1e-15, "maxiter": 500},
        )  # fmt: skip
        theta = np.asarray(result.x)
        attempts.append(f"quasi-Newton stalled; L-BFGS-B: {result.message}")
    theta, jac, converged = _polish_root(
        fun_and_grad, theta, np.zeros(theta.size, dtype=bool), THETA_MAX
    )
    value, grad = fun_and_grad(theta)
    theta_cov = _theta_cov(reducer.estimate(theta), jac, theta, grad)
    dev_se = float(np.std(reducer.estimate(theta).logdet_terms, ddof=1) / np.sqrt(s.probes))
    # A variance indistinguishable from 0 (the estimated gradient's root then sits at
    # the Monte Carlo noise, ~sqrt of it, instead of at the bound): 0 is taken when the
    # estimated deviance there is no higher by more than its Monte Carlo error.
    near = (theta > 0) & (theta < BOUNDARY_Z * np.sqrt(np.diag(theta_cov)))
    if near.any():
        trial = theta.copy()
        trial[near] = 0.0
        trial, trial_jac, trial_ok = _polish_root(fun_and_grad, trial, near, THETA_MAX)
        trial_value, trial_grad = fun_and_grad(trial)
        if trial_value <= value + dev_se:
            attempts.append(
                "set to 0 (indistinguishable from it by the Monte Carlo error): θ "
                + ", ".join(str(i) for i in np.flatnonzero(near))
            )
            theta, jac, converged, value, grad = trial, trial_jac, trial_ok, trial_value, trial_grad
            theta_cov = _theta_cov(reducer.estimate(theta), jac, theta, grad)
            dev_se = float(np.std(reducer.estimate(theta).logdet_terms, ddof=1) / np.sqrt(s.probes))
    free = ~((theta <= 0.0) & (grad >= 0))
    norm = float(np.max(np.abs(grad[free]), initial=0.0))
    evaluations = reducer.evaluations - before[0]
    cg_iterations = reducer.cg_iterations - before[1]
    attempts.append(
        f"root of the estimated gradient: deviance {value:.10g} (Monte Carlo SE {dev_se:.2g}), "
        f"{evaluations} evaluations, {cg_iterations} CG iterations"
    )
    return IterativeOptimum(
        theta, value, dev_se, theta_cov, evaluations, cg_iterations, norm, converged,
        tuple(attempts),
    )  # fmt: skip


BOUNDARY_Z = 3.0
"""A θ within this many Monte Carlo SEs of 0 is tried at 0 (see :func:`find_root`)."""


def _theta_cov(est: Estimate, jac: np.ndarray, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Monte Carlo covariance of the gradient's root, ``J⁻¹ Cov(ĝ) J⁻ᵀ`` (0 for θ held
    at its bound)."""
    k = theta.size
    free = ~((theta <= 0.0) & (grad >= 0))
    cov_g = np.atleast_2d(np.cov(est.gradient_terms, rowvar=False)) / est.gradient_terms.shape[0]
    inv = np.zeros((k, k))
    inv[np.ix_(free, free)] = np.linalg.pinv(jac[np.ix_(free, free)])
    return inv @ cov_g @ inv.T


def _polish_root(
    fun_and_grad: object, theta: np.ndarray, held: np.ndarray, upper: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Newton steps on the estimated gradient from near its root, with a
    forward-difference Jacobian (which must be positive definite: a minimum); a level at
    0 whose gradient points outward stays there, as do the ``held`` ones. Returns θ,
    the Jacobian, and whether the steps settled."""
    evaluate = fun_and_grad  # (θ) -> (deviance, gradient)
    _value, grad = evaluate(theta)  # type: ignore[operator]
    k = theta.size
    jac = np.eye(k)
    for i in np.flatnonzero(~held):
        step = 1e-4 * max(theta[i], 1e-2)
        shifted = theta.copy()
        shifted[i] += step
        jac[:, i] = (evaluate(shifted)[1] - grad) / step  # type: ignore[operator]
    jac = 0.5 * (jac + jac.T)
    for _ in range(10):
        free = ~((theta <= 0.0) & (grad > 0)) & ~held
        sub = jac[np.ix_(free, free)]
        if not free.any():
            return theta, jac, True
        if np.any(np.linalg.eigvalsh(sub) <= 0):
            return theta, jac, False
        direction = np.zeros(k)
        direction[free] = -np.linalg.solve(sub, grad[free])
        candidate = np.clip(theta + direction, 0.0, upper)
        _, new_grad = evaluate(candidate)  # type: ignore[operator]
        step = candidate - theta
        if float(step @ step) > 0:  # Broyden's update, kept symmetric
            jac = jac + np.outer(new_grad - grad - jac @ step, step) / float(step @ step)
            jac = 0.5 * (jac + jac.T)
        theta, grad = candidate, new_grad
        if np.max(np.abs(step)) <= STEP_TOLERANCE * (1.0 + np.max(np.abs(theta))):
            return theta, jac, True
    return theta, jac, False


CrossedSolver = Literal["auto", "direct", "iterative"]


def iterative_bytes(
    codes: tuple[np.ndarray, ...], n_groups: list[int], p: int, n_probes: int = PROBES
) -> int:
    """Memory the iterative engine needs, from an upper bound on the pairs of
    other-factor effects a first-level group links (its rows times the other factors,
    squared) and the CG work arrays."""
    rows = np.bincount(codes[0], minlength=n_groups[0]).astype(np.float64)
    links = float(np.sum((rows * (len(codes) - 1)) ** 2))
    work = 10.0 * 8 * sum(n_groups[1:]) * (n_probes + p + 1)
    return int(48 * links + work)


def check_probes(n_probes: object) -> None:
    """``n_probes`` is a whole number of at least :data:`MIN_PROBES`."""
    whole = isinstance(n_probes, (int, np.integer)) and not isinstance(n_probes, bool)
    if not whole or int(n_probes) < MIN_PROBES:  # type: ignore[call-overload]
        raise EvalkitInputError(
            f"n_probes must be a whole number of at least {MIN_PROBES} (the Monte Carlo error "
            f"is estimated from the probes' spread); got {n_probes!r}."
        )


def choose_solver(
    solver: str,
    names: list[str],
    codes: tuple[np.ndarray, ...],
    q: list[int],
    p: int,
    n_probes: int = PROBES,
) -> bool:
    """Whether the crossed design is fitted iteratively (approximate) rather than by the
    dense blocked factorisation; errors before any work when neither can run."""
    n_groups = [int(c.max()) + 1 for c in codes]
    intercepts = all(k == 1 for k in q)
    if solver == "iterative" and not intercepts:
        raise EvalkitInputError(
            "solver='iterative' fits crossed random intercepts only; this model has random "
            f"slopes on {', '.join(n for n, k in zip(names, q, strict=True) if k > 1)}."
        )
    if solver == "direct" or (solver == "auto" and not intercepts):
        check_memory(names, n_groups, q, p)
        return False
    if solver == "auto":
        try:
            check_memory(names, n_groups, q, p)
            return False
        except EvalkitInputError:
            pass
    need = iterative_bytes(codes, n_groups, p, n_probes)
    have = available_memory()
    if need > DENSE_MEMORY_SHARE * have:
        raise EvalkitInputError(
            f"the iterative engine needs about {need / 2**30:.1f} GiB for {names[0]} "
            f"({n_groups[0]:,} groups) crossed with "
            + ", ".join(f"{n} ({g:,} groups)" for n, g in zip(names[1:], n_groups[1:], strict=True))
            + f"; this machine has {have / 2**30:.1f} GiB available. Fit a subset of the data."
        )
    return True
