"""Specifying a nested mixed model where its data live: DuckDB, Parquet/CSV files or a
Dask DataFrame (:mod:`evalkit.core.sources`).

Three passes of SQL, each returning a few numbers or one row per lowest-level group:

1. **Missing values** — how many rows miss each column (the first missing column in
   sorted order is a row's reason, as :func:`evalkit.core.complete_cases` records it).
2. **The design's state** over the complete rows — the outcome's mean (subtracted
   before the cross-products, as in memory), the categories of categorical
   predictors, the means and SDs of ``center()``/``scale()``, text-in-number checks.
3. **The cross-products** ``Σ d_i d_j`` of the unique design columns per combination
   of the grouping factors — one ``GROUP BY``, with no requirement that the data be
   sorted or grouped by cluster (the database hashes the keys).

The group table then gives the levels, the nesting checks and the nested engine's
:class:`~evalkit.multilevel.SufficientStats`; the fit, df, tests and conditional modes
come from these exactly as for a DataFrame.
"""

from __future__ import annotations

import ast
import itertools
from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import (
    INTERCEPT,
    Aggregate,
    DataSource,
    Dropped,
    EvalkitInputError,
    MissingPolicy,
    SourceKind,
    open_source,
    quote,
    read_formula,
)
from evalkit.multilevel.engine import ThetaLayout
from evalkit.multilevel.formula import parse_formula
from evalkit.multilevel.pushdown import (
    DesignState,
    FactorPlan,
    formula_variables,
    numeric_sql,
    plan_formula,
    push_down,
)
from evalkit.multilevel.spec import (
    Level,
    MixedModelSpec,
    check_identified,
    check_rank,
    confounded_error,
    random_levels,
)
from evalkit.multilevel.stats import (
    SufficientStats,
    check_nested_ids,
    group_labels,
    nesting_order,
    stats_from_groups,
)

NUMERIC: tuple[SourceKind, ...] = ("integer", "float", "boolean")


def _missing_sql(name: str, kind: SourceKind) -> str:
    column = quote(name)
    if kind == "float":
        return f"({column} IS NULL OR isnan({column}))"
    return f"({column} IS NULL)"


def _first_pass(
    source: DataSource,
    used: list[str],
    kinds: dict[str, SourceKind],
    missing: MissingPolicy,
    state: list[Aggregate],
) -> tuple[str, Dropped, int, pd.Series]:
    """One pass over the rows: how many miss each column (the record of rows left out)
    and the ``state`` aggregates over the complete rows. Returns the WHERE clause of
    complete rows, the record, the number of rows and the aggregates."""
    conditions = [_missing_sql(name, kinds[name]) for name in used]
    complete = "NOT (" + " OR ".join(conditions) + ")"
    aggregates = [Aggregate("rows", "1.0")]
    for k, condition in enumerate(conditions):
        earlier = " OR ".join(conditions[:k]) or "FALSE"
        aggregates.append(
            Aggregate(f"m{k}", f"CASE WHEN {condition} AND NOT ({earlier}) THEN 1.0 ELSE 0.0 END")
        )
    for aggregate in state:
        otherwise = "0.0" if aggregate.how == "sum" else "NULL"
        expression = f"CASE WHEN {complete} THEN {aggregate.expression} ELSE {otherwise} END"
        aggregates.append(Aggregate(aggregate.alias, expression, aggregate.how))
    row = source.aggregate(aggregates, where="TRUE").iloc[0]
    total = int(row["rows"])
    tallies = {f"missing {name}": int(row[f"m{k}"]) for k, name in enumerate(used)}
    tallies = {reason: count for reason, count in tallies.items() if count}
    if tallies and missing == "raise":
        reason, count = next(iter(tallies.items()))
        raise EvalkitInputError(
            f"column {reason.removeprefix('missing ')!r} has {count} missing values in "
            f"{source.description} (missing='raise')."
        )
    return complete, Dropped.from_counts(tallies), total, row


def _check_kinds(
    parsed_response: str, levels: list[Level], kinds: dict[str, SourceKind], used: list[str]
) -> None:
    absent = [name for name in used if name not in kinds]
    if absent:
        raise EvalkitInputError(
            f"column(s) {', '.join(map(repr, absent))} not in the data; it has "
            f"{', '.join(list(kinds)[:20])}{' …' if len(kinds) > 20 else ''}."
        )
    if kinds[parsed_response] not in NUMERIC:
        raise EvalkitInputError(f"the outcome {parsed_response!r} must be numeric.")
    for level in levels:
        for column in level.columns:
            if column != "1" and kinds[column] not in NUMERIC:
                raise EvalkitInputError(f"random slope column {column!r} must be numeric.")
        for column in level.grouping:
            if kinds[column] == "other":
                raise EvalkitInputError(
                    f"grouping column {column!r} must hold IDs (numbers or text)."
                )


def _state_aggregates(plans: dict[str, FactorPlan], response_sql: str) -> list[Aggregate]:
    """What the first pass sums over the complete rows for the design's state."""
    categorical = sorted({p.variable for p in plans.values() if p.kind == "categorical"})
    stateful = sorted({p.variable for p in plans.values() if p.transform != "none"})
    aggregates = [
        Aggregate("y_sum", response_sql),
        Aggregate("y_min", response_sql, "min"),
        Aggregate("y_max", response_sql, "max"),
    ]
    aggregates += [
        Aggregate(f"mean_{k}", f"CAST({quote(v)} AS DOUBLE)") for k, v in enumerate(stateful)
    ]
    aggregates += [
        Aggregate(
            f"numeric_{k}",
            f"CASE WHEN TRY_CAST({quote(v)} AS DOUBLE) IS NULL THEN 0.0 ELSE 1.0 END",
        )
        for k, v in enumerate(categorical)
    ]
    return aggregates


def _design_state(
    source: DataSource,
    where: str,
    plans: dict[str, FactorPlan],
    kinds: dict[str, SourceKind],
    booleans: list[str],
    first: pd.Series,
    n: int,
) -> tuple[DesignState, float, tuple[float, float]]:
    """Categories, means and SDs over the complete rows; the outcome's mean and range."""
    categorical = sorted({p.variable for p in plans.values() if p.kind == "categorical"})
    declared = {
        p.variable for p in plans.values() if p.kind == "categorical" and p.expression != p.variable
    }
    stateful = sorted({p.variable for p in plans.values() if p.transform != "none"})
    means = {v: float(first[f"mean_{k}"]) / n for k, v in enumerate(stateful)}
    sds: dict[str, float] = {}
    scaled = sorted({p.variable for p in plans.values() if p.transform == "scale"})
    if scaled:
        spread = source.aggregate(
            [
                Aggregate(f"ss_{k}", f"power(CAST({quote(v)} AS DOUBLE) - {means[v]!r}, 2)")
                for k, v in enumerate(scaled)
            ],
            where=where,
        ).iloc[0]
        sds = {v: float(np.sqrt(spread[f"ss_{k}"] / (n - 1))) for k, v in enumerate(scaled)}
    categories: dict[str, list[Any]] = {}
    for k, variable in enumerate(categorical):
        numeric_share = float(first[f"numeric_{k}"]) / n
        if kinds[variable] == "text" and variable not in declared and numeric_share >= 0.5:
            _text_in_numbers(source, where, variable, numeric_share)
        levels = sorted(source.distinct(quote(variable), where=where))
        if len(levels) < 2:
            raise EvalkitInputError(
                f"the categorical predictor {variable!r} has a single category "
                f"({levels[0] if levels else None!r}) in the rows fitted; it cannot be "
                "estimated. Drop it or check its coding."
            )
        categories[variable] = levels
    for variable in booleans:
        if len(source.distinct(quote(variable), where=where)) < 2:
            raise EvalkitInputError(
                f"the categorical predictor {variable!r} has a single category in the rows "
                "fitted; it cannot be estimated. Drop it or check its coding."
            )
    mean_y = float(first["y_sum"]) / n
    return (
        DesignState(categories, means, sds),
        mean_y,
        (float(first["y_min"]), float(first["y_max"])),
    )


def _text_in_numbers(source: DataSource, where: str, variable: str, share: float) -> None:
    if share >= 1.0:
        raise EvalkitInputError(
            f"column {variable!r} holds numbers stored as text; cast it to a number (in SQL, "
            "or with the file's column type) so that it is not treated as a categorical "
            "predictor."
        )
    examples = source.distinct(
        quote(variable), where=f"{where} AND TRY_CAST({quote(variable)} AS DOUBLE) IS NULL"
    )[:3]
    raise EvalkitInputError(
        f"column {variable!r} is numeric but has non-numeric values "
        f"({', '.join(map(repr, examples))}); fix or remove them."
    )


def _layout_sql(
    ordered_levels: list[Level], design_sql: tuple[str, ...], outcome_sql: str
) -> list[str]:
    """The SQL of each column of ``[Z_L, …, Z_1, X, y]`` (levels in the given order)."""
    layout = [
        "1.0" if c == "1" else f"CAST({quote(c)} AS DOUBLE)"
        for lv in ordered_levels
        for c in lv.columns
    ]
    return [*layout, *design_sql, outcome_sql]


def _unique_columns(
    levels: list[Level], design_sql: tuple[str, ...], outcome_sql: str
) -> list[str]:
    """The distinct expressions of the layout (the intercepts share one column of ones),
    in an order that does not depend on how the levels are later ordered."""
    return list(dict.fromkeys(["1.0", *_layout_sql(levels, design_sql, outcome_sql)]))


def _cross_products(
    source: DataSource, where: str, keys: tuple[str, ...], unique: list[str]
) -> pd.DataFrame:
    aggregates = []
    for i, j in itertools.combinations_with_replacement(range(len(unique)), 2):
        a, b = unique[i], unique[j]
        expression = b if a == "1.0" else a if b == "1.0" else f"({a}) * ({b})"
        aggregates.append(Aggregate(f"s{i}_{j}", expression))
    return source.aggregate(aggregates, where=where, group_by=keys)


def _assemble(table: pd.DataFrame, index: list[int]) -> np.ndarray:
    """(G, c, c) cross-products of the layout from the unique pairs' sums."""
    c = len(index)
    cross = np.empty((len(table), c, c))
    for a, b in itertools.product(range(c), repeat=2):
        i, j = sorted((index[a], index[b]))
        cross[:, a, b] = table[f"s{i}_{j}"].to_numpy(dtype=np.float64)
    return cross


def _check_finite(
    table: pd.DataFrame, unique: list[str], names: dict[int, str], labels: np.ndarray
) -> None:
    for k in range(len(unique)):
        values = table[f"s{k}_{k}"].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            shown = ", ".join(map(str, labels[bad][:5]))
            raise EvalkitInputError(
                f"{names.get(k, unique[k])!r} has infinite or undefined values (a log of 0, "
                f"a division by 0) in {int(bad.sum())} groups, e.g. {shown}."
            )


def specify_source(
    formula: str, data: object, *, missing: MissingPolicy = "drop", client: Any = None
) -> MixedModelSpec:
    """Specify a nested mixed model on data queried where they live (see the module)."""
    parsed = parse_formula(formula)
    levels = random_levels(parsed.random)
    fixed = read_formula(parsed.fixed, what="model formula")
    source = open_source(data, client=client)
    kinds = source.kinds()
    fixed_variables = formula_variables(fixed, kinds) | {parsed.response}
    grouping = list(dict.fromkeys(g for lv in levels for g in lv.grouping))
    random_columns = {c for lv in levels for c in lv.columns if c != "1"}
    used = sorted(fixed_variables | random_columns | set(grouping))
    _check_kinds(parsed.response, levels, kinds, used)
    source = source.select(used)  # read only the model's columns (Parquet projection)
    plans = plan_formula(fixed, kinds)
    response_sql = numeric_sql(ast.parse(parsed.response, mode="eval").body, kinds, parsed.response)
    booleans = sorted(v for v in fixed_variables - {parsed.response} if kinds[v] == "boolean")
    where, dropped, total, first = _first_pass(
        source, used, kinds, missing, _state_aggregates(plans, response_sql)
    )
    n = total - dropped.n
    if n == 0:
        raise EvalkitInputError(
            f"no complete rows: every row misses one of {', '.join(used)} ({dropped.describe()})"
        )
    state, mean_y, (y_min, y_max) = _design_state(source, where, plans, kinds, booleans, first, n)
    if y_min == y_max:
        raise EvalkitInputError(f"the outcome {parsed.response!r} has no variance.")
    design = push_down(fixed, plans, kinds, state)
    shift = mean_y if INTERCEPT in design.names else 0.0
    outcome_sql = f"({response_sql} - {shift!r})" if shift else response_sql
    unique = _unique_columns(levels, design.expressions, outcome_sql)
    table = _cross_products(source, where, tuple(grouping), unique)
    return _build_spec(
        formula, parsed, levels, (table, unique), design, outcome_sql, shift, n, dropped, data,
        source, missing,
    )  # fmt: skip


def _build_spec(
    formula: str,
    parsed: Any,
    levels: list[Level],
    grouped: tuple[pd.DataFrame, list[str]],
    design: Any,
    outcome_sql: str,
    shift: float,
    n: int,
    dropped: Dropped,
    data: object,
    source: DataSource,
    missing: MissingPolicy,
) -> MixedModelSpec:
    table, unique = grouped
    # the database returns groups in hash order, which varies between runs: sorted by
    # key, the reduction adds them in one order and a fit is reproducible to the bit
    keys = list(dict.fromkeys(g for lv in levels for g in lv.grouping))
    table = table.sort_values(keys, kind="stable", ignore_index=True)
    for upper, lower in parsed.nested:
        check_nested_ids(table, upper, lower)
    order, all_codes, crossed = nesting_order(
        table, [lv.grouping for lv in levels], allow_crossed=True
    )
    if crossed:
        raise EvalkitInputError(
            "the grouping factors cross (a lower-level ID appears in more than one group "
            "above it); fits where the data live take nested designs. Load crossed data "
            "into pandas (lmm fits them with its crossed engine), or write the nesting as "
            "(1 | upper/lower) if IDs restart within each group."
        )
    ordered = [levels[i] for i in order]
    codes = [all_codes[i] for i in order]
    check_identified(ordered, codes, n)
    index = [unique.index(e) for e in _layout_sql(ordered, design.expressions, outcome_sql)]
    names = {unique.index(e): t for t, e in zip(design.names, design.expressions, strict=True)}
    labels = tuple(
        group_labels(table, lv.grouping, c) for lv, c in zip(ordered, codes, strict=True)
    )
    _check_finite(table, unique, names, labels[0][codes[0]])
    cross = _assemble(table, index)
    q = [len(lv.columns) for lv in ordered]
    p = len(design.names)
    stats = stats_from_groups(cross, codes, q, p, n)
    q_total = sum(q)
    xtx = stats.cross[:, q_total : q_total + p, q_total : q_total + p].sum(axis=0)
    check_rank(xtx, design.names)
    check_confounded_stats(stats, ordered, xtx)
    return MixedModelSpec(
        formula=formula,
        response=parsed.response,
        levels=tuple(ordered),
        terms=design.names,
        model_frame=None,
        stats=stats,
        layout=ThetaLayout.build([list(lv.blocks) for lv in ordered]),
        design_spec=design.model_spec,
        dropped=dropped,
        data=data,
        rows_used=None,
        missing=missing,
        outcome_shift=shift,
        labels=labels,
        source=source.description,
    )


def check_confounded_stats(stats: SufficientStats, levels: list[Level], xtx: np.ndarray) -> None:
    """:func:`~evalkit.multilevel.spec.check_confounded` from per-group sums."""
    p = stats.p
    q_total = sum(stats.q)
    offset = 0
    for k, level in enumerate(levels):
        start = offset
        offset += len(level.columns)
        groups = stats.n_groups[k]
        if "1" not in level.columns or groups > p:
            continue
        one = start + level.columns.index("1")
        sums = stats.level_sums(k, [one], [one, *range(q_total, q_total + p)])[:, 0, :]
        counts, zx = sums[:, 0], sums[:, 1:]
        residual = np.diag(counts) - zx @ np.linalg.solve(xtx, zx.T)
        if np.max(np.abs(residual)) <= 1e-9 * float(counts.max()):
            raise confounded_error(level, groups)
