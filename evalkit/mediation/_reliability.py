"""Correcting the b path for measurement error in the mediator.

A teacher's mean observation score is the teacher's true instruction plus rater and
lesson error; with reliability ρ (the share of the observed between-unit variance that
is true variance — the G coefficient of the mean over the lessons and raters observed),
the outcome equation's coefficient of the error-prone mediator is attenuated by the
mediator's reliability *given the other predictors*, λ = (ρ − R²) / (1 − R²), where R²
is the share of the observed mediator's variance explained by the treatment and the
covariates; the treatment's coefficient absorbs part of the missing b path:
b_obs = λ b and c'_obs = c' + (1 − λ) b γ, with γ the treatment's coefficient in the
regression of the mediator on the treatment and covariates (the classical
errors-in-variables results; Fuller 1987, *Measurement Error Models*, ch. 1). The
corrected b = b_obs / λ and c' = c'_obs − (1 − λ) b γ; the total effect is unchanged.
The factor is computed on the units that carry the mediator's between part and treated
as known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError
from evalkit.mediation._design import MediationDesign, level_of, units_mask


@dataclass(frozen=True)
class Correction:
    """The attenuation factor λ, the R² it rests on and the treatment's γ."""

    reliability: float
    r_squared: float
    factor: float
    gamma: float

    def transform(self, roles: list[str]) -> np.ndarray:
        """The linear map from observed to corrected path coefficients."""
        jac = np.eye(len(roles))
        b, c = roles.index("b"), roles.index("direct")
        jac[b, b] = 1.0 / self.factor
        jac[c, b] = -(1.0 - self.factor) * self.gamma / self.factor
        return jac

    def apply(
        self, point: pd.Series, cov: pd.DataFrame, draws: pd.DataFrame
    ) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
        """Corrected estimates, covariance and Monte Carlo draws."""
        roles = list(point.index)
        jac = self.transform(roles)
        new_point = pd.Series(jac @ point.to_numpy(), index=point.index)
        new_cov = pd.DataFrame(jac @ cov.to_numpy() @ jac.T, index=cov.index, columns=cov.columns)
        new_draws = draws.copy()
        b = draws["b"].to_numpy() / self.factor
        new_draws["b"] = b
        new_draws["direct"] = draws["direct"].to_numpy() - (1.0 - self.factor) * self.gamma * b
        return new_point, new_cov, new_draws


def check_reliability(value: object) -> float:
    """A reliability in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise EvalkitInputError(f"mediator_reliability must be a number, got {value!r}.")
    number = float(value)
    if not 0.0 < number <= 1.0:
        raise EvalkitInputError(
            f"mediator_reliability must lie in (0, 1], got {number!r}: it is the share of the "
            "mediator's observed between-unit variance that is true-score variance."
        )
    return number


def attenuation(frame: pd.DataFrame, found: MediationDesign, reliability: float) -> Correction:
    """The attenuation of b for a mediator of the given reliability in these data."""
    rho = check_reliability(reliability)
    level = found.b_level
    units = frame.loc[units_mask(frame, found.clusters, level)]
    treatment = found.treatment
    predictors = [treatment] + [
        c
        for c in (*found.a_covariates, *([found.moderator] if found.moderator else []))
        if level_of(frame, c, found.clusters) >= level
    ]
    # text covariates (a school's district, a grade band) enter as indicators
    design = pd.get_dummies(units[predictors], drop_first=True, dtype=np.float64)
    x = np.column_stack([np.ones(len(units)), design.to_numpy(dtype=np.float64)])
    y = units[found.b_term].to_numpy(dtype=np.float64)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / total if total > 0 else 1.0
    if rho <= r2:
        raise EvalkitInputError(
            f"mediator_reliability {rho:.3g} is not above the share of the mediator's variance "
            f"that the treatment and covariates explain (R² = {r2:.3g}), so no true-score "
            "variance is left to estimate b from: the correction is undefined. Check the "
            "reliability (it must describe the mediator as analysed, e.g. the mean over the "
            "lessons and raters observed)."
        )
    return Correction(
        reliability=rho, r_squared=r2, factor=(rho - r2) / (1.0 - r2), gamma=float(beta[1])
    )
