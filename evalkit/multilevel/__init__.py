"""Linear and generalized linear mixed models: an exact, fast REML/ML engine with lme4's formula syntax
(specification, optimisation and results as separate steps),
small-sample inference (Satterthwaite, Kenward–Roger, containment, CR2), likelihood-ratio
tests, profile CIs, conditional modes and standardised effect sizes."""

from evalkit.multilevel.blups import caterpillar_plot, ranef, reliability
from evalkit.multilevel.formula import ParsedFormula, RandomTerm, parse_formula
from evalkit.multilevel.frame import Marginal, ModelFrame, clusters
from evalkit.multilevel.from_statistics import StatisticsFit, fit_statistics
from evalkit.multilevel.glmm import GLMMResults, glmm
from evalkit.multilevel.gtheory import GStudy, g_study
from evalkit.multilevel.hypotheses import LikelihoodRatioTest, f_test, lrt
from evalkit.multilevel.many import ManyFits, fit_many
from evalkit.multilevel.model import DfMethod, EstimationMethod, LMMResults, lmm
from evalkit.multilevel.profile_ci import profile_intervals
from evalkit.multilevel.robust import robust
from evalkit.multilevel.spec import Level, MixedModelSpec, specify
from evalkit.multilevel.stats import SufficientStats
from evalkit.multilevel.summaries import (
    StandardizedEffect,
    Standardizer,
    effect_size,
    icc,
    prv,
    r_squared,
)

__all__ = [
    "DfMethod",
    "EstimationMethod",
    "GLMMResults",
    "GStudy",
    "LMMResults",
    "Level",
    "LikelihoodRatioTest",
    "ManyFits",
    "Marginal",
    "MixedModelSpec",
    "ModelFrame",
    "ParsedFormula",
    "RandomTerm",
    "StandardizedEffect",
    "Standardizer",
    "StatisticsFit",
    "SufficientStats",
    "caterpillar_plot",
    "clusters",
    "effect_size",
    "f_test",
    "fit_many",
    "fit_statistics",
    "g_study",
    "glmm",
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
    "specify",
]
