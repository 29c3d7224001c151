"""Power for the indirect effect of a cluster-randomised coaching study.

Everything is standardised: the outcome has total variance 1 with intraclass
correlations ``icc2`` (teachers) and ``icc3`` (schools); the mediator has variance 1 at
its own level (``mediator_icc3`` of it between schools in a 3-2-1 design); ``a`` is the
treatment's effect on the mediator in mediator SDs, ``b`` the outcome SDs per mediator
SD, ``direct`` the direct effect in outcome SDs.

**2-2-1** (J teachers randomised, share p coached, n students each; Kelcey, Dong,
Spybrook & Shen 2017, Multivariate Behavioral Research 52(6), 699-719, as PowerUp!-
Mediator computes it): with σ²_M = 1 − R²_M − p(1−p)a² the mediator's residual
variance, ``Var(â) = σ²_M / (p(1−p)J)`` and
``Var(b̂) = [icc2 − icc2·R²_2 − p(1−p)(ab + c')² − b²σ²_M + (1 − icc2)(1 − R²_1)/n] / (Jσ²_M)``,
both on J − 4 df.

**3-2-1** (K schools randomised, J teachers each, n students per teacher; the b path is
the between-school coefficient, as :func:`evalkit.mediation.mediation` estimates it):
the same algebra on school means, with
``σ²_M̄ = mediator_icc3(1 − R²_M) − p(1−p)a² + (1 − mediator_icc3)/J`` and the school-mean
outcome variance ``icc3(1 − R²_3) + icc2/J + (1 − icc2 − icc3)(1 − R²_1)/(nJ)`` in place
of level-2 terms, on K − 4 df (derived here on the pattern of Kelcey, Spybrook & Dong
2019, Prevention Science 20(3), 407-418, and checked against simulated trials in the
tests).

The indirect effect is tested three ways: the **joint significance** test (a and b each
significant; the product of the two t-test powers), the first-order **Sobel** z test,
and the **Monte Carlo** interval test (Preacher & Selig 2012) — the interval that
:func:`evalkit.mediation.mediation` reports — by nested simulation of the estimates and
their intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, stats

from evalkit.core import EvalkitInputError, check_option

MediationDesignName = Literal["2-2-1", "3-2-1"]
MediationTest = Literal["joint", "sobel", "monte_carlo"]


@dataclass(frozen=True)
class MediationPower:
    """Power of the tests of a, b and the indirect effect a·b."""

    design: str
    a: float
    b: float
    direct: float
    std_error_a: float
    std_error_b: float
    df: float
    power_a: float
    power_b: float
    power_joint: float
    power_sobel: float
    power_monte_carlo: float
    alpha: float

    @property
    def indirect(self) -> float:
        """The indirect effect a·b (outcome SDs)."""
        return self.a * self.b


@dataclass(frozen=True)
class _Layout:
    units: float  # randomised units: J (2-2-1) or K (3-2-1)
    var_mediator: float  # residual variance of the mediator (or its school means)
    var_outcome: float  # variance of the outcome's randomised-level means given covariates


def _check_share(name: str, value: float, *, closed: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise EvalkitInputError(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value!r}.")


def _layout(
    design: str,
    *,
    a: float,
    n: int,
    J: int,
    K: int | None,
    icc2: float,
    icc3: float,
    mediator_icc3: float,
    r2_mediator: float,
    r2_outcome1: float,
    r2_outcome2: float,
    r2_outcome3: float,
    p: float,
) -> _Layout:
    for name, value in (("n", n), ("J", J)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise EvalkitInputError(f"{name} must be a positive integer, got {value!r}.")
    for name, share in (
        ("icc2", icc2),
        ("icc3", icc3),
        ("mediator_icc3", mediator_icc3),
        ("r2_mediator", r2_mediator),
        ("r2_outcome1", r2_outcome1),
        ("r2_outcome2", r2_outcome2),
        ("r2_outcome3", r2_outcome3),
    ):
        _check_share(name, share)
    if not 0.0 < p < 1.0:
        raise EvalkitInputError(f"p (the share treated) must lie in (0, 1), got {p!r}.")
    pq = p * (1.0 - p)
    if design == "2-2-1":
        if K is not None or icc3 or mediator_icc3:
            raise EvalkitInputError(
                "a 2-2-1 design has teachers as its clusters: leave K, icc3 and "
                "mediator_icc3 out (or plan a 3-2-1 design)."
            )
        if J < 5:
            raise EvalkitInputError(f"J = {J}: the tests of a and b have J - 4 df; use J >= 5.")
        var_m = 1.0 - r2_mediator - pq * a * a
        var_y = icc2 * (1.0 - r2_outcome2) + (1.0 - icc2) * (1.0 - r2_outcome1) / n
        return _Layout(float(J), var_m, var_y)
    if K is None or isinstance(K, bool) or not isinstance(K, int | np.integer) or K < 5:
        raise EvalkitInputError(f"a 3-2-1 design needs K >= 5 randomised schools, got {K!r}.")
    if icc2 + icc3 >= 1.0:
        raise EvalkitInputError(f"icc2 + icc3 must be below 1, got {icc2 + icc3:.3g}.")
    var_m = mediator_icc3 * (1.0 - r2_mediator) - pq * a * a + (1.0 - mediator_icc3) / J
    var_y = (
        icc3 * (1.0 - r2_outcome3)
        + icc2 * (1.0 - r2_outcome2) / J
        + (1.0 - icc2 - icc3) * (1.0 - r2_outcome1) / (n * J)
    )
    return _Layout(float(K), var_m, var_y)


def _std_errors(
    layout: _Layout, a: float, b: float, direct: float, p: float
) -> tuple[float, float]:
    pq = p * (1.0 - p)
    if layout.var_mediator <= 0:
        raise EvalkitInputError(
            "the design is not feasible: the treatment (a) and covariates (r2_mediator) would "
            "explain more than all of the mediator's variance at the randomised level."
        )
    residual = layout.var_outcome - pq * (a * b + direct) ** 2 - b * b * layout.var_mediator
    if residual <= 0:
        raise EvalkitInputError(
            "the design is not feasible: the treatment and the mediator would explain more "
            "than the outcome's variance at the randomised level (lower a, b or direct, or "
            "raise icc2/icc3)."
        )
    se_a = np.sqrt(layout.var_mediator / (pq * layout.units))
    se_b = np.sqrt(residual / (layout.units * layout.var_mediator))
    return float(se_a), float(se_b)


def _t_power(effect: float, se: float, df: float, alpha: float) -> float:
    """Two-sided power of a t test (non-central t); the far tail, which scipy's
    non-central t returns as NaN for large non-centrality, is taken as zero."""
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    ncp = abs(effect) / se
    far = float(stats.nct.cdf(-crit, df, ncp))
    return float(stats.nct.sf(crit, df, ncp)) + (far if np.isfinite(far) else 0.0)


def _monte_carlo_power(
    a: float, b: float, se_a: float, se_b: float, alpha: float, rng: np.random.Generator
) -> float:
    """Share of simulated studies whose Monte Carlo interval of a·b excludes zero
    (2,000 studies × 2,000 draws each)."""
    studies, draws = 2000, 2000
    a_hat = rng.normal(a, se_a, studies)[:, None]
    b_hat = rng.normal(b, se_b, studies)[:, None]
    products = (a_hat + se_a * rng.standard_normal((studies, draws))) * (
        b_hat + se_b * rng.standard_normal((studies, draws))
    )
    low, high = np.quantile(products, [alpha / 2.0, 1.0 - alpha / 2.0], axis=1)
    return float(np.mean((low > 0) | (high < 0)))


def power_mediation(
    design: MediationDesignName,
    *,
    a: float,
    b: float,
    direct: float = 0.0,
    n: int,
    J: int,
    K: int | None = None,
    icc2: float,
    icc3: float = 0.0,
    mediator_icc3: float = 0.0,
    r2_mediator: float = 0.0,
    r2_outcome1: float = 0.0,
    r2_outcome2: float = 0.0,
    r2_outcome3: float = 0.0,
    p: float = 0.5,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> MediationPower:
    """Power to detect the indirect effect a·b in a 2-2-1 or 3-2-1 cluster-randomised
    design (two-sided tests at ``alpha``).

    Parameters
    ----------
    design
        ``"2-2-1"``: J teachers randomised (share ``p``), n students each.
        ``"3-2-1"``: K schools randomised, J teachers per school, n students per teacher.
    a, b, direct
        Standardised paths (see the module notes).
    icc2, icc3
        Outcome intraclass correlations at the teacher and school levels.
    mediator_icc3
        Share of the teacher-level mediator's variance between schools (3-2-1).
    r2_mediator, r2_outcome1, r2_outcome2, r2_outcome3
        Variance shares explained by covariates: of the mediator at the randomised level,
        and of the outcome at each level.
    seed
        Seed of the Monte Carlo interval test's nested simulation.

    Examples
    --------
    >>> result = power_mediation("2-2-1", a=0.5, b=0.3, n=20, J=80, icc2=0.2)
    >>> round(result.std_error_a, 4), round(result.power_joint, 3)
    (0.2165, 0.626)
    """
    check_option("design", design, MediationDesignName)
    if not 0.0 < alpha < 1.0:
        raise EvalkitInputError(f"alpha must lie in (0, 1), got {alpha!r}.")
    layout = _layout(
        design,
        a=a,
        n=n,
        J=J,
        K=K,
        icc2=icc2,
        icc3=icc3,
        mediator_icc3=mediator_icc3,
        r2_mediator=r2_mediator,
        r2_outcome1=r2_outcome1,
        r2_outcome2=r2_outcome2,
        r2_outcome3=r2_outcome3,
        p=p,
    )
    se_a, se_b = _std_errors(layout, a, b, direct, p)
    df = layout.units - 4.0
    power_a, power_b = _t_power(a, se_a, df, alpha), _t_power(b, se_b, df, alpha)
    sobel_se = np.sqrt(a * a * se_b * se_b + b * b * se_a * se_a)
    z = a * b / sobel_se if sobel_se > 0 else 0.0
    crit = stats.norm.ppf(1.0 - alpha / 2.0)
    sobel = float(stats.norm.sf(crit - z) + stats.norm.cdf(-crit - z))
    monte_carlo = _monte_carlo_power(a, b, se_a, se_b, alpha, np.random.default_rng(seed))
    return MediationPower(
        design=design,
        a=a,
        b=b,
        direct=direct,
        std_error_a=se_a,
        std_error_b=se_b,
        df=df,
        power_a=power_a,
        power_b=power_b,
        power_joint=power_a * power_b,
        power_sobel=sobel,
        power_monte_carlo=monte_carlo,
        alpha=alpha,
    )


def mdes_mediation(
    design: MediationDesignName,
    *,
    a: float,
    power: float = 0.8,
    test: MediationTest = "joint",
    **params: float | int | None,
) -> MediationPower:
    """The smallest b (given a) whose indirect effect a·b the chosen test detects with
    the target power; the returned analysis is at that b (``.indirect`` is the minimum
    detectable indirect effect). Other parameters as :func:`power_mediation`."""
    check_option("test", test, MediationTest)
    if not 0.0 < power < 1.0:
        raise EvalkitInputError(f"power must lie in (0, 1), got {power!r}.")
    attribute = f"power_{test}"

    def gap(b: float) -> float:
        analysis = power_mediation(design, a=a, b=b, **params)  # type: ignore[arg-type]
        return float(getattr(analysis, attribute)) - power

    low, high = 1e-6, 0.01
    while True:
        try:
            if gap(high) >= 0:
                break
        except EvalkitInputError:
            high = None  # type: ignore[assignment]
            break
        low, high = high, high * 1.5
    if high is None:
        limit = power_mediation(design, a=a, b=low, **params).power_a
        raise EvalkitInputError(
            f"no feasible b reaches power {power} for the indirect effect with a = {a}: the test "
            f"of a alone has power {limit:.3f} in this design, which caps the indirect effect's "
            "power. Raise the number of randomised units, or a."
        )
    b = float(optimize.brentq(gap, low, high, xtol=1e-7))
    return power_mediation(design, a=a, b=b, **params)  # type: ignore[arg-type]
