"""Formulas parsed once, with an error an evaluator can read.

formulaic parses every formula evalkit reads; its syntax errors come with terminal
colour codes and a parser's vocabulary. :func:`read_formula` turns them (and formulas
that evaluate to nothing) into an :class:`~evalkit.EvalkitInputError` naming the
formula and what is wrong with it.
"""

from __future__ import annotations

import re

from formulaic import Formula
from formulaic.errors import FormulaicError

from evalkit.core.errors import EvalkitInputError

_COLOUR = re.compile(r"\x1b\[[0-9;]*m|[⧛⧚]")


def read_formula(text: str, *, what: str = "formula") -> Formula:
    """A formulaic ``Formula`` for ``text``; a malformed formula (unbalanced
    parentheses, a dangling operator, an empty side) is an error naming it.

    Examples
    --------
    >>> sorted(map(str, read_formula("y ~ x + C(group)").required_variables))
    ['group', 'x', 'y']
    >>> read_formula("y ~ (x + z")
    Traceback (most recent call last):
    ...
    evalkit.EvalkitInputError: cannot read the formula 'y ~ (x + z': a parenthesis is opened and not closed, or closed and not opened.
    """
    if not isinstance(text, str) or not text.strip():
        raise EvalkitInputError(f"the {what} must be a non-empty string, got {text!r}.")
    try:
        formula = Formula(text)
        formula.required_variables  # noqa: B018  (parsing happens on first use)
    except (FormulaicError, SyntaxError, ValueError, TypeError) as error:
        first = _COLOUR.sub("", str(error)).strip().splitlines()[0] if str(error) else ""
        if "matching context marker" in first:
            first = "a parenthesis is opened and not closed, or closed and not opened."
        raise EvalkitInputError(f"cannot read the {what} {text!r}: {first}") from None
    return formula
