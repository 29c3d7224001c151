"""``mediation()``: the two equations of a multilevel mediation model, fitted and combined."""

from __future__ import annotations

import dataclasses
import warnings as pywarnings
from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np
import pandas as pd

from evalkit.core import (
    Dropped,
    EvalkitInputError,
    EvalkitWarning,
    MissingPolicy,
    ModelResults,
    check_option,
    complete_cases,
    require_columns,
)
from evalkit.mediation._bootstrap import cluster_bootstrap
from evalkit.mediation._design import (
    Design,
    MediationDesign,
    Moderation,
    build_design,
    units_mask,
)
from evalkit.mediation._draws import PathTerms, draw_paths
from evalkit.mediation._information import observed_covariance
from evalkit.mediation._ols import ols
from evalkit.mediation._reliability import Correction, attenuation, check_reliability
from evalkit.mediation._results import MediationResults
from evalkit.mediation._sensitivity import sensitivity_scales
from evalkit.multilevel import DfMethod, EstimationMethod, LMMResults, lmm

DEFAULT_DRAWS = 20_000
FitT = TypeVar("FitT", bound=ModelResults)
Information = Literal["expected", "observed"]


def replace_cov(fit: FitT, cov: pd.DataFrame) -> FitT:
    """The same fit with another fixed-effect covariance."""
    return dataclasses.replace(fit, cov=cov)


def mediation(
    data: pd.DataFrame,
    *,
    treatment: str,
    mediator: str,
    outcome: str,
    clusters: str | Sequence[str],
    covariates: Sequence[str] = (),
    moderator: str | None = None,
    moderation: Moderation | None = None,
    design: Design | None = None,
    method: EstimationMethod = "REML",
    mediator_reliability: float | None = None,
    n_draws: int = DEFAULT_DRAWS,
    bootstrap: int = 0,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    missing: MissingPolicy = "drop",
    information: Information = "expected",
) -> MediationResults:
    """Multilevel mediation: does the treatment move the outcome through the mediator?

    Fits the mediator equation (the a path) and the outcome equation (the b path and
    the direct effect) as linear mixed models with random intercepts for every
    grouping level above the rows each equation describes, and combines them: the
    indirect effect a·b with a delta-method SE and a Monte Carlo percentile interval
    (Preacher & Selig 2012), the total effect, effect sizes, and (optionally) cluster
    bootstrap intervals, moderated mediation, a measurement-error correction of b and
    a sensitivity analysis for mediator–outcome confounding.

    Parameters
    ----------
    data
        One row per level-1 unit (student), with the treatment, mediator, outcome,
        covariates and the grouping columns. Teacher- and school-level variables are
        repeated on their students' rows.
    treatment, mediator, outcome
        Column names. Their levels are read from the data (a variable's level is the
        highest grouping level within whose units it is constant) and make the design:
        ``"2-2-1"`` (coaching and instruction at the teacher level, student achievement),
        ``"2-1-1"`` (a student-level mediator), ``"3-2-1"`` (schools randomised, a
        teacher-level mediator), ``"3-3-1"`` and ``"3-1-1"``.
    clusters
        Grouping columns, highest level first: ``("school_id", "teacher_id")``.
    covariates
        Covariates; those constant within the mediator's units enter both equations,
        the others (student-level ones) the outcome equation only.
    moderator, moderation
        A moderator of the mediation paths (constant within the mediator's units;
        centred at its mean over those units) and where it acts: ``"first"`` (the a
        path: treatment × moderator in the mediator equation), ``"second"`` (the b path:
        mediator × moderator in the outcome equation) or ``"both"``. The moderator
        enters both equations as a main effect.
    design
        The design you expect; an error if the data say otherwise.
    method
        ``"REML"`` (default) or ``"ML"`` for both equations (ML reproduces a two-level
        SEM's estimates, e.g. lavaan's).
    mediator_reliability
        Reliability of the mediator's between part (e.g. the G coefficient of a
        teacher's mean observation score over the lessons and raters observed). b and
        the direct effect are then corrected for measurement error in the mediator.
    n_draws
        Monte Carlo draws (at least 1,000).
    bootstrap
        Cluster bootstrap replicates (0: none): the highest-level clusters are
        resampled with replacement and both equations refitted.
    seed, rng
        Randomness for the Monte Carlo draws and the bootstrap (not both).
    missing
        ``"drop"`` (rows missing any used column are left out and counted in
        ``dropped``) or ``"raise"``.
    information
        ``"expected"`` (default): each equation's fixed effects have lme4's covariance
        ``(X'V⁻¹X)⁻¹``. ``"observed"``: the inverse observed information, as a two-level
        SEM (lavaan) reports it — for two-level random-intercept designs fitted by ML.

    Returns
    -------
    MediationResults

    Examples
    --------
    >>> from evalkit.data import simulate_district
    >>> district = simulate_district(
    ...     n_schools=12, teachers_per_school=6, instruction_achievement=0.3, seed=3
    ... )
    >>> scores = district.observations.groupby("teacher_id")["score"].mean()
    >>> students = district.students.join(scores.rename("instruction"), on="teacher_id")
    >>> result = mediation(
    ...     students, treatment="coached", mediator="instruction", outcome="achievement",
    ...     clusters=("school_id", "teacher_id"), covariates=["prior", "leadership"], seed=1,
    ... )
    >>> result.design.design
    '2-2-1'
    >>> list(result.tidy()["term"])
    ['a', 'b', 'direct', 'indirect', 'total']
    """
    check_option("method", method, EstimationMethod)
    check_option("missing", missing, MissingPolicy)
    check_option("information", information, Information)
    if design is not None:
        check_option("design", design, Design)
    cluster_names = (clusters,) if isinstance(clusters, str) else tuple(clusters)
    covariate_names = tuple(c for c in covariates if c != moderator)
    _check_arguments(data, cluster_names, moderator, moderation, n_draws, bootstrap)
    if seed is not None and rng is not None:
        raise EvalkitInputError("pass seed or rng, not both.")
    if mediator_reliability is not None:
        check_reliability(mediator_reliability)
        if moderation in ("second", "both"):
            raise EvalkitInputError(
                "mediator_reliability cannot correct a b path moderated by the moderator "
                "(the product of an error-prone mediator and the moderator); use "
                "moderation='first' or leave the reliability out."
            )
    generator = rng if rng is not None else np.random.default_rng(seed)
    used = [treatment, mediator, outcome, *covariate_names, *cluster_names]
    used += [moderator] if moderator is not None else []
    require_columns(data, used)
    complete, dropped = complete_cases(data, used, missing)
    found, frame = build_design(
        complete,
        treatment=treatment,
        mediator=mediator,
        outcome=outcome,
        clusters=cluster_names,
        covariates=covariate_names,
        moderator=moderator,
        moderation=moderation,
        design=design,
    )
    fits = _fit_equations(found, frame, method)
    if information == "observed":
        fits = (
            replace_cov(fits[0], observed_covariance(fits[0])),
            replace_cov(fits[1], observed_covariance(fits[1])),
            fits[2],
        )
    terms = PathTerms(
        a=treatment,
        b=found.b_term,
        direct=treatment,
        b_within=found.within_term,
        a_moderated=f"{treatment}:{moderator}" if moderation in ("first", "both") else None,
        b_moderated=f"{found.b_term}:{moderator}" if moderation in ("second", "both") else None,
    )
    correction = None
    if mediator_reliability is not None:
        correction = attenuation(frame, found, mediator_reliability)
    draws = draw_paths(fits[0], fits[1], terms, n_draws=n_draws, rng=generator)
    point, cov, df = _point(fits[0], fits[1], terms)
    if correction is not None:
        point, cov, draws = correction.apply(point, cov, draws)
    replicates = None
    if bootstrap:

        def refit(sample: pd.DataFrame) -> pd.Series:
            a_fit, b_fit = _fit_equations(found, sample, method, null=False, df_method="none")[:2]
            values, _, _ = _point(a_fit, b_fit, terms)
            if mediator_reliability is not None:
                again = attenuation(sample, found, mediator_reliability)
                values = pd.Series(
                    again.transform(list(values.index)) @ values.to_numpy(), index=values.index
                )
            return values

        replicates = cluster_bootstrap(frame, found, refit, bootstrap, generator)
    return _results(
        found,
        frame,
        fits,
        terms,
        point,
        cov,
        df,
        draws,
        correction,
        replicates,
        dropped,
        {"treatment": treatment, "mediator": mediator, "outcome": outcome},
        method,
        mediator_reliability,
        information,
    )


def _check_arguments(
    data: pd.DataFrame,
    clusters: tuple[str, ...],
    moderator: str | None,
    moderation: str | None,
    n_draws: int,
    bootstrap: int,
) -> None:
    if not isinstance(data, pd.DataFrame):
        raise EvalkitInputError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if not 1 <= len(clusters) <= 2:
        raise EvalkitInputError(
            f"clusters names one or two grouping columns (highest level first), got {clusters!r}."
        )
    if (moderator is None) != (moderation is None):
        raise EvalkitInputError(
            "give moderator= and moderation= together: moderation says which path the "
            "moderator acts on ('first', 'second' or 'both')."
        )
    if moderation is not None:
        check_option("moderation", moderation, Moderation)
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 1000:
        raise EvalkitInputError(f"n_draws must be an integer of at least 1000, got {n_draws!r}.")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int | np.integer) or bootstrap < 0:
        raise EvalkitInputError(f"bootstrap must be a non-negative integer, got {bootstrap!r}.")
    if 0 < bootstrap < 200:
        raise EvalkitInputError(
            f"bootstrap={bootstrap} replicates are too few for percentile intervals; use at "
            "least 200 (1,000 or more for reporting)."
        )


def mediator_rows(frame: pd.DataFrame, found: MediationDesign) -> pd.DataFrame:
    """One row per unit of the mediator (all rows for a level-1 mediator)."""
    return frame.loc[units_mask(frame, found.clusters, found.mediator_level)]


def _fit_equations(
    found: MediationDesign,
    frame: pd.DataFrame,
    method: EstimationMethod,
    *,
    null: bool = True,
    df_method: DfMethod = "satterthwaite",
) -> tuple[ModelResults, LMMResults, LMMResults | None]:
    """The mediator equation, the outcome equation and the unconditional outcome model."""
    units = mediator_rows(frame, found)
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", EvalkitWarning)  # collected from the fits below
        if found.mediator_random:
            a_fit: ModelResults = lmm(
                found.mediator_formula, units, method=method, df_method=df_method
            )
        else:
            a_fit = ols(found.mediator_formula, units, method=method)
        b_fit = lmm(found.outcome_formula, frame, method=method, df_method=df_method)
        unconditional = None
        if null:
            random = found.outcome_formula[found.outcome_formula.index(" + (1 |") :]
            unconditional = lmm(
                f"{found.outcome} ~ 1{random}", frame, method=method, df_method="none"
            )
    return a_fit, b_fit, unconditional


def _point(
    a_fit: ModelResults, b_fit: ModelResults, terms: PathTerms
) -> tuple[pd.Series, pd.DataFrame, pd.Series]:
    """Path estimates by role, their (block-diagonal) covariance and df."""
    roles_a = {"a": terms.a, "a_moderated": terms.a_moderated}
    roles_b = {
        "b": terms.b,
        "b_within": terms.b_within,
        "b_moderated": terms.b_moderated,
        "direct": terms.direct,
    }
    roles: list[str] = []
    values: list[np.ndarray] = []
    blocks: list[np.ndarray] = []
    dfs: list[np.ndarray] = []
    for fit, mapping in ((a_fit, roles_a), (b_fit, roles_b)):
        kept = {r: t for r, t in mapping.items() if t}
        where = fit.params.index.get_indexer(pd.Index(list(kept.values())))
        roles += list(kept)
        values.append(fit.params.to_numpy()[where])
        blocks.append(fit.cov.to_numpy()[np.ix_(where, where)])
        dfs.append(fit.df.to_numpy()[where])
    cov = np.zeros((len(roles), len(roles)))
    start = 0
    for block in blocks:
        stop = start + block.shape[0]
        cov[start:stop, start:stop] = block
        start = stop
    return (
        pd.Series(np.concatenate(values), index=roles),
        pd.DataFrame(cov, index=roles, columns=roles),
        pd.Series(np.concatenate(dfs), index=roles),
    )


def _results(
    found: MediationDesign,
    frame: pd.DataFrame,
    fits: tuple[ModelResults, LMMResults, LMMResults | None],
    terms: PathTerms,
    point: pd.Series,
    cov: pd.DataFrame,
    df: pd.Series,
    draws: pd.DataFrame,
    correction: Correction | None,
    replicates: pd.DataFrame | None,
    dropped: Dropped,
    names: dict[str, str],
    method: str,
    reliability: float | None,
    information: str = "expected",
) -> MediationResults:
    a_fit, b_fit, null = fits
    assert null is not None
    units = mediator_rows(frame, found)
    sd_mediator = float(np.std(units[names["mediator"]].to_numpy(), ddof=1))
    vc = null.variance_components
    assert vc is not None
    sd_outcome = float(np.sqrt(sum(vc.intercept_variances().values()) + null.sigma2))
    scales = sensitivity_scales(found, a_fit, b_fit)
    warn = [f"mediator equation: {w}" for w in a_fit.warnings]
    if not (scales[0] > 0 and scales[1] > 0):
        warn.append(
            "sensitivity analysis undefined: a residual variance at the b path's level is "
            "on its boundary (rho_at_zero is NaN)."
        )
    warn += [f"outcome equation: {w}" for w in b_fit.warnings]
    if replicates is not None and "failed" in replicates.attrs and replicates.attrs["failed"]:
        warn.append(
            f"{replicates.attrs['failed']} bootstrap replicate(s) could not be fitted and were "
            "left out of the bootstrap intervals."
        )
    a, b, c = float(point["a"]), float(point["b"]), float(point["direct"])
    total = c + a * b
    facts = {
        "design": found.design,
        "method": method,
        "mediator_equation": found.mediator_formula,
        "outcome_equation": found.outcome_formula,
        "n_draws": int(draws.shape[0]),
        "bootstrap_replicates": 0 if replicates is None else int(replicates.shape[0]),
        "mediator_reliability": reliability,
        "information": information,
        "mediator_measurement": (
            "observed mediator, no measurement-error correction"
            if correction is None
            else "b and direct effect corrected for the mediator's reliability "
            "(errors-in-variables attenuation, factor treated as known)"
        ),
        "attenuation": None if correction is None else correction.factor,
        "sd_outcome": sd_outcome,
        "sd_mediator": sd_mediator,
        "proportion_mediated": _proportion(a * b, total, draws),
        "rho_at_zero": _rho_at_zero(b, scales),
        "moderator_centre": found.moderator_centre if found.moderator else None,
    }
    moderator_values = (
        units[found.moderator].to_numpy() + found.moderator_centre
        if found.moderator
        else np.empty(0)
    )
    groups = {k: v for k, v in b_fit.n_groups.items()}
    return MediationResults(
        design=found,
        names=names,
        mediator_fit=a_fit,
        outcome_fit=b_fit,
        terms=terms,
        point=point,
        point_cov=cov,
        model_df=df,
        draws=draws,
        sd_outcome=sd_outcome,
        sd_mediator=sd_mediator,
        sensitivity_scales=scales,
        nobs=int(b_fit.nobs),
        n_groups=groups,
        facts=facts,
        warnings=tuple(warn),
        dropped=dropped,
        bootstrap=replicates,
        moderator_values=moderator_values,
    )


def _proportion(indirect: float, total: float, draws: pd.DataFrame) -> float:
    """Indirect over total effect, reported only when the total effect's 95% Monte
    Carlo interval excludes zero (a ratio over a total near zero is meaningless)."""
    totals = draws["direct"].to_numpy() + draws["a"].to_numpy() * draws["b"].to_numpy()
    low, high = np.quantile(totals, [0.025, 0.975])
    return indirect / total if low > 0 or high < 0 else float("nan")


def _rho_at_zero(b: float, scales: tuple[float, float]) -> float:
    """The mediator–outcome error correlation at which the indirect effect vanishes."""
    sigma_m, sigma_y = scales
    if not (sigma_m > 0 and sigma_y > 0):
        return float("nan")
    k = b * sigma_m / sigma_y
    return float(k / np.sqrt(1.0 + k * k))
