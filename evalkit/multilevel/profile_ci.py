"""Profile-likelihood confidence intervals for variance components (lme4's
``confint(method = "profile")`` for the ``sd_``, ``cor_`` and ``sigma`` rows).

The variance parameters are re-expressed as standard deviations, correlations and σ:
within each block of correlated random effects ``T = diag(sd)/σ · W`` with ``W`` the
Cholesky factor of the correlation matrix, built from canonical partial correlations
``z ∈ (−1, 1)`` (so ``z`` of the first column is the correlation with the first
effect). For each parameter the criterion of the fit (REML criterion or deviance) is
minimised over all the others at fixed values, and the interval's ends are where the
profile rises by the χ²₁ quantile above its minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from evalkit.core import INTERCEPT, EvalkitInputError, check_option
from evalkit.multilevel.satterthwaite import varpar_functions
from evalkit.multilevel.spec import require_fit

ProfileCriterion = Literal["ML", "REML"]

if TYPE_CHECKING:
    from evalkit.multilevel.model import LMMResults


@dataclass(frozen=True)
class _Natural:
    """Map between natural parameters (sds, z's per block; σ last) and θ."""

    blocks: list[tuple[int, int, int]]  # (level, start, size)
    entries: tuple[tuple[int, int, int], ...]
    q: tuple[int, ...]
    names: list[str]
    kinds: list[str]  # "sd", "z", "sigma"

    def theta(self, nat: np.ndarray) -> np.ndarray:
        sigma = nat[-1]
        factors = [np.zeros((q, q)) for q in self.q]
        pos = 0
        for level, start, size in self.blocks:
            sds = nat[pos : pos + size]
            pos += size
            n_z = size * (size - 1) // 2
            z = nat[pos : pos + n_z]
            pos += n_z
            w = _cholesky_from_cpc(z, size)
            factors[level][start : start + size, start : start + size] = (sds / sigma)[:, None] * w
        return np.array([factors[lv][r, c] for lv, r, c in self.entries])

    def start(self, result: LMMResults) -> np.ndarray:
        sigma = float(np.sqrt(result.sigma2))
        factors = result.factors
        out: list[float] = []
        for level, start, size in self.blocks:
            t = factors[level][start : start + size, start : start + size]
            cov = t @ t.T * sigma**2
            sds = np.sqrt(np.diag(cov))
            out.extend(sds)
            out.extend(_cpc_from_cov(cov))
        out.append(sigma)
        return np.array(out)


def _cholesky_from_cpc(z: np.ndarray, size: int) -> np.ndarray:
    w = np.zeros((size, size))
    w[0, 0] = 1.0
    k = 0
    cols: list[list[float]] = [[] for _ in range(size)]  # z values by row, columns in order
    for col in range(size):
        for row in range(col + 1, size):
            cols[row].append(z[k])
            k += 1
    for row in range(1, size):
        remaining = 1.0
        for col in range(row):
            w[row, col] = cols[row][col] * np.sqrt(remaining)
            remaining -= w[row, col] ** 2
        w[row, row] = np.sqrt(max(remaining, 0.0))
    return w


def _cpc_from_cov(cov: np.ndarray) -> list[float]:
    size = cov.shape[0]
    sds = np.sqrt(np.diag(cov))
    if size == 1:
        return []
    safe = np.where(sds > 0, sds, 1.0)
    corr = cov / np.outer(safe, safe)
    np.fill_diagonal(corr, 1.0)
    try:
        w = np.linalg.cholesky(corr + 1e-12 * np.eye(size))
    except np.linalg.LinAlgError:
        w = np.eye(size)
    z_by_col = []
    for col in range(size):
        for row in range(col + 1, size):
            remaining = 1.0 - float(np.sum(w[row, :col] ** 2))
            z_by_col.append(
                float(np.clip(w[row, col] / np.sqrt(max(remaining, 1e-300)), -0.999999, 0.999999))
            )
    return z_by_col


def _natural(result: LMMResults) -> _Natural:
    assert result.layout is not None
    blocks: list[tuple[int, int, int]] = []
    names: list[str] = []
    kinds: list[str] = []
    for level_index, level in enumerate(result.levels):
        start = 0
        for size in level.blocks:
            blocks.append((level_index, start, size))
            cols = [INTERCEPT if c == "1" else c for c in level.columns[start : start + size]]
            names.extend(
                f"sd_{level.name}" if c == INTERCEPT else f"sd_{level.name}[{c}]" for c in cols
            )
            kinds.extend(["sd"] * size)
            for col in range(size):
                for row in range(col + 1, size):
                    kind = "cor" if col == 0 else "cpc"
                    label = f"{kind}_{level.name}[{cols[col]}, {cols[row]}]"
                    names.append(label)
                    kinds.append("z" if col == 0 else "cpc")
            start += size
    names.append("sd_residual")
    kinds.append("sigma")
    return _Natural(blocks, result.layout.entries, result.layout.q, names, kinds)


def profile_intervals(
    result: LMMResults, *, level: float = 0.95, criterion: Literal["ML", "REML"] = "ML"
) -> pd.DataFrame:
    """Profile-likelihood CIs of every random-effect SD, correlation with the first
    effect of its block, and σ.

    Parameters
    ----------
    result
        A fitted model.
    level
        Confidence level.
    criterion
        ``"ML"`` (default) profiles the deviance, as lme4 does even for REML fits
        (it refits by ML first), so the intervals match ``confint(method =
        "profile")``; ``"REML"`` profiles the REML criterion of a REML fit, which
        accounts for the fixed effects' degrees of freedom (better with few clusters).

    Returns
    -------
    pandas.DataFrame
        ``parameter``, ``estimate`` (at the profiled criterion's optimum), ``ci_low``
        and ``ci_high``; parameters are named as in ``glance()``: ``sd_school``
        (lme4's ``sd_(Intercept)|school``), ``sd_school[x]``,
        ``cor_school[Intercept, x]`` and ``sd_residual`` (lme4's ``sigma``).
    """
    require_fit(result, "profile_intervals()")
    if "monte_carlo" in result.facts:
        raise EvalkitInputError(
            "profile intervals need hundreds of deviance evaluations at high precision; this "
            "fit is iterative (a crossed design too large to factor), where each is a set of "
            "conjugate-gradient solves with a Monte Carlo error. Use the variance components' "
            "estimates with their Monte Carlo SEs (facts['monte_carlo']), or profile a "
            "subset of the data fitted with solver='direct'."
        )
    if not 0.0 < level < 1.0:
        raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
    check_option("criterion", criterion, ProfileCriterion)
    if criterion == "ML" and result.method != "ML":
        result = result.refit(method="ML", df_method="none")
    elif criterion == "REML" and result.method != "REML":
        raise EvalkitInputError("criterion='REML' needs a REML fit.")
    assert result.stats is not None and result.layout is not None
    deviance, _ = varpar_functions(result.stats, result.layout, reml=result.method == "REML")
    nat = _natural(result)
    point = nat.start(result)
    lower_bounds = np.array([0.0 if k in ("sd", "sigma") else -1.0 for k in nat.kinds])
    upper_bounds = np.array([np.inf if k in ("sd", "sigma") else 1.0 for k in nat.kinds])
    lower_bounds[-1] = 1e-8

    def objective(x: np.ndarray) -> float:
        try:
            return deviance(np.r_[nat.theta(x), x[-1]])
        except np.linalg.LinAlgError:
            return 1e300

    best = objective(point)
    cutoff = stats.chi2.ppf(level, 1)
    rows = []
    for index, kind in enumerate(nat.kinds):
        if kind == "cpc":
            continue
        free = np.array([i != index for i in range(point.size)])
        warm = {"x": point[free].copy()}

        def profiled(
            value: float, index: int = index, free: np.ndarray = free, warm: dict = warm
        ) -> float:
            def inner(y: np.ndarray) -> float:
                x = point.copy()
                x[free] = y
                x[index] = value
                return objective(x)

            bounds = list(
                zip(np.clip(lower_bounds[free], None, None), upper_bounds[free], strict=True)
            )
            bounds = [
                (
                    lo + (1e-9 if np.isfinite(hi) and lo < 0 else 0.0),
                    hi - 1e-9 if np.isfinite(hi) else None,
                )
                for lo, hi in bounds
            ]
            fits = [
                optimize.minimize(
                    inner, start, method="Nelder-Mead", bounds=bounds,
                    options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000},
                )
                for start in (warm["x"],)
            ]  # fmt: skip
            fit = min(fits, key=lambda r: float(r.fun))
            warm["x"] = fit.x
            return float(fit.fun) - best - cutoff

        estimate = float(point[index])
        rows.append((nat.names[index], estimate, *_ends(profiled, estimate, kind)))
    return pd.DataFrame(rows, columns=["parameter", "estimate", "ci_low", "ci_high"])


def _ends(profiled: Callable[[float], float], estimate: float, kind: str) -> tuple[float, float]:
    """Where the profile crosses the cutoff below and above the estimate."""
    f = profiled  # value -> criterion rise minus the cutoff
    low_limit, high_limit = (0.0, np.inf) if kind in ("sd", "sigma") else (-1.0 + 1e-9, 1.0 - 1e-9)
    ends = []
    for direction in (-1, 1):
        limit = low_limit if direction < 0 else high_limit
        step = max(abs(estimate), 1e-3) * 0.25
        previous = estimate
        found = None
        for _ in range(60):
            candidate = previous + direction * step
            if (direction < 0 and candidate <= limit) or (direction > 0 and candidate >= limit):
                candidate = limit
            value = f(candidate)
            if value >= 0:
                found = optimize.brentq(
                    f, min(previous, candidate), max(previous, candidate), xtol=1e-10
                )
                break
            if candidate == limit:
                found = limit if np.isfinite(limit) else np.inf
                break
            previous = candidate
            step *= 1.6
        ends.append(float(found) if found is not None else float("nan"))
    return ends[0], ends[1]
