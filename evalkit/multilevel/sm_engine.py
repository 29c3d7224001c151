"""``engine="statsmodels"``: the same formula through statsmodels' MixedLM, as a second opinion.

MixedLM has one grouping factor with correlated random effects (``re_formula``) and
independent variance components inside its groups (``vc_formula``). So it can
express one level with correlated or uncorrelated random effects, and two nested
levels when the lower level has random intercepts (or independent slopes) only.
Anything else raises an error naming what it cannot express.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pandas as pd

from evalkit.adapters import from_statsmodels, mixedlm_components
from evalkit.core import INTERCEPT, Dropped, EvalkitInputError, ModelResults

if TYPE_CHECKING:
    from evalkit.multilevel.spec import Level


def _re_formula(columns: tuple[str, ...]) -> str:
    parts = ["1" if c == "1" else c for c in columns]
    if "1" not in parts:
        parts.insert(0, "0")
    return " + ".join(parts)


def fit_statsmodels(
    fixed: str, levels: list[Level], data: pd.DataFrame, *, method: str, dropped: Dropped
) -> ModelResults:
    """Fit with ``statsmodels.MixedLM.from_formula``; levels are lowest first."""
    import statsmodels.formula.api as smf

    if len(levels) > 2:
        raise EvalkitInputError(
            f"statsmodels MixedLM cannot express {len(levels)} grouping levels; use engine='evalkit'."
        )
    top = levels[-1]
    if len(top.grouping) != 1:
        raise EvalkitInputError(
            "engine='statsmodels' needs the top grouping to be a single column."
        )
    vc: dict[str, str] = {}
    if len(top.blocks) == 1:
        re_formula = _re_formula(top.columns)
    else:
        # Uncorrelated blocks: the first block (with the intercept) as re_formula, the
        # rest as independent variance components within the groups.
        first = top.blocks[0]
        re_formula = _re_formula(top.columns[:first])
        for column in top.columns[first:]:
            vc[f"{column}|{top.name}"] = f"0 + {column}"
    if len(levels) == 2:
        lower = levels[0]
        inner = [g for g in lower.grouping if g not in top.grouping]
        if len(inner) != 1:
            raise EvalkitInputError(
                f"engine='statsmodels' needs the lower level written as {top.name}:<id>; got {lower.name}."
            )
        for column in lower.columns:
            slope = "" if column == "1" else f":{column}"
            vc[f"{column}|{lower.name}"] = f"0 + C({inner[0]}){slope}"
    model = smf.mixedlm(
        fixed, data, groups=data[top.grouping[0]], re_formula=re_formula, vc_formula=vc or None
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(reml=method == "REML")
    result = from_statsmodels(
        fit,
        model=f"linear mixed model ({method}, statsmodels MixedLM)",
        dropped=dropped,
        level=top.name,
    )
    facts: dict[str, Any] = {**result.facts, "engine": "statsmodels MixedLM"}
    extra: dict[str, dict[str, float]] = {}
    for name, value in zip(model.exog_vc.names, fit.vcomp, strict=True):
        column, level_name = str(name).split("|", 1)
        extra.setdefault(level_name, {})[INTERCEPT if column == "1" else column] = float(value)
    messages = [*result.warnings, *(f"statsmodels: {w.message}" for w in caught)]
    n_groups = {top.name: len(model.group_labels)}
    from dataclasses import replace

    return replace(
        result,
        facts=facts,
        warnings=tuple(dict.fromkeys(messages)),
        n_groups=n_groups,
        formula=fixed,
        variance_components=mixedlm_components(fit, top.name, extra),
    )
