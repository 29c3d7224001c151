"""What evaluators report from a posterior: probabilities of effects above thresholds
that matter to a district, and how those answers move when the priors change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evalkit.bayes._priors import Prior
from evalkit.bayes._results import BayesResults, hdi
from evalkit.core import EvalkitInputError


def probability_table(
    result: BayesResults,
    term: str,
    thresholds: Sequence[float] = (0.0, 0.05, 0.10, 0.20),
    *,
    scale: float = 1.0,
    unit: str = "",
) -> pd.DataFrame:
    """Posterior probabilities that ``term`` exceeds each threshold (and falls below
    its negative), e.g. "the probability that coaching raised achievement by at least
    0.10 SD". ``scale`` divides the draws first (e.g. the outcome SD, to state the
    thresholds in SD units when the outcome is on a raw score scale)."""
    if term not in result.draws.columns:
        raise EvalkitInputError(
            f"{term!r} is not a parameter of the fit; choose from {', '.join(result.draws.columns)}."
        )
    if not scale > 0:
        raise EvalkitInputError(f"scale must be positive, got {scale!r}.")
    values = result.draws[term].to_numpy() / scale
    rows = [
        {
            "threshold": float(t),
            "statement": f"P({term} > {t:g}{unit})",
            "probability": float(np.mean(values > t)),
            "probability_below_negative": float(np.mean(values < -t)),
        }
        for t in thresholds
    ]
    return pd.DataFrame(rows)


def prior_sensitivity(
    formula: str,
    data: pd.DataFrame,
    scenarios: Mapping[str, Mapping[str, Prior | float]],
    *,
    term: str,
    threshold: float = 0.0,
    **fit_options: Any,
) -> pd.DataFrame:
    """Refit under each named set of priors and report the posterior of ``term``:
    mean, SD, 95% HDI, P(term > threshold), the prior used and the worst R-hat and
    ESS. Collapsed fits that differ only in Normal coefficient priors reuse one
    compiled model, so a sweep costs little more than its sampling.

    ``scenarios`` maps a label to the ``priors=`` of :func:`evalkit.bayes.lmm`
    (``{}`` for the defaults); ``fit_options`` go to every fit (``seed``, ``draws`` …).
    """
    from evalkit.bayes._lmm import lmm

    if not scenarios:
        raise EvalkitInputError("give at least one scenario (e.g. {'default': {}}).")
    rows = []
    for label, priors in scenarios.items():
        fit = lmm(formula, data, priors=priors, **fit_options)
        if term not in fit.draws.columns:
            raise EvalkitInputError(f"{term!r} is not a term of {formula!r}.")
        values = fit.draws[term].to_numpy()
        low, high = hdi(values)
        rows.append(
            {
                "scenario": label,
                "prior": _prior_of(fit, term),
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)),
                "hdi_low": low,
                "hdi_high": high,
                f"P(>{threshold:g})": float(np.mean(values > threshold)),
                "max_r_hat": float(fit.diagnostics["r_hat"].max()),
                "min_ess_bulk": float(fit.diagnostics["ess_bulk"].min()),
                "warnings": len(fit.warnings),
            }
        )
    return pd.DataFrame(rows).set_index("scenario")


def _prior_of(fit: BayesResults, term: str) -> str:
    """The prior of ``term`` as the fit describes it."""
    return fit.priors.get(f"beta[{term}]", "default").removesuffix(
        f" (outcome SDs per unit of {term})"
    )
