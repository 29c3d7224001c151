"""Small-cell suppression: no published cell, and no subtraction from a total, reveals
fewer students than the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linprog

from evalkit import EvalkitInputError
from evalkit.tables import suppress_counts


def _lines(table: np.ndarray, result):  # type: ignore[no-untyped-def]
    """Every (total value, total hidden?, member values, member hidden flags) of the table."""
    n_rows, n_cols = table.shape
    lines = []
    for j in range(n_cols):
        lines.append((table[:, j].sum(), result.col_totals[j], table[:, j], result.cells[:, j]))
    if n_cols > 1:
        for i in range(n_rows):
            lines.append((table[i].sum(), result.row_totals[i], table[i], result.cells[i]))
        lines.append((table.sum(), result.grand_total, table.sum(axis=0), result.col_totals))
        lines.append((table.sum(), result.grand_total, table.sum(axis=1), result.row_totals))
    return lines


def _audit(table: np.ndarray, threshold: int) -> None:
    result = suppress_counts(table, threshold=threshold)
    cells_and_margins = [
        (table, result.cells),
        (table.sum(axis=1), result.row_totals),
        (table.sum(axis=0), result.col_totals),
    ]
    # 1. No published cell rests on 1..threshold-1 students.
    for values, hidden in cells_and_margins:
        published = values[~hidden]
        assert not ((published > 0) & (published < threshold)).any()
    if not result.grand_total:
        assert not (0 < table.sum() < threshold)
    # 2. Subtracting published cells from a published total never isolates one
    #    cell, nor a group of fewer than threshold students.
    for _total, total_hidden, members, hidden in _lines(table, result):
        if total_hidden or not hidden.any():
            continue
        assert hidden.sum() >= 2
        assert members[hidden].sum() >= threshold
    # 3. Linear-programming audit of the whole table.
    _lp_audit(table, result, threshold)


def _lp_audit(table: np.ndarray, result, threshold: int) -> None:  # type: ignore[no-untyped-def]
    """No small (0 < n < threshold) suppressed entry is pinned to one value by the
    published entries, the additivity of every line and non-negativity."""
    n_rows, n_cols = table.shape
    values = np.concatenate([table.ravel(), table.sum(axis=1), table.sum(axis=0), [table.sum()]])
    hidden = np.concatenate(
        [result.cells.ravel(), result.row_totals, result.col_totals, [result.grand_total]]
    )
    cell = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    row_total = n_rows * n_cols + np.arange(n_rows)
    col_total = n_rows * n_cols + n_rows + np.arange(n_cols)
    grand = values.size - 1
    lines = [(row_total[i], cell[i]) for i in range(n_rows)]
    lines += [(col_total[j], cell[:, j]) for j in range(n_cols)]
    lines += [(grand, col_total), (grand, row_total)]
    unknown = np.flatnonzero(hidden)
    if unknown.size == 0:
        return
    position = {entry: k for k, entry in enumerate(unknown)}
    a_eq, b_eq = [], []
    for total, members in lines:
        coefficients = np.zeros(unknown.size)
        rhs = 0.0
        for entry, sign in [(total, -1.0), *[(m, 1.0) for m in members]]:
            if hidden[entry]:
                coefficients[position[entry]] += sign
            else:
                rhs -= sign * values[entry]
        if coefficients.any():
            a_eq.append(coefficients)
            b_eq.append(rhs)
    for entry in unknown:
        if not 0 < values[entry] < threshold:
            continue
        objective = np.zeros(unknown.size)
        objective[position[entry]] = 1.0
        lowest = linprog(objective, A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=(0, None))
        highest = linprog(-objective, A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=(0, None))
        assert lowest.status == 0, "the published totals must be consistent"
        high = np.inf if highest.status == 3 else -highest.fun  # 3: unbounded above
        assert high - lowest.fun > 0.5, f"small suppressed entry {entry} is recoverable exactly"


@given(
    arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=st.integers(0, 40)),
    st.sampled_from([5, 10, 20]),
)
@settings(max_examples=500, deadline=None, derandomize=True)
def test_suppression_protects_every_line(table: np.ndarray, threshold: int) -> None:
    _audit(table.astype(float), threshold)


def test_one_way_table_gets_a_complement() -> None:
    result = suppress_counts([[25], [4], [30], [12]], threshold=10)
    assert result.cells.ravel().tolist() == [False, True, False, True]
    assert result.primary.ravel().tolist() == [False, True, False, False]
    assert not result.grand_total


def test_nothing_suppressed_when_all_cells_are_large() -> None:
    result = suppress_counts([[25, 30], [40, 12]], threshold=10)
    assert not result.cells.any() and not result.grand_total


def test_small_total_is_suppressed_with_its_cells() -> None:
    result = suppress_counts([[3], [4]], threshold=10)
    assert result.cells.all()
    assert result.grand_total


@pytest.mark.parametrize("threshold", [0, -5, 2.5, True])
def test_threshold_must_be_positive_whole_number(threshold: object) -> None:
    with pytest.raises(EvalkitInputError, match="threshold must be a whole number"):
        suppress_counts([[10]], threshold=threshold)  # type: ignore[arg-type]


def test_counts_must_be_whole_and_non_negative() -> None:
    with pytest.raises(EvalkitInputError, match="non-negative whole numbers"):
        suppress_counts([[10, -1]])


def test_a_hundred_by_hundred_table_is_protected_line_by_line() -> None:
    """The table that used to hang the linear-programming audit (100 × 100 counts of
    0–24): every small cell is hidden and every line hides none or at least two
    entries, at least ``threshold`` students where its total is published. (Time is
    measured in benchmarks/tables.py, not asserted here.)"""
    table = np.random.default_rng(1).integers(0, 25, (100, 100)).astype(float)
    result = suppress_counts(table, threshold=10)
    small = (table > 0) & (table < 10)
    assert result.cells[small].all()
    for total, total_hidden, members, hidden in _lines(table, result):
        n_hidden = int(hidden.sum()) + int(total_hidden)
        assert n_hidden != 1
        if n_hidden and not total_hidden:
            assert members[hidden].sum() >= 10 or total == 0
