"""Bayesian linear (and logistic) mixed models with PyMC, sampled by nutpie or PyMC.

The data are prepared by :func:`evalkit.multilevel.lmm` (same formulas, same checks).
Gaussian outcomes are standardised internally; default priors are weakly informative
on that scale and reported back on the original one:

* coefficients: ``Normal(0, 2.5 / SD(x))`` (per SD of the predictor, in outcome SDs),
  intercept ``Normal(0, 5)``;
* residual SD and random-effect SDs: ``HalfNormal(1)`` (in outcome SDs; random-slope
  SDs per SD of the slope variable);
* correlations of random effects: ``LKJ(2)``.

``collapsed=True`` (Gaussian, random intercepts at every level) integrates the random
effects out analytically: the marginal likelihood comes from the same per-cluster
sufficient statistics the REML engine uses, by the same recursive Woodbury reduction
written in PyTensor, so a gradient costs time in proportion to the number of clusters,
not students. ``collapsed=False`` is the plain non-centred model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit._errors import EvalkitInputError
from evalkit.bayes._results import BayesResults, diagnostics_of, sampling_warnings
from evalkit.multilevel import LMMResults
from evalkit.multilevel import lmm as reml_lmm
from evalkit.multilevel.stats import build

Sampler = Literal["nutpie", "pymc"]
Family = Literal["gaussian", "bernoulli"]


def _prior_scale(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.ones(x.shape[1])
    return np.where(sd > 0, 2.5 / np.where(sd > 0, sd, 1.0), 5.0)


def _collapsed_loglik(
    fit: LMMResults, y_std: np.ndarray, beta: Any, sigma: Any, taus: list[Any]
) -> Any:
    """The marginal log-likelihood of a random-intercepts model from sufficient statistics."""
    import pytensor.tensor as pt

    frame = fit.frame
    assert frame is not None
    design = np.column_stack([*frame.z, frame.x, y_std])
    stats = build(design, list(frame.codes), [z.shape[1] for z in frame.z], frame.x.shape[1])
    import pymc as pm

    # Shared data, not a literal: numba would otherwise compile the array into the code.
    cross = pm.Data("cluster_crossproducts", stats.cross)
    logdet = pt.as_tensor_variable(0.0)
    for level, tau in enumerate(taus):
        scale = (tau / sigma) ** 2
        zz = cross[:, 0, 0]
        d = 1.0 + scale * zz
        logdet = logdet + pt.sum(pt.log(d))
        zw = cross[:, 0, 1:]
        cross = cross[:, 1:, 1:] - (scale / d)[:, None, None] * zw[:, :, None] * zw[:, None, :]
        if level < len(taus) - 1:
            starts = stats.starts[level]
            parent = np.repeat(
                np.arange(starts.size), np.diff(np.r_[starts, stats.n_groups[level]])
            )
            width = stats.cross.shape[1] - level - 1
            cross = pt.inc_subtensor(pt.zeros((starts.size, width, width))[parent], cross)
    total = cross.sum(axis=0)
    p = frame.x.shape[1]
    xtx, xty, yty = total[:p, :p], total[:p, p], total[p, p]
    quad = yty - 2.0 * pt.dot(beta, xty) + pt.dot(beta, pt.dot(xtx, beta))
    n = design.shape[0]
    return -0.5 * (n * pt.log(2.0 * np.pi * sigma**2) + logdet + quad / sigma**2)


def _build(
    fit: LMMResults, family: str, collapsed: bool, priors: Mapping[str, Any] | None
) -> tuple[Any, dict[str, Any]]:
    import pymc as pm

    frame = fit.frame
    assert frame is not None
    x, y = frame.x, frame.y
    terms = list(fit.params.index)
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
    priors = dict(priors or {})
    scales = _prior_scale(x)
    described = {}
    with pm.Model() as model:
        beta = priors.get("beta") or pm.Normal("beta", 0.0, scales, shape=len(terms))
        described["beta"] = "Normal(0, 2.5/SD(x)); intercept Normal(0, 5) (standardised outcome)"
        sigma = None
        if family == "gaussian":
            sigma = priors.get("sigma") or pm.HalfNormal("sigma", 1.0)
            described["sigma"] = "HalfNormal(1) (outcome SDs)"
        taus = []
        eta = pm.math.dot(x, beta)
        for index, level in enumerate(fit.levels):
            name = level.name
            codes = frame.codes[index]
            groups = int(codes.max()) + 1
            z = frame.z[index]
            q = z.shape[1]
            if collapsed:
                if q != 1 or level.columns != ("1",):
                    slopes = ", ".join(c for c in level.columns if c != "1")
                    raise EvalkitInputError(
                        f"collapsed=True integrates out random intercepts only; the random slope(s) "
                        f"{slopes} for {name} need collapsed=False."
                    )
                tau = priors.get(f"sd_{name}") or pm.HalfNormal(f"sd_{name}", 1.0)
                taus.append(tau)
                continue
            slope_scale = np.where(
                z.std(axis=0) > 0, 1.0 / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0), 1.0
            )
            if q == 1:
                tau = priors.get(f"sd_{name}") or pm.HalfNormal(f"sd_{name}", float(slope_scale[0]))
                offset = pm.Normal(f"z_{name}", 0.0, 1.0, shape=groups)
                effects = (tau * offset)[:, None]
            else:
                chol, _, _ = pm.LKJCholeskyCov(
                    f"chol_{name}",
                    n=q,
                    eta=2.0,
                    sd_dist=pm.HalfNormal.dist(slope_scale, shape=q),
                    compute_corr=True,
                )
                offset = pm.Normal(f"z_{name}", 0.0, 1.0, shape=(groups, q))
                effects = pm.math.dot(offset, chol.T)
            described[f"sd_{name}"] = "HalfNormal(1) (outcome SDs per SD of the slope variable)"
            eta = eta + (effects[codes] * z).sum(axis=1)
        if collapsed:
            pm.Potential("marginal_likelihood", _collapsed_loglik(fit, y_model, beta, sigma, taus))
            described.update({f"sd_{lv.name}": "HalfNormal(1) (outcome SDs)" for lv in fit.levels})
        elif family == "gaussian":
            pm.Normal("y", eta, sigma, observed=y_model)
        else:
            pm.Bernoulli("y", logit_p=eta, observed=y_model)
    info["priors"] = described
    return model, info


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    priors: Mapping[str, Any] | None = None,
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
        PyMC variables to use instead of the defaults, by name (``beta``, ``sigma``,
        ``sd_<level>``), created inside a model context by the caller's function —
        or leave the defaults (see the module docs).
    draws, tune, chains, seed
        Sampling settings.
    sampler
        ``"nutpie"`` (default, when installed) or ``"pymc"`` (PyMC's NUTS).
    collapsed
        Integrate the random effects out (default: yes for Gaussian random-intercept
        models, no otherwise).
    family
        ``"gaussian"`` or ``"bernoulli"`` (logit link; e.g. proficiency).
    """
    if family not in ("gaussian", "bernoulli"):
        raise EvalkitInputError(f"family={family!r}: choose 'gaussian' or 'bernoulli'.")
    known = {"beta", "sigma"} | {f"sd_{g}" for g in _groupings(formula)}
    unknown = sorted(set(priors or {}) - known)
    if unknown:
        raise EvalkitInputError(
            f"unknown prior(s) {', '.join(unknown)}; the model's are {', '.join(sorted(known))}."
        )
    # The REML engine prepares the data (same formula syntax, checks and model frame);
    # for a 0/1 outcome its Gaussian fit serves only that purpose.
    prepared = reml_lmm(formula, data, df_method="none")
    intercepts_only = all(level.columns == ("1",) for level in prepared.levels)
    use_collapsed = (family == "gaussian" and intercepts_only) if collapsed is None else collapsed
    if use_collapsed and family != "gaussian":
        raise EvalkitInputError("collapsed=True is for Gaussian outcomes.")
    model, info = _build(prepared, family, use_collapsed, priors)
    start = time.perf_counter()
    idata = _sample(
        model,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        target_accept=target_accept,
    )
    seconds = time.perf_counter() - start
    terms = info["terms"]
    posterior = idata.posterior
    beta = posterior["beta"].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    scale, center = info["spread"], info["center"]
    beta = beta * scale
    if "Intercept" in terms:
        beta[:, terms.index("Intercept")] += center
    draws_frame = pd.DataFrame(beta, columns=terms)
    extra = {}
    if family == "gaussian":
        extra["sigma"] = posterior["sigma"].to_numpy().ravel() * scale
    for level in prepared.levels:
        name = f"sd_{level.name}"
        if name in posterior:
            extra[name] = posterior[name].to_numpy().ravel() * scale
    diag_names: dict[str, Any] = {"beta": terms}
    diag_names.update({k: k for k in extra})
    diagnostics = diagnostics_of(idata, diag_names)
    warnings = sampling_warnings(idata, diagnostics)
    cov = np.atleast_2d(np.cov(beta, rowvar=False))
    facts = {
        "draws": draws * chains, "chains": chains, "sampler": sampler, "collapsed": use_collapsed,
        "divergences": int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0,
        "sampling_seconds": seconds, "family": family,
    }  # fmt: skip
    for key, values in extra.items():
        facts[f"{key}_mean"] = float(values.mean())
    index = pd.Index(terms)
    return BayesResults(
        params=draws_frame.mean(),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(np.inf, index=index),
        nobs=prepared.nobs,
        model=f"Bayesian mixed model ({family}{', collapsed' if use_collapsed else ''})",
        backend=sampler,
        n_groups=dict(prepared.n_groups),
        facts=facts,
        warnings=tuple(warnings),
        dropped=prepared.dropped,
        formula=formula,
        idata=idata,
        draws=pd.concat([draws_frame, pd.DataFrame(extra)], axis=1),
        diagnostics=diagnostics,
        priors=info["priors"],
        prepared=prepared,
        scale=(center, scale),
    )


def _groupings(formula: str) -> list[str]:
    from evalkit.multilevel.formula import parse_formula

    return [term.name for term in parse_formula(formula).random]


def _sample(
    model: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int | None,
    sampler: str,
    target_accept: float,
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
            compiled = nutpie.compile_pymc_model(model)
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
