"""Response distributions and links of generalized linear mixed models.

Each family gives, per row and for the linear predictor η: the mean, the log
density (complete, with the binomial coefficient and ``log y!``, so that the
log-likelihood is the one glmer's ``logLik`` reports), the score ``∂ log p/∂η`` and
the Fisher weight ``E[−∂² log p/∂η²] = m·(∂μ/∂η)²/V(μ)``. With a canonical link
(logit, log) the Fisher weight is the observed one; with probit it is what lme4's
PIRLS and its Laplace log-determinant use (McCullagh & Nelder 1989, §2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

FamilyName = Literal["binomial", "poisson"]
LinkName = Literal["logit", "probit", "cloglog", "log"]

LINKS: dict[str, tuple[str, ...]] = {
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
}
"""The links each family accepts; the first is its default."""

ETA_LIMIT = 30.0
"""|η| beyond which a binomial mean is held (R's ``binomial()`` thresholds the logit
at ±30 the same way), so that no weight underflows to zero."""


LOG_RATE_LIMIT = 300.0
"""Largest log rate evaluated (beyond it exp overflows); only a wild trial point of the
optimiser gets there, and its deviance is then huge, as it should be."""


@dataclass(frozen=True)
class RowTerms:
    """What one PIRLS step needs from the rows at η."""

    loglik: np.ndarray
    score: np.ndarray
    weight: np.ndarray
    weight_slope: np.ndarray | None = None
    """``∂w/∂η`` (canonical links only; the exact gradient needs it)."""


@dataclass(frozen=True)
class Family:
    """A response distribution with its link.

    ``y`` is the outcome (0/1, a count of successes out of ``trials``, or a count);
    ``trials`` is 1 for a binary outcome and for Poisson rows.
    """

    name: FamilyName
    link: LinkName

    @property
    def canonical(self) -> bool:
        """Whether the link is canonical (Fisher and observed weights coincide)."""
        return (self.name, self.link) in {("binomial", "logit"), ("poisson", "log")}

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """The mean per trial: a probability (binomial) or a rate (Poisson)."""
        if self.link == "log":
            return np.exp(eta)
        eta = np.clip(eta, -ETA_LIMIT, ETA_LIMIT)
        if self.link == "logit":
            return special.expit(eta)
        if self.link == "probit":
            return special.ndtr(eta)
        return -np.expm1(-np.exp(eta))

    def constant(self, y: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """The part of each row's log density that does not depend on η
        (``log C(trials, y)`` or ``−log y!``), computed once per fit."""
        if self.name == "poisson":
            return -special.gammaln(y + 1.0)
        return _log_choose(trials, y)

    def terms(
        self, eta: np.ndarray, y: np.ndarray, trials: np.ndarray, constant: np.ndarray | None = None
    ) -> RowTerms:
        """Log density, score and Fisher weight of every row at ``eta`` (``constant``:
        :meth:`constant`, when the caller has it)."""
        if constant is None:
            constant = self.constant(y, trials)
        if self.name == "poisson":
            eta = np.minimum(eta, LOG_RATE_LIMIT)
            mu = np.exp(eta)
            loglik = y * eta - mu + constant
            return RowTerms(loglik, y - mu, mu, mu)
        eta = np.clip(eta, -ETA_LIMIT, ETA_LIMIT)
        if self.link == "logit":
            return _logit_terms(eta, y, trials, constant)
        log_p, log_q, dmu, p, q = self._binomial_parts(eta)
        loglik = constant + y * log_p + (trials - y) * log_q
        variance = p * q
        score = (y - trials * p) * dmu / variance
        weight = trials * dmu * dmu / variance
        return RowTerms(loglik, score, weight)

    def _binomial_parts(
        self, eta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """log p, log(1 − p), ∂p/∂η, p and 1 − p, each computed without cancellation."""
        if self.link == "logit":
            p = special.expit(eta)
            q = special.expit(-eta)
            return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta), p * q, p, q
        if self.link == "probit":
            p = special.ndtr(eta)
            q = special.ndtr(-eta)
            dmu = np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)
            return special.log_ndtr(eta), special.log_ndtr(-eta), dmu, p, q
        # complementary log-log: p = 1 − exp(−e^η)
        rate = np.exp(eta)
        q = np.exp(-rate)
        p = -np.expm1(-rate)
        return np.log(p), -rate, rate * q, p, q


def _logit_terms(
    eta: np.ndarray, y: np.ndarray, trials: np.ndarray, constant: np.ndarray
) -> RowTerms:
    """The logit case with one exponential and one log1p per row:
    ``log p(y) = c + yη − m(max(η, 0) + log(1 + e^{−|η|}))``, ``s = y − mp``,
    ``w = m p(1 − p)``."""
    small = np.abs(eta)
    np.negative(small, out=small)
    np.exp(small, out=small)  # e^{−|η|}
    loglik = np.log1p(small)
    loglik += np.maximum(eta, 0.0)
    loglik *= -trials
    loglik += y * eta
    loglik += constant
    p = 1.0 + small
    np.reciprocal(p, out=p)  # 1/(1 + e^{−|η|})
    q = small * p  # e^{−|η|}/(1 + e^{−|η|})
    negative = eta < 0
    p[negative], q[negative] = q[negative], p[negative]
    weight = trials * p
    weight *= q
    q -= p
    q *= weight  # ∂w/∂η = w(1 − 2p)
    p *= -trials
    p += y  # score y − mp
    return RowTerms(loglik, p, weight, q)


def _log_choose(trials: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log C(trials, y)`` (zero for binary rows)."""
    return (
        special.gammaln(trials + 1.0) - special.gammaln(y + 1.0) - special.gammaln(trials - y + 1.0)
    )
