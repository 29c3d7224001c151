"""One table type for random-effect variances, whatever model produced them.

Every model with random effects (mixed models from evalkit's engine or statsmodels,
multilevel meta-analyses, Bayesian fits) reports its variance components as a
:class:`VarianceComponents`: one row per variance and one per pair of correlated
effects, with the columns ``level, term, variance, sd, correlation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from evalkit.core.errors import EvalkitInputError

INTERCEPT = "Intercept"
"""The one spelling of the intercept, in coefficients and variance components alike
(formulaic's and statsmodels' spelling)."""

RESIDUAL = "residual"
"""Level (and term) name of the residual variance."""

COLUMNS = ("level", "term", "variance", "sd", "correlation")


def pair_term(first: str, second: str) -> str:
    """The ``term`` of the row holding the covariance of two random effects."""
    return f"cov({first}, {second})"


@dataclass(frozen=True)
class VarianceComponents:
    """Variances (and covariances) of a model's random effects, level by level.

    Build it with :meth:`from_matrices`. ``frame`` is the long table: a row per
    variance (``term`` is the effect, ``Intercept`` for a random intercept; ``sd`` its
    square root; ``correlation`` empty) and a row per pair of correlated effects
    (``term`` reads ``cov(Intercept, coached)``, ``variance`` holds the covariance,
    ``correlation`` the correlation, ``sd`` empty). The residual variance, when the
    model has one, is the row with level and term ``residual``.

    Examples
    --------
    >>> import pandas as pd
    >>> school = pd.DataFrame([[0.04, 0.01], [0.01, 0.02]],
    ...                       index=["Intercept", "coached"], columns=["Intercept", "coached"])
    >>> vc = VarianceComponents.from_matrices({"school": school}, residual=0.9)
    >>> vc.frame[["level", "term"]].to_numpy().tolist()
    [['school', 'Intercept'], ['school', 'coached'], ['school', 'cov(Intercept, coached)'], ['residual', 'residual']]
    >>> round(vc.variance("school"), 3), round(vc.residual, 1)
    (0.04, 0.9)
    """

    matrices: Mapping[str, pd.DataFrame]
    residual: float = float("nan")

    @classmethod
    def from_matrices(
        cls, matrices: Mapping[str, pd.DataFrame], *, residual: float | None = None
    ) -> VarianceComponents:
        """Components from one covariance matrix per level (labelled by term) and the
        residual variance (``None`` when the model has none, as in meta-analysis)."""
        checked: dict[str, pd.DataFrame] = {}
        for level, matrix in matrices.items():
            if level == RESIDUAL:
                raise EvalkitInputError(f"{RESIDUAL!r} is reserved for the residual variance.")
            frame = pd.DataFrame(matrix, dtype=float)
            if list(frame.index) != list(frame.columns):
                raise EvalkitInputError(f"the covariance matrix of {level!r} must be square.")
            checked[str(level)] = frame
        return cls(matrices=checked, residual=float("nan") if residual is None else residual)

    @classmethod
    def from_variances(
        cls, variances: Mapping[str, float], *, residual: float | None = None
    ) -> VarianceComponents:
        """Components of random-intercept levels given as ``{level: variance}``."""
        return cls.from_matrices(
            {
                level: pd.DataFrame([[value]], index=[INTERCEPT], columns=[INTERCEPT])
                for level, value in variances.items()
            },
            residual=residual,
        )

    @property
    def levels(self) -> tuple[str, ...]:
        """The grouping levels, in the model's order (the residual is not a level)."""
        return tuple(self.matrices)

    @property
    def has_residual(self) -> bool:
        """Whether the model has a residual variance."""
        return bool(np.isfinite(self.residual))

    def matrix(self, level: str) -> pd.DataFrame:
        """Covariance matrix of ``level``'s random effects."""
        if level not in self.matrices:
            raise EvalkitInputError(
                f"no random effects for level {level!r}; the levels are {', '.join(self.levels)}."
            )
        return self.matrices[level]

    def variance(self, level: str, term: str = INTERCEPT) -> float:
        """Variance of ``term`` at ``level``; 0 when the level has no such effect
        (a level with random slopes only has no intercept variance)."""
        if level == RESIDUAL:
            return self.residual
        matrix = self.matrix(level)
        names = [str(n) for n in matrix.index]
        if term not in names:
            return 0.0
        k = names.index(term)
        return float(matrix.to_numpy()[k, k])

    def intercept_variances(self) -> dict[str, float]:
        """Random-intercept variance of every level (0 where a level has none)."""
        return {level: self.variance(level) for level in self.levels}

    def icc(self) -> dict[str, float]:
        """Intraclass correlation of every level: its intercept variance over the sum of
        all intercept variances and the residual. Undefined without a residual."""
        intercepts = self.intercept_variances()
        total = sum(intercepts.values()) + (self.residual if self.has_residual else np.nan)
        return {level: value / total for level, value in intercepts.items()}

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The long table: ``level, term, variance, sd, correlation``."""
        rows: list[tuple[str, str, float, float, float]] = []
        for level, matrix in self.matrices.items():
            values = matrix.to_numpy()
            names = [str(n) for n in matrix.index]
            for k, name in enumerate(names):
                rows.append((level, name, values[k, k], np.sqrt(max(values[k, k], 0.0)), np.nan))
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    denominator = np.sqrt(values[a, a] * values[b, b])
                    correlation = values[a, b] / denominator if denominator > 0 else np.nan
                    rows.append(
                        (level, pair_term(names[a], names[b]), values[a, b], np.nan, correlation)
                    )
        if self.has_residual:
            rows.append((RESIDUAL, RESIDUAL, self.residual, np.sqrt(self.residual), np.nan))
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def facts(self) -> dict[str, float]:
        """The components as ``glance()`` columns: ``var_<level>`` for intercepts,
        ``var_<level>[<term>]`` for slopes, ``cor_<level>[<a>, <b>]`` for correlations
        and ``var_residual``."""
        out: dict[str, float] = {}
        frame = self.frame
        rows = zip(
            frame["level"].astype(str),
            frame["term"].astype(str),
            frame["variance"].to_numpy(dtype=float),
            frame["correlation"].to_numpy(dtype=float),
            strict=True,
        )
        for level, term, variance, correlation in rows:
            if level == RESIDUAL:
                out["var_residual"] = float(variance)
            elif term.startswith("cov("):
                out[f"cor_{level}[{term[4:-1]}]"] = float(correlation)
            else:
                out[variance_key(level, term)] = float(variance)
        return out

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        return str(self.frame.to_html(index=False, float_format=lambda v: f"{v:.4g}"))

    def __str__(self) -> str:
        return str(self.frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def variance_key(level: str, term: str = INTERCEPT) -> str:
    """The ``glance()`` column of a variance: ``var_school`` or ``var_school[coached]``."""
    return f"var_{level}" if term == INTERCEPT else f"var_{level}[{term}]"
