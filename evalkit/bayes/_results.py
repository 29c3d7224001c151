"""Bayesian fits on the results contract, with posterior diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, ModelResults

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass(frozen=True)
class BayesResults(ModelResults):
    """A posterior on the results contract.

    ``params`` are posterior means and ``cov`` the posterior covariance of the
    coefficients; ``tidy()`` reports the posterior mean, SD, the 95% highest-density
    interval (``ci_low``/``ci_high``), ``r_hat``, ``ess_bulk`` and ``ess_tail``, and
    ``conf_int()`` the same HDIs. A posterior has no t statistic or p-value:
    ``statistics`` and ``pvalues`` raise (use :func:`prob_greater` for the posterior
    probability of an effect) and ``tidy()`` leaves those columns empty;
    ``glance()`` the draws, chains, divergences and sampling time. ``idata`` is the
    ArviZ InferenceData; ``draws`` the coefficient draws (draws × terms, on the
    original scale).
    """

    idata: Any = field(default=None, repr=False)
    draws: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    priors: dict[str, str] = field(default_factory=dict)
    prepared: Any = field(default=None, repr=False)
    """The REML engine's fit that prepared the data (its model frame and levels)."""
    scale: tuple[float, float] = (0.0, 1.0)
    """(center, spread) of the internal standardisation of the outcome."""

    @property
    def statistics(self) -> pd.Series:
        """Refused: a posterior has no Wald statistic."""
        raise EvalkitInputError(
            "a Bayesian fit has no t statistics; report posterior probabilities (prob_greater)."
        )

    @property
    def pvalues(self) -> pd.Series:
        """Refused: a posterior has no p-values."""
        raise EvalkitInputError(
            "a Bayesian fit has no p-values; report posterior probabilities (prob_greater) "
            "or the HDI from conf_int()."
        )

    def conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Highest-density intervals of the coefficients (``ci_low``, ``ci_high``), the
        same intervals ``tidy()`` reports."""
        if not 0.0 < level < 1.0:
            raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
        bounds = [hdi(self.draws[term].to_numpy(), level) for term in self.params.index]
        return pd.DataFrame(bounds, index=self.params.index, columns=["ci_low", "ci_high"])

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior summaries per coefficient (HDI at ``level``)."""
        rows = []
        for term in self.params.index:
            values = self.draws[term].to_numpy()
            low, high = hdi(values, level)
            diag = self.diagnostics.loc[term]
            rows.append(
                {
                    "term": term, "estimate": float(values.mean()), "std_error": float(values.std(ddof=1)),
                    "df": np.inf, "statistic": np.nan, "p_value": np.nan, "ci_low": low, "ci_high": high,
                    "r_hat": float(diag["r_hat"]), "ess_bulk": float(diag["ess_bulk"]), "ess_tail": float(diag["ess_tail"]),
                }
            )  # fmt: skip
        return pd.DataFrame(rows)


def hdi(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The narrowest interval holding ``level`` of the draws."""
    ordered = np.sort(values)
    n = ordered.size
    width = max(1, int(np.floor(level * n)))
    spans = ordered[width:] - ordered[: n - width]
    start = int(np.argmin(spans))
    return float(ordered[start]), float(ordered[start + width])


def diagnostics_of(idata: Any, names: Mapping[str, str | list[str]]) -> pd.DataFrame:
    """R-hat and ESS of the named variables (``{variable: label}``; vector variables
    are labelled element by element in order)."""
    import arviz as az

    rows = {}
    for variable, labels in names.items():
        summary = az.summary(idata, var_names=[variable], kind="diagnostics")
        listed = [labels] if isinstance(labels, str) else list(labels)
        for label, (_, row) in zip(listed, summary.iterrows(), strict=True):
            rows[label] = {
                "r_hat": row["r_hat"],
                "ess_bulk": row["ess_bulk"],
                "ess_tail": row["ess_tail"],
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def array_diagnostics(draws: Mapping[str, np.ndarray], chains: int) -> pd.DataFrame:
    """R-hat and ESS of derived draws (each chain after chain, as raveled from the
    posterior)."""
    import arviz as az

    rows = {}
    for label, values in draws.items():
        by_chain = np.asarray(values).reshape(chains, -1)
        rows[label] = {
            "r_hat": float(az.rhat(by_chain)),
            "ess_bulk": float(az.ess(by_chain, method="bulk")),
            "ess_tail": float(az.ess(by_chain, method="tail")),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def sampling_warnings(idata: Any, diagnostics: pd.DataFrame) -> list[str]:
    """Divergences, R-hat above 1.01 and ESS below 400: never silent."""
    out = []
    divergent = (
        int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    )
    if divergent:
        out.append(
            f"{divergent} divergent transitions: the posterior may be biased; raise tune or target_accept"
        )
    high = diagnostics.index[diagnostics["r_hat"] > RHAT_MAX].tolist()
    if high:
        out.append(f"R-hat above {RHAT_MAX} for {', '.join(map(str, high))}: chains have not mixed")
    low = diagnostics.index[
        (diagnostics["ess_bulk"] < ESS_MIN) | (diagnostics["ess_tail"] < ESS_MIN)
    ].tolist()
    if low:
        out.append(
            f"effective sample size below {ESS_MIN} for {', '.join(map(str, low))}: draw more"
        )
    return out


def prob_greater(result: BayesResults, term: str, threshold: float = 0.0) -> float:
    """Posterior probability that ``term`` exceeds ``threshold`` (e.g. 0.10 SD)."""
    if term not in result.draws.columns:
        raise EvalkitInputError(
            f"{term!r} is not a parameter of the fit; choose from {', '.join(result.draws.columns)}."
        )
    return float(np.mean(result.draws[term].to_numpy() > threshold))
