"""What evaluators report from a binary-outcome GLMM: the WWC effect size (Cox index),
predicted probabilities for treated and comparison students, and the average marginal
effect in percentage points.

Predicted probabilities are counterfactual averages over the fitted rows: every row
is given the treatment value 1, then 0, its other covariates kept. They come on two
scales (Skrondal & Rabe-Hesketh 2009, "Prediction in multilevel generalized linear
models", J. R. Stat. Soc. A 172(3)):

* **conditional** — for a student in a school and classroom at the average (random
  effects 0): ``g⁻¹(xᵢᵀβ)``;
* **population-averaged** — over the distribution of schools and classrooms:
  ``E_b[g⁻¹(xᵢᵀβ + zᵢᵀb)]``, the random part normal with variance ``Σ_l zᵢᵀΣ_l zᵢ``,
  integrated by 40-point Gauss–Hermite quadrature.

Standard errors by the delta method in all parameters (θ, β), with the covariance from
the fit's Hessian (θ enters the population-averaged scale only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError
from evalkit.multilevel.families import Family
from evalkit.multilevel.summaries import StandardizedEffect

if TYPE_CHECKING:
    from evalkit.multilevel.glmm import GLMMResults

COX_DIVISOR = 1.65
"""Cox (1970) index: d = ln(OR)/1.65 (WWC Procedures Handbook v5.0, §VI.B)."""
NODES = 40


def cox_index(result: GLMMResults, term: str, *, level: float = 0.95) -> StandardizedEffect:
    """The WWC effect size of a dichotomous outcome from the model-adjusted log odds
    ratio of ``term``: ``d_Cox = β/1.65``, its SE and CI scaled alike."""
    if result.link != "logit":
        raise EvalkitInputError(
            f"the Cox index needs a logit model (log odds ratios); this model uses {result.link!r}."
        )
    if term not in result.params.index:
        raise EvalkitInputError(f"term {term!r} is not a fixed effect of the model.")
    beta = float(result.params[term])
    se = float(result.std_errors[term])
    crit = float(stats.norm.ppf(0.5 + level / 2))
    d = beta / COX_DIVISOR
    s = se / COX_DIVISOR
    return StandardizedEffect(term, d, s, d - crit * s, d + crit * s, "cox", COX_DIVISOR, np.inf)


def predicted_probabilities(result: GLMMResults, term: str, *, level: float = 0.95) -> pd.DataFrame:
    """Average predicted probabilities with ``term`` set to 1 and to 0 for every fitted
    row, and their difference (the average marginal effect, in percentage points), on
    the conditional and the population-averaged scales.

    Returns a frame indexed by (scale, quantity) with columns ``estimate``,
    ``std_error``, ``ci_low``, ``ci_high``; quantities are ``"term = 1"``,
    ``"term = 0"`` and ``"difference (percentage points)"``.
    """
    if result.family != "binomial":
        raise EvalkitInputError("predicted probabilities need a binomial model.")
    spec = result.specification
    if spec is None:
        raise EvalkitInputError("this fit kept no data; refit it with glmm().")
    if term not in spec.data.columns:
        raise EvalkitInputError(f"{term!r} is not a column of the data the model was fitted to.")
    values = set(pd.unique(spec.data[term].iloc[spec.rows_used]))
    if not values <= {0, 1}:
        raise EvalkitInputError(
            f"{term!r} must be a 0/1 indicator for counterfactual predictions; it holds "
            f"{sorted(map(str, values))[:5]}."
        )
    rows = spec.data.iloc[spec.rows_used]
    designs = {
        value: np.asarray(spec.design_spec.get_model_matrix(rows.assign(**{term: value})))
        for value in (1, 0)
    }
    offset = np.empty(spec.nobs)
    offset[spec.rows.order] = spec.rows.offset
    z_rows = []
    for z in spec.rows.z:
        unsorted = np.empty_like(z)
        unsorted[spec.rows.order] = z
        z_rows.append(unsorted)
    n_theta = result.theta.size
    par = np.r_[result.theta, result.params.to_numpy()]

    def averages(p: np.ndarray) -> np.ndarray:
        theta, beta = p[:n_theta], p[n_theta:]
        factors = spec.layout.factors(theta)
        spread = np.sqrt(
            sum(np.sum((z @ t) ** 2, axis=1) for z, t in zip(z_rows, factors, strict=True))
        )
        out = []
        for value in (1, 0):
            eta = offset + designs[value] @ beta
            out.append(float(np.mean(spec.family.mean(eta))))
            out.append(float(np.mean(_integrated_mean(spec.family, eta, spread))))
        return np.array(out)  # cond1, pa1, cond0, pa0

    centre = averages(par)
    jacobian = np.empty((centre.size, par.size))
    for k in range(par.size):
        h = 1e-5 * max(1.0, abs(par[k]))
        up, down = par.copy(), par.copy()
        up[k] += h
        down[k] -= h
        jacobian[:, k] = (averages(up) - averages(down)) / (2 * h)
    cov = result.covariance_all
    crit = float(stats.norm.ppf(0.5 + level / 2))
    records = []
    for scale, (one, zero) in (("conditional", (0, 2)), ("population-averaged", (1, 3))):
        for label, weights, factor in (
            (f"{term} = 1", _unit(4, one), 1.0),
            (f"{term} = 0", _unit(4, zero), 1.0),
            ("difference (percentage points)", _unit(4, one) - _unit(4, zero), 100.0),
        ):
            estimate = factor * float(weights @ centre)
            gradient = factor * (weights @ jacobian)
            se = float(np.sqrt(max(gradient @ cov @ gradient, 0.0)))
            records.append((scale, label, estimate, se, estimate - crit * se, estimate + crit * se))
    frame = pd.DataFrame(
        records, columns=["scale", "quantity", "estimate", "std_error", "ci_low", "ci_high"]
    )
    return frame.set_index(["scale", "quantity"])


def _unit(size: int, index: int) -> np.ndarray:
    out = np.zeros(size)
    out[index] = 1.0
    return out


def _integrated_mean(family: Family, eta: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``E[g⁻¹(η + s·e)]`` for standard normal e, by Gauss–Hermite quadrature."""
    points, weights = np.polynomial.hermite.hermgauss(NODES)
    total = np.zeros_like(eta)
    for point, weight in zip(points, weights, strict=True):
        total += weight * family.mean(eta + np.sqrt(2.0) * spread * point)
    return total / np.sqrt(np.pi)
