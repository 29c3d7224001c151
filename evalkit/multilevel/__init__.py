"""Nested linear mixed models: an exact, fast REML/ML engine with lme4's formula syntax."""

from evalkit.multilevel.formula import ParsedFormula, RandomTerm, parse_formula
from evalkit.multilevel.model import LMMResults, lmm

__all__ = ["LMMResults", "ParsedFormula", "RandomTerm", "lmm", "parse_formula"]
