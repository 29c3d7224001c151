"""The a path when the mediator's units are the highest clusters: a single-level
regression on one row per unit (lm() in R; lavaan's between-level regression by ML)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, ModelResults, collinear_terms, read_formula


def ols(formula: str, data: pd.DataFrame, *, method: str) -> ModelResults:
    """Least squares with t tests on ``n - p`` df; the residual variance divides by
    ``n - p`` (``method="REML"``, lm's) or ``n`` (``"ML"``, lavaan's)."""
    y_frame, x_frame = read_formula(formula).get_model_matrix(data)
    y = np.asarray(y_frame, dtype=np.float64).ravel()
    x = np.asarray(x_frame, dtype=np.float64)
    terms = list(x_frame.columns)
    n, p = x.shape
    if n <= p:
        raise EvalkitInputError(
            f"the mediator equation {formula!r} has {n} units for {p} coefficients; it "
            "needs more units than coefficients."
        )
    bad = collinear_terms(x, terms)
    if bad:
        raise EvalkitInputError(
            f"in the mediator equation {formula!r}, {', '.join(bad)} is a linear combination "
            "of the other terms (constant across units, or confounded); drop it."
        )
    q, r = np.linalg.qr(x)
    beta = np.linalg.solve(r, q.T @ y)
    resid = y - x @ beta
    sigma2 = float(resid @ resid) / (n if method == "ML" else n - p)
    r_inv = np.linalg.solve(r, np.eye(p))
    cov = sigma2 * (r_inv @ r_inv.T)
    index = pd.Index(terms)
    return ModelResults(
        params=pd.Series(beta, index=index),
        cov=pd.DataFrame(cov, index=index, columns=index),
        df=pd.Series(float(n - p), index=index),
        nobs=n,
        model=f"linear regression ({'ML' if method == 'ML' else 'least squares'})",
        backend="evalkit",
        facts={"sigma2": sigma2, "residual_df": n - p},
        formula=formula,
    )
