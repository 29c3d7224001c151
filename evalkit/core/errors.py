"""Error and warning types raised by evalkit."""

from __future__ import annotations


class EvalkitInputError(ValueError):
    """Bad input: the message names the field and the offending rows."""

    __module__ = "evalkit"


class EvalkitWarning(UserWarning):
    """Something the user should know about a result (a drop, a boundary, a flag)."""

    __module__ = "evalkit"
