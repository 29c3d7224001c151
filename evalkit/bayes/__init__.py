"""Bayesian multilevel models and meta-analyses with PyMC and ArviZ (the ``bayes``
extra): the coaching models and meta-analyses with posterior diagnostics on the
results contract."""

from evalkit.bayes import _extra  # noqa: F401  (first: a clear error without the extra)
from evalkit.bayes._checks import posterior_predictive, prior_predictive, random_effect_draws
from evalkit.bayes._lmm import lmm
from evalkit.bayes._meta import meta_analysis
from evalkit.bayes._priors import Prior
from evalkit.bayes._reporting import prior_sensitivity, probability_table
from evalkit.bayes._results import BayesResults, hdi, prob_greater

__all__ = [
    "BayesResults",
    "Prior",
    "hdi",
    "lmm",
    "meta_analysis",
    "posterior_predictive",
    "prior_predictive",
    "prior_sensitivity",
    "prob_greater",
    "probability_table",
    "random_effect_draws",
]
