"""Meta-analysis: fixed and random effects, meta-regression, multilevel/CHE models and
cluster-robust variance estimation (metafor and clubSandwich in Python)."""

from __future__ import annotations

import pandas as pd

from evalkit.core import RobustResults, WaldTest, wald_test
from evalkit.meta._algebra import ModelMethod, Tau2Method
from evalkit.meta._bias import (
    EggerTest,
    PetPeese,
    TrimAndFill,
    aggregate_effects,
    egger_test,
    influence,
    leave_one_out,
    pet_peese,
    trim_and_fill,
)
from evalkit.meta._bootstrap import BootstrapTest, wild_bootstrap_test
from evalkit.meta._forest import forest_frame, forest_plot, orchard_plot
from evalkit.meta._input import model_label, prepare
from evalkit.meta._multilevel import LikelihoodMethod, fit_multilevel, profile_intervals
from evalkit.meta._multivariate import sampling_covariance
from evalkit.meta._multivariate_model import MultivariateResults, multivariate
from evalkit.meta._report import (
    funnel_plot,
    rho_sensitivity,
    rho_sensitivity_plot,
)
from evalkit.meta._results import MetaResults
from evalkit.meta._robumeta import robumeta
from evalkit.meta._robust import robust
from evalkit.meta._selection import (
    SelectionResults,
    bootstrap_intervals,
    selection_model,
    selection_plot,
    two_stage_weights,
)
from evalkit.meta._univariate import TestMethod, fit

__all__ = [
    "BootstrapTest",
    "EggerTest",
    "MetaResults",
    "MultivariateResults",
    "PetPeese",
    "RobustResults",
    "SelectionResults",
    "TrimAndFill",
    "WaldTest",
    "aggregate_effects",
    "bootstrap_intervals",
    "egger_test",
    "fixed_effect",
    "forest_frame",
    "forest_plot",
    "funnel_plot",
    "influence",
    "leave_one_out",
    "meta_regression",
    "multilevel",
    "multivariate",
    "orchard_plot",
    "pet_peese",
    "profile_intervals",
    "random_effects",
    "rho_sensitivity",
    "rho_sensitivity_plot",
    "robumeta",
    "robust",
    "sampling_covariance",
    "selection_model",
    "selection_plot",
    "trim_and_fill",
    "two_stage_weights",
    "wald_test",
    "wild_bootstrap_test",
]


def random_effects(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    method: Tau2Method = "REML",
    test: TestMethod = "z",
    level: float = 0.95,
) -> MetaResults:
    """Random-effects meta-analysis of one effect size per study.

    Parameters
    ----------
    data
        One row per effect size.
    effect, variance
        Columns holding the effect sizes and their sampling variances.
    method
        τ² estimator: ``"REML"`` (default), ``"ML"``, ``"DL"``, ``"PM"``, ``"EB"``,
        ``"HS"``, ``"SJ"`` or ``"HE"`` (metafor's definitions).
    test
        ``"z"`` or ``"knha"`` (Knapp–Hartung: t with k − 1 df and the variance
        scaled by the weighted residual mean square, as metafor defines it).
    level
        Confidence level for intervals, including the Q-profile interval for τ².

    Returns
    -------
    MetaResults

    Examples
    --------
    >>> import evalkit
    >>> expectancy = evalkit.datasets.load("raudenbush1985")
    >>> fit = random_effects(expectancy, effect="yi", variance="vi", test="knha")
    >>> round(float(fit.params["Intercept"]), 4), round(fit.tau2, 4)
    (0.0837, 0.0188)
    """
    return fit(
        prepare(data, effect=effect, variance=variance),
        method=method,
        test=test,
        level=level,
        formula=None,
    )


def fixed_effect(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    level: float = 0.95,
) -> MetaResults:
    """Fixed-effect (common-effect), inverse-variance meta-analysis.

    With one effect size it returns that effect size and its standard error.
    """
    return fit(
        prepare(data, effect=effect, variance=variance),
        method="FE",
        test="z",
        level=level,
        formula=None,
    )


def meta_regression(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    moderators: str,
    method: ModelMethod = "REML",
    test: TestMethod = "z",
    level: float = 0.95,
) -> MetaResults:
    """Mixed-effects meta-regression of ``effect`` on ``moderators``.

    ``moderators`` is a formulaic right-hand side, as everywhere in evalkit:
    ``"dosage + C(format)"`` (categorical through ``C()``). Reports QM (an F test under
    Knapp–Hartung), residual heterogeneity QE and R² (% of τ² accounted for).

    Examples
    --------
    >>> import evalkit
    >>> expectancy = evalkit.datasets.load("raudenbush1985")
    >>> fit = meta_regression(expectancy, effect="yi", variance="vi", moderators="weeks")
    >>> list(fit.params.index)
    ['Intercept', 'weeks']
    """
    prepared = prepare(data, effect=effect, variance=variance, moderators=moderators)
    return fit(
        prepared, method=method, test=test, level=level, formula=model_label(effect, moderators)
    )


def multilevel(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    levels: list[str],
    moderators: str | None = None,
    rho: float | None = None,
    method: LikelihoodMethod = "REML",
    level: float = 0.95,
) -> MetaResults:
    """Multilevel meta-analysis: nested random effects and, with ``rho``, the CHE model.

    Parameters
    ----------
    data
        One row per effect size.
    effect, variance
        Columns of effect sizes and of their sampling variances.
    levels
        Grouping columns, outermost first: ``["district", "school"]`` for schools in
        districts, ``["study", "es_id"]`` for effect sizes in studies. Inner IDs are
        read within the outer level (as metafor's ``~ 1 | district/school``).
    moderators
        A formulaic right-hand side, ``"dosage + C(format)"``; omit for the
        intercept-only model.
    rho
        Within-cluster correlation of sampling errors, imputed between every pair of
        effect sizes of a top-level cluster (the correlated-and-hierarchical-effects
        working model); ``None`` for independent sampling errors.
    method
        ``"REML"`` or ``"ML"``.
    level
        Confidence level.

    Examples
    --------
    >>> import evalkit
    >>> calendars = evalkit.datasets.load("konstantopoulos2011")
    >>> fit = multilevel(calendars, effect="yi", variance="vi", levels=["district", "school"])
    >>> round(float(fit.params["Intercept"]), 4)
    0.1847
    """
    meta_data = prepare(data, effect=effect, variance=variance, moderators=moderators)
    return fit_multilevel(
        meta_data,
        data,
        levels=levels,
        rho=rho,
        method=method,
        level=level,
        formula=model_label(effect, moderators),
    )
