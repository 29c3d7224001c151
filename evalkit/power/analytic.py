"""Minimum detectable effect size, power and required sample size (PowerUp!).

``MDES = M·SE`` with the multiplier ``M = t(1 − α/2, df) + t(power, df)`` (one-tailed:
``t(1 − α, df)``; Bloom 2005, Dong & Maynard 2013). Power for a given effect uses the
non-central t distribution of the test statistic, as PowerUpR does; the required
sample size is the smallest whole number of units whose MDES is at most the target
(PowerUp!'s MRSS, solved exactly instead of by fixed-point iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from evalkit.core import EvalkitInputError
from evalkit.power.designs import DESIGNS, Design

DEFAULTS = {
    "p": 0.5,
    "g": 0.0,
    "r21": 0.0,
    "r22": 0.0,
    "r23": 0.0,
    "r2t2": 0.0,
    "r2t3": 0.0,
    "alpha": 0.05,
    "power": 0.80,
    "two_tailed": True,
}
SHARES = ("r21", "r22", "r23", "r2t2", "r2t3")
MIN_CLUSTERS = 3


@dataclass(frozen=True)
class PowerAnalysis:
    """The result of an analytic power calculation.

    ``mdes``, ``power`` and the sample sizes describe one design point; ``solved``
    names the quantity that was computed.
    """

    design: str
    title: str
    solved: str
    mdes: float
    power: float
    df: float
    std_error: float
    multiplier: float
    alpha: float
    two_tailed: bool
    parameters: dict[str, float] = field(default_factory=dict)

    def __float__(self) -> float:
        if self.solved == "mdes":
            return self.mdes
        if self.solved == "power":
            return self.power
        return self.parameters[self.solved]

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame with the parameters and results."""
        row: dict[str, Any] = {"design": self.design, "solved": self.solved}
        row.update(self.parameters)
        row.update(
            mdes=self.mdes,
            power=self.power,
            df=self.df,
            std_error=self.std_error,
            multiplier=self.multiplier,
        )
        return pd.DataFrame([row])


def design_info(name: str) -> Design:
    """The :class:`~evalkit.power.designs.Design` called ``name`` (PowerUp!'s names)."""
    if name not in DESIGNS:
        raise EvalkitInputError(f"unknown design {name!r}; choose one of {', '.join(DESIGNS)}.")
    return DESIGNS[name]


def _values(
    design: Design, params: dict[str, Any], *, need_sizes: bool = True, skip: str | None = None
) -> dict[str, float]:
    allowed = set(design.sizes) | set(design.required) | set(design.optional) | set(DEFAULTS)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise EvalkitInputError(
            f"design {design.name} does not use {', '.join(unknown)}; its parameters are "
            f"{', '.join([*design.sizes, *design.required, *design.optional, 'p', 'g', 'alpha', 'power', 'two_tailed'])}."
        )
    values: dict[str, Any] = {**DEFAULTS, **{k: 0.0 for k in design.optional}, **params}
    missing = [
        k
        for k in (*design.required, *(design.sizes if need_sizes else ()))
        if k != skip and k not in params
    ]
    if missing:
        raise EvalkitInputError(f"design {design.name} needs {', '.join(missing)}.")
    _check(design, values, skip)
    return values


def _check_types(design: Design, v: dict[str, Any], skip: str | None) -> None:
    """Numbers are finite real numbers (not text, not true/false), ``two_tailed`` is
    true or false, and counts (covariates, clusters) are whole."""
    for name, value in v.items():
        if name == skip:
            continue
        if name == "two_tailed":
            if not isinstance(value, bool | np.bool_):
                raise EvalkitInputError(f"two_tailed must be True or False, got {value!r}.")
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise EvalkitInputError(f"{name} must be a number, got {value!r}.")
        if not np.isfinite(value):
            raise EvalkitInputError(f"{name} must be a finite number, got {value!r}.")
    counts = ["g", *(s for s in design.sizes if s != "n")]
    for name in counts:
        if name != skip and name in v and float(v[name]) != round(float(v[name])):
            raise EvalkitInputError(
                f"{name} counts units and must be a whole number, got {v[name]!r}."
            )


def _check(design: Design, v: dict[str, Any], skip: str | None) -> None:
    _check_types(design, v, skip)
    for name in ("alpha", "power", "p"):
        value = v[name]
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            what = "share treated" if name == "p" else name
            raise EvalkitInputError(f"{name} ({what}) must lie in (0, 1), got {value!r}.")
    for name in SHARES:
        if not 0 <= v[name] < 1:
            raise EvalkitInputError(
                f"{name} (variance explained) must lie in [0, 1), got {v[name]!r}."
            )
    iccs = [v[k] for k in ("rho2", "rho3") if k in v]
    for name in ("rho2", "rho3"):
        if name in v and not 0 <= v[name] < 1:
            raise EvalkitInputError(f"{name} (an ICC) must lie in [0, 1), got {v[name]!r}.")
    if sum(iccs) >= 1:
        raise EvalkitInputError(f"the ICCs sum to {sum(iccs):.3g}; rho2 + rho3 must be below 1.")
    for name in ("omega2", "omega3"):
        if name in v and v[name] < 0:
            raise EvalkitInputError(
                f"{name} (effect heterogeneity) cannot be negative, got {v[name]!r}."
            )
    if v["g"] < 0:
        raise EvalkitInputError(f"g (number of covariates) cannot be negative, got {v['g']!r}.")
    for name in design.sizes:
        if name == skip or name not in v:
            continue
        if name == design.top and len(design.sizes) > 1 and v[name] < MIN_CLUSTERS:
            raise EvalkitInputError(
                f"{name} = {v[name]!r}: a clustered design needs at least {MIN_CLUSTERS} clusters."
            )
        if v[name] < 1:
            raise EvalkitInputError(f"{name} must be at least 1, got {v[name]!r}.")


def _multiplier(df: float, alpha: float, power: float, two_tailed: bool) -> float:
    t1 = stats.t.ppf(1 - alpha / 2 if two_tailed else 1 - alpha, df)
    return float(t1 + stats.t.ppf(power, df))


def _noncentral_power(ncp: float, df: float, alpha: float, two_tailed: bool) -> float:
    if two_tailed:
        crit = stats.t.ppf(1 - alpha / 2, df)
        return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, df), df, ncp))


def _point(design: Design, v: dict[str, Any]) -> tuple[float, float]:
    df = float(design.df(v))
    if df <= 0:
        sizes = ", ".join(f"{k}={v[k]:g}" for k in design.sizes)
        raise EvalkitInputError(
            f"design {design.name} has {df:g} degrees of freedom at {sizes}; add units."
        )
    return df, float(np.sqrt(design.variance(v)))


def _result(
    design: Design,
    v: dict[str, Any],
    solved: str,
    mdes_value: float,
    power_value: float,
    df: float,
    se: float,
) -> PowerAnalysis:
    multiplier = _multiplier(df, v["alpha"], v["power"], bool(v["two_tailed"]))
    params = {k: float(v[k]) for k in (*design.sizes, *design.required, *design.optional, "p", "g")}
    return PowerAnalysis(
        design.name, design.title, solved, mdes_value, power_value, df, se, multiplier,
        float(v["alpha"]), bool(v["two_tailed"]), params,
    )  # fmt: skip


def mdes(design: str, **params: Any) -> PowerAnalysis:
    """Minimum detectable effect size of a design.

    Parameters
    ----------
    design
        PowerUp!'s design name: ``ira``, ``bira2c1``, ``bira2f1``, ``bira2r1``,
        ``cra2r2``, ``bira3r1``, ``bcra3f2``, ``bcra3r2``, ``cra3r3``.
    **params
        PowerUp!'s parameters (``rho2``, ``rho3``, ``r21``, ``r22``, ``r23``,
        ``omega2``, ``omega3``, ``r2t2``, ``r2t3``, ``p``, ``g``, ``n``, ``J``, ``K``,
        ``alpha``, ``power``, ``two_tailed``).

    Examples
    --------
    >>> round(mdes("cra2r2", rho2=0.17, n=15, J=20).mdes, 3)
    0.629
    """
    spec = design_info(design)
    v = _values(spec, params)
    df, se = _point(spec, v)
    value = _multiplier(df, v["alpha"], v["power"], bool(v["two_tailed"])) * se
    return _result(spec, v, "mdes", value, float(v["power"]), df, se)


def power(design: str, es: float, **params: Any) -> PowerAnalysis:
    """Power to detect a standardised effect ``es`` (non-central t, as PowerUpR).

    Examples
    --------
    >>> round(power("cra2r2", 0.25, rho2=0.15, r21=0.4, r22=0.53, g=1, n=100, J=40).power, 2)
    0.8
    """
    spec = design_info(design)
    if not es > 0:
        raise EvalkitInputError(f"es (the effect size) must be positive, got {es!r}.")
    v = _values(spec, params)
    df, se = _point(spec, v)
    value = _noncentral_power(es / se, df, v["alpha"], bool(v["two_tailed"]))
    return _result(spec, {**v, "power": value}, "power", float(es), value, df, se)


def sample_size(
    design: str, es: float, *, unknown: str | None = None, **params: Any
) -> PowerAnalysis:
    """Smallest whole number of units (by default at the top level) whose MDES at the
    requested power is at most ``es``.

    Examples
    --------
    >>> result = sample_size("cra2r2", 0.25, rho2=0.15, r21=0.4, r22=0.53, g=1, n=100)
    >>> int(result.parameters["J"]), round(result.mdes, 3)   # J = 40 gives 0.2502
    (41, 0.247)
    """
    spec = design_info(design)
    if not es > 0:
        raise EvalkitInputError(f"es (the effect size) must be positive, got {es!r}.")
    target = unknown or spec.top
    if target not in spec.sizes:
        raise EvalkitInputError(
            f"unknown={target!r}: design {design} has sizes {', '.join(spec.sizes)}."
        )
    if target in params:
        raise EvalkitInputError(f"{target} is what sample_size solves for; do not pass it.")
    v = _values(spec, params, skip=target)

    def gap(x: float) -> float:
        trial = {**v, target: x}
        df = spec.df(trial)
        if df <= 0:
            return 1.0
        return (
            _multiplier(df, v["alpha"], v["power"], bool(v["two_tailed"]))
            * math.sqrt(spec.variance(trial))
            - es
        )

    low = float(MIN_CLUSTERS if target == spec.top and len(spec.sizes) > 1 else 1)
    while gap(low) <= 0 and low > 1:
        low -= 1
    high = max(2 * low, 4.0)
    while gap(high) > 0:
        high *= 2
        if high > 1e9:
            raise EvalkitInputError(
                f"no {target} reaches MDES {es:g} with these parameters (the other levels limit precision); "
                "add units at another level or accept a larger effect."
            )
    continuous = optimize.brentq(gap, low, high, xtol=1e-10) if gap(low) > 0 else low
    whole = float(math.ceil(continuous - 1e-9))
    final = {**v, target: whole}
    _check(spec, final, None)
    df, se = _point(spec, final)
    value = _multiplier(df, v["alpha"], v["power"], bool(v["two_tailed"])) * se
    return _result(spec, final, target, value, float(v["power"]), df, se)
