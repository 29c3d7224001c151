"""Bayesian random-effects and multilevel meta-analysis with moderators.

``y_i = x_iβ + Σ_l u_{l,g(i)} + e_i``, ``e_i ~ N(0, v_i)`` with known ``v_i``, random
effects non-centred. Default priors on the effect-size scale: coefficients
``Normal(0, 1)`` (an effect of 1 SD is large in education), heterogeneity SDs
``HalfNormal(0.5)`` (half the prior mass below 0.34 SD, Williams, Rast & Bürkner 2018
use similar scales). The predictive distribution of a new study's effect is returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evalkit.bayes._lmm import _sample
from evalkit.bayes._results import BayesResults, diagnostics_of, sampling_warnings
from evalkit.core import (
    INTERCEPT,
    EvalkitInputError,
    VarianceComponents,
    read_formula,
    require_columns,
)


def meta_analysis(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    moderators: str | None = None,
    levels: Sequence[str] | None = None,
    prior_sd: float = 1.0,
    prior_tau: float = 0.5,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: str = "nutpie",
) -> BayesResults:
    """Bayesian meta-analysis: random effects (``levels=None``: one per row) or nested
    levels (``["district", "school"]``, outermost first), with moderators (a formulaic
    right-hand side, e.g. ``"hrs + C(design)"``).

    ``draws`` hold each level's heterogeneity SD (``sd_<level>``, τ), and
    ``variance_components`` the posterior mean of each τ²; ``facts`` carry the 95%
    predictive interval of a new study's effect (``predictive_low``,
    ``predictive_high``, intercept-only models).
    """
    if not (prior_sd > 0 and prior_tau > 0):
        raise EvalkitInputError(
            f"prior_sd and prior_tau must be positive, got {prior_sd!r} and {prior_tau!r}."
        )
    inputs = _inputs(data, effect, variance, moderators, levels)
    structure = (
        inputs.x.tobytes(),
        tuple(k.to_numpy().tobytes() for k in inputs.keys),
        prior_sd,
        prior_tau,
        sampler,
    )
    start = time.perf_counter()
    model = _model(inputs, prior_sd, prior_tau)
    # Same structure as an earlier fit: the effect sizes and variances are swapped into
    # the compiled model (simulation studies compile once).
    idata = _sample(
        model,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        target_accept=0.95,
        cache_key=("meta", structure),
    )
    seconds = time.perf_counter() - start
    beta_draws = (
        idata.posterior["beta"].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    )
    names = inputs.names
    tau_draws = {f"sd_{n}": idata.posterior[f"sd_{n}"].to_numpy().ravel() for n in names}
    labels: dict[str, str | list[str]] = {"beta": inputs.terms}
    labels.update({k: k for k in tau_draws})
    diagnostics = diagnostics_of(idata, labels)
    facts: dict[str, Any] = {
        "draws": draws * chains,
        "chains": chains,
        "sampler": sampler,
        "sampling_seconds": seconds,
        "divergences": int(idata.sample_stats["diverging"].sum())
        if "diverging" in idata.sample_stats
        else 0,
    }
    if not moderators:
        facts.update(_predictive(beta_draws[:, 0], tau_draws, seed))
    index = pd.Index(inputs.terms)
    return BayesResults(
        params=pd.DataFrame(beta_draws, columns=inputs.terms).mean(),
        cov=pd.DataFrame(
            np.atleast_2d(np.cov(beta_draws, rowvar=False)), index=index, columns=index
        ),
        df=pd.Series(np.inf, index=index),
        nobs=inputs.y.size,
        model=f"Bayesian meta-analysis ({'multilevel' if levels else 'random effects'})",
        backend=sampler,
        n_groups={n: int(k.nunique()) for n, k in zip(names, inputs.keys, strict=True)},
        facts=facts,
        warnings=tuple(sampling_warnings(idata, diagnostics)),
        idata=idata,
        draws=pd.concat(
            [pd.DataFrame(beta_draws, columns=inputs.terms), pd.DataFrame(tau_draws)], axis=1
        ),
        diagnostics=diagnostics,
        priors={"beta": f"Normal(0, {prior_sd:g})", "tau": f"HalfNormal({prior_tau:g})"},
        variance_components=VarianceComponents.from_variances(
            {n: float(np.mean(tau_draws[f"sd_{n}"] ** 2)) for n in names}
        ),
    )


@dataclass(frozen=True)
class _Inputs:
    """Checked effect sizes, variances, moderator design and level memberships."""

    y: np.ndarray
    v: np.ndarray
    x: np.ndarray
    terms: list[str]
    names: list[str]
    keys: list[pd.Series]


def _inputs(
    data: pd.DataFrame,
    effect: str,
    variance: str,
    moderators: str | None,
    levels: Sequence[str] | None,
) -> _Inputs:

    require_columns(data, [effect, variance, *(levels or [])])
    frame = data.reset_index(drop=True)
    v = frame[variance].to_numpy(dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise EvalkitInputError(f"column {variance!r} must hold positive sampling variances.")
    y = frame[effect].to_numpy(dtype=float)
    if not np.all(np.isfinite(y)):
        raise EvalkitInputError(
            f"column {effect!r} has missing or non-finite effect sizes; drop them first."
        )
    if moderators:
        matrix = read_formula(moderators, what="moderator formula").get_model_matrix(
            frame, output="pandas"
        )
        x = matrix.to_numpy(dtype=float)
        terms = [str(c) for c in matrix.columns]
    else:
        x = np.ones((len(frame), 1))
        terms = [INTERCEPT]
    if levels:
        keys = [
            frame[list(levels[: i + 1])].astype(str).agg("/".join, axis=1)
            for i in range(len(levels))
        ]
        names = list(levels)
    else:
        keys = [pd.Series(np.arange(len(frame)).astype(str), index=frame.index)]
        names = ["study"]
    return _Inputs(y, v, x, terms, names, keys)


def _model(inputs: _Inputs, prior_sd: float, prior_tau: float) -> Any:
    """The non-centred PyMC model (sampling errors known)."""
    import pymc as pm

    with pm.Model() as model:
        y_obs = pm.Data("y_obs", inputs.y)
        sd_obs = pm.Data("sd_obs", np.sqrt(inputs.v))
        beta = pm.Normal("beta", 0.0, prior_sd, shape=len(inputs.terms))
        mean = pm.math.dot(inputs.x, beta)
        for name, key in zip(inputs.names, inputs.keys, strict=True):
            codes, uniques = pd.factorize(key)
            tau = pm.HalfNormal(f"sd_{name}", prior_tau)
            offset = pm.Normal(f"z_{name}", 0.0, 1.0, shape=len(uniques))
            mean = mean + tau * offset[codes]
        pm.Normal("y", mean, sd_obs, observed=y_obs)
    return model


def _predictive(
    mu: np.ndarray, tau_draws: dict[str, np.ndarray], seed: int | None
) -> dict[str, float]:
    """95% predictive interval of a new study's true effect: μ + N(0, Σ τ²) per draw."""
    rng = np.random.default_rng(seed)
    total_sd = np.sqrt(sum(values**2 for values in tau_draws.values()))
    new = mu + rng.standard_normal(mu.shape[0]) * total_sd
    low, high = np.quantile(new, [0.025, 0.975])
    return {"predictive_low": float(low), "predictive_high": float(high)}
