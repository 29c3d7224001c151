"""lme4-style model formulas: the fixed part for formulaic, the random terms parsed here.

``score ~ coached * leadership + prior + (1 + coached | school) + (1 | school:teacher)``
has the fixed part ``score ~ coached * leadership + prior`` and two random terms.
Supported random terms: ``(1 | g)``, ``(1 + x | g)`` (correlated), ``(0 + x | g)``,
``(x || g)`` (uncorrelated intercept and slopes), ``(1 | a/b)`` (expands to
``(1 | a) + (1 | a:b)``) and ``(1 | a:b)``. Terms that share a grouping factor form one
level with a block-diagonal covariance (uncorrelated blocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evalkit.core import EvalkitInputError


@dataclass(frozen=True)
class RandomTerm:
    """One block of random effects: ``columns`` (``"1"`` for the intercept) varying over
    the groups of ``grouping`` (factor names joined by ``:`` for interactions)."""

    columns: tuple[str, ...]
    grouping: tuple[str, ...]

    @property
    def name(self) -> str:
        """The grouping as lme4 prints it, e.g. ``school:teacher``."""
        return ":".join(self.grouping)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into its fixed part and random terms."""

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    nested: tuple[tuple[tuple[str, ...], str], ...] = ()
    """(upper factors, lower factor) for every ``upper/lower`` written in the formula."""


_BAR = re.compile(r"\(([^()|]*?)(\|\|?)([^()]*?)\)")


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style formula into the fixed part and its random terms.

    Examples
    --------
    >>> parsed = parse_formula("y ~ x + (1 + x | school) + (1 | school:teacher)")
    >>> parsed.fixed, [(t.columns, t.name) for t in parsed.random]
    ('y ~ x', [(('1', 'x'), 'school'), (('1',), 'school:teacher')])
    >>> parse_formula("y ~ 1 + (1 | a) + (1 | a:b) + (1 | a:b:c)").fixed
    'y ~ 1'

    """
    if not isinstance(formula, str):
        raise EvalkitInputError(f"formula must be a string, got {type(formula).__name__}.")
    if "~" not in formula:
        raise EvalkitInputError(
            "formula needs a response on the left: 'score ~ predictors + (1 | school)'."
        )
    response, right = (part.strip() for part in formula.split("~", 1))
    terms: list[RandomTerm] = []
    for inside, bar, grouping in _BAR.findall(right):
        terms.extend(_expand(inside.strip(), bar, grouping.strip()))
    fixed_right = _BAR.sub("", right)
    while re.search(r"\+\s*\+", fixed_right):
        fixed_right = re.sub(r"\+\s*\+", "+", fixed_right)
    fixed_right = re.sub(r"^\s*\+|\+\s*$", "", fixed_right.strip()).strip() or "1"
    if "|" in fixed_right:
        raise EvalkitInputError(
            f"could not read the random terms in {formula!r}; write them as (terms | group)."
        )
    if not terms:
        raise EvalkitInputError("the formula has no random terms; add e.g. (1 | school).")
    nested: list[tuple[tuple[str, ...], str]] = []
    for _, _, grouping in _BAR.findall(right):
        factors = [g.strip() for g in grouping.split("/")]
        nested.extend((tuple(factors[:i]), factors[i]) for i in range(1, len(factors)))
    return ParsedFormula(
        response=response,
        fixed=f"{response} ~ {fixed_right}",
        random=tuple(terms),
        nested=tuple(dict.fromkeys(nested)),
    )


def _expand(inside: str, bar: str, grouping: str) -> list[RandomTerm]:
    parts = [p.strip() for p in inside.split("+") if p.strip()]
    intercept = True
    columns: list[str] = []
    for part in parts:
        if part == "1":
            intercept = True
        elif part in ("0", "-1"):
            intercept = False
        else:
            columns.append(part)
    if "0" not in parts and "-1" not in parts:
        intercept = True
    block = (["1"] if intercept else []) + columns
    if not block:
        raise EvalkitInputError(f"the random term ({inside} {bar} {grouping}) has no effects.")
    if "/" in grouping:
        factors = [g.strip() for g in grouping.split("/")]
        groupings = [tuple(factors[: i + 1]) for i in range(len(factors))]
    else:
        groupings = [tuple(g.strip() for g in grouping.split(":"))]
    out: list[RandomTerm] = []
    for group in groupings:
        if bar == "||":
            out.extend(RandomTerm((column,), group) for column in block)
        else:
            out.append(RandomTerm(tuple(block), group))
    return out
