"""Complete and quasi-complete separation of a binary (or count) outcome by the fixed
effects, found by linear programming (Albert & Anderson 1984; Konis 2007).

The maximum likelihood estimate of a logistic (or probit) regression does not exist
when some direction b ≠ 0 has ``xᵢᵀb ≥ 0`` for every row with only successes,
``xᵢᵀb ≤ 0`` for every row with only failures and ``xᵢᵀb = 0`` for rows with both:
the likelihood then keeps rising as β moves along b. For Poisson counts the same holds
with ``xᵢᵀb ≤ 0`` on the zero counts and ``= 0`` on the positive ones. The program
maximises the total separating margin with b in a box; a positive optimum means
separation, and the terms with non-zero entries in b are those whose estimates
diverge. Random effects do not rescue the fixed effects from it (glmer reports huge
coefficients and SEs).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from evalkit.multilevel.families import Family

MARGIN_TOL = 1e-7


def separated_terms(
    x: np.ndarray, y: np.ndarray, trials: np.ndarray, family: Family, terms: tuple[str, ...]
) -> list[str]:
    """Names of the terms along which the outcome is separated (empty if none)."""
    if family.name == "binomial":
        upper = y >= trials  # only successes: x'b ≥ 0
        lower = y <= 0  # only failures: x'b ≤ 0
    else:
        upper = np.zeros(y.size, dtype=bool)
        lower = y <= 0
    both = ~(upper | lower)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
    design = x / scale
    sign = np.where(upper, 1.0, -1.0)
    one_sided = ~both
    # maximise Σ sign·x'b over one-sided rows  ⇔  minimise −Σ …
    objective = -(sign[one_sided, None] * design[one_sided]).sum(axis=0)
    result = optimize.linprog(
        objective,
        A_ub=-(sign[one_sided, None] * design[one_sided]) if one_sided.any() else None,
        b_ub=np.zeros(int(one_sided.sum())) if one_sided.any() else None,
        A_eq=design[both] if both.any() else None,
        b_eq=np.zeros(int(both.sum())) if both.any() else None,
        bounds=[(-1.0, 1.0)] * x.shape[1],
        method="highs",
    )
    if result.status != 0 or -result.fun <= MARGIN_TOL:
        return []
    direction = np.asarray(result.x)
    return [term for term, value in zip(terms, direction, strict=True) if abs(value) > 1e-6]
