"""Fitting a nested linear mixed model from its sufficient statistics alone.

The nested engine never needs the rows after the one pass that forms each lowest
group's cross-products (:class:`~evalkit.multilevel.SufficientStats`). Whatever
computed those — :func:`evalkit.multilevel.lmm` from a DataFrame, a power simulation
that draws them directly, a database ``GROUP BY`` — this fits the model from them: the
same optimiser and profiled criterion as :func:`~evalkit.multilevel.lmm`, so the same
numbers, without a model frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from evalkit.core import EvalkitInputError
from evalkit.multilevel.engine import (
    THETA_MAX,
    AnyReducer,
    ThetaLayout,
    _criterion,
    gradient_tolerance,
    optimise,
    profile,
    reducer_for,
)
from evalkit.multilevel.gradient import intercepts_only
from evalkit.multilevel.model import SINGULAR_TOL
from evalkit.multilevel.quasi_newton import projected_norm
from evalkit.multilevel.stats import SufficientStats


@dataclass(frozen=True)
class StatisticsFit:
    """Fixed effects, their covariance, σ² and θ at the optimum, with its checks."""

    beta: np.ndarray
    cov: np.ndarray
    sigma2: float
    theta: np.ndarray
    criterion: float
    converged: bool
    singular: bool


def fit_statistics(
    stats: SufficientStats,
    *,
    blocks: list[list[int]] | None = None,
    reml: bool = True,
    start: np.ndarray | None = None,
    fast: bool = False,
) -> StatisticsFit:
    """Fit the model whose sufficient statistics are ``stats``.

    Parameters
    ----------
    stats
        Cross-products of ``[Z_L, …, Z_1, X, y]`` per lowest group and the nesting.
    blocks
        Sizes of the correlated random-effect blocks of each level, lowest first
        (default: one block per level, ``[[q_1], [q_2], …]`` — random intercepts give
        ``[[1], [1]]``).
    reml
        REML (default) or ML.
    start
        A starting θ (relative factors' entries, lme4's order) tried before lme4's
        default starts; the optimum and its acceptance checks do not depend on it.
    fast
        With ``start`` and random intercepts only: accept the first L-BFGS-B point
        from ``start`` (gradient tolerance 1e-6) that passes the engine's acceptance
        test (projected gradient below its tolerance) instead of polishing it further
        by Newton steps — about half the likelihood evaluations, θ within ~3e-7 of the
        polished optimum on simulated coaching designs. For power simulations; a point
        that fails the test falls back to the full search.

    Examples
    --------
    >>> import pandas as pd
    >>> from evalkit.multilevel import lmm
    >>> data = pd.DataFrame({"y": [1.0, 2.2, 2.9, 4.1, 5.2, 5.8, 7.1, 8.3],
    ...                      "x": [0, 1, 0, 1, 0, 1, 0, 1], "g": [1, 1, 2, 2, 3, 3, 4, 4]})
    >>> fit = lmm("y ~ x + (1 | g)", data)
    >>> again = fit_statistics(fit.stats)
    >>> bool(abs(again.beta[1] - fit.params["x"]) < 1e-8)
    True
    """
    if not isinstance(stats, SufficientStats):
        raise EvalkitInputError("fit_statistics takes the nested engine's SufficientStats.")
    layout = ThetaLayout.build(blocks if blocks is not None else [[q] for q in stats.q])
    if tuple(layout.q) != tuple(stats.q):
        raise EvalkitInputError(
            f"blocks {blocks} give {list(layout.q)} random-effect columns per level; the "
            f"statistics have {stats.q}."
        )
    reducer = reducer_for(stats)
    theta = _quick(stats, layout, reml, start, reducer) if (fast and start is not None) else None
    if theta is None:
        optimum = optimise(stats, layout, reml=reml, start=start)
        theta, converged = optimum.theta, bool(optimum.converged)
    else:
        converged = True
    factors = layout.factors(theta)
    fit = profile(stats, factors, reml=reml, reducer=reducer)
    singular = any(bool(np.any(np.abs(np.diag(t)) < SINGULAR_TOL)) for t in factors)
    return StatisticsFit(
        beta=np.asarray(fit.beta, dtype=np.float64),
        cov=fit.sigma2 * fit.xtmx_inv,
        sigma2=float(fit.sigma2),
        theta=theta,
        criterion=float(fit.deviance),
        converged=converged,
        singular=singular,
    )


def _quick(
    stats: SufficientStats,
    layout: ThetaLayout,
    reml: bool,
    start: np.ndarray,
    reducer: AnyReducer,
) -> np.ndarray | None:
    """L-BFGS-B from ``start`` with exact gradients, accepted by the engine's own
    gradient test; None when it does not pass (the caller runs the full search)."""
    if not intercepts_only(tuple(layout.q)):
        return None
    _, fun_and_grad = _criterion(stats, layout, reml, reducer)
    if fun_and_grad is None:
        return None
    lower = np.zeros(len(layout.q))
    result = optimize.minimize(
        fun_and_grad,
        np.clip(np.asarray(start, dtype=float), 0.0, THETA_MAX),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, THETA_MAX)] * len(layout.q),
        options={"gtol": 1e-6, "ftol": 1e-12, "maxiter": 200},
    )
    theta = np.asarray(result.x)
    norm = projected_norm(theta, np.asarray(result.jac), lower)
    return theta if norm < gradient_tolerance(float(result.fun)) else None
