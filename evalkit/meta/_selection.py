"""P-value selection models: estimates corrected for selective publication.

``selection_model(fit, type=..., steps=...)`` is metafor's ``selmodel`` for a
random-effects model or meta-regression (independent effects: maximum likelihood,
observed-information standard errors, a likelihood-ratio test of the selection
parameters). Given a multilevel fit or a ``cluster``, it fits the step or beta model
to dependent effects as Pustejovsky, Citkowicz & Joshi (2025) do: the composite
likelihood that treats each effect as independent (its τ² is then the total
heterogeneity), cluster-robust sandwich standard errors, and optionally percentile
intervals from their two-stage cluster bootstrap (resample clusters, then effects
within the clusters drawn).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import (
    EvalkitInputError,
    ModelResults,
    VarianceComponents,
    figure_and_axes,
)
from evalkit.meta._algebra import ModelMethod
from evalkit.meta._input import MetaData
from evalkit.meta._numeric import hessian
from evalkit.meta._results import MetaResults, multilevel_structure
from evalkit.meta._robust import cluster_labels
from evalkit.meta._selection_functions import (
    Alternative,
    SelectionFunction,
    SelectionType,
    selection_function,
)
from evalkit.meta._selection_likelihood import Optimum, Problem, difference_steps, maximise
from evalkit.meta._univariate import fit

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class SelectionResults(ModelResults):
    """A fitted selection model on the results contract.

    ``params``/``tidy()`` hold the mean-model coefficients adjusted for selection;
    ``selection`` holds τ² and the selection parameters δ with their standard
    errors, tests against no selection and intervals; ``glance()`` shows the
    likelihood-ratio test of selection (``LRT``, ``LRT_df``, ``LRT_p``) for
    independent effects.
    """

    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    function: SelectionFunction | None = field(default=None, repr=False)
    delta: np.ndarray = field(default_factory=lambda: np.empty(0))
    tau2: float = 0.0
    pvals: np.ndarray = field(default_factory=lambda: np.empty(0))
    p_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    bootstrap: pd.DataFrame | None = field(default=None, repr=False)
    """Bootstrap replicates, one row each: ``beta0, beta1, …`` (the coefficients in the
    order of ``params``), ``tau2`` and the selection parameters."""


def selection_model(
    result: MetaResults,
    *,
    type: SelectionType = "step",
    steps: tuple[float, ...] | list[float] | float | None = None,
    alternative: Alternative = "greater",
    cluster: Any = None,
    bootstrap: int = 0,
    seed: int | None = None,
    level: float | None = None,
) -> SelectionResults:
    """Fit a p-value selection model to the effects of a meta-analysis.

    Parameters
    ----------
    result
        A random-effects or fixed-effect model or meta-regression (``random_effects``,
        ``meta_regression``, ``fixed_effect``) for independent effects, or a
        ``multilevel`` fit for dependent effects (clustered by its top level).
    type
        ``"step"`` (Vevea & Hedges 1995; needs ``steps``), ``"beta"`` (Citkowicz &
        Vevea 2017), ``"halfnorm"``, ``"negexp"``, ``"logistic"`` or ``"power"``
        (Preston, Ashby & Smyth 2004), with metafor's parameterisations.
    steps
        Cut-points on the p-value scale. For ``"step"`` ``(0.025,)`` is the
        three-parameter selection model; ``(0.025, 0.5)`` adds a step at p = .5. For
        ``"beta"`` two values (a1, a2) truncate the beta function; for the others one
        value below which every result is published.
    alternative
        Which p-values drive selection: one-sided ``"greater"`` (positive effects
        favoured, the default), ``"less"`` or ``"two-sided"``.
    cluster
        Column name (in the fit's data) or aligned Series of clusters of dependent
        effects; only the step and beta models take it.
    bootstrap
        Number of two-stage cluster bootstrap replicates for percentile intervals
        (dependent effects only); 0 for none. 1999 is Pustejovsky et al.'s default.
    seed
        Seed of the bootstrap.
    level
        Confidence level; the fit's by default.

    Returns
    -------
    SelectionResults

    Examples
    --------
    >>> import evalkit
    >>> from evalkit import meta
    >>> writing = evalkit.datasets.load("bangertdrowns2004")
    >>> fit = meta.random_effects(writing, effect="yi", variance="vi")
    >>> adjusted = meta.selection_model(fit, type="step", steps=(0.025,))
    >>> round(float(adjusted.params["Intercept"]), 4), round(float(fit.params["Intercept"]), 4)
    (0.1477, 0.2219)
    """
    if not isinstance(result, MetaResults) or result.x.size == 0:
        raise EvalkitInputError("selection_model needs a fitted meta-analysis from evalkit.meta.")
    level = result.level if level is None else level
    if not 0.0 < level < 1.0:
        raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
    clusters = _clusters(result, cluster)
    if clusters is not None and type not in ("step", "beta"):
        raise EvalkitInputError(
            f"the {type} model is for independent effects; for dependent effects use the "
            "step or beta model (Pustejovsky, Citkowicz & Joshi 2025)."
        )
    if bootstrap and clusters is None:
        raise EvalkitInputError("bootstrap intervals are for dependent effects: give a cluster.")
    if bootstrap < 0:
        raise EvalkitInputError(f"bootstrap must be a number of replicates ≥ 0, got {bootstrap!r}.")
    chosen = None if steps is None else tuple(np.atleast_1d(np.asarray(steps, dtype=float)))
    function = selection_function(type, chosen, alternative)
    problem = Problem(
        result.y, result.v, result.x, function, result.method not in ("FE", "EE", "CE"),
        np.ones(result.y.size),
    )  # fmt: skip
    _check_size(problem)
    unadjusted = _normal_ml(result)
    base = np.concatenate([unadjusted[0], [unadjusted[1]]])
    starts = [np.concatenate([base, function.start]), np.concatenate([base, function.null])]
    optimum = maximise(problem, starts)
    return _results(result, problem, optimum, unadjusted[2], clusters, bootstrap, seed, level)


def _clusters(result: MetaResults, cluster: Any) -> np.ndarray | None:
    if cluster is None:
        structure = multilevel_structure(result)
        if structure is None:
            return None
        blocks, _ = structure
        return np.asarray(blocks.cluster_labels)
    labels = cluster_labels(result, cluster)
    if np.unique(labels).size < 3:
        raise EvalkitInputError("cluster-robust selection models need at least 3 clusters.")
    return labels


def _check_size(problem: Problem) -> None:
    free = problem.p + int(problem.heterogeneity) + int((~problem.selection.fixed).sum())
    if problem.y.size <= free:
        raise EvalkitInputError(
            f"{problem.y.size} effects cannot identify {free} parameters of this selection model."
        )


def _normal_ml(result: MetaResults) -> tuple[np.ndarray, float, float]:
    """β, τ² and log-likelihood of the same mean model without selection, by ML (the
    univariate estimator, on all effects)."""
    data = MetaData(
        result.y, result.v, result.x, list(result.params.index), pd.RangeIndex(result.y.size),
        None, True,
    )  # fmt: skip
    method: ModelMethod = "FE" if result.method in ("FE", "EE", "CE") else "ML"
    plain = fit(data, method=method, test="z", level=result.level, formula=None)
    return plain.params.to_numpy(), float(plain.tau2), float(plain.facts["logLik"])


def _hessian_coordinates(problem: Problem, theta: np.ndarray) -> np.ndarray:
    """What the information matrix covers (metafor's rules): β; τ² unless below
    min(v/10, 1e-4) or fixed; selection parameters not fixed (a step weight below
    1e-4 is left out as on its boundary)."""
    p = problem.p
    sel = problem.selection
    _, tau2, delta = problem.split(theta)
    tau_tol = min(float(np.min(problem.v)) / 10.0, 1e-4)
    use_delta = ~sel.fixed
    if sel.type == "step":
        use_delta &= delta >= 1e-4
    return np.concatenate(
        [np.ones(p, dtype=bool), [problem.heterogeneity and tau2 >= tau_tol], use_delta]
    )


def _covariance(
    problem: Problem, theta: np.ndarray, clusters: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Covariance of the estimates over the coordinates ``use`` (NaN elsewhere)."""
    use = _hessian_coordinates(problem, theta)
    steps = difference_steps(problem, theta)
    info = -hessian(problem.loglik, theta, use, steps)
    notes: list[str] = []
    cov = np.full((theta.size, theta.size), np.nan)
    try:
        bread = np.linalg.inv(info)
        if not np.all(np.linalg.eigvalsh(info) > 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        notes.append("the information matrix is not positive definite: no standard errors")
        return cov, use, notes
    if clusters is None:
        cov[np.ix_(use, use)] = bread
        return cov, use, notes
    scores = _scores(problem, theta, use, steps)
    _, codes = np.unique(clusters, return_inverse=True)
    by_cluster = np.zeros((codes.max() + 1, scores.shape[1]))
    np.add.at(by_cluster, codes, scores)
    cov[np.ix_(use, use)] = bread @ (by_cluster.T @ by_cluster) @ bread
    return cov, use, notes


def _scores(problem: Problem, theta: np.ndarray, use: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per-effect derivatives of the log-likelihood: analytic for step functions,
    central differences with Richardson extrapolation otherwise."""
    exact = problem.scores(theta)
    if exact is not None:
        return exact[:, use]
    columns = []
    for j in np.flatnonzero(use):
        e = np.zeros(theta.size)
        e[j] = steps[j]
        d1 = (problem.terms(theta + e) - problem.terms(theta - e)) / (2 * steps[j])
        d2 = (problem.terms(theta + e / 2) - problem.terms(theta - e / 2)) / steps[j]
        columns.append((4 * d2 - d1) / 3)
    return np.column_stack(columns)


def _results(
    result: MetaResults,
    problem: Problem,
    optimum: Optimum,
    loglik0: float,
    clusters: np.ndarray | None,
    n_boot: int,
    seed: int | None,
    level: float,
) -> SelectionResults:
    theta = optimum.theta
    sel = problem.selection
    p = problem.p
    beta, tau2, delta = problem.split(theta)
    cov, use, notes = _covariance(problem, theta, clusters)
    terms = pd.Index(result.params.index)
    warnings = list(notes)
    if not optimum.converged:
        warnings.append(
            f"the optimiser did not reach a zero gradient (largest scaled gradient "
            f"{optimum.gradient_norm:.2g}); treat the estimates with caution"
        )
    free_delta = ~sel.fixed
    at_null = free_delta & (sel.null == sel.lower) & (delta <= sel.lower + 1e-8)
    at_bound = free_delta & ~at_null & ((delta <= sel.lower + 1e-8) | (delta >= sel.upper - 1e-6))
    if at_null.any():
        warnings.append(
            "selection parameter(s) "
            + ", ".join(np.asarray(sel.names)[at_null])
            + " estimated at 0, no selection: the adjusted estimate equals the unadjusted one"
        )
    if at_bound.any():
        warnings.append(
            "selection parameter(s) "
            + ", ".join(np.asarray(sel.names)[at_bound])
            + f" at the bound of their range ({sel.lower[0]:g}–{sel.upper[0]:g}): the "
            "likelihood is flat there; treat the adjusted estimate with caution"
        )
    p_table = _p_table(problem)
    empty = p_table["k"].to_numpy() == 0
    if sel.type == "step" and empty.any():
        warnings.append(
            "no p-values fall in "
            + ", ".join(p_table.index[empty])
            + ": that interval's weight is not identified"
        )
    boot = _bootstrap(problem, optimum, clusters, n_boot, seed) if n_boot else None
    crit = stats.norm.ppf(0.5 + level / 2)
    table = _selection_table(problem, theta, cov, use, clusters is not None, boot, level, crit)
    lrt_df = int(free_delta.sum())
    lrt = max(0.0, 2.0 * (optimum.loglik - loglik0))
    robust = clusters is not None
    facts: dict[str, Any] = {
        "type": sel.type,
        "steps": ", ".join(f"{s:g}" for s in sel.steps),
        "alternative": sel.alternative,
        "k": int(problem.y.size),
        "logLik": optimum.loglik,
        "logLik_unadjusted": loglik0,
        "tau2": tau2,
        "converged": optimum.converged,
        "inference": "cluster-robust (CR0 sandwich, composite likelihood)"
        if robust
        else "model-based",
    }
    if robust:
        facts["n_clusters"] = int(np.unique(np.asarray(clusters)).size)
        warnings.append(
            "dependent effects: the composite likelihood treats effects as independent; τ² is "
            "the total heterogeneity and the likelihood-ratio test is not reported"
        )
    else:
        facts.update(LRT=lrt, LRT_df=lrt_df, LRT_p=float(stats.chi2.sf(lrt, lrt_df)))
    n_params = p + int(problem.heterogeneity) + lrt_df
    facts.update(
        AIC=-2 * optimum.loglik + 2 * n_params,
        BIC=-2 * optimum.loglik + n_params * np.log(problem.y.size),
    )
    beta_cov = cov[:p, :p]
    params = pd.Series(beta, index=terms)
    if boot is not None:
        facts["bootstrap"] = len(boot)
    return SelectionResults(
        params=params,
        cov=pd.DataFrame(beta_cov, index=terms, columns=terms),
        df=pd.Series(np.inf, index=terms),
        nobs=int(problem.y.size),
        model=f"{sel.type} selection model ({sel.alternative} p-values"
        + (f"; steps {facts['steps']}" if sel.type == "step" else "")
        + ("; dependent effects, cluster-robust" if robust else "")
        + ")",
        backend="evalkit",
        n_groups={"cluster": facts["n_clusters"]} if robust else {},
        facts=facts,
        warnings=tuple(warnings),
        formula=result.formula,
        spec=result.spec,
        variance_components=VarianceComponents.from_variances({"study": tau2})
        if problem.heterogeneity
        else None,
        selection=table,
        function=sel,
        delta=delta,
        tau2=tau2,
        pvals=problem.pvals,
        p_table=p_table,
        bootstrap=boot,
    )


def _p_table(problem: Problem) -> pd.DataFrame:
    """How many observed p-values fall in each interval of a step model."""
    sel = problem.selection
    if sel.type != "step":
        return pd.DataFrame({"k": [problem.y.size]}, index=["0 < p <= 1"])
    edges = (0.0, *sel.steps)
    group = np.searchsorted(np.asarray(sel.steps), problem.pvals, side="left")
    counts = np.bincount(np.minimum(group, sel.n_delta - 1), minlength=sel.n_delta)
    index = [f"{lo:g} < p <= {hi:g}" for lo, hi in itertools.pairwise(edges)]
    return pd.DataFrame({"k": counts}, index=index)


def _selection_table(
    problem: Problem,
    theta: np.ndarray,
    cov: np.ndarray,
    use: np.ndarray,
    robust: bool,
    boot: pd.DataFrame | None,
    level: float,
    crit: float,
) -> pd.DataFrame:
    """τ² and δ: estimate, SE, z test against no selection (δ = its null), CI."""
    sel = problem.selection
    p = problem.p
    names = ["tau2", *sel.names]
    nulls = np.concatenate([[0.0], sel.null])
    lower = np.concatenate([[0.0], sel.lower])
    upper = np.concatenate([[np.inf], sel.upper])
    rows = []
    for j, name in enumerate(names):
        index = p + j
        if name == "tau2" and not problem.heterogeneity:
            continue
        estimate = float(theta[index])
        se = float(np.sqrt(cov[index, index])) if use[index] else np.nan
        fixed = j > 0 and bool(sel.fixed[j - 1])
        if robust and se > 0 and estimate > 0:
            # Intervals on the log scale, as Pustejovsky et al. parameterise τ² and δ.
            half = crit * se / estimate
            low, high = estimate * np.exp(-half), estimate * np.exp(half)
        else:
            low, high = estimate - crit * se, estimate + crit * se
        low, high = max(low, lower[j]), min(high, upper[j])
        z = (estimate - nulls[j]) / se if name != "tau2" and se > 0 else np.nan
        row = {
            "parameter": name,
            "estimate": estimate,
            "std_error": np.nan if fixed else se,
            "statistic": z,
            "p_value": float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
            "ci_low": np.nan if fixed else low,
            "ci_high": np.nan if fixed else high,
        }
        if boot is not None:
            alpha = (1 - level) / 2
            values = boot[name].dropna().to_numpy()
            row["boot_ci_low"] = float(np.quantile(values, alpha)) if not fixed else np.nan
            row["boot_ci_high"] = float(np.quantile(values, 1 - alpha)) if not fixed else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def two_stage_weights(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap counts per effect: draw clusters with replacement (again when a draw
    repeats one cluster only, as metaselection does), then, for a cluster drawn a times,
    draw a × (its number of effects) of its effects with replacement."""
    n_clusters = int(codes.max()) + 1
    times = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
    while np.count_nonzero(times) < 2:
        times = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
    counts = np.zeros(codes.size)
    for c in np.flatnonzero(times):
        members = np.flatnonzero(codes == c)
        draws = rng.integers(0, members.size, times[c] * members.size)
        counts[members] += np.bincount(draws, minlength=members.size)
    return counts


def _bootstrap(
    problem: Problem, optimum: Optimum, clusters: np.ndarray | None, n_boot: int, seed: int | None
) -> pd.DataFrame:
    """Refit to two-stage cluster bootstrap samples, starting from the estimate."""
    assert clusters is not None
    _, codes = np.unique(clusters, return_inverse=True)
    rng = np.random.default_rng(seed)
    names = [*problem.x.shape[1] * [""], "tau2", *problem.selection.names]
    rows = []
    for _ in range(n_boot):
        counts = two_stage_weights(codes, rng)
        sample = replace(problem, case_weights=counts)
        found = maximise(sample, [optimum.theta], polish=False)
        rows.append(found.theta)
    frame = pd.DataFrame(np.array(rows))
    frame.columns = [n if n else f"beta{j}" for j, n in enumerate(names)]
    return frame


def bootstrap_intervals(result: SelectionResults, level: float = 0.95) -> pd.DataFrame:
    """Percentile intervals of the mean-model coefficients from the bootstrap replicates."""
    if result.bootstrap is None:
        raise EvalkitInputError("this selection model was fitted without bootstrap replicates.")
    alpha = (1 - level) / 2
    rows = []
    for j, term in enumerate(result.params.index):
        values = result.bootstrap[f"beta{j}"].to_numpy()
        rows.append(
            {
                "term": term,
                "estimate": float(result.params[term]),
                "ci_low": float(np.quantile(values, alpha)),
                "ci_high": float(np.quantile(values, 1 - alpha)),
            }
        )
    return pd.DataFrame(rows)


def selection_plot(result: SelectionResults, *, title: str = "") -> Figure:
    """The estimated selection function: relative probability of publication by p-value,
    with the observed p-values as a rug."""
    if result.function is None:
        raise EvalkitInputError("selection_plot needs a fitted selection model.")
    fig, ax = figure_and_axes(figsize=(6.0, 3.6))
    grid = np.linspace(1e-4, 1 - 1e-4, 2000)
    weight = result.function.weight(grid, result.delta)
    ax.plot(grid, weight, color="black", lw=1.6)
    for cut in result.function.steps:
        if 0.0 < cut < 1.0:
            ax.axvline(cut, color="grey", lw=0.8, ls="--")
    top = float(np.nanmax(weight[np.isfinite(weight)])) if np.isfinite(weight).any() else 1.0
    ax.plot(result.pvals, np.full(result.pvals.size, -0.03 * top), "|", color="tab:blue", ms=8)
    label = {"greater": "one-sided, effect > 0", "less": "one-sided, effect < 0"}.get(
        result.function.alternative, "two-sided"
    )
    ax.set_xlabel(f"p-value ({label})")
    ax.set_ylabel("Relative probability of publication")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.08 * top, 1.1 * top)
    ax.set_title(title or result.model)
    fig.tight_layout()
    return fig
