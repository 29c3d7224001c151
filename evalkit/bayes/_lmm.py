"""Bayesian linear (and logistic) mixed models with PyMC, sampled by nutpie or PyMC.

The data are prepared by :func:`evalkit.multilevel.specify` (the same formulas, checks
and design as the REML engine, without a REML fit).
Gaussian outcomes are standardised internally; default priors are weakly informative
on that scale and reported back on the original one:

* coefficients: ``Normal(0, 2.5 / SD(x))`` (per SD of the predictor, in outcome SDs),
  intercept ``Normal(0, 5)``;
* residual SD and random-effect SDs: ``HalfNormal(1)`` (in outcome SDs; random-slope
  SDs per SD of the slope variable);
* correlations of random effects: ``LKJ(2)``.

Any prior can be replaced by name with an :class:`~evalkit.bayes.Prior` (or a number:
``Normal(0, number)`` for a coefficient, ``HalfNormal(number)`` for an SD): ``beta``
(every coefficient), a term's name (``coached``), ``sigma``, ``sd_<level>``.
Coefficient priors are in outcome SDs per unit of the predictor — for a 0/1 treatment,
in effect-size units.

``collapsed=True`` (Gaussian outcomes) integrates the random effects out analytically:
the marginal likelihood comes from the same per-cluster sufficient statistics the REML
engine uses, by the same recursive Woodbury reduction, evaluated with its exact
gradient by compiled kernels (:mod:`evalkit.bayes._collapsed` for random intercepts,
:mod:`evalkit.bayes._collapsed_slopes` for correlated intercepts and slopes), so a
gradient costs time in proportion to the number of groups, not students. With Normal
coefficient priors (the default) β is integrated out as well: NUTS explores only σ and
the random-effect covariance parameters, and β is drawn afterwards, for every
posterior draw, from its exact conditional (Gaussian) distribution.
``collapsed=False`` is the plain non-centred model.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit.bayes._collapsed import Layout
from evalkit.bayes._collapsed_loglik import coefficient_draws, marginal_loglik
from evalkit.bayes._collapsed_slopes import SlopeLayout
from evalkit.bayes._priors import ModelPriors, Prior, resolve
from evalkit.bayes._results import (
    BayesResults,
    array_diagnostics,
    diagnostics_of,
    sampling_warnings,
)
from evalkit.core import INTERCEPT, EvalkitInputError, VarianceComponents
from evalkit.multilevel import MixedModelSpec, SufficientStats, specify

Sampler = Literal["nutpie", "pymc"]
Family = Literal["gaussian", "bernoulli"]


def _prior_scale(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.ones(x.shape[1])
    return np.where(sd > 0, 2.5 / np.where(sd > 0, sd, 1.0), 5.0)


def _collapsed_layout(fit: MixedModelSpec, y_std: np.ndarray) -> Layout | SlopeLayout:
    """The collapsed kernel's data: per-cluster sufficient statistics of the
    standardised outcome, as the REML engine builds them."""
    if fit.crossed:
        raise EvalkitInputError(
            "the Bayesian layer fits nested random effects; this model's grouping factors "
            "cross. Fit it with evalkit.multilevel.lmm (REML/ML) instead."
        )
    stats = fit.sufficient_statistics(y_std)
    assert isinstance(stats, SufficientStats)
    widths = [z.shape[1] for z in fit.frame.z]
    return Layout.from_stats(stats) if max(widths) == 1 else SlopeLayout.from_stats(stats)


def _build(
    fit: MixedModelSpec,
    family: str,
    collapsed: bool,
    priors: Mapping[str, Prior | float] | None,
) -> tuple[Any, dict[str, Any]]:
    import pymc as pm
    import pytensor.tensor as pt

    frame = fit.frame
    x, y = frame.x, frame.y
    terms = list(fit.terms)
    info: dict[str, Any] = {"terms": terms}
    if family == "gaussian":
        center, spread = float(y.mean()), float(y.std(ddof=1))
        y_model = (y - center) / spread
    else:
        if not np.isin(y, (0.0, 1.0)).all():
            raise EvalkitInputError("family='bernoulli' needs a 0/1 outcome.")
        center, spread = 0.0, 1.0
        y_model = y
    info.update(center=center, spread=spread)
    chosen = resolve(
        priors,
        terms=terms,
        default_scales=_prior_scale(x),
        levels=[level.name for level in fit.levels],
        gaussian=family == "gaussian",
    )
    info["priors"] = chosen.notes
    # Constants of the graph beyond the priors' notes (slope SD priors scale with the
    # slope variables' SDs): part of the compiled-model cache key.
    info["random"] = tuple(
        (level.name, level.columns, tuple(np.round(frame.z[index].std(axis=0), 12)))
        for index, level in enumerate(fit.levels)
    )
    _check_blocks(fit)
    with pm.Model() as model:
        sigma = chosen.sigma.variable("sigma") if chosen.sigma is not None else None
        # A collapsed model with Normal coefficient priors integrates the coefficients
        # out too and draws them afterwards from their exact conditional distribution.
        integrate = collapsed and chosen.all_normal
        beta = None if integrate else _coefficients(chosen.coefficients)
        if collapsed:
            factors = [
                _level_factor(level.name, frame.z[index], chosen)
                for index, level in enumerate(fit.levels)
            ]
            theta = pm.Deterministic(
                "theta_collapsed", pt.concatenate([f / sigma for f in factors])
            )
            layout = _collapsed_layout(fit, y_model)
            if integrate:
                prior_sd = np.array([p.sigma for p in chosen.coefficients])
                prior_mean = np.array([p.mu for p in chosen.coefficients])
                loglik = marginal_loglik(
                    layout, sigma, theta, prior_sd=prior_sd, prior_mean=prior_mean
                )
                info.update(layout=layout, prior_sd=prior_sd, prior_mean=prior_mean)
            else:
                loglik = marginal_loglik(layout, sigma, theta, beta=beta)
            pm.Potential("marginal_likelihood", loglik)
            return model, info
        eta = pt.dot(x, beta)
        for index, level in enumerate(fit.levels):
            effects = _plain_effects(level.name, frame.z[index], frame.codes[index], chosen)
            eta = eta + (effects[frame.codes[index]] * frame.z[index]).sum(axis=1)
        if family == "gaussian":
            pm.Normal("y", eta, sigma, observed=y_model)
        else:
            pm.Bernoulli("y", logit_p=eta, observed=y_model)
    return model, info


def _check_blocks(fit: MixedModelSpec) -> None:
    """One correlated block of random effects per level (``(1 + x | g)``)."""
    for level in fit.levels:
        if len(level.blocks) > 1:
            raise EvalkitInputError(
                f"the Bayesian models take one correlated block of random effects per level; "
                f"write the uncorrelated terms for {level.name} as one term "
                f"(1 + {' + '.join(c for c in level.columns if c != '1')} | …)."
            )


def _level_factor(name: str, z: np.ndarray, chosen: ModelPriors) -> Any:
    """The level's random-effect covariance factor in outcome units, packed by rows
    (``np.tril_indices``): the SD for an intercept, the LKJ Cholesky factor's lower
    triangle for correlated intercepts and slopes."""
    q = z.shape[1]
    if q == 1:
        return chosen.sds[name].variable(f"sd_{name}")[None]
    chol = _lkj_factor(name, z, chosen)
    rows, cols = np.tril_indices(q)
    return chol[rows, cols]


def _lkj_factor(name: str, z: np.ndarray, chosen: ModelPriors) -> Any:
    """``LKJ(2)`` correlations and the level's SD priors (by default ``HalfNormal`` with
    scale 1/SD of each slope variable): the Cholesky factor of the covariance."""
    import pymc as pm

    q = z.shape[1]
    spread = z.std(axis=0)
    slope_scale = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 1.0)
    prior = chosen.sds[name]
    default = prior == Prior.half_normal(1.0)
    sd_dist = pm.HalfNormal.dist(slope_scale, shape=q) if default else prior.distribution(shape=q)
    if default:
        chosen.notes[f"sd_{name}"] = "HalfNormal(1/SD of each slope variable) (outcome SDs)"
    chol, _, _ = pm.LKJCholeskyCov(f"chol_{name}", n=q, eta=2.0, sd_dist=sd_dist, compute_corr=True)
    return chol


def _coefficients(priors: list[Prior]) -> Any:
    """The coefficient vector ``beta``: one Normal vector when every prior is Normal,
    otherwise one variable per coefficient gathered in a deterministic ``beta``."""
    import pymc as pm
    import pytensor.tensor as pt

    if all(p.family == "normal" for p in priors):
        mu = np.array([p.mu for p in priors])
        sd = np.array([p.sigma for p in priors])
        return pm.Normal("beta", mu, sd, shape=len(priors))
    parts = [p.variable(f"beta_{i}") for i, p in enumerate(priors)]
    return pm.Deterministic("beta", pt.stack(parts))


def _plain_effects(name: str, z: np.ndarray, codes: np.ndarray, chosen: ModelPriors) -> Any:
    """Non-centred random effects of one level (groups × q)."""
    import pymc as pm

    groups = int(codes.max()) + 1
    q = z.shape[1]
    if q == 1:
        tau = chosen.sds[name].variable(f"sd_{name}")
        offset = pm.Normal(f"z_{name}", 0.0, 1.0, shape=groups)
        return (tau * offset)[:, None]
    chol = _lkj_factor(name, z, chosen)
    offset = pm.Normal(f"z_{name}", 0.0, 1.0, shape=(groups, q))
    return pm.math.dot(offset, chol.T)


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    priors: Mapping[str, Prior | float] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: Sampler = "nutpie",
    collapsed: bool | None = None,
    family: Family = "gaussian",
    target_accept: float = 0.9,
) -> BayesResults:
    """Bayesian mixed model with lme4-style formulas.

    Parameters
    ----------
    formula, data
        As :func:`evalkit.multilevel.lmm`.
    priors
        Overrides of the default priors by name: ``beta`` (all coefficients), a term
        (``"coached"``), ``sigma``, ``sd_<level>``; values are :class:`Prior` objects
        or numbers (see the module docs).
    draws, tune, chains, seed
        Sampling settings.
    sampler
        ``"nutpie"`` (default, when installed) or ``"pymc"`` (PyMC's NUTS).
    collapsed
        Integrate the random effects out (default: yes for Gaussian outcomes; the
        Bernoulli family always samples them).
    family
        ``"gaussian"`` or ``"bernoulli"`` (logit link; e.g. proficiency).
    """
    if family not in ("gaussian", "bernoulli"):
        raise EvalkitInputError(f"family={family!r}: choose 'gaussian' or 'bernoulli'.")
    # The REML engine's specification step prepares the data (same formula syntax,
    # checks and model frame); nothing is fitted by REML.
    prepared = specify(formula, data)
    use_collapsed = family == "gaussian" if collapsed is None else collapsed
    if use_collapsed and family != "gaussian":
        raise EvalkitInputError("collapsed=True is for Gaussian outcomes.")
    model, info = _build(prepared, family, use_collapsed, priors)
    start = time.perf_counter()
    timing: dict[str, float] = {"compile_seconds": 0.0}
    idata = _sample(
        model,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        target_accept=target_accept,
        timing=timing,
        cache_key=_structure(model, info, family),
    )
    if "layout" in info:
        _add_coefficient_draws(idata, prepared, info, seed)
    timing["seconds"] = time.perf_counter() - start
    settings = {"draws": draws * chains, "chains": chains, "sampler": sampler}
    return _results(idata, prepared, info, timing, settings, family, use_collapsed)


def _coefficient_frame(posterior: Any, info: dict[str, Any]) -> pd.DataFrame:
    """Coefficient draws on the original outcome scale (draws × terms)."""
    terms = info["terms"]
    beta = posterior["beta"].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    beta = beta * info["spread"]
    if INTERCEPT in terms:
        beta[:, terms.index(INTERCEPT)] += info["center"]
    return pd.DataFrame(beta, columns=terms)


def _results(
    idata: Any,
    prepared: MixedModelSpec,
    info: dict[str, Any],
    timing: dict[str, float],
    settings: dict[str, Any],
    family: str,
    collapsed: bool,
) -> BayesResults:
    """Posterior summaries on the results contract, with diagnostics and warnings."""
    posterior = idata.posterior
    terms, scale = info["terms"], info["spread"]
    draws_frame = _coefficient_frame(posterior, info)
    extra = {}
    if family == "gaussian":
        extra["sigma"] = posterior["sigma"].to_numpy().ravel() * scale
    extra.update(_variance_draws(posterior, prepared, scale))
    diagnostics = pd.concat(
        [
            diagnostics_of(idata, {"beta": terms}),
            array_diagnostics(extra, int(posterior.sizes["chain"])),
        ]
    )
    stats = idata.sample_stats
    facts = {
        **settings, "collapsed": collapsed, "family": family,
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else 0,
        "sampling_seconds": timing["seconds"] - timing["compile_seconds"],
        "compile_seconds": timing["compile_seconds"],
    }  # fmt: skip
    index = pd.Index(terms)
    cov = np.atleast_2d(np.cov(draws_frame.to_numpy(), rowvar=False))
    return BayesResults(
        params=draws_frame.mean(),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(np.inf, index=index),
        nobs=prepared.nobs,
        model=f"Bayesian mixed model ({family}{', collapsed' if collapsed else ''})",
        backend=settings["sampler"],
        n_groups=dict(prepared.n_groups),
        facts=facts,
        warnings=tuple(sampling_warnings(idata, diagnostics)),
        dropped=prepared.dropped,
        formula=prepared.formula,
        idata=idata,
        draws=pd.concat([draws_frame, pd.DataFrame(extra)], axis=1),
        diagnostics=diagnostics,
        priors=info["priors"],
        prepared=prepared,
        scale=(info["center"], scale),
        variance_components=posterior_components(extra, prepared),
    )


def posterior_components(
    draws: Mapping[str, np.ndarray], fit: MixedModelSpec
) -> VarianceComponents:
    """Posterior means of the random-effect variances and covariances (and of σ² for a
    Gaussian model), as the shared table; ``draws`` as :func:`_variance_draws` names them."""
    matrices = {}
    for level in fit.levels:
        labels = [INTERCEPT if c == "1" else c for c in level.columns]
        if len(labels) == 1:
            sds = np.asarray(draws[f"sd_{level.name}"])[:, None]
        else:
            sds = np.column_stack([draws[f"sd_{level.name}[{label}]"] for label in labels])
        covariance = np.einsum("di,dj->dij", sds, sds)
        for i, a in enumerate(labels):
            for j in range(i):
                rho = np.asarray(draws[f"cor_{level.name}[{labels[j]}, {a}]"])
                covariance[:, i, j] *= rho
                covariance[:, j, i] *= rho
        matrices[level.name] = pd.DataFrame(covariance.mean(axis=0), index=labels, columns=labels)
    residual = float(np.mean(np.asarray(draws["sigma"]) ** 2)) if "sigma" in draws else None
    return VarianceComponents.from_matrices(matrices, residual=residual)


def _variance_draws(posterior: Any, fit: MixedModelSpec, scale: float) -> dict[str, np.ndarray]:
    """Random-effect SDs (original outcome units; slopes per unit of their variable)
    and correlations: ``sd_<level>`` for an intercept-only level, otherwise
    ``sd_<level>[<column>]`` and ``cor_<level>[<column>,<column>]``."""
    out: dict[str, np.ndarray] = {}
    for level in fit.levels:
        name = level.name
        if f"sd_{name}" in posterior:
            out[f"sd_{name}"] = posterior[f"sd_{name}"].to_numpy().ravel() * scale
            continue
        labels = [INTERCEPT if c == "1" else c for c in level.columns]
        stds = posterior[f"chol_{name}_stds"].to_numpy().reshape(-1, len(labels))
        corr = posterior[f"chol_{name}_corr"].to_numpy().reshape(-1, len(labels), len(labels))
        for i, label in enumerate(labels):
            out[f"sd_{name}[{label}]"] = stds[:, i] * scale
            for j in range(i):
                out[f"cor_{name}[{labels[j]}, {label}]"] = corr[:, i, j]
    return out


def _add_coefficient_draws(
    idata: Any, fit: MixedModelSpec, info: dict[str, Any], seed: int | None
) -> None:
    """β drawn from its exact conditional posterior given each draw of the variance
    parameters (the collapsed model integrated it out), added to the posterior."""
    import xarray as xr

    posterior = idata.posterior
    shape = posterior["sigma"].shape
    sigma = posterior["sigma"].to_numpy().ravel()
    theta = posterior["theta_collapsed"].to_numpy().reshape(sigma.size, -1)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    beta = coefficient_draws(
        info["layout"], sigma, theta, info["prior_sd"], rng, prior_mean=info["prior_mean"]
    )
    idata.posterior["beta"] = xr.DataArray(
        beta.reshape(*shape, -1),
        dims=("chain", "draw", "beta_dim_0"),
        coords={"chain": posterior["chain"], "draw": posterior["draw"]},
    )


_COMPILED: OrderedDict[Hashable, Any] = OrderedDict()
"""Compiled nutpie models of collapsed fits and meta-analyses by structure (at most
``_CACHE_SIZE``): refits with other Normal coefficient priors, or another data set of
the same shape, swap their data into the compiled model instead of compiling again."""
_CACHE_SIZE = 8


def _compiled(nutpie: Any, model: Any, cache_key: Hashable | None) -> Any:
    if cache_key is None:
        return nutpie.compile_pymc_model(model)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
        data = {var.name: var.get_value() for var in model.data_vars}
        return _COMPILED[cache_key].with_data(**data)
    compiled = nutpie.compile_pymc_model(model)
    _COMPILED[cache_key] = compiled
    if len(_COMPILED) > _CACHE_SIZE:
        _COMPILED.popitem(last=False)
    return compiled


def _structure(model: Any, info: dict[str, Any], family: str) -> Hashable | None:
    """What a compiled collapsed model depends on beyond its data: the terms, the
    levels and the priors held as constants (Normal coefficient priors are data)."""
    if "layout" not in info:
        return None
    priors = tuple(sorted((k, v) for k, v in info["priors"].items() if not k.startswith("beta")))
    shapes = tuple((var.name, var.get_value().shape) for var in model.data_vars)
    return (family, tuple(info["terms"]), info["random"], priors, shapes)


def _sample(
    model: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int | None,
    sampler: str,
    target_accept: float,
    timing: dict[str, float] | None = None,
    cache_key: Hashable | None = None,
) -> Any:
    import pymc as pm

    if sampler not in ("nutpie", "pymc"):
        raise EvalkitInputError(f"sampler={sampler!r}: choose 'nutpie' or 'pymc'.")
    if sampler == "nutpie":
        try:
            import nutpie
        except ImportError:
            sampler = "pymc"
        else:
            begun = time.perf_counter()
            compiled = _compiled(nutpie, model, cache_key)
            if timing is not None:
                timing["compile_seconds"] = time.perf_counter() - begun
            return nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                seed=seed,
                progress_bar=False,
                target_accept=target_accept,
            )
    with model:
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            progressbar=False,
            target_accept=target_accept,
            cores=1,
        )
