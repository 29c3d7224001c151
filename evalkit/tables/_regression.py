"""Side-by-side regression tables for any fits on the results contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from evalkit._errors import EvalkitInputError
from evalkit._validate import check_option
from evalkit.results import ModelResults
from evalkit.tables._format import fmt_number, stars
from evalkit.tables._table import Table

Uncertainty = Literal["se", "ci"]
BLANK = "\u200b"

DEFAULT_STATISTICS: dict[str, str] = {
    "nobs": "N",
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
    uncertainty: Uncertainty = "se",
    show_stars: bool = False,
    digits: int = 2,
    level: float = 0.95,
    statistics: Mapping[str, str] | None = None,
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
        ``"se"``: SE in parentheses under each estimate; ``"ci"``: the confidence
        interval in brackets.
    show_stars
        Mark estimates with * p < .05, ** p < .01, *** p < .001.
    digits
        Decimals for estimates and their uncertainty.
    level
        Confidence level when ``uncertainty="ci"``.
    statistics
        Model facts to show below the estimates, as ``{glance column: label}``;
        default N, R², log-likelihood, AIC and BIC where a model reports them.
    title, notes
        Title and extra notes.

    Returns
    -------
    Table
    """
    check_option("uncertainty", uncertainty, Uncertainty)
    named = _named_models(models)
    order = _term_order(named, terms)
    tidies: dict[str, dict[Any, dict[Any, Any]]] = {
        name: model.tidy(level).set_index("term").to_dict(orient="index")
        for name, model in named.items()
    }
    rows: dict[str, list[str]] = {}
    data_rows: dict[str, list[float]] = {}
    for term, label in order.items():
        estimate_row, spread_row, values = [], [], []
        for tidy in tidies.values():
            if term not in tidy:
                estimate_row.append("")
                spread_row.append("")
                values.append(np.nan)
                continue
            entry = tidy[term]
            estimate = float(entry["estimate"])
            mark = stars(float(entry["p_value"])) if show_stars else ""
            estimate_row.append(fmt_number(estimate, digits) + mark)
            if uncertainty == "se":
                spread_row.append(f"({fmt_number(float(entry['std_error']), digits)})")
            else:
                low = fmt_number(float(entry["ci_low"]), digits)
                high = fmt_number(float(entry["ci_high"]), digits)
                spread_row.append(f"[{low}, {high}]")
            values.append(estimate)
        rows[label] = estimate_row
        # The SE/CI row has a blank stub; zero-width spaces keep the index unique.
        rows[BLANK * (len(data_rows) + 1)] = spread_row
        data_rows[label] = values
    for key, label in (statistics or DEFAULT_STATISTICS).items():
        cells = [_fact(model, key) for model in named.values()]
        if any(cells):
            rows[label] = cells
    body = pd.DataFrame(rows, index=list(named)).T
    all_notes = list(notes)
    if uncertainty == "se":
        all_notes.append("Standard errors in parentheses.")
    else:
        all_notes.append(f"{round(level * 100)}% confidence intervals in brackets.")
    if show_stars:
        all_notes.append("* p < .05, ** p < .01, *** p < .001.")
    for name, model in named.items():
        if model.dropped.n:
            all_notes.append(f"{name}: {model.dropped.describe()}")
        all_notes.extend(f"{name}: {warning}." for warning in model.warnings)
    data = pd.DataFrame(data_rows, index=list(named)).T
    return Table(body=body, title=title, notes=tuple(all_notes), data=data, stub_header="Term")


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
