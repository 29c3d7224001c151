"""Observed-information covariance of a two-level random-intercept equation fitted by
ML — the standard errors a two-level SEM (lavaan's default ``information =
"observed"``) reports.

lme4 and evalkit give fixed effects the covariance ``(X'V⁻¹X)⁻¹``, the inverse of the
*expected* information; the observed information adds the mean–variance cross terms
``X'V⁻¹(∂V/∂ψ)V⁻¹(y − Xβ)``, which are zero in expectation but not in a sample (on High
School and Beyond they move the SEs by about 2e-4 relative). The log-likelihood of a
random-intercept model in (β, τ², σ²) is written out per cluster, and its Hessian at
the ML estimates is taken by central differences (relative step 1e-4, error O(1e-8)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, ModelResults


def _loglik(
    y: np.ndarray, x: np.ndarray, codes: np.ndarray, sizes: np.ndarray, params: np.ndarray
) -> float:
    p = x.shape[1]
    beta, tau2, sigma2 = params[:p], params[p], params[p + 1]
    r = y - x @ beta
    sum_r = np.bincount(codes, weights=r, minlength=sizes.size)
    sum_r2 = np.bincount(codes, weights=r * r, minlength=sizes.size)
    lam = sigma2 + sizes * tau2
    quad = (sum_r2 - tau2 * sum_r**2 / lam) / sigma2
    logdet = (sizes - 1) * np.log(sigma2) + np.log(lam)
    return float(-0.5 * np.sum(sizes * np.log(2.0 * np.pi) + logdet + quad))


def observed_covariance(fit: ModelResults) -> pd.DataFrame:
    """Fixed-effect covariance from the observed information of a two-level
    random-intercept model fitted by ML (a single-level fit is returned unchanged)."""
    frame = getattr(fit, "frame", None)
    if frame is None:
        return fit.cov
    if getattr(fit, "method", "") != "ML":
        raise EvalkitInputError("information='observed' needs method='ML' (as a two-level SEM).")
    if frame.n_levels != 1 or frame.z[0].shape[1] != 1 or not np.all(frame.z[0] == 1.0):
        raise EvalkitInputError(
            "information='observed' is available for two-level designs with random "
            "intercepts (a two-level SEM's); this equation has more levels or random slopes."
        )
    vc = fit.variance_components
    assert vc is not None
    tau2 = float(next(iter(vc.intercept_variances().values())))
    sigma2 = float(getattr(fit, "sigma2"))  # noqa: B009  (LMMResults attribute)
    codes = np.asarray(frame.codes[0])
    sizes = np.bincount(codes).astype(np.float64)
    x, y = np.asarray(frame.x), np.asarray(frame.y).ravel()
    point = np.r_[fit.params.to_numpy(), tau2, sigma2]
    k = point.size
    step = 1e-4 * np.maximum(np.abs(point), 1e-2)
    hessian = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i], ej[j] = step[i], step[j]
            total = 0.0
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                total += si * sj * _loglik(y, x, codes, sizes, point + si * ei + sj * ej)
            hessian[i, j] = hessian[j, i] = total / (4.0 * step[i] * step[j])
    p = fit.params.size
    cov = np.linalg.inv(-hessian)[:p, :p]
    return pd.DataFrame(cov, index=fit.params.index, columns=fit.params.index)
