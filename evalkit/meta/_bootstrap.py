"""The cluster wild bootstrap test for meta-regression coefficients.

When Satterthwaite degrees of freedom are small (below about 4) the CR2 t and HTZ
tests lose their accuracy; the cluster wild bootstrap (Joshi, Pustejovsky &
Beretvas 2022) keeps its size. Residuals of the null model (the constrained terms
removed) are multiplied by one Rademacher weight per cluster and added back to the
null fitted values; every bootstrap sample is refitted with the working weights of
the original fit, and its CR2 Wald statistic is compared with the observed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evalkit.core import EvalkitInputError, RobustResults, wald_test

CHUNK = 256


@dataclass(frozen=True)
class BootstrapTest:
    """A cluster wild bootstrap test that several coefficients are zero."""

    terms: tuple[str, ...]
    statistic: float
    p_value: float
    replications: int
    seed: int | None


def wild_bootstrap_test(
    result: RobustResults,
    terms: list[str],
    *,
    replications: int = 1999,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> BootstrapTest:
    """Cluster wild bootstrap p-value for the hypothesis that ``terms`` are zero.

    Parameters
    ----------
    result
        A fit with CR2 (or CR0/CR1) robust variance from :func:`evalkit.meta.robust`.
    terms
        Coefficients to test jointly.
    replications
        Number of bootstrap samples.
    seed, rng
        Randomness: a seed or a ``numpy.random.Generator`` (not both).

    Returns
    -------
    BootstrapTest
        The observed robust Wald statistic and the share of bootstrap statistics at
        least as large (with the observed one counted, so p > 0).
    """
    if result.parts is None:
        raise EvalkitInputError("wild_bootstrap_test needs a result from evalkit.meta.robust().")
    if replications < 99:
        raise EvalkitInputError(f"replications must be at least 99, got {replications}.")
    if seed is not None and rng is not None:
        raise EvalkitInputError("pass seed or rng, not both.")
    gen = rng if rng is not None else np.random.default_rng(seed)
    wald_test(result, terms)  # validates the terms
    parts = result.parts
    index = [int(np.flatnonzero(result.params.index == t)[0]) for t in terms]
    constraints = np.eye(result.params.size)[index]
    keep = [j for j in range(result.params.size) if j not in index]
    designs = parts.designs
    weights = [np.linalg.inv(theta) for theta in parts.working]
    y_blocks = parts.outcomes
    # Null model with the same working weights.
    info0 = sum(x[:, keep].T @ w @ x[:, keep] for x, w in zip(designs, weights, strict=True))
    score0 = sum(x[:, keep].T @ w @ y for x, w, y in zip(designs, weights, y_blocks, strict=True))
    beta0 = np.linalg.solve(np.atleast_2d(info0), np.atleast_1d(score0)) if keep else np.zeros(0)
    fitted0 = [x[:, keep] @ beta0 for x in designs]
    residual0 = [y - f for y, f in zip(y_blocks, fitted0, strict=True)]
    statistic = _robust_wald(result, constraints, [y[:, None] for y in y_blocks])[0]
    exceed = 0
    done = 0
    while done < replications:
        size = min(CHUNK, replications - done)
        signs = gen.choice(np.array([-1.0, 1.0]), size=(len(designs), size))
        samples = [
            f[:, None] + r[:, None] * signs[j]
            for j, (f, r) in enumerate(zip(fitted0, residual0, strict=True))
        ]
        stats_b = _robust_wald(result, constraints, samples)
        exceed += int(np.sum(stats_b >= statistic - 1e-12 * abs(statistic)))
        done += size
    return BootstrapTest(
        tuple(terms), float(statistic), (exceed + 1) / (replications + 1), replications, seed
    )


def _robust_wald(
    result: RobustResults, constraints: np.ndarray, y_blocks: list[np.ndarray]
) -> np.ndarray:
    """CR-robust Wald statistics for many outcome vectors at once (columns of the blocks)."""
    parts = result.parts
    assert parts is not None
    weights = [np.linalg.inv(theta) for theta in parts.working]
    score = sum(x.T @ w @ y for x, w, y in zip(parts.designs, weights, y_blocks, strict=True))
    beta = parts.bread @ score  # p × B
    contrib = np.stack(
        [
            e @ (y - x @ beta)
            for e, x, y in zip(parts.estimating, parts.designs, y_blocks, strict=True)
        ]
    )  # J × p × B
    projected = np.einsum("qp,jpb->jqb", constraints, contrib)
    cov = np.einsum("jqb,jrb->bqr", projected, projected)
    cb = (constraints @ beta).T  # B × q
    solved = np.linalg.solve(cov, cb[..., None])[..., 0]
    return np.asarray(np.sum(cb * solved, axis=1))
