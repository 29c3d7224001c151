"""The achievement model sequence for a binary outcome (a student reaching
proficiency): null → treatment → covariates → moderation as logistic GLMMs (Laplace),
with odds ratios and the WWC effect size for dichotomous outcomes, the Cox index
``ln(OR)/1.65`` (WWC Procedures and Standards Handbook 5.0, §VI.B), and counterfactual
predicted probabilities of the treatment model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from evalkit.core import Dropped, EvalkitInputError
from evalkit.multilevel import GLMMResults, glmm


def binary_models(
    data: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    random: str,
    covariates: Sequence[str],
    moderators: Sequence[str],
) -> dict[str, GLMMResults]:
    """Fit the four logistic models to the same rows (an error if they differ)."""
    models = {"Null": glmm(f"{outcome} ~ 1 + {random}", data)}
    models["Treatment"] = glmm(f"{outcome} ~ {treatment} + {random}", data)
    if covariates:
        rhs = " + ".join([treatment, *covariates])
        models["Covariates"] = glmm(f"{outcome} ~ {rhs} + {random}", data)
    if moderators:
        interactions = " + ".join(f"{treatment}:{m}" for m in moderators)
        rhs = " + ".join([treatment, *covariates, interactions])
        models["Moderation"] = glmm(f"{outcome} ~ {rhs} + {random}", data)
    nobs = {m.nobs for m in models.values()}
    if len(nobs) > 1:
        raise EvalkitInputError(
            f"the models were fitted to different rows ({sorted(nobs)}); drop rows with "
            "missing covariates first so the sequence compares like with like."
        )
    return models


def binary_effects(models: dict[str, GLMMResults], treatment: str) -> pd.DataFrame:
    """Per model with the treatment: log odds ratio, SE, p, odds ratio and Cox index."""
    rows = {}
    for name, model in models.items():
        if treatment not in model.params.index:
            continue
        cox = model.cox_index(treatment)
        rows[name] = {
            "estimate": float(model.params[treatment]),
            "std_error": float(model.std_errors[treatment]),
            "p_value": float(model.pvalues[treatment]),
            "odds_ratio": float(np.exp(model.params[treatment])),
            "effect_size": cox.estimate,
            "effect_size_std_error": cox.std_error,
            "ci_low": cox.ci_low,
            "ci_high": cox.ci_high,
            "sd": cox.sd,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def binary_notes(
    outcome: str, treatment: str, models: dict[str, GLMMResults], dropped: Dropped
) -> list[str]:
    """Table notes of a binary-outcome sequence."""
    notes = [
        f"Outcome: {outcome} (0/1). Logistic mixed models fitted by maximum likelihood "
        "(Laplace approximation); coefficients are log odds ratios with Wald z tests.",
        f"Effect size: the Cox index of the {treatment} coefficient, ln(OR)/1.65, the WWC "
        "effect size for dichotomous outcomes.",
        "ICC: latent-scale intraclass correlations (level-1 variance π²/3).",
    ]
    flagged = [f"{name}: {w}" for name, m in models.items() for w in m.warnings]
    notes.extend(flagged)
    if dropped.n:
        notes.append(f"Before fitting, {dropped.describe()}")
    return notes
