"""Side-by-side regression tables for any fits on the results contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit.core import (
    INTERCEPT,
    RESIDUAL,
    TIDY_COLUMNS,
    EvalkitInputError,
    ModelResults,
    VarianceComponents,
    check_option,
    variance_key,
)
from evalkit.tables._format import fmt_number, stars
from evalkit.tables._table import Table

Uncertainty = Literal["std_error", "ci"]

DEFAULT_STATISTICS: dict[str, str] = {
    "r_squared": "R²",
    "logLik": "Log-likelihood",
    "AIC": "AIC",
    "BIC": "BIC",
}


def _named_models(
    models: Sequence[ModelResults] | Mapping[str, ModelResults],
) -> dict[str, ModelResults]:
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {f"({i})": model for i, model in enumerate(models, start=1)}
    if not named:
        raise EvalkitInputError("regression_table needs at least one model.")
    for name, model in named.items():
        if not isinstance(model, ModelResults):
            raise EvalkitInputError(
                f"model {name!r} is a {type(model).__name__}; wrap it with "
                "evalkit.adapters.from_statsmodels or from_linearmodels first."
            )
    return named


def regression_table(
    models: Sequence[ModelResults] | Mapping[str, ModelResults],
    *,
    terms: Sequence[str] | Mapping[str, str] | None = None,
    uncertainty: Uncertainty = "std_error",
    show_stars: bool = False,
    digits: int = 2,
    level: float = 0.95,
    statistics: Mapping[str, str] | None = None,
    random_effects: bool = True,
    title: str = "Regression estimates",
    notes: Sequence[str] = (),
) -> Table:
    """Estimates of several models side by side, with fit statistics and notes.

    Parameters
    ----------
    models
        Fits on the results contract; a mapping gives the column headers.
    terms
        Terms to show, in order, or a mapping from term to display label. Default:
        every term of every model, in order of first appearance.
    uncertainty
        ``"std_error"``: SE in parentheses under each estimate; ``"ci"``: the confidence
        interval in brackets.
    show_stars
        Mark estimates with * p < .05, ** p < .01, *** p < .001.
    digits
        Decimals for estimates and their uncertainty.
    level
        Confidence level when ``uncertainty="ci"``.
    statistics
        Model facts to show at the bottom, as ``{glance column: label}``; default R²,
        log-likelihood, AIC and BIC where a model reports them.
    random_effects
        For models with random effects, show the variance components (variances,
        correlations, the residual variance), the ICC of each level and the number of
        groups per level, as modelsummary does for lme4 fits.
    title, notes
        Title and extra notes.

    Returns
    -------
    Table
        ``data`` is a tidy long export: one row per model and term (estimate,
        std_error, df, statistic, p_value, ci_low, ci_high), then one row per model and
        fact (``nobs``, ``var_<level>``, ``icc_<level>``, ``n_<level>``, ...) with the
        value in ``estimate``.
    """
    check_option("uncertainty", uncertainty, Uncertainty)
    named = _named_models(models)
    order = _term_order(named, terms)
    tidies = {name: model.tidy(level).set_index("term") for name, model in named.items()}
    rows: list[tuple[str, list[str]]] = []
    for term, label in order.items():
        estimate_row, spread_row = [], []
        for tidy in tidies.values():
            if term not in tidy.index:
                estimate_row.append("")
                spread_row.append("")
                continue
            entry: pd.Series = tidy.loc[str(term)]  # type: ignore[assignment]
            mark = stars(float(entry["p_value"])) if show_stars else ""
            estimate_row.append(fmt_number(float(entry["estimate"]), digits) + mark)
            spread_row.append(_spread(entry, uncertainty, digits))
        rows.append((label, estimate_row))
        rows.append(("", spread_row))  # the SE/CI row has a blank stub
    facts: dict[str, dict[str, float]] = {name: {} for name in named}
    if random_effects:
        rows.extend(_random_effect_rows(named, facts, digits))
    rows.extend(_size_rows(named, facts, random_effects))
    rows.extend(_statistic_rows(named, facts, statistics or DEFAULT_STATISTICS))
    body = pd.DataFrame(
        [cells for _, cells in rows], index=[label for label, _ in rows], columns=list(named)
    )
    all_notes = _notes(named, notes, uncertainty, level, show_stars)
    data = _long_export(tidies, facts, order)
    return Table(body=body, title=title, notes=all_notes, data=data, stub_header="Term")


def _notes(
    named: dict[str, ModelResults],
    notes: Sequence[str],
    uncertainty: str,
    level: float,
    show_stars: bool,
) -> tuple[str, ...]:
    """The caller's notes, what the brackets hold, the stars, and every model's drops and
    warnings (each once: a drop that is also a warning is not repeated)."""
    out = list(notes)
    if uncertainty == "std_error":
        out.append("Standard errors in parentheses.")
    else:
        out.append(f"{round(level * 100)}% confidence intervals in brackets.")
    if show_stars:
        out.append("* p < .05, ** p < .01, *** p < .001.")
    for name, model in named.items():
        if model.dropped.n:
            out.append(f"{name}: {model.dropped.describe()}")
        out.extend(f"{name}: {warning}." for warning in model.warnings)
    return tuple(dict.fromkeys(out))


def _spread(entry: pd.Series, uncertainty: str, digits: int) -> str:
    if uncertainty == "std_error":
        return f"({fmt_number(float(entry['std_error']), digits)})"
    low = fmt_number(float(entry["ci_low"]), digits)
    high = fmt_number(float(entry["ci_high"]), digits)
    return f"[{low}, {high}]"


def _random_effect_rows(
    named: dict[str, ModelResults], facts: dict[str, dict[str, float]], digits: int
) -> list[tuple[str, list[str]]]:
    """Variance components (in the order models list them), then ICCs per level."""
    components: dict[str, VarianceComponents] = {}
    for name, model in named.items():
        if model.variance_components is not None:
            components[name] = model.variance_components
    if not components:
        return []
    keyed: dict[tuple[str, str], str] = {}
    for listed in components.values():
        for level, term in zip(listed.frame["level"], listed.frame["term"], strict=True):
            keyed.setdefault((str(level), str(term)), _component_label(str(level), str(term)))
    residual = keyed.pop((RESIDUAL, RESIDUAL), None)
    if residual is not None:
        keyed[(RESIDUAL, RESIDUAL)] = residual
    rows = []
    for (level, term), label in keyed.items():
        cells = []
        for name in named:
            vc = components.get(name)
            value = _component_value(vc, level, term) if vc is not None else None
            cells.append("" if value is None else fmt_number(value, digits))
            if value is not None and vc is not None:
                facts[name][_component_key(level, term)] = value
        rows.append((label, cells))
    levels = list(dict.fromkeys(lv for each in components.values() for lv in each.levels))
    for lv in levels:
        cells = []
        for name in named:
            vc = components.get(name)
            value = vc.icc().get(lv) if vc is not None and vc.has_residual else None
            cells.append("" if value is None else fmt_number(value, digits))
            if value is not None:
                facts[name][f"icc_{lv}"] = value
        if any(cells):
            rows.append((f"ICC({lv})", cells))
    return rows


def _component_label(level: str, term: str) -> str:
    if level == RESIDUAL:
        return "Var(residual)"
    if term.startswith("cov("):
        return f"Cor({level}: {term[4:-1]})"
    return f"Var({level})" if term == INTERCEPT else f"Var({level}: {term})"


def _component_key(level: str, term: str) -> str:
    if level == RESIDUAL:
        return "var_residual"
    if term.startswith("cov("):
        return f"cor_{level}[{term[4:-1]}]"
    return variance_key(level, term)


def _component_value(vc: VarianceComponents, level: str, term: str) -> float | None:
    match = vc.frame[(vc.frame["level"] == level) & (vc.frame["term"] == term)]
    if match.empty:
        return None
    column = "correlation" if term.startswith("cov(") else "variance"
    return float(match[column].to_numpy()[0])


def _size_rows(
    named: dict[str, ModelResults], facts: dict[str, dict[str, float]], per_level: bool
) -> list[tuple[str, list[str]]]:
    """N, and with random effects the number of groups at every level."""
    rows = [("N", [f"{model.nobs:,}" for model in named.values()])]
    for name, model in named.items():
        facts[name]["nobs"] = float(model.nobs)
    if not per_level:
        return rows
    levels = list(
        dict.fromkeys(
            lv for m in named.values() if m.variance_components is not None for lv in m.n_groups
        )
    )
    for lv in levels:
        cells = []
        for name, model in named.items():
            count = model.n_groups.get(lv) if model.variance_components is not None else None
            cells.append("" if count is None else f"{count:,}")
            if count is not None:
                facts[name][f"n_{lv}"] = float(count)
        rows.append((f"N ({lv})", cells))
    return rows


def _long_export(
    tidies: dict[str, pd.DataFrame], facts: dict[str, dict[str, float]], order: dict[str, str]
) -> pd.DataFrame:
    """The numbers behind the table, one row per model and term or fact."""
    parts = []
    for name, tidy in tidies.items():
        shown = tidy.loc[[t for t in order if t in tidy.index]].reset_index()
        shown.insert(0, "model", name)
        parts.append(shown)
        extra = pd.DataFrame(
            {"model": name, "term": list(facts[name]), "estimate": list(facts[name].values())}
        )
        parts.append(extra)
    frame = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return frame[["model", "term", *TIDY_COLUMNS[1:]]]


def _term_order(
    named: dict[str, ModelResults], terms: Sequence[str] | Mapping[str, str] | None
) -> dict[str, str]:
    if terms is None:
        seen: dict[str, str] = {}
        for model in named.values():
            for term in model.params.index:
                seen.setdefault(str(term), str(term))
        return seen
    order = dict(terms) if isinstance(terms, Mapping) else {t: t for t in terms}
    known = {str(t) for model in named.values() for t in model.params.index}
    unknown = [t for t in order if t not in known]
    if unknown:
        raise EvalkitInputError(f"terms not in any model: {', '.join(unknown)}.")
    return order


def _statistic_rows(
    named: dict[str, ModelResults],
    facts: dict[str, dict[str, float]],
    statistics: Mapping[str, str],
) -> list[tuple[str, list[str]]]:
    """A row per requested ``glance()`` fact that at least one model reports."""
    rows = []
    for key, label in statistics.items():
        cells = [_fact(model, key) for model in named.values()]
        if not any(cells):
            continue
        rows.append((label, cells))
        for name, model in named.items():
            value = model.glance().iloc[0].get(key)
            if isinstance(value, int | float | np.integer | np.floating):
                facts[name][key] = float(value)
    return rows


def _fact(model: ModelResults, key: str) -> str:
    glance = model.glance().iloc[0]
    if key not in glance.index:
        return ""
    value: Any = glance[key]
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return ""
        if key in {"nobs"} or key.startswith("n_"):
            return f"{int(value):,}"
        return fmt_number(float(value), 3 if "squared" in key else 2)
    return str(value)
