"""After sampling: random effects from their exact conditional distribution (collapsed
fits), posterior predictive checks, and prior predictive checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalkit.bayes._results import BayesResults
from evalkit.core import INTERCEPT, EvalkitInputError
from evalkit.multilevel import Marginal, clusters, specify


def _draw_indices(result: BayesResults, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    total = len(result.draws)
    return rng.choice(total, size=min(n_draws, total), replace=False)


def _labels(level: Any) -> list[str]:
    return [INTERCEPT if c == "1" else c for c in level.columns]


def effect_keys(fit: Any) -> list[tuple[int, int, str]]:
    """``(level index, component, key)`` of every random effect: the level's name for
    an intercept-only level, ``<level>[<column>]`` otherwise."""
    keys = []
    for index, level in enumerate(fit.levels):
        labels = _labels(level)
        for component, label in enumerate(labels):
            key = level.name if len(labels) == 1 else f"{level.name}[{label}]"
            keys.append((index, component, key))
    return keys


def _relative_factors(result: BayesResults, draw: int) -> tuple[list[np.ndarray], float]:
    """Each level's relative covariance factor Λ (Σ = σ²ΛΛᵀ) and σ at one draw."""
    row = result.draws.iloc[draw]
    sigma = float(row["sigma"])
    factors = []
    for level in result.prepared.levels:
        labels = _labels(level)
        if len(labels) == 1:
            factors.append(np.array([[float(row[f"sd_{level.name}"]) / sigma]]))
            continue
        sd = np.array([float(row[f"sd_{level.name}[{label}]"]) for label in labels])
        corr = np.eye(len(labels))
        for i, a in enumerate(labels):
            for j in range(i):
                corr[i, j] = corr[j, i] = float(row[f"cor_{level.name}[{labels[j]}, {a}]"])
        cov = corr * np.outer(sd, sd)
        factors.append(np.linalg.cholesky(cov + 1e-12 * np.eye(len(labels))) / sigma)
    return factors, sigma


def random_effect_draws(
    result: BayesResults, *, n_draws: int = 200, seed: int = 0
) -> dict[str, np.ndarray]:
    """Draws of every group's random effects (original outcome scale; slopes per unit
    of their variable): for each posterior draw of (β, σ, the random-effect covariance)
    the random effects are drawn from their exact Gaussian conditional distribution
    given the data — what integrating them out left to do. Arrays are draws × groups,
    groups in the order of the model frame's codes, keyed by level (intercept-only
    levels) or ``<level>[<column>]``."""
    fit = result.prepared
    if fit is None:
        raise EvalkitInputError("this fit kept no model specification.")
    if "sigma" not in result.draws:
        raise EvalkitInputError("conditional draws are for Gaussian models.")
    rng = np.random.default_rng(seed)
    center, spread = result.scale
    frame = fit.frame
    terms = list(fit.terms)
    y_std = (frame.y - center) / spread
    x = frame.x
    chosen = _draw_indices(result, n_draws, rng)
    sizes = [int(c.max()) + 1 for c in frame.codes]
    keys = effect_keys(fit)
    lookup = {(index, component): key for index, component, key in keys}
    out = {key: np.zeros((chosen.size, sizes[index])) for index, _, key in keys}
    beta_all = result.draws[terms].to_numpy()
    intercept = terms.index(INTERCEPT) if INTERCEPT in terms else None
    groups = list(clusters(frame))
    for row, index in enumerate(chosen):
        beta = beta_all[index] / spread
        if intercept is not None:
            beta[intercept] = (beta_all[index, intercept] - center) / spread
        factors, sigma = _relative_factors(result, int(index))
        sigma /= spread
        for cluster in groups:
            marginal = Marginal.at(cluster, factors, sigma**2)
            resid = y_std[cluster.rows] - x[cluster.rows] @ beta
            mean = marginal.r @ (cluster.z.T @ resid)
            cov = sigma**2 * marginal.r
            values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
            draw = mean + vectors @ (
                np.sqrt(np.clip(values, 0.0, None)) * rng.standard_normal(mean.size)
            )
            for column in range(mean.size):
                key = lookup[(int(cluster.level[column]), int(cluster.component[column]))]
                out[key][row, int(cluster.group[column])] = draw[column] * spread
    return out


def posterior_predictive(
    result: BayesResults, *, n_draws: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Posterior predictive check of a Gaussian mixed model: replicated outcomes from
    (β, σ, random effects) draws, compared with the data on the mean, the SD and the
    SD of top-level cluster means; ``ppp`` is the share of replications above the
    observed statistic (values near 0 or 1 flag misfit)."""
    fit = result.prepared
    if fit is None:
        raise EvalkitInputError("this fit kept no model specification.")
    effects = random_effect_draws(result, n_draws=n_draws, seed=seed)
    rng = np.random.default_rng(seed + 1)
    frame = fit.frame
    terms = list(fit.terms)
    chosen = _draw_indices(result, n_draws, np.random.default_rng(seed))
    top = frame.codes[-1]

    def statistics(values: np.ndarray) -> np.ndarray:
        means = pd.Series(values).groupby(top).mean()
        return np.array([values.mean(), values.std(ddof=1), means.std(ddof=1)])

    observed = statistics(frame.y)
    replicated = []
    for row, index in enumerate(chosen):
        mean = frame.x @ result.draws[terms].iloc[index].to_numpy()
        for level, component, key in effect_keys(fit):
            codes = frame.codes[level]
            mean = mean + effects[key][row][codes] * frame.z[level][:, component]
        y_rep = mean + rng.normal(0.0, float(result.draws["sigma"].iloc[index]), mean.size)
        replicated.append(statistics(y_rep))
    rep = np.array(replicated)
    names = ["mean", "sd", "sd of top-level cluster means"]
    return pd.DataFrame(
        {
            "observed": observed,
            "replicated_mean": rep.mean(axis=0),
            "ppp": (rep > observed).mean(axis=0),
        },
        index=names,
    )


def prior_predictive(
    formula: str, data: pd.DataFrame, *, draws: int = 500, seed: int = 0
) -> pd.DataFrame:
    """What the default priors imply for the outcome before seeing it: quantiles of the
    simulated outcomes' mean and SD (original scale), next to the data's."""
    import pymc as pm

    from evalkit.bayes._lmm import _build

    fit = specify(formula, data)
    model, info = _build(fit, "gaussian", False, None)
    with model:
        prior = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    simulated = (
        prior.prior_predictive["y"].to_numpy().reshape(draws, -1) * info["spread"] + info["center"]
    )
    y = fit.frame.y
    rows: dict[str, Any] = {}
    for name, values, observed in (
        ("mean", simulated.mean(axis=1), y.mean()),
        ("sd", simulated.std(axis=1, ddof=1), y.std(ddof=1)),
    ):
        q = np.quantile(values, [0.05, 0.5, 0.95])
        rows[name] = {"observed": observed, "prior_5%": q[0], "prior_50%": q[1], "prior_95%": q[2]}
    return pd.DataFrame.from_dict(rows, orient="index")
