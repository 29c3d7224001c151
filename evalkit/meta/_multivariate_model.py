"""``multivariate()``: the public multivariate meta-analysis and its results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import (
    EvalkitInputError,
    VarianceComponents,
    check_correlation,
    check_option,
    describe_rows,
    require_columns,
)
from evalkit.meta._input import prepare
from evalkit.meta._multilevel import LikelihoodMethod
from evalkit.meta._multivariate import (
    MultivariateFit,
    OutcomeBlocks,
    Parameterisation,
    Struct,
    correlation_names,
    fit_outcomes,
    outcome_design,
    sampling_matrix,
    variance_names,
)
from evalkit.meta._results import MetaResults


@dataclass(frozen=True)
class MultivariateResults(MetaResults):
    """A multivariate meta-analysis: outcome-specific means and their between-study
    covariance (``variance_components`` at level ``study``, terms = outcomes)."""

    def predict(self, newmods: Any = None, *, level: float | None = None) -> pd.DataFrame:
        """The average effect on each outcome with its confidence interval and the
        outcome's own prediction interval (μ_j ± z √(SE² + τ²_j), as metafor's
        ``predict.rma`` with ``tau2.levels``)."""
        structure: MultivariateFit = self.structure
        level = self.level if level is None else level
        n_out = len(structure.outcomes)
        extra = self.x.shape[1] - n_out
        if extra and newmods is None:
            raise EvalkitInputError(
                "this model has moderators: give newmods (a mapping of moderator values) "
                "at which to predict each outcome."
            )
        mods = np.zeros(extra)
        if extra:
            from evalkit.meta._input import new_design

            mods = new_design(self.spec, newmods)[0, 1:]
        rows = []
        crit = stats.norm.ppf(0.5 + level / 2)
        tau = structure.tau
        for j, name in enumerate(structure.outcomes):
            x_new = np.concatenate([np.eye(n_out)[j], mods])
            estimate = float(x_new @ self.params.to_numpy())
            se = float(np.sqrt(x_new @ self.cov.to_numpy() @ x_new))
            spread = np.sqrt(se**2 + tau[j, j])
            rows.append(
                {
                    "outcome": name,
                    "estimate": estimate,
                    "std_error": se,
                    "ci_low": estimate - crit * se,
                    "ci_high": estimate + crit * se,
                    "pi_low": estimate - crit * spread,
                    "pi_high": estimate + crit * spread,
                }
            )
        return pd.DataFrame(rows)


def multivariate(
    data: pd.DataFrame,
    *,
    effect: str,
    variance: str,
    outcome: str,
    study: str,
    rho: float | None = None,
    covariance: np.ndarray | pd.DataFrame | None = None,
    moderators: str | None = None,
    struct: Struct = "UN",
    method: LikelihoodMethod = "REML",
    level: float = 0.95,
) -> MultivariateResults:
    """Multivariate meta-analysis of several outcomes per study.

    Parameters
    ----------
    data
        One row per effect size, with the outcome it measures and its study.
    effect, variance
        Columns of effect sizes and their sampling variances.
    outcome, study
        Columns naming each effect's outcome (instruction, achievement, ...) and study.
    rho
        Within-study correlation of sampling errors, imputed between every pair of
        effects of a study (Pustejovsky & Tipton 2022 recommend a sensitivity range);
        ``None`` with no ``covariance`` means independent sampling errors.
    covariance
        The full sampling covariance matrix (effects × effects, block-diagonal by
        study) when the studies report it; overrides ``rho``.
    moderators
        A formulaic right-hand side with moderators common to all outcomes.
    struct
        Between-study covariance of the outcomes' true effects: ``"UN"`` (a variance
        per outcome, a correlation per pair), ``"HCS"`` (a variance per outcome, one
        correlation) or ``"CS"`` (one variance, one correlation).
    method
        ``"REML"`` or ``"ML"``.
    level
        Confidence level.

    Examples
    --------
    >>> import evalkit
    >>> from evalkit import meta
    >>> sat = evalkit.datasets.load("kalaian1996")
    >>> fit = meta.multivariate(sat, effect="yi", variance="vi", outcome="outcome",
    ...                         study="study", rho=0.66)
    >>> list(fit.params.index)
    ['math', 'verbal']
    """
    check_option("struct", struct, Struct)
    check_option("method", method, LikelihoodMethod)
    if rho is not None:
        check_correlation("rho", rho)
    require_columns(data, [outcome, study])
    for name in (outcome, study):
        missing = data[name].isna().to_numpy()
        if missing.any():
            raise EvalkitInputError(
                f"{name!r} has missing values at {describe_rows(list(data.index), missing)}."
            )
    prepared = prepare(data, effect=effect, variance=variance, moderators=moderators)
    codes, outcomes = outcome_design(data[outcome])
    q = len(outcomes)
    if q < 2 and struct != "CS":
        raise EvalkitInputError(
            f"{outcome!r} has a single outcome ({outcomes[0]!r}); fit multilevel() instead."
        )
    x = np.column_stack([np.eye(q)[codes], prepared.x[:, 1:]])
    terms = outcomes + prepared.terms[1:]
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise EvalkitInputError(
            "the moderators are collinear with the outcome indicators (a moderator that only "
            "distinguishes outcomes adds nothing to outcome-specific means)."
        )
    study_values = data[study].to_numpy()
    dup = pd.DataFrame({"s": study_values, "o": codes}).duplicated().to_numpy()
    sampling = sampling_matrix(prepared.v, study_values, rho, covariance)
    if rho is not None and rho >= 1.0:
        raise EvalkitInputError("rho must be below 1 (the sampling covariance would be singular).")
    blocks = OutcomeBlocks(prepared.y, sampling, x, study_values, codes, q)
    param = Parameterisation(struct, q)
    reml = method == "REML"
    phi, loglik, converged, norm = fit_outcomes(blocks, param, reml=reml)
    tau = param.matrix(phi)
    final = blocks.evaluate(tau, reml=reml)
    structure = MultivariateFit(blocks, param, phi, outcomes, reml)
    variances, rhos = param.natural(tau)
    warnings = []
    if not converged:
        warnings.append(f"the optimiser did not reach a zero gradient (largest {norm:.2g})")
    scale = float(np.var(prepared.y) + np.mean(prepared.v))
    for name, value in zip(variance_names(outcomes, param), variances, strict=True):
        if value < 1e-6 * scale:
            warnings.append(f"{name} is at its boundary (0)")
    for name, value in zip(correlation_names(outcomes, param), rhos, strict=True):
        if abs(value) > 0.999:
            warnings.append(f"{name} is at its boundary (±1): the correlation is not estimable")
    if dup.any():
        warnings.append(
            f"{int(dup.sum())} effect(s) share a study and an outcome with another effect: "
            "they share that outcome's random effect (as metafor's ~ outcome | study)"
        )
    k, p = x.shape
    facts: dict[str, Any] = {
        "method": method,
        "struct": struct,
        "k": k,
        "n_studies": int(np.unique(study_values).size),
        "rho": rho,
    }
    n_params = p + param.n_variances + param.n_correlations
    n_bic = k - p if reml else k
    facts.update(
        logLik=loglik,
        AIC=-2 * loglik + 2 * n_params,
        BIC=-2 * loglik + n_params * np.log(n_bic),
        converged=converged,
        gradient_norm=norm,
    )
    index = pd.Index(terms)
    return MultivariateResults(
        params=pd.Series(final.beta, index=index),
        cov=pd.DataFrame(final.cov, index=index, columns=index),
        df=pd.Series(np.inf, index=index),
        nobs=k,
        model=f"multivariate meta-analysis ({method}; {struct} between-study covariance of "
        f"{', '.join(outcomes)})",
        backend="evalkit",
        n_groups={"study": facts["n_studies"]},
        facts=facts,
        warnings=tuple(warnings),
        formula=None,
        spec=prepared.spec,
        method=method,
        test="z",
        level=level,
        tau2=float(np.trace(tau)),
        y=prepared.y,
        v=prepared.v,
        x=x,
        variance_components=VarianceComponents.from_matrices(
            {"study": pd.DataFrame(tau, index=outcomes, columns=outcomes)}
        ),
        structure=structure,
        labels=prepared.labels,
        data=data,
    )
