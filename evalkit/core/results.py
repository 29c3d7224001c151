"""The results contract every fitted model in evalkit exposes.

Whatever computed a fit (evalkit's engines, statsmodels, linearmodels, PyMC), its
result offers the same names: ``params``, ``std_errors``, ``df``, ``pvalues``,
``conf_int()``, ``cov``, ``nobs``, ``n_groups``, ``variance_components``, ``tidy()``,
``glance()``, ``summary()``, ``warnings`` and ``dropped``. Tables, plots and effect
sizes are written once against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core.errors import EvalkitInputError
from evalkit.core.variance import VarianceComponents

TIDY_COLUMNS = ("term", "estimate", "std_error", "df", "statistic", "p_value", "ci_low", "ci_high")


@dataclass(frozen=True)
class Dropped:
    """Rows a fit left out, with the reason for each.

    Attributes
    ----------
    rows
        Labels (index values) of the rows left out.
    reasons
        One reason per entry of ``rows`` (e.g. ``"missing prior_score"``).
    """

    rows: tuple[Any, ...] = ()
    reasons: tuple[str, ...] = ()
    tallies: tuple[tuple[str, int], ...] = ()
    """Rows left out counted per reason without their labels (data read where they
    live, out of core, whose rows are never loaded)."""

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.reasons):
            raise EvalkitInputError("Dropped needs one reason per dropped row.")

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> Dropped:
        """A record of rows left out, as counts per reason (no row labels)."""
        return cls(tallies=tuple((str(r), int(c)) for r, c in counts.items() if c))

    @property
    def n(self) -> int:
        """How many rows were left out."""
        return len(self.rows) + sum(count for _, count in self.tallies)

    def counts(self) -> dict[str, int]:
        """Number of dropped rows per reason."""
        counts = pd.Series(self.reasons, dtype=object).value_counts()
        out = {str(reason): int(count) for reason, count in counts.items()}
        for reason, count in self.tallies:
            out[reason] = out.get(reason, 0) + count
        return dict(sorted(out.items(), key=lambda item: -item[1]))

    def describe(self) -> str:
        """A sentence for table notes, e.g. ``"12 rows dropped: 12 missing prior"``."""
        if not self.n:
            return "No rows dropped."
        parts = ", ".join(f"{count} {reason}" for reason, count in self.counts().items())
        noun = "row" if self.n == 1 else "rows"
        return f"{self.n} {noun} dropped: {parts}."


@dataclass(frozen=True)
class ModelResults:
    """A fitted model on evalkit's results contract (frequentist fits).

    Parameters
    ----------
    params
        Point estimates indexed by term name.
    cov
        Covariance matrix of the estimates (terms × terms).
    df
        Degrees of freedom per term; ``inf`` for z-based inference.
    nobs
        Number of observations used.
    model
        Short name of the model, e.g. ``"OLS"``, ``"LMM (REML)"``.
    backend
        What computed the fit (``"evalkit"``, ``"statsmodels"``, ``"linearmodels"``).
    n_groups
        Number of groups per grouping level, where it applies.
    facts
        Model-level facts for :meth:`glance` (logLik, AIC, variance components, ...).
    warnings
        Everything the fit flagged (non-convergence, singular fits, drops).
    dropped
        Rows left out and why.
    formula
        The model formula, when there is one.
    spec
        The parsed model specification, kept for predictions on new data.
    variance_components
        The random-effect variances as the shared table, on every model that has
        random effects (``None`` otherwise); ``glance()`` shows them as ``var_<level>``.
    """

    params: pd.Series
    cov: pd.DataFrame
    df: pd.Series
    nobs: int
    model: str
    backend: str
    n_groups: Mapping[str, int] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    dropped: Dropped = field(default_factory=Dropped)
    formula: str | None = None
    spec: Any = None
    variance_components: VarianceComponents | None = None

    def __post_init__(self) -> None:
        terms = list(self.params.index)
        if list(self.cov.index) != terms or list(self.cov.columns) != terms:
            raise EvalkitInputError("cov must be indexed by the same terms as params.")
        if list(self.df.index) != terms:
            raise EvalkitInputError("df must be indexed by the same terms as params.")

    @cached_property
    def std_errors(self) -> pd.Series:
        """Standard errors: square roots of the diagonal of ``cov``."""
        return pd.Series(np.sqrt(np.diag(self.cov.to_numpy())), index=self.params.index)

    @cached_property
    def statistics(self) -> pd.Series:
        """Wald t (or z) statistics, estimate / SE."""
        return self.params / self.std_errors

    @cached_property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values from t with ``df`` (normal where ``df`` is infinite)."""
        t = np.abs(self.statistics.to_numpy())
        p = 2.0 * stats.t.sf(t, self.df.to_numpy())
        return pd.Series(p, index=self.params.index)

    def conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Confidence intervals with columns ``ci_low`` and ``ci_high``."""
        if not 0.0 < level < 1.0:
            raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
        crit = stats.t.ppf(0.5 + level / 2.0, self.df.to_numpy())
        half = crit * self.std_errors.to_numpy()
        return pd.DataFrame(
            {"ci_low": self.params - half, "ci_high": self.params + half}, index=self.params.index
        )

    def tidy(self, level: float = 0.95) -> pd.DataFrame:
        """One row per term: estimate, SE, df, statistic, p-value and CI bounds."""
        ci = self.conf_int(level)
        frame = pd.DataFrame(
            {
                "term": self.params.index,
                "estimate": self.params.to_numpy(),
                "std_error": self.std_errors.to_numpy(),
                "df": self.df.to_numpy(),
                "statistic": self.statistics.to_numpy(),
                "p_value": self.pvalues.to_numpy(),
                "ci_low": ci["ci_low"].to_numpy(),
                "ci_high": ci["ci_high"].to_numpy(),
            }
        )
        return frame.reset_index(drop=True)

    def glance(self) -> pd.DataFrame:
        """One row of model-level facts: n, groups, fit statistics, warnings."""
        row: dict[str, Any] = {"model": self.model, "backend": self.backend, "nobs": self.nobs}
        for level, count in self.n_groups.items():
            row[f"n_{level}"] = count
        if self.variance_components is not None:
            row.update(self.variance_components.facts())
        row.update(self.facts)
        row["n_dropped"] = self.dropped.n
        row["warnings"] = "; ".join(self.warnings)
        return pd.DataFrame([row])

    def summary(self, level: float = 0.95) -> str:
        """A plain-text summary: header facts, the coefficient table and flags."""
        lines = [f"{self.model} fitted by {self.backend}"]
        if self.formula:
            lines.append(f"Formula: {self.formula}")
        groups = ", ".join(f"{k}: {v}" for k, v in self.n_groups.items())
        lines.append(f"Observations: {self.nobs}" + (f"; groups: {groups}" if groups else ""))
        for key, value in self.facts.items():
            if isinstance(value, float):
                lines.append(f"{key}: {value:.6g}")
            elif isinstance(value, int | str | bool):
                lines.append(f"{key}: {value}")
        table = self.tidy(level).set_index("term")
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
        if self.variance_components is not None:
            lines.append("Variance components:")
            lines.append(str(self.variance_components))
        lines.append(self.dropped.describe())
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header = f"<p><b>{self.model}</b> fitted by {self.backend}; n = {self.nobs}</p>"
        table = self.tidy().to_html(index=False, float_format=lambda v: f"{v:.4g}")
        flags = "".join(f"<p>Warning: {w}</p>" for w in self.warnings)
        return header + table + f"<p>{self.dropped.describe()}</p>" + flags


def z_based(terms: pd.Index) -> pd.Series:
    """A ``df`` Series of infinities, for z-based inference."""
    return pd.Series(np.inf, index=terms)
