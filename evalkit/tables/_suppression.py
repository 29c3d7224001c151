"""Disclosure avoidance for tables of student counts: primary and complementary suppression.

A cell is suppressed when it rests on fewer than ``threshold`` students (most states
use 10; published minimums range from 5 to 30). Suppression is then made
complementary. Every line of the table (a row with its row total, a column with its
column total, the margins with the grand total) is an equation; in each, the
suppressed entries (cells and total) number either none or at least two, and where
the total is published the suppressed cells together hold at least ``threshold``
students. So subtracting published cells from a total reveals no single cell and
no group of fewer than ``threshold`` students, and a suppressed total cannot be
rebuilt from published cells. Where a line cannot be protected with its own cells,
its total is suppressed too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize

from evalkit.core import EvalkitInputError

DEFAULT_THRESHOLD = 10


@dataclass(frozen=True)
class SuppressedCounts:
    """Which cells of a two-way count table (with margins) are suppressed.

    ``cells`` has the table's shape; ``row_totals`` and ``col_totals`` follow the
    rows and columns; ``grand_total`` is a single flag. ``primary`` marks cells
    suppressed for being small (the rest of ``cells`` are complementary).
    """

    cells: npt.NDArray[np.bool_]
    row_totals: npt.NDArray[np.bool_]
    col_totals: npt.NDArray[np.bool_]
    grand_total: bool
    primary: npt.NDArray[np.bool_]


def _check_counts(counts: npt.NDArray[np.float64], threshold: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer) or threshold < 1:
        raise EvalkitInputError(
            f"threshold must be a whole number of at least 1, got {threshold!r}."
        )
    if counts.ndim != 2:
        raise EvalkitInputError("counts must be a two-dimensional table.")
    if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
        raise EvalkitInputError("counts must be non-negative whole numbers.")


def suppress_counts(
    counts: npt.ArrayLike, *, threshold: int = DEFAULT_THRESHOLD
) -> SuppressedCounts:
    """Suppress small cells of a count table and add complementary suppressions.

    Parameters
    ----------
    counts
        A two-dimensional array of counts (rows × columns). A one-way table is a
        single column.
    threshold
        Smallest number of students a published cell may rest on.

    Returns
    -------
    SuppressedCounts

    Examples
    --------
    >>> out = suppress_counts([[25], [4], [30]], threshold=10)
    >>> out.cells.ravel().tolist()
    [True, True, False]
    """
    table = np.asarray(counts, dtype=np.float64)
    _check_counts(table, threshold)
    n_rows, n_cols = table.shape
    # Lay every cell (margins included) out in one vector: cells, row totals,
    # column totals, grand total.
    values = np.concatenate([table.ravel(), table.sum(axis=1), table.sum(axis=0), [table.sum()]])
    cell_id = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    row_total_id = n_rows * n_cols + np.arange(n_rows)
    col_total_id = n_rows * n_cols + n_rows + np.arange(n_cols)
    grand_id = values.size - 1
    lines: list[tuple[int, list[int]]] = []
    for i in range(n_rows):
        if n_cols > 1:
            lines.append((int(row_total_id[i]), [int(c) for c in cell_id[i]]))
    for j in range(n_cols):
        lines.append((int(col_total_id[j]), [int(c) for c in cell_id[:, j]]))
    if n_cols > 1:
        lines.append((grand_id, [int(c) for c in col_total_id]))
        lines.append((grand_id, [int(c) for c in row_total_id]))
    else:
        # A one-way table: the column total is the grand total.
        values[grand_id] = values[col_total_id[0]]
    suppressed = (values > 0) & (values < threshold)
    primary = suppressed.copy()
    _protect_lines(lines, values, suppressed, threshold)
    # Line rules alone can leave a small cell pinned by a combination of lines;
    # audit with linear programming and widen the suppression until none is.
    while (pinned := _first_pinned(lines, values, suppressed, threshold)) is not None:
        partner = _partner(pinned, lines, values, suppressed)
        if partner is None:
            break
        suppressed[partner] = True
        _protect_lines(lines, values, suppressed, threshold)
    if n_cols == 1:
        suppressed[row_total_id] = suppressed[cell_id[:, 0]]
        suppressed[grand_id] = suppressed[col_total_id[0]]
    return SuppressedCounts(
        cells=suppressed[cell_id],
        row_totals=suppressed[row_total_id],
        col_totals=suppressed[col_total_id],
        grand_total=bool(suppressed[grand_id]),
        primary=primary[cell_id],
    )


def _protect_lines(
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
    threshold: int,
) -> None:
    """Add complementary suppressions until every line is safe (see ``_line_is_safe``)."""
    changed = True
    while changed:
        changed = False
        for total, members in lines:
            if _line_is_safe(total, members, values, suppressed, threshold):
                continue
            candidates = [m for m in members if not suppressed[m]]
            if candidates:
                # Prefer the smallest non-empty cell: it costs the least information.
                candidates.sort(key=lambda m: (values[m] == 0, values[m]))
                suppressed[candidates[0]] = True
            else:
                suppressed[total] = True
            changed = True


def _equations(
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    """What an attacker knows: each line's additivity, in the suppressed unknowns."""
    unknown = np.flatnonzero(suppressed)
    position = {int(entry): k for k, entry in enumerate(unknown)}
    rows, rhs = [], []
    for total, members in lines:
        coefficients = np.zeros(unknown.size)
        known = 0.0
        for entry, sign in [(total, -1.0), *((m, 1.0) for m in members)]:
            if suppressed[entry]:
                coefficients[position[entry]] += sign
            else:
                known -= sign * values[entry]
        if coefficients.any():
            rows.append(coefficients)
            rhs.append(known)
    return np.array(rows).reshape(-1, unknown.size), np.array(rhs), unknown


def _first_pinned(
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
    threshold: int,
) -> int | None:
    """The first small suppressed entry whose value the published table determines."""
    if not suppressed.any():
        return None
    on_cycle = _on_positive_cycle(lines, values, suppressed)
    a_eq, b_eq, unknown = _equations(lines, values, suppressed)
    for k, entry in enumerate(unknown):
        if not 0 < values[entry] < threshold or entry in on_cycle:
            continue
        if a_eq.shape[0] == 0:
            continue
        objective = np.zeros(unknown.size)
        objective[k] = 1.0
        low = optimize.linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None))
        high = optimize.linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None))
        upper = np.inf if high.status == 3 else -high.fun
        if low.status == 0 and upper - low.fun < 1.0:  # whole numbers: width < 1 pins it
            return int(entry)
    return None


def _on_positive_cycle(
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
) -> set[int]:
    """Suppressed entries that lie on a cycle of suppressed, non-empty entries.

    The table with its margins is a grid in which every row and every column adds up
    (the totals are the last row and column). Take its rows and columns as nodes and
    each suppressed entry as an edge between its row and its column. Adding and
    subtracting δ alternately around a cycle of such edges keeps every published sum,
    so an entry on a cycle whose entries are all at least 1 can move by at least 1 in
    both directions: it is not pinned, and the linear-programming audit can skip it.
    An entry on no such cycle (a bridge) goes to the exact audit.
    """
    edges = _grid_edges(lines, values, suppressed)
    if not edges:
        return set()
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for entry, (u, v) in edges.items():
        adjacency.setdefault(u, []).append((v, entry))
        adjacency.setdefault(v, []).append((u, entry))
    bridges = _bridges(adjacency)
    return {entry for entry in edges if entry not in bridges}


def _grid_edges(
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
) -> dict[int, tuple[int, int]]:
    """Each suppressed, non-empty entry as an edge (row node, column node) of the grid.

    Lines are rows or columns of the grid; an entry lies on two lines, whose indices
    are its two nodes (the grand total lies on the two margin lines)."""
    where: dict[int, list[int]] = {}
    for index, (total, members) in enumerate(lines):
        for entry in (total, *members):
            where.setdefault(entry, []).append(index)
    offset = len(lines)
    edges = {}
    for entry, on in where.items():
        if not suppressed[entry] or values[entry] < 1:
            continue
        # An entry on a single line (a one-way table's cells) pairs with a node of its own.
        u, v = (on[0], on[1]) if len(on) >= 2 else (on[0], offset + entry)
        edges[entry] = (u, v)
    return edges


def _bridges(adjacency: dict[int, list[tuple[int, int]]]) -> set[int]:
    """Edges whose removal disconnects their component (Tarjan's low-link, iterative)."""
    order: dict[int, int] = {}
    low: dict[int, int] = {}
    bridges: set[int] = set()
    counter = 0
    for root in adjacency:
        if root in order:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack = [(root, -1, iter(adjacency[root]))]
        while stack:
            node, via, neighbours = stack[-1]
            advanced = False
            for neighbour, edge in neighbours:
                if edge == via:
                    continue
                if neighbour in order:
                    low[node] = min(low[node], order[neighbour])
                    continue
                order[neighbour] = low[neighbour] = counter
                counter += 1
                stack.append((neighbour, edge, iter(adjacency[neighbour])))
                advanced = True
                break
            if advanced:
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > order[parent]:
                    bridges.add(via)
    return bridges


def _partner(
    entry: int,
    lines: list[tuple[int, list[int]]],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
) -> int | None:
    """The smallest published non-empty entry sharing a line with ``entry``."""
    candidates: set[int] = set()
    for total, members in lines:
        line = [total, *members]
        if entry in line:
            candidates.update(m for m in line if not suppressed[m])
    if not candidates:
        return None
    return min(candidates, key=lambda m: (values[m] == 0, values[m]))


def _line_is_safe(
    total: int,
    members: list[int],
    values: npt.NDArray[np.float64],
    suppressed: npt.NDArray[np.bool_],
    threshold: int,
) -> bool:
    """A line (total = sum of members) is safe when it hides no entry, or at least two.

    With a published total, the hidden members must also hold ``threshold`` or more
    students together, or subtraction would reveal a small group.
    """
    hidden = [m for m in members if suppressed[m]]
    n_hidden = len(hidden) + int(suppressed[total])
    if n_hidden == 0:
        return True
    if n_hidden == 1:
        return False
    return bool(suppressed[total]) or values[hidden].sum() >= threshold
