"""The specification step of a mixed model, as lme4's ``lFormula``: formula → levels →
checked rows → design → per-cluster sufficient statistics, with no optimisation.

:func:`specify` is what :func:`~evalkit.multilevel.lmm` runs before it optimises, and
what the Bayesian layer and the simulation tools reuse when they need the model's data
without a REML fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula

from evalkit.core import (
    INTERCEPT,
    Dropped,
    EvalkitInputError,
    MissingPolicy,
    check_option,
    check_text_in_numbers,
    complete_cases,
    declared_categorical,
    describe_rows,
    read_formula,
    require_columns,
)
from evalkit.multilevel.crossed import CrossedStats, build_crossed
from evalkit.multilevel.engine import ThetaLayout
from evalkit.multilevel.formula import ParsedFormula, RandomTerm, parse_formula
from evalkit.multilevel.frame import ModelFrame
from evalkit.multilevel.iterative import (
    PROBES,
    CrossedSolver,
    IterativeStats,
    build_iterative,
    check_probes,
    choose_solver,
)
from evalkit.multilevel.pushdown import formula_variables
from evalkit.multilevel.stats import (
    SufficientStats,
    build,
    check_nested_ids,
    group_labels,
    nesting_order,
)


@dataclass(frozen=True)
class Level:
    """A grouping level: its random-effect columns and uncorrelated block sizes."""

    name: str
    grouping: tuple[str, ...]
    columns: tuple[str, ...]
    blocks: tuple[int, ...]


@dataclass(frozen=True)
class ModelRows:
    """The rows a model uses, after the missing-value policy and the nesting checks,
    with its grouping levels ordered lowest first."""

    parsed: ParsedFormula
    levels: tuple[Level, ...]
    codes: tuple[np.ndarray, ...]
    complete: pd.DataFrame
    used: tuple[str, ...]
    dropped: Dropped
    crossed: bool = False
    """Whether some grouping factors cross (then levels are ordered by group count)."""


@dataclass(frozen=True)
class MixedModelSpec:
    """A specified (not yet fitted) mixed model.

    Attributes
    ----------
    formula
        The formula as given.
    levels
        Grouping levels, lowest first.
    terms
        Names of the fixed-effect columns (``Intercept`` first when there is one).
    model_frame
        The design in memory: fixed effects, outcome, random-effect columns and group
        codes; ``None`` when the statistics were computed where the data live (a
        DuckDB relation, Parquet files, a Dask DataFrame), and then :attr:`frame`
        is an error naming what needs the rows.
    stats
        Per-cluster sufficient statistics, all the optimiser needs.
    layout
        How lme4's relative-factor parameter θ maps onto the levels' factors.
    design_spec
        formulaic's model spec, for predictions on new data.
    dropped
        Rows left out by the missing-value policy, with reasons.
    data
        The data as given, and ``rows_used``, the positions of the rows fitted (``None``
        for data that were not loaded).
    labels
        Group labels per level, in code order, when they were read with the
        statistics (out of core); otherwise taken from ``data``.
    source
        Where the statistics were computed: ``"pandas"`` or a description of the data
        source.
    """

    formula: str
    response: str
    levels: tuple[Level, ...]
    terms: tuple[str, ...]
    model_frame: ModelFrame | None
    stats: SufficientStats | CrossedStats | IterativeStats
    layout: ThetaLayout
    design_spec: Any
    dropped: Dropped
    data: Any = field(repr=False)
    rows_used: np.ndarray | None = field(repr=False)
    missing: str = "drop"
    outcome_shift: float = 0.0
    """The constant subtracted from the outcome in ``stats`` (its mean, when the model
    has an intercept); the intercept estimated from ``stats`` is short by it."""
    labels: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    source: str = "pandas"

    @property
    def in_memory(self) -> bool:
        """Whether the fitted rows are held in memory (a pandas DataFrame was given)."""
        return self.model_frame is not None

    @property
    def frame(self) -> ModelFrame:
        """The fitted rows; an error for a model fitted where its data live."""
        if self.model_frame is None:
            raise self.rows_not_loaded()
        return self.model_frame

    def rows_not_loaded(self) -> EvalkitInputError:
        """The error for asking a model fitted where its data live for its rows."""
        return EvalkitInputError(
            f"this model was fitted where its data live ({self.source}): only per-group "
            "sums were read, so what needs the rows themselves (Kenward-Roger df, CR2 "
            "standard errors, residuals, Bayesian refits) is not available. Use "
            "df_method='satterthwaite' or 'containment', or load the rows into pandas."
        )

    @property
    def crossed(self) -> bool:
        """Whether the grouping factors cross (fitted by the crossed engine)."""
        return isinstance(self.stats, (CrossedStats, IterativeStats))

    @property
    def iterative(self) -> bool:
        """Whether the crossed design is fitted by the (approximate) iterative engine."""
        return isinstance(self.stats, IterativeStats)

    @property
    def nobs(self) -> int:
        """Number of rows in the model."""
        return int(self.stats.n)

    @property
    def n_groups(self) -> dict[str, int]:
        """Number of groups of every level, lowest first."""
        return {lv.name: int(n) for lv, n in zip(self.levels, self.stats.n_groups, strict=True)}

    @cached_property
    def group_labels(self) -> tuple[np.ndarray, ...]:
        """For each level (lowest first), the label of each integer group code."""
        if self.labels is not None:
            return self.labels
        rows = self.data.iloc[self.rows_used]
        return tuple(
            group_labels(rows, level.grouping, codes)
            for level, codes in zip(self.levels, self.frame.codes, strict=True)
        )

    def sufficient_statistics(
        self, y: np.ndarray
    ) -> SufficientStats | CrossedStats | IterativeStats:
        """The same per-cluster statistics for another outcome vector (for example the
        standardised outcome a Bayesian fit samples on)."""
        outcome = np.asarray(y, dtype=np.float64)
        if outcome.shape != self.frame.y.shape:
            raise EvalkitInputError(
                f"y has shape {outcome.shape}; the model has {self.frame.y.shape[0]} rows."
            )
        if isinstance(self.stats, CrossedStats):
            return build_crossed(self.frame.z, self.frame.codes, self.frame.x, outcome)
        if isinstance(self.stats, IterativeStats):
            return build_iterative(
                self.frame.z, self.frame.codes, self.frame.x, outcome, n_probes=self.stats.probes
            )
        design = np.column_stack([*self.frame.z, self.frame.x, outcome])
        widths = [z.shape[1] for z in self.frame.z]
        return build(design, list(self.frame.codes), widths, self.frame.x.shape[1])


def require_fit(result: object, what: str) -> None:
    """``what`` needs a fit of :func:`~evalkit.multilevel.lmm`'s own engine (it uses the
    model's design and sufficient statistics): anything else is an error saying so."""
    if getattr(result, "specification", None) is None:
        raise EvalkitInputError(
            f"{what} needs a model fitted by evalkit.multilevel.lmm with engine='evalkit'; "
            f"got a {type(result).__name__} ({getattr(result, 'model', 'no model')})."
        )


def random_levels(terms: tuple[RandomTerm, ...]) -> list[Level]:
    """Group the random terms by grouping factor (one level per distinct grouping)."""
    by_grouping: dict[tuple[str, ...], list[RandomTerm]] = {}
    for term in terms:
        by_grouping.setdefault(term.grouping, []).append(term)
    out = []
    for grouping, group_terms in by_grouping.items():
        columns: list[str] = []
        blocks: list[int] = []
        for term in group_terms:
            repeated = [c for c in term.columns if c in columns]
            if repeated:
                raise EvalkitInputError(
                    f"random effect(s) {', '.join(repeated)} appear twice for {':'.join(grouping)}."
                )
            columns.extend(term.columns)
            blocks.append(len(term.columns))
        out.append(Level(":".join(grouping), grouping, tuple(columns), tuple(blocks)))
    return out


def model_rows(
    formula: str,
    data: pd.DataFrame,
    *,
    missing: MissingPolicy,
    allow_crossed: bool = False,
    observation_level: bool = False,
    extra: tuple[str, ...] = (),
) -> ModelRows:
    """Parse ``formula``, check the columns, apply the missing-value policy, check the
    nesting of IDs and order the levels lowest first (most groups first when factors
    cross; crossed factors are an error unless ``allow_crossed``). ``observation_level``
    admits a random intercept with one row per group (a GLMM's overdispersion term,
    which a linear model cannot tell from its residual); ``extra`` columns (a GLMM's
    trials or exposure) take part in the missing-value policy."""
    check_option("missing", missing, MissingPolicy)
    if not isinstance(data, pd.DataFrame):
        raise EvalkitInputError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    parsed = parse_formula(formula)
    levels = random_levels(parsed.random)
    fixed_formula = read_formula(parsed.fixed, what="model formula")
    # formulaic's required_variables leaves out the column inside center(x)/scale(x)
    fixed_variables = formula_variables(fixed_formula, set(data.columns)) | {
        str(v) for v in fixed_formula.required_variables
    }
    random_columns = {c for lv in levels for c in lv.columns if c != "1"}
    grouping_columns = {g for lv in levels for g in lv.grouping}
    used = sorted(fixed_variables | random_columns | grouping_columns | set(extra))
    require_columns(data, used)
    response = parsed.response
    if response in data.columns and not pd.api.types.is_numeric_dtype(data[response]):
        raise EvalkitInputError(
            f"the outcome {response!r} must be numeric; it holds {data[response].dtype} values "
            f"such as {data[response].dropna().iloc[0]!r}."
            if data[response].notna().any()
            else f"the outcome {response!r} has no values."
        )
    complete, dropped = complete_cases(data, used, missing)
    if complete.empty:
        raise EvalkitInputError(
            f"no complete rows: every row misses one of {', '.join(used)} ({dropped.describe()})"
        )
    for upper, lower in parsed.nested:
        check_nested_ids(complete, upper, lower)
    _check_categories(complete, sorted(fixed_variables - {response}), parsed.fixed)
    order, all_codes, crossed = nesting_order(
        complete, [lv.grouping for lv in levels], allow_crossed=allow_crossed
    )
    check_identified(
        [levels[i] for i in order],
        [all_codes[i] for i in order],
        len(complete),
        observation_level=observation_level,
    )
    return ModelRows(
        parsed=parsed,
        levels=tuple(levels[i] for i in order),
        codes=tuple(all_codes[i] for i in order),
        complete=complete,
        used=tuple(used),
        dropped=dropped,
        crossed=crossed,
    )


def _check_categories(complete: pd.DataFrame, variables: list[str], formula: str) -> None:
    """A categorical predictor needs two categories among the rows fitted, and a column
    of numbers with some text in it (an export's "n/a", "high") is not a categorical
    predictor with hundreds of categories: it is an error naming the text and its rows."""
    for name in variables:
        if name not in complete.columns:
            continue
        column = complete[name]
        text = column.dtype == object or pd.api.types.is_string_dtype(column)
        declared = isinstance(column.dtype, pd.CategoricalDtype) or declared_categorical(
            formula, name
        )
        if text and not declared:
            check_text_in_numbers(name, column)
        categorical = not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(
            column
        )
        if categorical and column.nunique() < 2:
            value = column.iloc[0] if len(column) else None
            raise EvalkitInputError(
                f"the categorical predictor {name!r} has a single category ({value!r}) in the "
                "rows fitted; it cannot be estimated. Drop it or check its coding."
            )


def check_identified(
    levels: list[Level], codes: list[np.ndarray], n: int, *, observation_level: bool = False
) -> None:
    """Every grouping level needs several groups, and fewer groups than rows (else its
    intercept variance is confounded with the residual), as lme4 requires."""
    for level, group in zip(levels, codes, strict=True):
        count = int(group.max()) + 1 if group.size else 0
        if count < 2:
            raise EvalkitInputError(
                f"the grouping level {level.name} has a single group in the data; its "
                "variance is not identified. Remove its random term (or fit a fixed model)."
            )
        if count >= n and "1" in level.columns and not observation_level:
            raise EvalkitInputError(
                f"the grouping level {level.name} has one row per group ({count} groups, "
                f"{n} rows): its random intercept is confounded with the residual."
            )
    for (a, codes_a), (b, codes_b) in itertools.combinations(zip(levels, codes, strict=True), 2):
        count = int(codes_a.max()) + 1
        if count == int(codes_b.max()) + 1 and _same_partition(codes_a, codes_b, count):
            raise EvalkitInputError(
                f"the grouping factors {a.name} and {b.name} group the rows identically "
                f"({count} groups each): their variances are not separately identified. "
                "Keep one of them."
            )


def _same_partition(a: np.ndarray, b: np.ndarray, count: int) -> bool:
    """Whether two codings with ``count`` groups each define the same groups."""
    return int(np.unique(a.astype(np.int64) * count + b).size) == count


def specify(
    formula: str,
    data: pd.DataFrame,
    *,
    missing: MissingPolicy = "drop",
    solver: CrossedSolver = "auto",
    n_probes: int = PROBES,
) -> MixedModelSpec:
    """Specify a mixed model without fitting it: checked rows, design and sufficient
    statistics.

    Parameters
    ----------
    formula
        lme4 syntax, as for :func:`~evalkit.multilevel.lmm`.
    data
        One row per observation.
    missing
        ``"drop"`` (listwise, recorded on ``dropped``) or ``"raise"``.
    solver
        Crossed designs only: ``"direct"`` (the blocked factorisation), ``"iterative"``
        (conjugate gradients with stochastic traces; random intercepts) or ``"auto"``
        (direct when its dense factor fits, see :func:`~evalkit.multilevel.lmm`).
    n_probes
        Random probes of the iterative engine (see :func:`~evalkit.multilevel.lmm`).

    Returns
    -------
    MixedModelSpec

    Examples
    --------
    >>> import evalkit
    >>> students = evalkit.simulate_district(n_schools=6, seed=1).students
    >>> spec = specify("achievement ~ prior + (1 | school_id)", students)
    >>> spec.terms, spec.n_groups
    (('Intercept', 'prior'), {'school_id': 6})
    """
    check_probes(n_probes)
    rows = model_rows(formula, data, missing=missing, allow_crossed=True)
    frame, design, design_spec = model_frame(
        read_formula(rows.parsed.fixed),
        rows.complete,
        list(rows.levels),
        list(rows.codes),
        crossed=rows.crossed,
    )
    terms = tuple(str(c) for c in design_spec.column_names)
    check_finite(frame, list(terms), rows.parsed.response, rows.complete.index)
    if np.ptp(frame.y) == 0:
        raise EvalkitInputError(f"the outcome {rows.parsed.response!r} has no variance.")
    q_total = sum(len(lv.columns) for lv in rows.levels)
    p = len(terms)
    shift = _outcome_shift(frame, terms)
    outcome = design[:, -1].copy()
    design[:, -1] -= shift  # the statistics see the centred outcome (see _outcome_shift)
    stats: SufficientStats | CrossedStats | IterativeStats
    if rows.crossed:
        names = [lv.name for lv in rows.levels]
        widths = [z.shape[1] for z in frame.z]
        if choose_solver(solver, names, frame.codes, widths, p, n_probes):
            stats = build_iterative(frame.z, frame.codes, frame.x, design[:, -1], n_probes=n_probes)
            xtx = stats.xtx
        else:
            stats = build_crossed(frame.z, frame.codes, frame.x, design[:, -1])
            xtx = stats.rest[-p - 1 : -1, -p - 1 : -1]
        check_rank(xtx, terms)
        check_confounded(frame, rows.levels, xtx)
    else:
        stats = build(design, list(frame.codes), [len(lv.columns) for lv in rows.levels], p)
        xtx = stats.cross[:, q_total : q_total + p, q_total : q_total + p].sum(axis=0)
        check_rank(xtx, terms)
        check_confounded(frame, rows.levels, xtx)
    design[:, -1] = outcome
    del design, outcome
    return MixedModelSpec(
        formula=formula,
        response=rows.parsed.response,
        levels=rows.levels,
        terms=terms,
        model_frame=frame,
        stats=stats,
        layout=ThetaLayout.build([list(lv.blocks) for lv in rows.levels]),
        design_spec=design_spec,
        dropped=rows.dropped,
        data=data,
        rows_used=np.flatnonzero(data[list(rows.used)].notna().all(axis=1).to_numpy()),
        missing=missing,
        outcome_shift=shift,
    )


def _outcome_shift(frame: ModelFrame, terms: tuple[str, ...]) -> float:
    """The outcome's mean when the model has an intercept, else 0.

    With an intercept, subtracting a constant from the outcome changes only the
    intercept, by that constant; the residual sums of squares the likelihood needs are
    then computed from centred values, so an outcome far from zero (scores around
    10⁶, a year) loses no precision to cancellation."""
    if INTERCEPT not in terms:
        return 0.0
    column = frame.x[:, terms.index(INTERCEPT)]
    if not np.all(column == 1.0):
        return 0.0
    return float(frame.y.mean())


def model_frame(
    fixed_formula: Formula,
    complete: pd.DataFrame,
    ordered: list[Level],
    codes: list[np.ndarray],
    *,
    crossed: bool = False,
) -> tuple[ModelFrame, np.ndarray, Any]:
    """One float64 array ``[Z_L, …, Z_1, X, y]`` and a model frame of views into it.

    Built in place from formulaic's NumPy output, so the rows exist once (plus the
    formula's own matrix while it is copied in)."""
    model_y, model_x = fixed_formula.get_model_matrix(complete, output="numpy")
    spec = model_x.model_spec
    n = len(complete)
    widths = [len(lv.columns) for lv in ordered]
    q_total, p = sum(widths), model_x.shape[1]
    design = np.empty((n, q_total + p + 1))
    column = 0
    z_views = []
    for level in ordered:
        start = column
        for name in level.columns:
            if name == "1":
                design[:, column] = 1.0
            else:
                if not pd.api.types.is_numeric_dtype(complete[name]):
                    raise EvalkitInputError(f"random slope column {name!r} must be numeric.")
                design[:, column] = complete[name].to_numpy(dtype=np.float64)
            column += 1
        z_views.append(design[:, start:column])
    design[:, q_total : q_total + p] = model_x
    design[:, -1] = np.asarray(model_y, dtype=np.float64).ravel()
    del model_x, model_y
    frame = ModelFrame(
        x=design[:, q_total : q_total + p],
        y=design[:, -1],
        z=tuple(z_views),
        codes=tuple(codes),
        crossed=crossed,
    )
    return frame, design, spec


def check_confounded(frame: ModelFrame, levels: tuple[Level, ...], xtx: np.ndarray) -> None:
    """A random intercept whose groups the fixed effects already tell apart (``rater``
    both as ``C(rater)`` and as ``(1 | rater)``) has no variance left to estimate: under
    REML the likelihood does not depend on it at all. Only a factor with no more
    groups than fixed-effect columns can lie in their span; for it the residual of its
    indicators on X, ``ZᵀZ − ZᵀX(XᵀX)⁻¹XᵀZ``, comes from per-group sums (no n × G
    matrix)."""
    x = frame.x
    for level, codes in zip(levels, frame.codes, strict=True):
        groups = int(codes.max()) + 1
        if "1" not in level.columns or groups > x.shape[1]:
            continue
        counts = np.bincount(codes, minlength=groups).astype(float)
        zx = np.column_stack(
            [np.bincount(codes, weights=x[:, j], minlength=groups) for j in range(x.shape[1])]
        )
        residual = np.diag(counts) - zx @ np.linalg.solve(xtx, zx.T)
        if np.max(np.abs(residual)) <= 1e-9 * float(counts.max()):
            raise confounded_error(level, groups)


def confounded_error(level: Level, groups: int) -> EvalkitInputError:
    """The error for a random intercept the fixed effects already separate."""
    return EvalkitInputError(
        f"the random intercept of {level.name} is confounded with the fixed effects: "
        f"they already separate its {groups} groups, so its variance is not identified. "
        "Remove it from the fixed part or from the random part."
    )


def check_finite(frame: ModelFrame, terms: list[str], response: str, index: pd.Index) -> None:
    """Infinite values (missing ones were dropped or refused before) name their column and rows."""
    if np.isfinite(frame.x).all() and np.isfinite(frame.y).all():
        return  # one pass over the block; the column-by-column search only on failure
    columns = [(response, frame.y[:, None]), *((t, frame.x[:, [k]]) for k, t in enumerate(terms))]
    for name, values in columns:
        bad = ~np.isfinite(values[:, 0])
        if bad.any():
            raise EvalkitInputError(
                f"{name!r} has non-finite values at {describe_rows(list(index), bad)}."
            )


COLLINEAR_TOL = 1e-13
"""A column is collinear when its residual sum of squares on the earlier columns is
below this share of its own sum of squares (about 3e-7 on the scale of QR's R
diagonal; lme4's rank check uses 1e-7 there)."""


def check_rank(xtx: np.ndarray, terms: tuple[str, ...]) -> None:
    """Sequential check on ``XᵀX``: which columns add nothing to the ones before them."""
    collinear = []
    kept: list[int] = []
    for j in range(xtx.shape[0]):
        own = float(xtx[j, j])
        if own <= 0:
            collinear.append(terms[j])
            continue
        if kept:
            block = xtx[np.ix_(kept, kept)]
            cross = xtx[kept, j]
            residual = own - float(cross @ np.linalg.solve(block, cross))
        else:
            residual = own
        if residual <= COLLINEAR_TOL * own:
            collinear.append(terms[j])
        else:
            kept.append(j)
    if collinear:
        raise EvalkitInputError(
            f"fixed effects are collinear: {', '.join(collinear)} add nothing to the terms before them."
        )


def ones_column(spec: MixedModelSpec) -> int | None:
    """Index in the statistics' layout ``[Z_L, …, Z_1, X, y]`` of a column of ones (a
    random intercept, else the fixed intercept), or ``None``."""
    offset = 0
    for level in spec.levels:
        if "1" in level.columns:
            return offset + level.columns.index("1")
        offset += len(level.columns)
    if INTERCEPT in spec.terms:
        return offset + spec.terms.index(INTERCEPT)
    return None
