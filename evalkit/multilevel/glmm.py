"""``glmm()``: generalized linear mixed models (binary, binomial and count outcomes) by
maximum likelihood, with lme4's formula syntax and nesting rules.

The steps are lmm's: rows and design (:func:`~evalkit.multilevel.spec.model_rows`, the
same missing-value policy and ID checks), the optimiser over (θ, β) of the Laplace or
adaptive Gauss–Hermite deviance (:mod:`evalkit.multilevel.laplace`,
:mod:`evalkit.multilevel.glmm_optimise`) and a results builder on the shared contract
with Wald z tests, as glmer reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import (
    INTERCEPT,
    Dropped,
    EvalkitInputError,
    MissingPolicy,
    ModelResults,
    VarianceComponents,
    blas_threads,
    check_option,
    describe_rows,
    read_formula,
)
from evalkit.multilevel.engine import ThetaLayout
from evalkit.multilevel.families import LINKS, Family, FamilyName, LinkName
from evalkit.multilevel.frame import ModelFrame
from evalkit.multilevel.glmm_margins import cox_index, predicted_probabilities
from evalkit.multilevel.glmm_optimise import (
    Differences,
    ExactGradient,
    GLMMOptimum,
    glm_start,
    minimise,
)
from evalkit.multilevel.laplace import GLMMRows, LaplaceEngine
from evalkit.multilevel.laplace_gradient import value_and_gradient
from evalkit.multilevel.separation import separated_terms
from evalkit.multilevel.spec import (
    Level,
    check_confounded,
    check_finite,
    check_rank,
    model_rows,
)
from evalkit.multilevel.stats import group_labels
from evalkit.multilevel.summaries import StandardizedEffect

SINGULAR_TOL = 1e-4
MAX_NODES = 25


@dataclass(frozen=True)
class GLMMSpec:
    """A specified GLMM: its checked rows (sorted by the hierarchy), levels and family."""

    formula: str
    response: str
    family: Family
    levels: tuple[Level, ...]
    terms: tuple[str, ...]
    rows: GLMMRows
    layout: ThetaLayout
    design_spec: Any
    dropped: Dropped
    labels: tuple[np.ndarray, ...]
    nagq: int
    data: pd.DataFrame = field(repr=False)
    rows_used: np.ndarray = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def nobs(self) -> int:
        """Number of rows fitted."""
        return int(self.rows.y.size)


@dataclass(frozen=True)
class GLMMResults(ModelResults):
    """A fitted GLMM: fixed effects on the link scale with Wald z tests, the random
    effects' covariance per level (``variance_components``, no residual), and the
    optimiser's checks in ``facts``.

    ``theta`` is lme4's relative-factor parameter (for a GLMM without a scale, the
    random effects' SDs and Cholesky entries themselves).
    """

    family: str = "binomial"
    link: str = "logit"
    nagq: int = 1
    theta: np.ndarray = field(default_factory=lambda: np.empty(0))
    covariance_all: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False)
    """Covariance of (θ, β) from the Hessian of the deviance (zero for a θ on its bound)."""
    specification: GLMMSpec | None = field(default=None, repr=False)
    engine: LaplaceEngine | None = field(default=None, repr=False)

    def cox_index(self, term: str, *, level: float = 0.95) -> StandardizedEffect:
        """The WWC effect size of a dichotomous outcome, ``ln(OR)/1.65`` (logit models)."""
        return cox_index(self, term, level=level)

    def profile_intervals(self, *, level: float = 0.95) -> pd.DataFrame:
        """Profile-likelihood CIs of the random-effect SDs (see
        :func:`~evalkit.multilevel.glmm_profile.glmm_profile_intervals`)."""
        from evalkit.multilevel.glmm_profile import glmm_profile_intervals

        return glmm_profile_intervals(self, level=level)

    def predicted_probabilities(self, term: str, *, level: float = 0.95) -> pd.DataFrame:
        """Counterfactual average probabilities with ``term`` = 1 and 0 and their
        difference in percentage points, conditional and population-averaged (see
        :func:`~evalkit.multilevel.glmm_margins.predicted_probabilities`)."""
        return predicted_probabilities(self, term, level=level)

    def _parts(self) -> tuple[GLMMSpec, LaplaceEngine]:
        if self.specification is None or self.engine is None:
            raise EvalkitInputError("this fit kept no model; refit it with glmm().")
        return self.specification, self.engine

    def odds_ratios(self, level: float = 0.95) -> pd.DataFrame:
        """exp(β) with the exponentiated Wald interval (logit link only)."""
        if self.link != "logit":
            raise EvalkitInputError(
                f"odds ratios need the logit link; this model uses {self.link!r}."
            )
        return self._exponentiated("odds_ratio", level)

    def rate_ratios(self, level: float = 0.95) -> pd.DataFrame:
        """exp(β) with the exponentiated Wald interval (log link: incidence-rate ratios)."""
        if self.link != "log":
            raise EvalkitInputError(
                f"rate ratios need the log link; this model uses {self.link!r}."
            )
        return self._exponentiated("rate_ratio", level)

    def _exponentiated(self, name: str, level: float) -> pd.DataFrame:
        ci = self.conf_int(level)
        return pd.DataFrame(
            {
                name: np.exp(self.params),
                "ci_low": np.exp(ci.iloc[:, 0]),
                "ci_high": np.exp(ci.iloc[:, 1]),
                "p_value": self.pvalues,
            }
        )

    @cached_property
    def conditional_modes(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects with their conditional SDs per level
        (glmer's ``ranef(condVar = TRUE)``): one row per group, columns ``<effect>`` and
        ``<effect>_sd``."""
        spec, engine = self._parts()
        beta = self.params.to_numpy()
        modes, covariances = engine.conditional(self.theta, beta)
        out = {}
        for k, level in enumerate(spec.levels):
            names = [INTERCEPT if c == "1" else c for c in level.columns]
            columns: dict[str, np.ndarray] = {}
            for j, name in enumerate(names):
                columns[name] = modes[k][:, j]
                columns[f"{name}_sd"] = np.sqrt(np.clip(covariances[k][:, j, j], 0.0, None))
            frame = pd.DataFrame(columns, index=pd.Index(spec.labels[k], name=level.name))
            out[level.name] = frame.sort_index()
        return out


def glmm(
    formula: str,
    data: pd.DataFrame,
    *,
    family: FamilyName = "binomial",
    link: LinkName | None = None,
    nagq: int = 1,
    trials: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    missing: MissingPolicy = "drop",
) -> GLMMResults:
    """Fit a nested generalized linear mixed model by maximum likelihood.

    Parameters
    ----------
    formula
        lme4 syntax: ``"proficient ~ coached + prior + (1 | school_id) + (1 |
        teacher_id)"``; nested levels at any depth, random slopes, ``(1 | a/b)``.
    data
        One row per observation (per student, or per cell with ``trials``).
    family
        ``"binomial"`` (0/1 outcomes, or successes out of ``trials``) or
        ``"poisson"`` (counts).
    link
        ``"logit"`` (default), ``"probit"`` or ``"cloglog"`` for binomial; ``"log"``
        for Poisson.
    nagq
        1: the Laplace approximation (glmer's default; any nesting depth). More: adaptive
        Gauss–Hermite quadrature with that many nodes, for one grouping factor with a
        random intercept only (as glmer).
    trials
        Column with the number of trials of each row (the outcome then counts
        successes), glmer's ``cbind(successes, trials - successes)``.
    exposure
        Column of positive exposures (days enrolled, students): ``log(exposure)``
        enters as an offset, so the coefficients are log rate ratios per unit exposure.
    offset
        Column added to the linear predictor as is (on the link scale).
    missing
        ``"drop"`` (listwise, recorded on ``dropped``) or ``"raise"``.

    Returns
    -------
    GLMMResults
        Coefficients on the link scale with Wald z tests and SEs from the Hessian of
        the deviance in (θ, β) (glmer's default), the random effects' variances, the
        deviance ``−2 log L`` (Laplace or AGQ), and the optimiser's checks.

    Examples
    --------
    >>> import evalkit
    >>> from evalkit.multilevel import glmm
    >>> herds = evalkit.datasets.load("cbpp")
    >>> fit = glmm("incidence ~ period + (1 | herd)", herds, trials="size")
    >>> round(fit.facts["deviance"], 3)
    184.053
    """
    spec = specify_glmm(
        formula, data, family=family, link=link, nagq=nagq, trials=trials, exposure=exposure,
        offset=offset, missing=missing,
    )  # fmt: skip
    with blas_threads(1):
        engine = LaplaceEngine(spec.rows, spec.layout, spec.family)
        optimum, glm_converged = _optimise(spec, engine)
    return _build_results(spec, engine, optimum, check_separation=not glm_converged)


def specify_glmm(
    formula: str,
    data: pd.DataFrame,
    *,
    family: FamilyName = "binomial",
    link: LinkName | None = None,
    nagq: int = 1,
    trials: str | None = None,
    exposure: str | None = None,
    offset: str | None = None,
    missing: MissingPolicy = "drop",
) -> GLMMSpec:
    """Checked rows, design and family of a GLMM, without fitting it."""
    check_option("family", family, FamilyName)
    check_option("missing", missing, MissingPolicy)
    chosen = link or LINKS[family][0]
    if chosen not in LINKS[family]:
        raise EvalkitInputError(
            f"link={chosen!r} is not available for family={family!r}; use one of "
            f"{', '.join(LINKS[family])}."
        )
    if (
        isinstance(nagq, bool)
        or not isinstance(nagq, int | np.integer)
        or not 1 <= nagq <= MAX_NODES
    ):
        raise EvalkitInputError(f"nagq must be an integer from 1 to {MAX_NODES}; got {nagq!r}.")
    if trials is not None and family != "binomial":
        raise EvalkitInputError("trials= applies to family='binomial' only.")
    if exposure is not None and offset is not None:
        raise EvalkitInputError("give exposure= or offset=, not both (exposure is log-offset).")
    extra = tuple(c for c in (trials, exposure, offset) if c is not None)
    if not isinstance(data, pd.DataFrame):
        raise EvalkitInputError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    _check_outcome_type(formula, data)
    rows = model_rows(
        formula, data, missing=missing, allow_crossed=True, observation_level=True, extra=extra
    )
    if rows.crossed:
        names = " and ".join(lv.name for lv in rows.levels)
        raise EvalkitInputError(
            f"the grouping factors {names} cross; glmm() fits nested designs (any depth). "
            "Fit the crossed model with lmm() for a continuous outcome, or nest the factors."
        )
    levels = list(rows.levels)
    if nagq > 1 and (len(levels) != 1 or levels[0].columns != ("1",)):
        raise EvalkitInputError(
            f"nagq={nagq} (adaptive quadrature) needs one grouping factor with a random "
            "intercept only, as glmer; use nagq=1 (Laplace) for this model."
        )
    frame, design_spec = _glmm_frame(rows.parsed.fixed, rows.complete, levels, rows.codes)
    terms = tuple(str(c) for c in design_spec.column_names)
    index = rows.complete.index
    check_finite(frame, list(terms), rows.parsed.response, index)
    xtx = frame.x.T @ frame.x
    check_rank(xtx, terms)
    check_confounded(frame, rows.levels, xtx)
    y = frame.y
    n_trials = _trials(rows.complete, trials, y.size)
    _check_outcome(family, rows.parsed.response, y, n_trials, trials, index)
    shift = _offset(rows.complete, exposure, offset, index)
    glmm_rows = GLMMRows.build(frame.x, y, n_trials, shift, frame.z, frame.codes)
    labels = tuple(
        group_labels(rows.complete, level.grouping, codes)
        for level, codes in zip(levels, frame.codes, strict=True)
    )
    sorted_labels = tuple(
        lab[codes[glmm_rows.order][np.r_[0, np.flatnonzero(np.diff(g)) + 1]]]
        for lab, codes, g in zip(labels, frame.codes, glmm_rows.group, strict=True)
    )
    return GLMMSpec(
        formula=formula,
        response=rows.parsed.response,
        family=Family(family, chosen),  # type: ignore[arg-type]
        levels=rows.levels,
        terms=terms,
        rows=glmm_rows,
        layout=ThetaLayout.build([list(lv.blocks) for lv in levels]),
        design_spec=design_spec,
        dropped=rows.dropped,
        labels=sorted_labels,
        nagq=int(nagq),
        data=data,
        rows_used=np.flatnonzero(data[list(rows.used)].notna().all(axis=1).to_numpy()),
        options={
            "family": family, "link": chosen, "nagq": int(nagq), "trials": trials,
            "exposure": exposure, "offset": offset, "missing": missing,
        },
    )  # fmt: skip


def _glmm_frame(
    fixed: str, complete: pd.DataFrame, levels: list[Level], codes: tuple[np.ndarray, ...]
) -> tuple[ModelFrame, Any]:
    """The rows' fixed design (formulaic's own array, not copied into a wider one), the
    outcome, and the random-effect columns — a read-only broadcast column of ones for
    a random intercept alone (no memory)."""
    model_y, model_x = read_formula(fixed).get_model_matrix(complete, output="numpy")
    spec = model_x.model_spec
    n = len(complete)
    z = []
    for level in levels:
        if level.columns == ("1",):
            z.append(np.broadcast_to(1.0, (n, 1)))
            continue
        columns = []
        for name in level.columns:
            if name == "1":
                columns.append(np.ones(n))
            elif not pd.api.types.is_numeric_dtype(complete[name]):
                raise EvalkitInputError(f"random slope column {name!r} must be numeric.")
            else:
                columns.append(complete[name].to_numpy(dtype=np.float64))
        z.append(np.column_stack(columns))
    frame = ModelFrame(
        x=np.ascontiguousarray(np.asarray(model_x, dtype=np.float64)),
        y=np.asarray(model_y, dtype=np.float64).ravel().copy(),
        z=tuple(z),
        codes=tuple(codes),
    )
    return frame, spec


def _check_outcome_type(formula: str, data: pd.DataFrame) -> None:
    """A Yes/No or text outcome is an error that says how to code it."""
    response = formula.split("~", 1)[0].strip()
    if response not in data.columns:
        return
    column = data[response]
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return
    values = ", ".join(repr(v) for v in pd.unique(column.dropna())[:4])
    raise EvalkitInputError(
        f"the outcome {response!r} holds text ({values}); code it as numbers first, e.g. "
        f"data[{response!r}].map({{'Yes': 1, 'No': 0}}) for a binary outcome."
    )


def _trials(complete: pd.DataFrame, trials: str | None, n: int) -> np.ndarray:
    if trials is None:
        return np.broadcast_to(1.0, (n,))
    column = complete[trials]
    if not pd.api.types.is_numeric_dtype(column):
        raise EvalkitInputError(f"the trials column {trials!r} must hold numbers.")
    values = column.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 1) | (values != np.round(values))
    if bad.any():
        raise EvalkitInputError(
            f"the trials column {trials!r} needs whole numbers ≥ 1; see "
            f"{describe_rows(list(complete.index), bad)}."
        )
    return values


def _check_outcome(
    family: str, response: str, y: np.ndarray, trials: np.ndarray, trials_name: str | None,
    index: pd.Index,
) -> None:  # fmt: skip
    """Binomial outcomes in {0, 1} (or 0..trials), counts whole and non-negative."""
    rows = list(index)
    whole = y == np.round(y)
    if family == "binomial" and trials_name is None:
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise EvalkitInputError(
                f"the binary outcome {response!r} must be 0 or 1; see {describe_rows(rows, bad)}. "
                "For successes out of several trials give trials=<column>."
            )
    elif family == "binomial":
        bad = ~whole | (y < 0) | (y > trials)
        if bad.any():
            raise EvalkitInputError(
                f"{response!r} counts successes and must be a whole number from 0 to "
                f"{trials_name!r}; see {describe_rows(rows, bad)}."
            )
    else:
        bad = ~whole | (y < 0)
        if bad.any():
            raise EvalkitInputError(
                f"the count outcome {response!r} must hold whole numbers ≥ 0; see "
                f"{describe_rows(rows, bad)}."
            )
    if family == "binomial" and (np.all(y == 0) or np.all(y == trials)):
        raise EvalkitInputError(f"the outcome {response!r} takes one value in every row.")
    if family == "poisson" and np.all(y == 0):
        raise EvalkitInputError(f"the count outcome {response!r} is zero in every row.")


def _offset(
    complete: pd.DataFrame, exposure: str | None, offset: str | None, index: pd.Index
) -> np.ndarray:
    if exposure is None and offset is None:
        return np.broadcast_to(0.0, (len(complete),))
    name = exposure if exposure is not None else offset
    assert name is not None
    column = complete[name]
    if not pd.api.types.is_numeric_dtype(column):
        raise EvalkitInputError(
            f"the {'exposure' if exposure else 'offset'} column {name!r} must hold numbers."
        )
    values = column.to_numpy(dtype=np.float64)
    if exposure is not None:
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            raise EvalkitInputError(
                f"the exposure {name!r} must be positive (its log is the offset); see "
                f"{describe_rows(list(index), bad)}."
            )
        return np.log(values)
    bad = ~np.isfinite(values)
    if bad.any():
        raise EvalkitInputError(
            f"the offset {name!r} is not finite at {describe_rows(list(index), bad)}."
        )
    return values


@dataclass(frozen=True)
class Scaled:
    """The deviance as the optimiser sees it: over (θ, β·sd(x)), with its derivatives
    (exact gradient for canonical links with the Laplace approximation)."""

    derivatives: Differences
    scale: np.ndarray
    lower: np.ndarray
    n_theta: int


def scaled_deviance(spec: GLMMSpec, engine: LaplaceEngine) -> Scaled:
    """β scaled by its column's SD, so that difference steps and L-BFGS-B's first step
    move every coefficient's contribution to η alike."""
    rows = spec.rows
    n_theta = len(spec.layout.entries)
    spread = rows.x.std(axis=0)
    scale = np.r_[np.ones(n_theta), np.where(spread > 0, spread, 1.0)]
    lower = np.r_[
        [-np.inf if low is None else low for low in spec.layout.lower_bounds],
        np.full(rows.x.shape[1], -np.inf),
    ]

    def objective(scaled: np.ndarray) -> float:
        par = scaled / scale
        try:
            if spec.nagq > 1:
                value = engine.quadrature(par[:n_theta], par[n_theta:], spec.nagq)
            else:
                value = engine.deviance(par[:n_theta], par[n_theta:])
        except np.linalg.LinAlgError:
            return np.inf
        return value if np.isfinite(value) else np.inf

    if spec.nagq == 1 and spec.family.canonical:

        def fun_and_grad(scaled: np.ndarray) -> tuple[float, np.ndarray]:
            par = scaled / scale
            try:
                value, grad = value_and_gradient(engine, par[:n_theta], par[n_theta:])
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(scaled)
            if not np.isfinite(value):
                return np.inf, np.zeros_like(scaled)
            return value, grad / scale

        return Scaled(ExactGradient(fun_and_grad), scale, lower * scale, n_theta)
    return Scaled(Differences(objective), scale, lower * scale, n_theta)


def _optimise(spec: GLMMSpec, engine: LaplaceEngine) -> tuple[GLMMOptimum, bool]:
    """Minimise the deviance over (θ, β) from three starts of θ and the fixed-effects
    GLM's β. Also returns whether that GLM converged (else separation is checked)."""
    rows = spec.rows
    beta0, glm_converged = glm_start(rows.x, rows.y, rows.trials, rows.offset, spec.family)
    problem = scaled_deviance(spec, engine)
    scale = problem.scale
    theta0 = spec.layout.start()
    starts = [
        (label, np.r_[factor * theta0, beta0] * scale)
        for label, factor in (("start", 1.0), ("start θ×0.3", 0.3), ("start θ×2", 2.0))
    ]

    def counter() -> int:
        return engine.evaluations

    found = minimise(problem.derivatives, starts, problem.lower, counter)
    optimum = replace(
        found,
        par=found.par / scale,
        gradient=found.gradient * scale,
        hessian=found.hessian * np.outer(scale, scale),
    )
    return optimum, glm_converged


def _build_results(
    spec: GLMMSpec, engine: LaplaceEngine, optimum: GLMMOptimum, *, check_separation: bool
) -> GLMMResults:
    n_theta = len(spec.layout.entries)
    theta = optimum.par[:n_theta]
    beta = optimum.par[n_theta:]
    index = pd.Index(spec.terms)
    covariance_all = _covariance(optimum)
    cov = covariance_all[n_theta:, n_theta:]
    factors = spec.layout.factors(theta)
    singular = any(bool(np.any(np.abs(np.diag(t)) < SINGULAR_TOL)) for t in factors)
    n_params = beta.size + n_theta
    deviance = optimum.deviance
    facts: dict[str, Any] = {
        "family": spec.family.name,
        "link": spec.family.link,
        "nAGQ": spec.nagq,
        "deviance": deviance,
        "logLik": -0.5 * deviance,
        "AIC": deviance + 2 * n_params,
        "BIC": deviance + n_params * float(np.log(spec.nobs)),
        "evaluations": optimum.evaluations,
        "gradient_norm": optimum.gradient_norm,
        "hessian_positive_definite": optimum.positive_definite,
        "converged": optimum.converged,
        "singular": singular,
        "engine": (
            f"adaptive Gauss-Hermite quadrature ({spec.nagq} nodes)"
            if spec.nagq > 1
            else "Laplace (PIRLS on the nested group tree)"
        ),
    }
    warnings = []
    separated = (
        separated_terms(spec.rows.x, spec.rows.y, spec.rows.trials, spec.family, spec.terms)
        if check_separation
        else []
    )
    if separated:
        facts["separation"] = ", ".join(separated)
        warnings.append(
            "complete or quasi-complete separation: the outcome is perfectly predicted along "
            f"{', '.join(separated)}, whose estimates (and SEs) diverge; their maximum "
            "likelihood estimates do not exist. Drop or recode those terms, or pool categories."
        )
    if singular:
        warnings.append(
            "singular fit: a random-effect variance (or correlation) is on its boundary"
        )
    if not engine.mode(theta, beta).converged:
        facts["converged"] = False
        warnings.append(
            "the conditional modes (PIRLS) did not converge at the optimum; the Laplace "
            "deviance there is approximate"
        )
    if not optimum.converged:
        warnings.append(
            f"the optimiser did not reach a verified optimum (gradient {optimum.gradient_norm:.2g}"
            f"{'' if optimum.positive_definite else ', Hessian not positive definite'}); "
            f"attempts: {'; '.join(optimum.attempts)}"
        )
    if spec.dropped.n:
        warnings.append(spec.dropped.describe().rstrip("."))
    matrices = {}
    for level, t in zip(spec.levels, factors, strict=True):
        names = [INTERCEPT if c == "1" else c for c in level.columns]
        matrices[level.name] = pd.DataFrame(t @ t.T, index=names, columns=names)
    _latent_icc(facts, spec, matrices)
    return GLMMResults(
        params=pd.Series(beta, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(np.inf, index=index),
        nobs=spec.nobs,
        model=f"generalized linear mixed model ({spec.family.name}, {spec.family.link} link, "
        + ("Laplace)" if spec.nagq == 1 else f"AGQ {spec.nagq})"),
        backend="evalkit",
        n_groups={lv.name: n for lv, n in zip(spec.levels, spec.rows.n_groups, strict=True)},
        facts=facts,
        warnings=tuple(warnings),
        dropped=spec.dropped,
        formula=spec.formula,
        spec=spec.design_spec,
        variance_components=VarianceComponents.from_matrices(matrices),
        family=spec.family.name,
        link=spec.family.link,
        nagq=spec.nagq,
        theta=theta,
        covariance_all=covariance_all,
        specification=spec,
        engine=engine,
    )


def _covariance(optimum: GLMMOptimum) -> np.ndarray:
    """``2H⁻¹`` over the free coordinates of (θ, β), zero rows for fixed ones (glmer's
    ``vcov(use.hessian = TRUE)`` is its β block)."""
    free = np.flatnonzero(optimum.free)
    out = np.zeros((optimum.par.size, optimum.par.size))
    try:
        out[np.ix_(free, free)] = 2.0 * np.linalg.inv(optimum.hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        out[:] = np.nan
    return out


def _latent_icc(facts: dict[str, Any], spec: GLMMSpec, matrices: dict[str, pd.DataFrame]) -> None:
    """Latent-scale ICCs of random-intercept models with a logit or probit link: level
    variance over the total with the residual π²/3 (logit) or 1 (probit) (Snijders &
    Bosker 2012, §17.3)."""
    if spec.family.name != "binomial" or spec.family.link == "cloglog":
        return
    if any(lv.columns != ("1",) for lv in spec.levels):
        return
    residual = np.pi**2 / 3 if spec.family.link == "logit" else 1.0
    variances = {name: float(m.to_numpy()[0, 0]) for name, m in matrices.items()}
    total = sum(variances.values()) + residual
    for name, value in variances.items():
        facts[f"icc_{name}"] = value / total
