"""The fixed-effects design of a formula written as SQL, so that the model frame is
computed where the data live.

formulaic (the in-memory path) decides the columns: which terms, which categorical
factors are coded in full or with a reference level, the column names and order. Here
each factor is translated to SQL — a numeric column, ``C(x)`` or a text column as
treatment indicators, ``center(x)``/``scale(x)`` with the mean and SD of the rows
fitted, and arithmetic inside ``I(...)`` or ``np.log``/``np.exp``/``np.sqrt`` — and
each design column is the product of its factors' SQL. The translation is then
checked: formulaic's matrix and the SQL are evaluated on a small table holding every
category, and any difference (a contrast or a transform this module does not know) is
an error saying the formula cannot be pushed down, never a silently different design.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from formulaic import Formula

from evalkit.core import EvalkitInputError, SourceKind, quote

_FUNCTIONS = {"log": "ln", "exp": "exp", "sqrt": "sqrt", "abs": "abs", "log10": "log10"}
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
INTERCEPT_COLUMN = "Intercept"


class PushDownError(EvalkitInputError):
    """A part of the formula that cannot be computed where the data live."""


def _refuse(expression: str, why: str) -> PushDownError:
    return PushDownError(
        f"the formula term {expression!r} cannot be computed where the data live ({why}). "
        "Compute it as a column first — in SQL on a DuckDB relation "
        "(relation.project('*, ln(score) AS log_score')), or when writing the files — "
        "or load the data into pandas."
    )


@dataclass(frozen=True)
class FactorPlan:
    """How one formula factor is computed: a numeric SQL expression, or the
    categories of a variable (treatment indicators)."""

    expression: str
    kind: Literal["numeric", "categorical"]
    sql: str = ""
    variable: str = ""
    transform: Literal["none", "center", "scale"] = "none"


@dataclass(frozen=True)
class DesignState:
    """What the data tell the design: categories and the means and SDs that
    ``center``/``scale`` use (all over the rows fitted)."""

    categories: dict[str, list[Any]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    sds: dict[str, float] = field(default_factory=dict)


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return ""


def numeric_sql(node: ast.expr, kinds: dict[str, SourceKind], expression: str) -> str:
    """SQL for a numeric expression of columns, numbers, + − × ÷ **, and log/exp/sqrt/abs."""
    if isinstance(node, ast.Name):
        kind = kinds.get(node.id)
        if kind is None:
            raise EvalkitInputError(f"column {node.id!r} is not in the data.")
        if kind not in ("integer", "float", "boolean"):
            raise _refuse(expression, f"{node.id!r} is not numeric")
        return f"CAST({quote(node.id)} AS DOUBLE)"
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise _refuse(expression, "a true/false constant")
        return repr(float(node.value))
    if isinstance(node, ast.BinOp):
        left = numeric_sql(node.left, kinds, expression)
        right = numeric_sql(node.right, kinds, expression)
        if isinstance(node.op, ast.Pow):
            return f"power({left}, {right})"
        operator = _OPERATORS.get(type(node.op))
        if operator is None:
            raise _refuse(expression, f"the operator {type(node.op).__name__}")
        return f"({left} {operator} {right})"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return f"({sign}{numeric_sql(node.operand, kinds, expression)})"
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        name = _call_name(node.func)
        if name == "I":
            return numeric_sql(node.args[0], kinds, expression)
        base = name.removeprefix("np.").removeprefix("numpy.")
        if base in _FUNCTIONS and (name == base or name.startswith(("np.", "numpy."))):
            return f"{_FUNCTIONS[base]}({numeric_sql(node.args[0], kinds, expression)})"
    raise _refuse(
        expression, "only columns, numbers, + - * / **, and log/exp/sqrt/abs are translated"
    )


def plan_factor(expression: str, kinds: dict[str, SourceKind]) -> FactorPlan:
    """How to compute one factor of the fixed formula (formulaic's factor expression)."""
    if expression in kinds:
        kind = kinds[expression]
        if kind == "text":
            return FactorPlan(expression, "categorical", variable=expression)
        if kind == "other":
            raise _refuse(expression, "its column type is neither numbers, true/false nor text")
        return FactorPlan(expression, "numeric", sql=f"CAST({quote(expression)} AS DOUBLE)")
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        raise _refuse(expression, "it is not a Python expression") from None
    if isinstance(node, ast.Call) and _call_name(node.func) in ("C", "center", "scale"):
        name = _call_name(node.func)
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Name):
            raise _refuse(expression, f"{name}() is translated for a single column, no options")
        variable = node.args[0].id
        if variable not in kinds:
            raise EvalkitInputError(f"column {variable!r} is not in the data.")
        if name == "C":
            return FactorPlan(expression, "categorical", variable=variable)
        sql = numeric_sql(node.args[0], kinds, expression)
        transform: Literal["center", "scale"] = "center" if name == "center" else "scale"
        return FactorPlan(expression, "numeric", sql=sql, variable=variable, transform=transform)
    return FactorPlan(expression, "numeric", sql=numeric_sql(node, kinds, expression))


def formula_variables(fixed: Formula, columns: set[str] | dict[str, Any]) -> set[str]:
    """The data columns the right-hand side uses, including those inside transforms
    (formulaic's ``required_variables`` leaves out the column of ``center(x)``)."""
    found = {str(v) for v in fixed.rhs.required_variables}
    for term in fixed.rhs:
        for factor in term.factors:
            text = str(factor.expr)
            if text in columns:
                found.add(text)
                continue
            try:
                tree = ast.parse(text, mode="eval")
            except SyntaxError:
                continue
            found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in columns}
    return found


def plan_formula(fixed: Formula, kinds: dict[str, SourceKind]) -> dict[str, FactorPlan]:
    """A plan for every factor on the right of the fixed formula."""
    plans: dict[str, FactorPlan] = {}
    for term in fixed.rhs:
        for factor in term.factors:
            text = str(factor.expr)
            if text in ("1", "0") or text in plans:
                continue
            plans[text] = plan_factor(text, kinds)
    return plans


def sql_literal(value: Any) -> str:
    """A category value as a SQL literal."""
    if isinstance(value, bool | np.bool_):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def factor_sql(plan: FactorPlan, state: DesignState) -> str:
    """The numeric factor's SQL with its transform's state filled in."""
    if plan.transform == "none":
        return plan.sql
    mean = repr(state.means[plan.variable])
    if plan.transform == "center":
        return f"({plan.sql} - {mean})"
    return f"(({plan.sql} - {mean}) / {state.sds[plan.variable]!r})"


@dataclass(frozen=True)
class PushedDesign:
    """Fixed-effect column names (formulaic's) with the SQL of each, and the
    formulaic model spec (carrying the data's categories and transform state) for
    predictions on new data."""

    names: tuple[str, ...]
    expressions: tuple[str, ...]
    model_spec: Any


def _columns(spec: Any, plans: dict[str, FactorPlan], state: DesignState) -> dict[str, str]:
    """SQL of every column formulaic's structure names, by name."""
    out: dict[str, str] = {}
    for structure in spec.structure:
        for scoped in structure.scoped_terms:
            parts: list[list[tuple[str, str]]] = []
            for scoped_factor in scoped.factors:
                expression = str(scoped_factor.factor.expr)
                plan = plans[expression]
                if plan.kind == "numeric":
                    parts.append([(expression, factor_sql(plan, state))])
                    continue
                levels = state.categories[plan.variable]
                coded = levels[1:] if scoped_factor.reduced else levels
                marker = "T." if scoped_factor.reduced else ""
                parts.append(
                    [
                        (
                            f"{expression}[{marker}{level}]",
                            f"(CASE WHEN {quote(plan.variable)} = {sql_literal(level)} "
                            "THEN 1.0 ELSE 0.0 END)",
                        )
                        for level in coded
                    ]
                )
            if not parts:
                out[INTERCEPT_COLUMN] = "1.0"
                continue
            for combination in itertools.product(*parts):
                name = ":".join(n for n, _ in combination)
                out[name] = " * ".join(s for _, s in combination)
    return out


def skeleton(
    variables: list[str],
    kinds: dict[str, SourceKind],
    state: DesignState,
) -> pd.DataFrame:
    """A small table holding every category of every categorical variable and varied
    positive numbers elsewhere, on which formulaic and the SQL are compared."""
    rng = np.random.default_rng(20261203)
    counts = [len(levels) for levels in state.categories.values()]
    size = max([5, *counts]) + 3
    columns: dict[str, Any] = {"__evalkit_row__": np.arange(size)}  # rows for `y ~ 1`
    for name in variables:
        if name in state.categories:
            levels = state.categories[name]
            columns[name] = pd.Series([levels[i % len(levels)] for i in range(size)], dtype=object)
            if kinds.get(name) in ("integer", "float", "boolean"):
                columns[name] = columns[name].astype(type(levels[0]) if levels else float)
        elif kinds.get(name) == "boolean":
            columns[name] = np.arange(size) % 2 == 0
        else:
            columns[name] = rng.uniform(1.0, 2.0, size)
    return pd.DataFrame(columns)


def push_down(
    fixed: Formula,
    plans: dict[str, FactorPlan],
    kinds: dict[str, SourceKind],
    state: DesignState,
) -> PushedDesign:
    """The fixed design's columns as SQL, checked against formulaic on a skeleton."""
    variables = sorted(formula_variables(fixed, kinds))
    table = skeleton(variables, kinds, state)
    matrix = fixed.rhs.get_model_matrix(table, output="pandas")
    spec = matrix.model_spec
    table_state = _state_of(spec, plans, state)
    by_name = _columns(spec, plans, table_state)
    names = [str(c) for c in matrix.columns]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise _refuse(missing[0], "its coding is not one this translation knows")
    _check_on(table, names, by_name, matrix.to_numpy(dtype=np.float64))
    data_spec = _with_data_state(spec, plans, state)
    data_columns = _columns(spec, plans, state)
    return PushedDesign(tuple(names), tuple(data_columns[n] for n in names), data_spec)


def _state_of(spec: Any, plans: dict[str, FactorPlan], state: DesignState) -> DesignState:
    """The skeleton's own means and SDs (formulaic computed its matrix with them)."""
    means, sds = {}, {}
    for expression, plan in plans.items():
        if plan.transform == "none":
            continue
        fitted = spec.transform_state[expression]
        means[plan.variable] = float(fitted["center"])
        if plan.transform == "scale":
            sds[plan.variable] = float(fitted["scale"])
    return DesignState(state.categories, means, sds)


def _with_data_state(spec: Any, plans: dict[str, FactorPlan], state: DesignState) -> Any:
    transform_state = dict(spec.transform_state)
    for expression, plan in plans.items():
        if plan.transform == "none":
            continue
        updated = dict(transform_state[expression])
        updated["center"] = np.float64(state.means[plan.variable])
        if plan.transform == "scale":
            updated["scale"] = np.float64(state.sds[plan.variable])
        transform_state[expression] = updated
    return spec.update(transform_state=transform_state)


def _check_on(
    table: pd.DataFrame, names: list[str], by_name: dict[str, str], expected: np.ndarray
) -> None:
    import duckdb

    select = ", ".join(f"{by_name[n]} AS c{k}" for k, n in enumerate(names))
    with duckdb.connect() as con:
        con.register("src", table)
        got = con.sql(f"SELECT {select} FROM src").fetchnumpy()
    for k, name in enumerate(names):
        values = np.asarray(got[f"c{k}"], dtype=np.float64)
        if not np.allclose(values, expected[:, k], rtol=1e-12, atol=1e-12):
            raise _refuse(name, "its SQL translation does not reproduce formulaic's column")
