"""Nested linear mixed models: an exact, fast REML/ML engine with lme4's formula syntax,
small-sample inference (Satterthwaite, Kenward–Roger, containment, CR2), likelihood-ratio
tests, profile CIs, conditional modes and standardised effect sizes."""

from evalkit.multilevel.blups import caterpillar_plot, ranef, reliability
from evalkit.multilevel.formula import ParsedFormula, RandomTerm, parse_formula
from evalkit.multilevel.hypotheses import LikelihoodRatioTest, f_test, lrt
from evalkit.multilevel.model import LMMResults, lmm
from evalkit.multilevel.profile_ci import profile_intervals
from evalkit.multilevel.robust import robust
from evalkit.multilevel.summaries import StandardizedEffect, effect_size, icc, prv, r_squared

__all__ = [
    "LMMResults",
    "LikelihoodRatioTest",
    "ParsedFormula",
    "RandomTerm",
    "StandardizedEffect",
    "caterpillar_plot",
    "effect_size",
    "f_test",
    "icc",
    "lmm",
    "lrt",
    "parse_formula",
    "profile_intervals",
    "prv",
    "r_squared",
    "ranef",
    "reliability",
    "robust",
]
