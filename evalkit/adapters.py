"""Adapters that put statsmodels and linearmodels fits on evalkit's results contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import (
    INTERCEPT,
    Dropped,
    EvalkitInputError,
    ModelResults,
    VarianceComponents,
    z_based,
)


def _frame_cov(cov: Any, terms: pd.Index) -> pd.DataFrame:
    matrix = np.asarray(cov, dtype=np.float64)
    return pd.DataFrame(matrix, index=terms, columns=terms)


def from_statsmodels(
    fit: Any, *, model: str | None = None, dropped: Dropped | None = None, level: str = "group"
) -> ModelResults:
    """Wrap a statsmodels results object (OLS/WLS/GLS, GLM, MixedLM, ...).

    Inference follows the fit: t with the residual df where statsmodels uses t
    (``use_t``), z otherwise. For MixedLM only the fixed effects are kept as terms;
    the random-effect covariance and the residual variance become the shared
    ``variance_components`` table, with ``level`` naming the grouping factor.

    Examples
    --------
    >>> import pandas as pd, statsmodels.formula.api as smf
    >>> data = pd.DataFrame({"y": [1.0, 2.0, 2.5, 4.0], "x": [0.0, 1.0, 2.0, 3.0]})
    >>> res = from_statsmodels(smf.ols("y ~ x", data).fit())
    >>> list(res.tidy().term)
    ['Intercept', 'x']
    """
    if not hasattr(fit, "params") or not hasattr(fit, "cov_params"):
        raise EvalkitInputError(f"{type(fit).__name__} is not a statsmodels results object.")
    if isinstance(fit.params, pd.Series):
        params = fit.params.copy()
    else:  # array interface: take the names from the model
        names = getattr(fit.model, "exog_names", None) or [f"x{i}" for i in range(len(fit.params))]
        params = pd.Series(np.asarray(fit.params), index=pd.Index(names[: len(fit.params)]))
    facts: dict[str, Any] = {}
    warnings: list[str] = []
    n_groups: dict[str, int] = {}
    is_mixed = hasattr(fit, "cov_re")
    components: VarianceComponents | None = None
    if is_mixed:
        k_fe = int(fit.k_fe)
        params = params.iloc[:k_fe]
        cov_all = np.asarray(fit.cov_params())[:k_fe, :k_fe]
        df = z_based(params.index)
        components = mixedlm_components(fit, level)
        facts["converged"] = bool(fit.converged)
        facts["reml"] = bool(fit.method == "REML") if hasattr(fit, "method") else None
        n_groups[level] = len(fit.model.group_labels)
        if not fit.converged:
            warnings.append("statsmodels MixedLM did not report convergence")
    else:
        cov_all = np.asarray(fit.cov_params())
        use_t = bool(getattr(fit, "use_t", False))
        df = pd.Series(float(fit.df_resid), index=params.index) if use_t else z_based(params.index)
    for name in ("rsquared", "rsquared_adj"):
        if hasattr(fit, name):
            facts[name.replace("rsquared", "r_squared")] = float(getattr(fit, name))
    for name, key in (("llf", "logLik"), ("aic", "AIC"), ("bic", "BIC")):
        value = getattr(fit, name, None)
        if value is not None and np.isfinite(value):
            facts[key] = float(value)
    cov_type = getattr(fit, "cov_type", None)
    if cov_type:
        facts["cov_type"] = str(cov_type)
    model_name = model or type(fit.model).__name__
    return ModelResults(
        params=params.astype(float),
        cov=_frame_cov(cov_all, params.index),
        df=df,
        nobs=int(fit.nobs),
        model=model_name,
        backend="statsmodels",
        n_groups=n_groups,
        facts=facts,
        warnings=tuple(warnings),
        dropped=dropped or Dropped(),
        formula=getattr(getattr(fit.model, "formula", None), "__str__", lambda: None)(),
        variance_components=components,
    )


def mixedlm_components(
    fit: Any, level: str, extra: dict[str, dict[str, float]] | None = None
) -> VarianceComponents:
    """The shared table from a MixedLM fit: ``cov_re`` for ``level`` (its intercept
    relabelled ``Intercept``), independent variance components from ``extra``
    (``{level: {term: variance}}``), and the residual variance ``scale``."""
    cov_re = pd.DataFrame(fit.cov_re, dtype=float)
    design = np.asarray(fit.model.exog_re, dtype=float)
    # MixedLM names a random intercept after the grouping variable (or "Group"); its
    # design column is constant 1.
    names = [
        INTERCEPT if np.all(design[:, k] == 1.0) else str(n) for k, n in enumerate(cov_re.index)
    ]
    cov_re.index = cov_re.columns = pd.Index(names)
    matrices: dict[str, pd.DataFrame] = {level: cov_re} if len(names) else {}
    for name, variances in (extra or {}).items():
        current = matrices.get(name, pd.DataFrame(dtype=float))
        terms = [*current.index, *variances]
        matrix = pd.DataFrame(0.0, index=terms, columns=terms)
        matrix.loc[current.index, current.columns] = current
        for term, value in variances.items():
            matrix.loc[term, term] = value
        matrices[name] = matrix
    return VarianceComponents.from_matrices(matrices, residual=float(fit.scale))


def from_linearmodels(
    fit: Any, *, model: str | None = None, dropped: Dropped | None = None
) -> ModelResults:
    """Wrap a linearmodels results object (PanelOLS, RandomEffects, IV2SLS, ...).

    linearmodels reports normal-theory inference unless the covariance was
    ``debiased``, in which case t with the residual df is used; the adapter follows.
    """
    if not hasattr(fit, "params") or not hasattr(fit, "cov"):
        raise EvalkitInputError(f"{type(fit).__name__} is not a linearmodels results object.")
    params = pd.Series(fit.params, dtype=float)
    # IV results expose ``debiased``; panel results keep it private as ``_debiased``.
    debiased = bool(getattr(fit, "debiased", getattr(fit, "_debiased", False)))
    df = pd.Series(float(fit.df_resid), index=params.index) if debiased else z_based(params.index)
    facts: dict[str, Any] = {"cov_type": str(getattr(fit, "cov_type", ""))}
    for name, key in (("rsquared", "r_squared"), ("rsquared_within", "r_squared_within")):
        value = getattr(fit, name, None)
        if value is not None:
            facts[key] = float(value)
    first_stage = getattr(fit, "first_stage", None)
    if first_stage is not None:
        diagnostics = first_stage.diagnostics
        facts["first_stage_F"] = float(diagnostics["f.stat"].min())
    entity_info = getattr(fit, "entity_info", None)
    n_groups = {"entity": int(entity_info["total"])} if entity_info is not None else {}
    return ModelResults(
        params=params,
        cov=_frame_cov(fit.cov, params.index),
        df=df,
        nobs=int(fit.nobs),
        model=model or type(fit).__name__.replace("Results", ""),
        backend="linearmodels",
        n_groups=n_groups,
        facts=facts,
        dropped=dropped or Dropped(),
    )
