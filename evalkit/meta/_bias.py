"""Small-study effects, publication bias and sensitivity analyses.

Univariate models follow metafor (``regtest``, ``trimfill``, ``leave1out``,
``influence``). Multilevel and CHE models, which metafor's functions refuse, are
handled by clustering on the top-level unit: Egger's test becomes a meta-regression
on the standard error with CR2 robust inference, and leave-one-out drops whole
clusters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import (
    INTERCEPT,
    EvalkitInputError,
    EvalkitWarning,
    check_correlation,
    check_option,
    describe_rows,
    require_columns,
)
from evalkit.meta._forest import labelled
from evalkit.meta._input import MetaData
from evalkit.meta._results import MetaResults, multilevel_structure
from evalkit.meta._robust import cluster_labels

TrimFillEstimator = Literal["L0", "R0"]
Side = Literal["left", "right"]


def _refit(
    result: MetaResults, y: np.ndarray, v: np.ndarray, x: np.ndarray, keep: np.ndarray | None = None
) -> MetaResults:
    """Fit the model of ``result`` again to other data (same estimator, test, structure)."""
    from evalkit.meta._multilevel import refit_multilevel
    from evalkit.meta._univariate import fit

    terms = [f"x{j}" for j in range(x.shape[1])]
    terms[0] = INTERCEPT
    data = MetaData(y, v, x, terms, pd.RangeIndex(y.size), None, True)
    if multilevel_structure(result) is not None:
        return refit_multilevel(result, data, keep)
    return fit(data, method=result.method, test=result.test, level=result.level, formula=None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EggerTest:
    """Egger's regression test for funnel-plot asymmetry (predictor: standard error)."""

    slope: float
    statistic: float
    df: float
    p_value: float
    limit_estimate: float
    limit_ci: tuple[float, float]
    inference: str


def egger_test(result: MetaResults, *, cluster: Any = None) -> EggerTest:
    """Egger's regression test: the model with the standard error added as moderator.

    For univariate models this is metafor's ``regtest(model = "rma", predictor =
    "sei")``; the intercept is the 'limit estimate' (the effect as SE → 0). For
    multilevel models the slope is tested with CR2 robust SEs and Satterthwaite df,
    clustering by ``cluster`` (default: the top-level grouping).
    """
    from evalkit.meta._robust import robust

    x = np.column_stack([result.x, np.sqrt(result.v)])
    if result.y.size - x.shape[1] < 1:
        raise EvalkitInputError(
            f"Egger's test needs more effect sizes than coefficients: with k = {result.y.size} "
            f"and {x.shape[1]} coefficients (the model's and the SE) the regression is saturated."
        )
    if np.ptp(np.sqrt(result.v)) <= 1e-12 * float(np.sqrt(result.v).max()):
        raise EvalkitInputError(
            "Egger's test regresses effects on their standard errors, which are all equal here."
        )
    fitted = _refit(result, result.y, result.v, x)
    if result.structure is not None:
        labels = cluster if cluster is not None else multilevel_structure(result)[0].cluster_labels
        fitted_r = robust(fitted, labels)
        tidy = fitted_r.tidy(result.level)
        inference = "CR2 robust t (Satterthwaite df)"
    else:
        tidy = fitted.tidy(result.level)
        inference = "t (Knapp–Hartung)" if result.test == "knha" else "z"
    slope, intercept = tidy.iloc[-1], tidy.iloc[0]
    return EggerTest(
        slope=float(slope["estimate"]),
        statistic=float(slope["statistic"]),
        df=float(slope["df"]),
        p_value=float(slope["p_value"]),
        limit_estimate=float(intercept["estimate"]),
        limit_ci=(float(intercept["ci_low"]), float(intercept["ci_high"])),
        inference=inference,
    )


@dataclass(frozen=True)
class PetPeese:
    """PET and PEESE estimates of the effect corrected for small-study effects."""

    pet: float
    pet_p: float
    peese: float
    chosen: Literal["PET", "PEESE"]
    estimate: float


def pet_peese(result: MetaResults, *, alpha: float = 0.10) -> PetPeese:
    """Precision-effect test and precision-effect estimate with standard error.

    PET regresses effects on their SE, PEESE on their variance (Stanley &
    Doucouliagos 2014), both with the fitted model's weights and structure. When the
    PET intercept differs from zero at two-sided ``alpha`` (0.10, i.e. one-sided
    0.05) the PEESE intercept is the corrected estimate, else the PET intercept.
    """
    pet_fit = _refit(result, result.y, result.v, np.column_stack([result.x, np.sqrt(result.v)]))
    peese_fit = _refit(result, result.y, result.v, np.column_stack([result.x, result.v]))
    pet_p = float(pet_fit.pvalues.iloc[0])
    pet = float(pet_fit.params.iloc[0])
    peese = float(peese_fit.params.iloc[0])
    chosen: Literal["PET", "PEESE"] = "PEESE" if pet_p < alpha else "PET"
    return PetPeese(pet, pet_p, peese, chosen, peese if chosen == "PEESE" else pet)


@dataclass(frozen=True)
class TrimAndFill:
    """Duval & Tweedie's trim-and-fill: the number and values of imputed studies and
    the model refitted with them."""

    k0: int
    side: str
    filled_effects: np.ndarray
    filled_variances: np.ndarray
    model: MetaResults
    warnings: tuple[str, ...] = ()
    """What the result rests on beyond the method itself (aggregation of a multilevel fit)."""


def aggregate_effects(
    data: pd.DataFrame, *, effect: str, variance: str, cluster: str, rho: float
) -> pd.DataFrame:
    """One effect per cluster: the inverse-variance weighted average under a compound-
    symmetric sampling correlation ``rho`` (metafor's ``aggregate(struct = "CS")``).

    Returns the cluster, the aggregated effect ``yi``, its variance ``vi`` and the
    number of effects ``k``.
    """
    from evalkit.meta._input import prepare

    check_correlation("rho", rho)
    prepared = prepare(data, effect=effect, variance=variance)
    require_columns(data, [cluster])
    missing = data[cluster].isna().to_numpy()
    if missing.any():
        raise EvalkitInputError(
            f"{cluster} has missing IDs at {describe_rows(list(data.index), missing)}."
        )
    if rho >= 1.0:
        raise EvalkitInputError(
            "rho = 1 makes a cluster's sampling covariance matrix singular; use a value below 1."
        )
    labels = data[cluster].to_numpy()
    rows = []
    for label in pd.unique(labels):
        members = np.flatnonzero(labels == label)
        sd = np.sqrt(prepared.v[members])
        sampling = rho * np.outer(sd, sd)
        np.fill_diagonal(sampling, prepared.v[members])
        weights = np.linalg.solve(sampling, np.ones(members.size))
        total = float(weights.sum())
        rows.append(
            {
                cluster: label,
                "yi": float(weights @ prepared.y[members]) / total,
                "vi": 1.0 / total,
                "k": members.size,
            }
        )
    return pd.DataFrame(rows)


def trim_and_fill(
    result: MetaResults, *, estimator: TrimFillEstimator = "L0", side: Side | None = None
) -> TrimAndFill:
    """Trim-and-fill (Duval & Tweedie 2000) for an intercept-only univariate model.

    The side with missing studies is, unless given, chosen as metafor does: from the
    sign of Egger's test. Each iteration refits the model without the ``k0`` most
    extreme effects, ranks the centred effects and updates ``k0`` by the L0 or R0
    estimator; the mirror images of the trimmed effects are then filled in and the
    model refitted.
    """
    check_option("estimator", estimator, TrimFillEstimator)
    if result.x.shape[1] != 1:
        raise EvalkitInputError("trim_and_fill needs an intercept-only model.")
    if result.structure is not None:
        aggregated = _aggregated_model(result)
        outcome = trim_and_fill(aggregated, estimator=estimator, side=side)
        message = (
            "trim-and-fill has no multilevel version: the "
            f"{result.y.size} effect sizes were averaged within their {aggregated.nobs} "
            "top-level clusters (compound symmetry with the model's rho) and a univariate "
            "random-effects model of those averages was trimmed and filled"
        )
        warnings.warn(message, EvalkitWarning, stacklevel=2)
        return replace(outcome, warnings=(*outcome.warnings, message))
    if side is None:
        side = "right" if egger_test(result).statistic < 0 else "left"
    check_option("side", side, Side)
    flip = -1.0 if side == "right" else 1.0
    order = np.argsort(flip * result.y, kind="stable")
    y, v = flip * result.y[order], result.v[order]
    k = y.size
    k0, previous = 0, -1
    beta = 0.0
    for _ in range(1000):
        if k0 == previous:
            break
        previous = k0
        trimmed = _refit(result, y[: k - k0], v[: k - k0], np.ones((k - k0, 1)))
        beta = float(trimmed.params.iloc[0])
        centred = y - beta
        ranks = stats.rankdata(np.abs(centred), method="ordinal")
        signed = np.sign(centred) * ranks
        if estimator == "L0":
            sr = signed[signed > 0].sum()
            estimate = (4 * sr - k * (k + 1)) / (2 * k - 1)
        else:
            negatives = -signed[signed < 0]
            estimate = (k - negatives.max()) - 1 if negatives.size else k - 1
        k0 = max(0, int(np.round(estimate)))
        k0 = min(k0, k - 1)
    filled = 2 * beta - y[k - k0 :]
    filled_y = flip * filled
    filled_v = v[k - k0 :]
    all_y = np.concatenate([result.y, filled_y])
    all_v = np.concatenate([result.v, filled_v])
    model = _refit(result, all_y, all_v, np.ones((all_y.size, 1)))
    return TrimAndFill(k0, side, filled_y, filled_v, model)


def _aggregated_model(result: MetaResults) -> MetaResults:
    """Random-effects model of study-level averages of a multilevel fit (same ρ, REML/ML)."""
    from evalkit.meta import random_effects

    blocks, _ = multilevel_structure(result)
    frame = pd.DataFrame({"cluster": blocks.cluster_labels, "yi": result.y, "vi": result.v})
    rho = blocks.rho if blocks.rho is not None else 0.0
    aggregated = aggregate_effects(frame, effect="yi", variance="vi", cluster="cluster", rho=rho)
    return random_effects(aggregated, effect="yi", variance="vi", method=result.method)  # type: ignore[arg-type]


def leave_one_out(result: MetaResults, *, cluster: Any = None, labels: Any = None) -> pd.DataFrame:
    """Refit the model leaving out one effect size (or, with ``cluster``, one cluster) at a time.

    Multilevel models leave out whole top-level clusters by default. Rows are labelled
    by ``labels`` (a column of the fit's data, such as ``"author"``, or one label per
    effect), by the cluster, or by the data's row labels.
    """
    if result.structure is not None and cluster is None:
        cluster = multilevel_structure(result)[0].cluster_labels
    if cluster is not None:
        cluster = cluster_labels(result, cluster)
    groups = np.arange(result.y.size) if cluster is None else np.asarray(cluster)
    names = labelled(result, labels) if cluster is None else None
    rows = []
    for label in pd.unique(groups):
        keep = groups != label
        fitted = _refit(result, result.y[keep], result.v[keep], result.x[keep], keep)
        tidy = fitted.tidy(result.level).iloc[0]
        rows.append(
            {
                "left_out": label if names is None else names[int(label)],
                "estimate": tidy["estimate"],
                "std_error": tidy["std_error"],
                "p_value": tidy["p_value"],
                "ci_low": tidy["ci_low"],
                "ci_high": tidy["ci_high"],
                "Q": fitted.q,
                "tau2": fitted.tau2,
                "I2": fitted.i2,
            }
        )
    return pd.DataFrame(rows)


def influence(result: MetaResults, *, labels: Any = None) -> pd.DataFrame:
    """Case diagnostics of a univariate model (metafor's ``influence.rma.uni``).

    Externally studentized residuals, DFFITS, Cook's distances, covariance ratios,
    leave-one-out τ² and QE, hat values and weights (%). For multilevel models,
    whose diagnostics metafor gives only piecemeal, it returns one row per top-level
    cluster: Cook's distance (as metafor's ``cooks.distance(..., cluster =)``), the
    covariance ratio and the variance components with the cluster left out. Rows of a
    univariate model are labelled by ``labels`` (a column of the fit's data, such as
    ``"author"``, or one label per effect) or the data's row labels.
    """
    if result.structure is not None:
        return _cluster_influence(result)
    y, v, x = result.y, result.v, result.x
    k = y.size
    beta = result.params.to_numpy()
    cov = result.cov.to_numpy()
    w = 1.0 / (v + result.tau2)
    hat = np.einsum("ij,jk,ik->i", x, np.linalg.inv(x.T @ (x * w[:, None])), x) * w
    rows = []
    for i in range(k):
        keep = np.arange(k) != i
        fitted = _refit(result, y[keep], v[keep], x[keep])
        b_del = fitted.params.to_numpy()
        cov_del = fitted.cov.to_numpy()
        residual = y[i] - x[i] @ b_del
        variance = v[i] + fitted.tau2 + x[i] @ cov_del @ x[i]
        diff = beta - b_del
        rows.append(
            {
                "rstudent": residual / np.sqrt(variance),
                "dffits": (x[i] @ beta - x[i] @ b_del) / np.sqrt(hat[i] * (fitted.tau2 + v[i])),
                "cook_d": float(diff @ np.linalg.solve(cov, diff)),
                "cov_r": float(np.linalg.det(cov_del) / np.linalg.det(cov)),
                "tau2_del": fitted.tau2,
                "QE_del": fitted.q,
                "hat": hat[i],
                "weight": 100.0 * w[i] / w.sum(),
            }
        )
    index = labelled(result, labels) if labels is not None else result.weights.index
    return pd.DataFrame(rows, index=pd.Index(index))


def _cluster_influence(result: MetaResults) -> pd.DataFrame:
    blocks, _ = multilevel_structure(result)
    labels = blocks.cluster_labels
    beta = result.params.to_numpy()
    cov = result.cov.to_numpy()
    rows = []
    for label in pd.unique(labels):
        keep = labels != label
        fitted = _refit(result, result.y[keep], result.v[keep], result.x[keep], keep)
        diff = beta - fitted.params.to_numpy()
        row = {
            "cluster": label,
            "cook_d": float(diff @ np.linalg.solve(cov, diff)),
            "cov_r": float(np.linalg.det(fitted.cov.to_numpy()) / np.linalg.det(cov)),
        }
        assert fitted.variance_components is not None
        row.update(
            {f"{key}_del": value for key, value in fitted.variance_components.facts().items()}
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("cluster")
