"""Simulated power for the indirect effect: trials drawn from the standardised model of
:mod:`evalkit.power.mediation` and analysed with :func:`evalkit.mediation.mediation`
(the Monte Carlo interval it reports), so the analytic approximations can be checked
and designs outside them (few clusters, unequal shares) planned."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError
from evalkit.mediation import mediation
from evalkit.power.mediation import MediationDesignName


@dataclass(frozen=True)
class SimulatedMediationPower:
    """Share of simulated trials whose interval for a·b excludes zero, with its Monte
    Carlo SE, and the spread of the estimated paths across trials."""

    design: str
    power: float
    mc_std_error: float
    replications: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float


def simulate_mediation_trial(
    design: MediationDesignName,
    *,
    a: float,
    b: float,
    direct: float,
    n: int,
    J: int,
    K: int | None,
    icc2: float,
    icc3: float = 0.0,
    mediator_icc3: float = 0.0,
    p: float = 0.5,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One trial's student rows: ``school_id`` (3-2-1), ``teacher_id``, ``treated``,
    ``mediator`` (teacher level) and ``outcome``, with the module's standardisation."""
    pq = p * (1.0 - p)
    if design == "2-2-1":
        units, per = J, 1
        var_between_m, var_within_m = 1.0 - pq * a * a, 0.0
        var_school = 0.0
        var_teacher = icc2 - pq * (a * b + direct) ** 2 - b * b * var_between_m
    else:
        if K is None:
            raise EvalkitInputError("a 3-2-1 trial needs K schools.")
        units, per = K, J
        var_between_m, var_within_m = mediator_icc3 - pq * a * a, 1.0 - mediator_icc3
        var_school = icc3 - pq * (a * b + direct) ** 2 - b * b * var_between_m
        var_teacher = icc2 - b * b * var_within_m
    if min(var_between_m, var_school if design == "3-2-1" else 1.0, var_teacher) < 0:
        raise EvalkitInputError("the design is not feasible with these paths and ICCs.")
    treated_units = (np.arange(units) < round(p * units)).astype(float)
    unit_of_teacher = np.repeat(np.arange(units), per)
    x = treated_units[unit_of_teacher]
    unit_m = rng.normal(0.0, np.sqrt(var_between_m), units)[unit_of_teacher]
    m = a * x + unit_m + rng.normal(0.0, np.sqrt(var_within_m), x.size)
    school_y = rng.normal(0.0, np.sqrt(max(var_school, 0.0)), units)[unit_of_teacher]
    teacher_y = direct * x + b * m + school_y + rng.normal(0.0, np.sqrt(var_teacher), x.size)
    rows = np.repeat(np.arange(x.size), n)
    residual = 1.0 - icc2 - icc3
    frame = pd.DataFrame(
        {
            "teacher_id": rows,
            "treated": x[rows].astype(int),
            "mediator": m[rows],
            "outcome": teacher_y[rows] + rng.normal(0.0, np.sqrt(residual), rows.size),
        }
    )
    if design == "3-2-1":
        frame.insert(0, "school_id", unit_of_teacher[rows])
    return frame


def simulate_mediation_power(
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
    p: float = 0.5,
    replications: int = 500,
    alpha: float = 0.05,
    n_draws: int = 5000,
    seed: int | None = None,
) -> SimulatedMediationPower:
    """Power of the Monte Carlo interval test of a·b over simulated trials analysed
    with :func:`evalkit.mediation.mediation` (REML, random intercepts).

    Examples
    --------
    >>> sim = simulate_mediation_power(
    ...     "2-2-1", a=0.5, b=0.3, n=10, J=40, icc2=0.2, replications=5, seed=1
    ... )
    >>> sim.replications
    5
    """
    if replications < 1:
        raise EvalkitInputError(f"replications must be at least 1, got {replications!r}.")
    rng = np.random.default_rng(seed)
    clusters: tuple[str, ...] = (
        ("teacher_id",) if design == "2-2-1" else ("school_id", "teacher_id")
    )
    hits, a_hat, b_hat = [], [], []
    for _ in range(replications):
        trial = simulate_mediation_trial(
            design,
            a=a,
            b=b,
            direct=direct,
            n=n,
            J=J,
            K=K,
            icc2=icc2,
            icc3=icc3,
            mediator_icc3=mediator_icc3,
            p=p,
            rng=rng,
        )
        result = mediation(
            trial,
            treatment="treated",
            mediator="mediator",
            outcome="outcome",
            clusters=clusters,
            n_draws=n_draws,
            rng=rng,
        )
        interval = result.conf_int(1.0 - alpha).loc["indirect"].to_numpy(dtype=np.float64)
        low, high = float(interval[0]), float(interval[1])
        hits.append(low > 0 or high < 0)
        a_hat.append(result.params["a"])
        b_hat.append(result.params["b"])
    share = float(np.mean(hits))
    return SimulatedMediationPower(
        design=design,
        power=share,
        mc_std_error=float(np.sqrt(share * (1.0 - share) / replications)),
        replications=replications,
        mean_a=float(np.mean(a_hat)),
        mean_b=float(np.mean(b_hat)),
        sd_a=float(np.std(a_hat, ddof=1)) if replications > 1 else float("nan"),
        sd_b=float(np.std(b_hat, ddof=1)) if replications > 1 else float("nan"),
    )
