"""Small-sample bias corrections for standardised mean differences."""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from evalkit.core import FloatArray, SmallSampleCorrection, check_option


def small_sample_factor(df: FloatArray, *, correction: SmallSampleCorrection = "wwc") -> FloatArray:
    """Hedges' bias-correction factor for an SMD with ``df`` degrees of freedom.

    Parameters
    ----------
    df
        Degrees of freedom of the standardiser: ``N - 2`` for two groups, Hedges'
        ``h`` for clustered designs.
    correction
        ``"wwc"``: the approximation ``1 - 3 / (4 df - 1)`` used by the What Works
        Clearinghouse (for ``df = N - 2`` this is ``1 - 3 / (4N - 9)``; WWC
        Procedures Handbook v5.0, Appendix E). ``"exact"``: the gamma-function
        form ``J(m) = Γ(m/2) / (sqrt(m/2) Γ((m-1)/2))`` of Hedges (1981), which
        metafor's ``escalc(measure="SMD")`` uses. ``"none"``: 1 (Cohen's d).

    Returns
    -------
    numpy.ndarray
        The factor, one per entry of ``df``.

    Examples
    --------
    >>> import numpy as np
    >>> float(small_sample_factor(np.array([4.0]))[0])
    0.8
    """
    check_option("correction", correction, SmallSampleCorrection)
    df = np.asarray(df, dtype=np.float64)
    if correction == "wwc":
        return 1.0 - 3.0 / (4.0 * df - 1.0)
    if correction == "exact":
        half = df / 2.0
        return np.exp(gammaln(half) - 0.5 * np.log(half) - gammaln(half - 0.5))
    return np.ones_like(df)
