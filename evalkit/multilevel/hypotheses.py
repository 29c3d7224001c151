"""Tests of several fixed effects and likelihood-ratio tests of nested models."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, WaldTest
from evalkit.multilevel.glmm import GLMMResults
from evalkit.multilevel.kenward_roger import KenwardRoger
from evalkit.multilevel.satterthwaite import VarparInference
from evalkit.multilevel.spec import require_fit

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults


def contrast_matrix(
    result: LMMResults, terms: list[str] | None, contrasts: np.ndarray | None
) -> np.ndarray:
    """Rows selecting ``terms`` (or the given contrast matrix, checked)."""
    p = result.params.size
    if contrasts is not None:
        matrix = np.atleast_2d(np.asarray(contrasts, dtype=float))
        if matrix.shape[1] != p:
            raise EvalkitInputError(
                f"contrasts need {p} columns (one per fixed effect); got {matrix.shape[1]}."
            )
        return matrix
    if not terms:
        raise EvalkitInputError("give the terms to test (or a contrast matrix).")
    unknown = [t for t in terms if t not in result.params.index]
    if unknown:
        raise EvalkitInputError(
            f"terms not in the model: {', '.join(unknown)}; the fixed effects are {', '.join(result.params.index)}."
        )
    return np.eye(p)[[int(np.flatnonzero(result.params.index == t)[0]) for t in terms]]


def f_test(
    result: LMMResults, terms: list[str] | None = None, *, contrasts: np.ndarray | None = None
) -> WaldTest:
    """F test that several fixed effects (or contrasts ``L β``) are all zero.

    The denominator df follow the fit's ``df_method``: Satterthwaite's
    eigen-decomposition method (lmerTest's ``contestMD``), Kenward–Roger with its
    scaled F (pbkrtest's ``KRmodcomp``), the smallest containment df of the tested
    columns, ``n − p``, or a chi-square Wald test for ``"none"``.
    """
    require_fit(result, "f_test()")
    lmat = contrast_matrix(result, terms, contrasts)
    labels = tuple(terms) if terms else tuple(f"L{k + 1}" for k in range(lmat.shape[0]))
    beta = result.params.to_numpy()
    est = lmat @ beta
    inference = result.inference
    if isinstance(inference, KenwardRoger):
        cov = lmat @ inference.phi_adjusted @ lmat.T
        q = int(np.linalg.matrix_rank(lmat))
        wald = float(est @ np.linalg.solve(cov, est)) / q
        ddf, scaling = inference.df(lmat)
        f_stat = scaling * wald
        return WaldTest(
            labels, f_stat, q, ddf, float(stats.f.sf(f_stat, q, ddf)), "F (Kenward-Roger)"
        )
    cov = lmat @ result.cov.to_numpy() @ lmat.T
    if isinstance(inference, VarparInference):
        ddf, q = inference.df_multi(lmat)
        values, vectors = np.linalg.eigh(cov)
        keep = values > max(np.sqrt(np.finfo(float).eps) * values.max(), 0.0)
        rotated = vectors[:, keep].T @ est
        f_stat = float(np.sum(rotated**2 / values[keep])) / q
        return WaldTest(
            labels, f_stat, q, ddf, float(stats.f.sf(f_stat, q, ddf)), "F (Satterthwaite)"
        )
    q = int(np.linalg.matrix_rank(lmat))
    quad = float(est @ np.linalg.solve(cov, est))
    involved = np.any(lmat != 0, axis=0)
    ddf = float(np.min(result.df.to_numpy()[involved]))
    if np.isinf(ddf):
        return WaldTest(labels, quad, q, np.inf, float(stats.chi2.sf(quad, q)), "chi2")
    return WaldTest(
        labels, quad / q, q, ddf, float(stats.f.sf(quad / q, q, ddf)), f"F ({result.df_method})"
    )


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """A likelihood-ratio test of nested models.

    ``p_value`` is the usual chi-square p-value. When the models differ in their
    random effects the null puts a variance on its boundary and that p-value is
    conservative; ``p_value_mixture`` is then the 50:50 mixture of χ²(df − 1) and
    χ²(df) (Self & Liang 1987; Stram & Lee 1994), exact for adding one random effect
    (with its covariances) to a model.
    """

    chisq: float
    df: int
    p_value: float
    p_value_mixture: float | None
    deviance_smaller: float
    deviance_larger: float
    refitted: bool
    note: str

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the test."""
        return pd.DataFrame([self.__dict__])


def lrt(smaller: LMMResults | GLMMResults, larger: LMMResults | GLMMResults) -> LikelihoodRatioTest:
    """Likelihood-ratio test of two nested fits to the same rows.

    Fits that differ in their fixed effects are compared on ML deviances: REML fits
    are refitted by ML first (as lme4's ``anova`` does) and ``refitted`` says so.
    Fits with the same fixed effects are compared on what they were fitted by.
    Two :func:`~evalkit.multilevel.glmm` fits are compared on their deviances
    ``−2 log L`` (both Laplace, or both quadrature with the same nodes).
    """
    require_fit(smaller, "lrt()")
    require_fit(larger, "lrt()")
    if smaller.nobs != larger.nobs:
        raise EvalkitInputError(
            f"the models were fitted to different rows ({smaller.nobs} and {larger.nobs}); "
            "a likelihood-ratio test needs the same data."
        )
    if isinstance(smaller, GLMMResults) or isinstance(larger, GLMMResults):
        return _glmm_lrt(smaller, larger)
    same_fixed = list(smaller.params.index) == list(larger.params.index)
    refitted = False
    if not same_fixed and "REML" in (smaller.method, larger.method):
        smaller = smaller.refit(method="ML", df_method="none")
        larger = larger.refit(method="ML", df_method="none")
        refitted = True
    if smaller.method != larger.method:
        raise EvalkitInputError("compare two REML fits or two ML fits, not one of each.")
    key = "reml_criterion" if smaller.method == "REML" else "deviance"
    d0, d1 = float(smaller.facts[key]), float(larger.facts[key])
    k0 = smaller.params.size + smaller.theta.size
    k1 = larger.params.size + larger.theta.size
    test = _deviance_test(d0, d1, k0, k1, smaller.theta.size != larger.theta.size, refitted)
    errors = [
        f.facts["monte_carlo"]["deviance_se"] for f in (smaller, larger) if "monte_carlo" in f.facts
    ]
    if errors:
        se = float(np.sqrt(np.sum(np.square(errors))))
        test = replace(
            test,
            note=f"{test.note}; the deviances of the iterative (approximate) fits are Monte "
            f"Carlo estimates: the difference has an SE of at most {se:.2g}",
        )
    return test


def _glmm_lrt(
    smaller: LMMResults | GLMMResults, larger: LMMResults | GLMMResults
) -> LikelihoodRatioTest:
    if not (isinstance(smaller, GLMMResults) and isinstance(larger, GLMMResults)):
        raise EvalkitInputError("compare two glmm() fits (or two lmm() fits), not one of each.")
    for name in ("family", "link", "nagq"):
        if getattr(smaller, name) != getattr(larger, name):
            raise EvalkitInputError(
                f"the fits differ in {name} ({getattr(smaller, name)!r} vs "
                f"{getattr(larger, name)!r}); their likelihoods are not comparable."
            )
    d0, d1 = float(smaller.facts["deviance"]), float(larger.facts["deviance"])
    k0 = smaller.params.size + smaller.theta.size
    k1 = larger.params.size + larger.theta.size
    return _deviance_test(d0, d1, k0, k1, smaller.theta.size != larger.theta.size, False)


def _deviance_test(
    d0: float, d1: float, k0: int, k1: int, random_differs: bool, refitted: bool
) -> LikelihoodRatioTest:
    """Chi-square test of the deviance difference (with the boundary mixture when the
    random parts differ)."""
    df = k1 - k0
    if df <= 0:
        raise EvalkitInputError(
            f"the second model must have more parameters than the first ({k1} vs {k0})."
        )
    chisq = max(d0 - d1, 0.0)
    p_value = float(stats.chi2.sf(chisq, df))
    mixture = None
    note = "chi-square reference distribution"
    if random_differs:
        lower = stats.chi2.sf(chisq, df - 1) if df > 1 else float(chisq <= 0)
        mixture = 0.5 * float(lower) + 0.5 * p_value
        note = (
            "the models differ in random effects: the chi-square p-value is conservative because the "
            "null variance is on its boundary; p_value_mixture uses a 50:50 mixture of chi-square(df-1) and chi-square(df)"
        )
    return LikelihoodRatioTest(chisq, df, p_value, mixture, d0, d1, refitted, note)
