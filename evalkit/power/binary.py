"""Minimum detectable effect and power for cluster-randomised trials with a binary
outcome (a student reaching proficiency), on the log-odds scale.

The treatment effect is the difference between arms in the clusters' mean logits. A
cluster of ``n`` students whose conditional success probability is π has a sample
logit with variance ``≈ 1/(nπ(1 − π))`` around its true logit (delta method), which
itself varies across clusters with the random-intercept variance τ. With a share ``p``
of the ``J`` clusters treated (two levels) the variance of the estimated log odds
ratio is

``Var(β̂) ≈ (τ₂ + 1/(nφ_T))/(pJ) + (τ₂ + 1/(nφ_C))/((1 − p)J)``,  ``φ = π(1 − π)``

with π_T and π_C the arms' probabilities in an average cluster — for p = ½ the
variance Optimal Design uses for binary outcomes (Spybrook et al. 2011, *Optimal
Design Plus* manual, ch. 7; Moerbeek & Teerenstra 2016, ch. 6). Three levels
(schools randomised, ``J`` teachers per school, ``n`` students per teacher, variances
τ₃ between schools and τ₂ between teachers) replace each arm's term by
``(τ₃ + τ₂/J + 1/(Jnφ))/(share·K)``. The test uses a t reference with ``J − 2``
(``K − 2``) degrees of freedom and its power the non-central t, as PowerUp! does for
continuous outcomes. Because φ_T depends on the effect, the MDES is the fixed point of
``δ = M·SE(δ)``.

The approximation is first order; :func:`evalkit.power.simulate_power` with
``SimulationDesign(outcome="binary")`` fits the planned GLMM to simulated trials
instead, and the two are compared in the docs and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

from evalkit.core import EvalkitInputError, check_option

BinaryDesign = Literal["cra2", "cra3"]
COX = 1.65


@dataclass(frozen=True)
class BinaryPowerAnalysis:
    """A power calculation for a binary outcome.

    ``log_odds_ratio`` is the detectable (``solved == "mdes"``) or given effect,
    ``cox_index`` the same effect in WWC units (÷ 1.65), ``treated_rate`` the treated
    arm's probability in an average cluster.
    """

    design: str
    solved: str
    base_rate: float
    treated_rate: float
    log_odds_ratio: float
    cox_index: float
    power: float
    df: float
    std_error: float
    alpha: float
    two_tailed: bool
    parameters: dict[str, float] = field(default_factory=dict)


def _check(
    design: str, base_rate: float, n: int, J: int, K: int | None, tau2: float, tau3: float,
    p: float, alpha: float,
) -> tuple[int, int]:  # fmt: skip
    """Check the inputs; return K (0 for two levels) and the number of randomised clusters."""
    check_option("design", design, BinaryDesign)
    if design == "cra3" and K is None:
        raise EvalkitInputError("design='cra3' needs K (schools).")
    k = K if K is not None else 0
    clusters = J if design == "cra2" else k
    if not 0 < base_rate < 1:
        raise EvalkitInputError(f"base_rate must lie in (0, 1), got {base_rate!r}.")
    if not 0 < p < 1:
        raise EvalkitInputError(f"p (share treated) must lie in (0, 1), got {p!r}.")
    if not 0 < alpha < 1:
        raise EvalkitInputError(f"alpha must lie in (0, 1), got {alpha!r}.")
    if tau2 < 0 or tau3 < 0:
        raise EvalkitInputError("tau2 and tau3 are variances on the logit scale; they must be ≥ 0.")
    if n < 1:
        raise EvalkitInputError(f"n (students per cluster) must be at least 1, got {n!r}.")
    if clusters < 3:
        raise EvalkitInputError(
            f"{'J' if design == 'cra2' else 'K'} = {clusters}: at least 3 randomised clusters are needed."
        )
    return k, clusters


def _std_error(
    log_or: float, base_rate: float, design: str, n: int, j: int, k: int, tau2: float,
    tau3: float, p: float,
) -> float:  # fmt: skip
    control = base_rate
    treated = float(special.expit(special.logit(base_rate) + log_or))
    variance = 0.0
    for share, rate in ((p, treated), (1 - p, control)):
        phi = rate * (1 - rate)
        if design == "cra2":
            variance += (tau2 + 1.0 / (n * phi)) / (share * j)
        else:
            variance += (tau3 + tau2 / j + 1.0 / (j * n * phi)) / (share * k)
    return float(np.sqrt(variance))


def _multiplier(df: float, alpha: float, power: float, two_tailed: bool) -> float:
    t1 = stats.t.ppf(1 - alpha / 2 if two_tailed else 1 - alpha, df)
    return float(t1 + stats.t.ppf(power, df))


def mdes_binary(
    design: BinaryDesign,
    *,
    base_rate: float,
    n: int,
    J: int,
    K: int | None = None,
    tau2: float,
    tau3: float = 0.0,
    p: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.80,
    two_tailed: bool = True,
) -> BinaryPowerAnalysis:
    """Minimum detectable log odds ratio (and Cox index) of a cluster-randomised trial
    with a binary outcome.

    Parameters
    ----------
    design
        ``"cra2"``: ``J`` clusters (teachers or schools) of ``n`` students randomised;
        ``"cra3"``: ``K`` schools randomised, ``J`` teachers per school, ``n`` students
        per teacher.
    base_rate
        The comparison arm's probability of success in an average cluster.
    tau2, tau3
        Random-intercept variances on the logit scale (teacher level, school level).
        A latent-scale ICC ρ converts as ``τ = ρ·(π²/3)/(1 − Σρ)``.

    Examples
    --------
    >>> result = mdes_binary("cra2", base_rate=0.4, n=20, J=40, tau2=0.3)
    >>> round(result.log_odds_ratio, 3), round(result.treated_rate, 3)
    (0.647, 0.56)
    """
    k, clusters = _check(design, base_rate, n, J, K, tau2, tau3, p, alpha)
    df = float(clusters - 2)
    multiplier = _multiplier(df, alpha, power, two_tailed)

    def gap(log_or: float) -> float:
        return log_or - multiplier * _std_error(log_or, base_rate, design, n, J, k, tau2, tau3, p)

    upper = 1.0
    while gap(upper) < 0:
        upper *= 2
        if upper > 50:
            raise EvalkitInputError("no detectable effect: the design is too small.")
    log_or = float(optimize.brentq(gap, 0.0, upper, xtol=1e-12))
    se = _std_error(log_or, base_rate, design, n, J, k, tau2, tau3, p)
    return BinaryPowerAnalysis(
        design, "mdes", base_rate, float(special.expit(special.logit(base_rate) + log_or)),
        log_or, log_or / COX, power, df, se, alpha, two_tailed,
        {"n": n, "J": J, "K": float(k), "tau2": tau2, "tau3": tau3, "p": p},
    )  # fmt: skip


def power_binary(
    design: BinaryDesign,
    *,
    log_odds_ratio: float,
    base_rate: float,
    n: int,
    J: int,
    K: int | None = None,
    tau2: float,
    tau3: float = 0.0,
    p: float = 0.5,
    alpha: float = 0.05,
    two_tailed: bool = True,
) -> BinaryPowerAnalysis:
    """Power to detect a log odds ratio (non-central t with the clusters' df)."""
    k, clusters = _check(design, base_rate, n, J, K, tau2, tau3, p, alpha)
    if not log_odds_ratio > 0:
        raise EvalkitInputError(f"log_odds_ratio must be positive, got {log_odds_ratio!r}.")
    df = float(clusters - 2)
    se = _std_error(log_odds_ratio, base_rate, design, n, J, k, tau2, tau3, p)
    ncp = log_odds_ratio / se
    if two_tailed:
        crit = stats.t.ppf(1 - alpha / 2, df)
        value = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    else:
        value = float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, ncp))
    return BinaryPowerAnalysis(
        design, "power", base_rate,
        float(special.expit(special.logit(base_rate) + log_odds_ratio)), log_odds_ratio,
        log_odds_ratio / COX, value, df, se, alpha, two_tailed,
        {"n": n, "J": J, "K": float(k), "tau2": tau2, "tau3": tau3, "p": p},
    )  # fmt: skip
