"""Monte Carlo draws of the path coefficients and what follows from them.

The a path comes from the mediator equation and the b path and direct effect from the
outcome equation; estimates from the two equations are independent (their likelihoods
factor), so each equation's coefficients are drawn from a normal distribution with that
equation's covariance, and functions of the paths (the indirect effect a·b, the total
effect, conditional indirect effects, indices of moderated mediation) are read off the
draws: the Monte Carlo confidence interval of Preacher & Selig (2012), Communication
Methods and Measures 6(2), 77-98.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, ModelResults


@dataclass(frozen=True)
class PathTerms:
    """Names of the coefficients that make up the paths, in each equation."""

    a: str
    b: str
    direct: str
    b_within: str | None = None
    a_moderated: str | None = None
    b_moderated: str | None = None

    def mediator_terms(self) -> list[str]:
        return [self.a] + ([self.a_moderated] if self.a_moderated else [])

    def outcome_terms(self) -> list[str]:
        extra = [t for t in (self.b_within, self.b_moderated) if t]
        return [self.b, self.direct, *extra]


def draw_paths(
    mediator_fit: ModelResults,
    outcome_fit: ModelResults,
    terms: PathTerms,
    *,
    n_draws: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Joint normal draws of each equation's path coefficients (columns named by the
    role: ``a``, ``b``, ``direct``, ``b_within``, ``a_moderated``, ``b_moderated``)."""
    roles_a = ["a"] + (["a_moderated"] if terms.a_moderated else [])
    roles_b = ["b", "direct"] + [
        r for r, t in (("b_within", terms.b_within), ("b_moderated", terms.b_moderated)) if t
    ]
    columns: dict[str, np.ndarray] = {}
    for fit, names, roles in (
        (mediator_fit, terms.mediator_terms(), roles_a),
        (outcome_fit, terms.outcome_terms(), roles_b),
    ):
        mean = fit.params[names].to_numpy()
        cov = fit.cov.loc[names, names].to_numpy()
        draws = _normal(mean, cov, n_draws, rng)
        for k, role in enumerate(roles):
            columns[role] = draws[:, k]
    return pd.DataFrame(columns)


def _normal(mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Normal draws through a symmetric square root (valid for semi-definite cov)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2.0)
    if values.min() < -1e-10 * max(values.max(), 1e-300):
        raise EvalkitInputError("a coefficient covariance matrix is not positive semi-definite.")
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    return np.asarray(mean + rng.standard_normal((n, mean.size)) @ root.T)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Equal-tailed percentile interval of the draws."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def conditional(draws: pd.DataFrame, centred: float) -> tuple[np.ndarray, np.ndarray]:
    """Draws of the a and b paths at a moderator value (centred at the units' mean)."""
    a = draws["a"].to_numpy()
    b = draws["b"].to_numpy()
    if "a_moderated" in draws:
        a = a + centred * draws["a_moderated"].to_numpy()
    if "b_moderated" in draws:
        b = b + centred * draws["b_moderated"].to_numpy()
    return a, b


def derived(values: Mapping[str, Any], moderation: str | None) -> dict[str, Any]:
    """The indirect and total effects (and indices of moderated mediation) from path
    values: floats for estimates, arrays for draws or bootstrap replicates."""
    a, b, c = values["a"], values["b"], values["direct"]
    out = {"indirect": a * b, "total": c + a * b}
    if moderation == "first":
        out["index"] = values["a_moderated"] * b
    elif moderation == "second":
        out["index"] = a * values["b_moderated"]
    elif moderation == "both":
        a3, b3 = values["a_moderated"], values["b_moderated"]
        out["index_linear"] = a3 * b + a * b3
        out["index_quadratic"] = a3 * b3
    return out


def derived_gradients(point: pd.Series, moderation: str | None) -> dict[str, np.ndarray]:
    """Gradients of :func:`derived` in the roles of ``point`` (for delta-method SEs)."""
    roles = list(point.index)
    p = {role: float(point[role]) for role in roles}

    def grad(**parts: float) -> np.ndarray:
        g = np.zeros(len(roles))
        for role, value in parts.items():
            g[roles.index(role)] += value
        return g

    out = {
        "indirect": grad(a=p["b"], b=p["a"]),
        "total": grad(a=p["b"], b=p["a"], direct=1.0),
    }
    if moderation == "first":
        out["index"] = grad(a_moderated=p["b"], b=p["a_moderated"])
    elif moderation == "second":
        out["index"] = grad(a=p["b_moderated"], b_moderated=p["a"])
    elif moderation == "both":
        out["index_linear"] = grad(
            a_moderated=p["b"], b=p["a_moderated"], a=p["b_moderated"], b_moderated=p["a"]
        )
        out["index_quadratic"] = grad(a_moderated=p["b_moderated"], b_moderated=p["a_moderated"])
    return out
