"""The result of a multilevel mediation analysis, on evalkit's results contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import (
    TIDY_COLUMNS,
    Dropped,
    EvalkitInputError,
    ModelResults,
    check_option,
    figure_and_axes,
)
from evalkit.mediation._design import MediationDesign
from evalkit.mediation._draws import (
    PathTerms,
    conditional,
    derived,
    derived_gradients,
    percentile_interval,
)
from evalkit.mediation._sensitivity import plot_sensitivity, sensitivity_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Interval = Literal["monte_carlo", "bootstrap"]

DESCRIPTIONS = {
    "a": "a: treatment → mediator",
    "b": "b: mediator → outcome",
    "b_within": "b (within): mediator deviation → outcome",
    "direct": "direct effect",
    "indirect": "indirect effect a·b",
    "total": "total effect",
    "a_moderated": "a × moderator",
    "b_moderated": "b × moderator",
    "index": "index of moderated mediation",
    "index_linear": "indirect effect × moderator (linear)",
    "index_quadratic": "indirect effect × moderator²",
}
MODEL_ROLES = ("a", "a_moderated", "b", "b_within", "b_moderated", "direct")


@dataclass(frozen=True)
class MediationResults:
    """A multilevel mediation analysis: paths, indirect and total effects.

    ``tidy()`` lists the paths (a, b, within-part b, direct) with the Wald t tests of
    their equations (Satterthwaite df) and the indirect and total effects (and, when
    moderated, the index of moderated mediation) with delta-method standard errors and
    Monte Carlo (or cluster-bootstrap) percentile intervals. The indirect effect has no
    p-value: it is judged by its interval, as Preacher & Selig (2012) recommend. When
    a mediator reliability was given, b and the direct effect are corrected for the
    mediator's measurement error (``facts["attenuation"]`` is the factor removed).
    """

    design: MediationDesign
    names: Mapping[str, str]
    mediator_fit: ModelResults
    outcome_fit: ModelResults
    terms: PathTerms
    point: pd.Series
    point_cov: pd.DataFrame
    model_df: pd.Series
    draws: pd.DataFrame
    sd_outcome: float
    sd_mediator: float
    sensitivity_scales: tuple[float, float]
    nobs: int
    n_groups: Mapping[str, int]
    facts: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    dropped: Dropped = field(default_factory=Dropped)
    bootstrap: pd.DataFrame | None = None
    moderator_values: np.ndarray = field(default_factory=lambda: np.empty(0))

    # ------------------------------------------------------------------ estimates
    def _functions(self) -> dict[str, tuple[float, np.ndarray, np.ndarray]]:
        """Derived quantities: estimate, gradient in the roles of ``point``, draws."""
        moderation = self.design.moderation
        values = derived({str(r): float(v) for r, v in self.point.items()}, moderation)
        draws = derived({str(c): self.draws[c].to_numpy() for c in self.draws}, moderation)
        gradients = derived_gradients(self.point, moderation)
        return {k: (float(values[k]), gradients[k], np.asarray(draws[k])) for k in values}

    def tidy(self, level: float = 0.95, interval: Interval = "monte_carlo") -> pd.DataFrame:
        """One row per path and effect: estimate, SE, df, statistic, p-value, CI.

        Parameters
        ----------
        level
            Confidence level.
        interval
            ``"monte_carlo"`` (default): the paths' intervals are t intervals from their
            equations, the indirect and total effects' percentile intervals of the Monte
            Carlo draws; ``"bootstrap"``: every row's SE is the SD over the cluster
            bootstrap replicates and its interval their percentiles (needs
            ``bootstrap=`` in :func:`mediation`).
        """
        if not 0.0 < level < 1.0:
            raise EvalkitInputError(f"level must lie strictly between 0 and 1, got {level!r}.")
        check_option("interval", interval, Interval)
        if interval == "bootstrap" and (self.bootstrap is None or self.bootstrap.empty):
            raise EvalkitInputError(
                "no bootstrap replicates: call mediation(..., bootstrap=1000) for "
                "bootstrap intervals."
            )
        rows = []
        cov = self.point_cov.to_numpy()
        for role in self.point.index:
            estimate = float(self.point[role])
            se = float(np.sqrt(self.point_cov.loc[role, role]))
            df = float(self.model_df[role])
            t = estimate / se if se > 0 else np.nan
            p = float(2.0 * stats.t.sf(abs(t), df)) if np.isfinite(t) else np.nan
            crit = float(stats.t.ppf(0.5 + level / 2.0, df))
            rows.append((role, estimate, se, df, t, p, estimate - crit * se, estimate + crit * se))
        for role, (estimate, gradient, draws) in self._functions().items():
            se = float(np.sqrt(max(gradient @ cov @ gradient, 0.0)))
            low, high = percentile_interval(draws, level)
            rows.append((role, estimate, se, np.inf, np.nan, np.nan, low, high))
        frame = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
        if interval == "bootstrap":
            frame = self._bootstrap_rows(frame, level)
        order = ["a", "a_moderated", "b", "b_within", "b_moderated", "direct", "indirect", "total"]
        rank = {name: k for k, name in enumerate(order)}
        frame["_rank"] = frame["term"].map(lambda t: rank.get(t, len(order)))
        return (
            frame.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)
        )

    def _bootstrap_rows(self, frame: pd.DataFrame, level: float) -> pd.DataFrame:
        assert self.bootstrap is not None
        frame = frame.copy()
        for k, term in enumerate(frame["term"]):
            if term not in self.bootstrap.columns:
                continue
            values = self.bootstrap[term].to_numpy()
            low, high = percentile_interval(values, level)
            frame.loc[k, ["std_error", "ci_low", "ci_high"]] = [
                float(np.std(values, ddof=1)),
                low,
                high,
            ]
            frame.loc[k, ["statistic", "p_value"]] = np.nan
        return frame

    @cached_property
    def params(self) -> pd.Series:
        """Estimates of the paths and effects, indexed by term."""
        return self.tidy().set_index("term")["estimate"]

    @cached_property
    def std_errors(self) -> pd.Series:
        """Standard errors (delta method for the indirect and total effects)."""
        return self.tidy().set_index("term")["std_error"]

    @cached_property
    def df(self) -> pd.Series:
        """Degrees of freedom (``inf`` for the indirect and total effects)."""
        return self.tidy().set_index("term")["df"]

    @cached_property
    def pvalues(self) -> pd.Series:
        """p-values of the paths; NaN for effects judged by their intervals."""
        return self.tidy().set_index("term")["p_value"]

    def conf_int(self, level: float = 0.95, interval: Interval = "monte_carlo") -> pd.DataFrame:
        """Intervals (``ci_low``, ``ci_high``) indexed by term."""
        return self.tidy(level, interval).set_index("term")[["ci_low", "ci_high"]]

    @property
    def variance_components(self) -> None:
        """None: the two equations carry their own (``mediator_fit``, ``outcome_fit``)."""
        return None

    @property
    def indirect_effect(self) -> float:
        """The indirect effect a·b (at the moderator's mean when moderated)."""
        return float(self.point["a"] * self.point["b"])

    # ---------------------------------------------------------------- effect sizes
    def effect_sizes(self, level: float = 0.95) -> pd.DataFrame:
        """Direct, indirect and total effects in SD units of the outcome (the total SD
        of the unconditional multilevel model, as WWC effect sizes use), the a path in
        SD units of the mediator over its units, and b per mediator SD in outcome SDs.
        The SDs are treated as known; intervals are the effects' intervals rescaled."""
        table = self.tidy(level).set_index("term")
        scale = {
            "a": 1.0 / self.sd_mediator,
            "b": self.sd_mediator / self.sd_outcome,
            "direct": 1.0 / self.sd_outcome,
            "indirect": 1.0 / self.sd_outcome,
            "total": 1.0 / self.sd_outcome,
        }
        rows = []
        for term, factor in scale.items():
            values = table.loc[term, ["estimate", "std_error", "ci_low", "ci_high"]]
            est, se, low, high = (float(v) * factor for v in values.to_numpy(dtype=np.float64))
            rows.append((term, est, se, low, high))
        return pd.DataFrame(rows, columns=["term", "effect_size", "std_error", "ci_low", "ci_high"])

    # ----------------------------------------------------------- moderated mediation
    def conditional_indirect(
        self, values: Sequence[float] | np.ndarray | None = None, *, level: float = 0.95
    ) -> pd.DataFrame:
        """The indirect effect at chosen values of the moderator (original scale;
        default: its mean and ±1 SD over the mediator's units), with Monte Carlo
        percentile intervals; also the conditional a and b paths."""
        moderator = self.design.moderator
        if moderator is None:
            raise EvalkitInputError(
                "this analysis has no moderator (pass moderator= to mediation())."
            )
        if values is None:
            mean = float(np.mean(self.moderator_values))
            sd = float(np.std(self.moderator_values, ddof=1))
            values = [mean - sd, mean, mean + sd]
        rows = []
        for value in np.asarray(values, dtype=np.float64):
            centred = float(value) - self.design.moderator_centre
            a_draws, b_draws = conditional(self.draws, centred)
            a = float(self.point["a"] + centred * self.point.get("a_moderated", 0.0))
            b = float(self.point["b"] + centred * self.point.get("b_moderated", 0.0))
            low, high = percentile_interval(a_draws * b_draws, level)
            rows.append(
                (float(value), a, b, a * b, float(np.std(a_draws * b_draws, ddof=1)), low, high)
            )
        return pd.DataFrame(
            rows, columns=[moderator, "a", "b", "indirect", "std_error", "ci_low", "ci_high"]
        )

    def plot_conditional_indirect(self, *, level: float = 0.95, ax: Any = None) -> Figure:
        """The conditional indirect effect over the moderator's observed range (its
        5th to 95th percentile over the mediator's units), with the Monte Carlo band
        and a rug of the units' moderator values."""
        low, high = np.quantile(self.moderator_values, [0.05, 0.95])
        table = self.conditional_indirect(np.linspace(float(low), float(high), 41), level=level)
        moderator = str(self.design.moderator)
        figure, axes = figure_and_axes(ax, figsize=(6.0, 4.0))
        axes.fill_between(table[moderator], table["ci_low"], table["ci_high"], alpha=0.25)
        axes.plot(table[moderator], table["indirect"])
        axes.axhline(0.0, color="0.4", linewidth=0.8)
        axes.plot(
            self.moderator_values,
            np.full(self.moderator_values.size, axes.get_ylim()[0]),
            "|",
            color="0.3",
            markersize=8,
        )
        axes.set_xlabel(moderator)
        axes.set_ylabel(f"indirect effect through {self.names['mediator']}")
        return figure

    # ---------------------------------------------------------------- sensitivity
    def sensitivity(
        self, rho: Sequence[float] | None = None, *, level: float = 0.95
    ) -> pd.DataFrame:
        """The indirect effect if the mediator and outcome equations' errors (at the b
        path's level) correlated ρ — unmeasured confounding of mediator and outcome
        (Imai, Keele & Yamamoto 2010). Default grid: −0.9 to 0.9 by 0.01.
        ``facts["rho_at_zero"]`` is where the indirect effect vanishes."""
        grid = np.round(np.arange(-0.9, 0.9001, 0.01), 10) if rho is None else np.asarray(rho)
        return sensitivity_table(
            self.draws["a"].to_numpy(),
            self.draws["b"].to_numpy(),
            float(self.point["a"]),
            float(self.point["b"]),
            self.sensitivity_scales,
            np.asarray(grid, dtype=np.float64),
            level,
        )

    def plot_sensitivity(self, *, level: float = 0.95, ax: Any = None) -> Figure:
        """The indirect effect against ρ with its interval band; ρ₀ marked."""
        return plot_sensitivity(self.sensitivity(level=level), self.facts["rho_at_zero"], ax)

    # ---------------------------------------------------------------- reporting
    def glance(self) -> pd.DataFrame:
        """One row: design, sizes, method, draws, corrections, sensitivity, warnings."""
        row: dict[str, Any] = {
            "model": f"multilevel mediation ({self.design.design})",
            "nobs": self.nobs,
        }
        for name, count in self.n_groups.items():
            row[f"n_{name}"] = count
        row.update(self.facts)
        row["n_dropped"] = self.dropped.n
        row["warnings"] = "; ".join(self.warnings)
        return pd.DataFrame([row])

    def summary(self, level: float = 0.95) -> str:
        """Plain text: design, equations, the paths table and flags."""
        n = self.names
        lines = [
            f"Multilevel mediation ({self.design.design}): {n['treatment']} → {n['mediator']} → "
            f"{n['outcome']}",
            f"Mediator equation: {self.design.mediator_formula}",
            f"Outcome equation:  {self.design.outcome_formula}",
            f"Observations: {self.nobs}; "
            + ", ".join(f"{k}: {v}" for k, v in self.n_groups.items()),
        ]
        table = self.tidy(level).set_index("term")
        lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
        lines.append(
            f"Indirect and total effects: delta-method SEs, {self.draws.shape[0]}-draw Monte "
            "Carlo percentile intervals (Preacher & Selig 2012)."
        )
        lines.append(f"Mediator: {self.facts['mediator_measurement']}.")
        for key in ("attenuation", "rho_at_zero", "proportion_mediated"):
            if key in self.facts and self.facts[key] is not None:
                lines.append(f"{key}: {self.facts[key]:.4g}")
        lines.append(self.dropped.describe())
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header = f"<p><b>Multilevel mediation ({self.design.design})</b>; n = {self.nobs}</p>"
        table = self.tidy().to_html(index=False, float_format=lambda v: f"{v:.4g}")
        flags = "".join(f"<p>Warning: {w}</p>" for w in self.warnings)
        return header + table + f"<p>{self.dropped.describe()}</p>" + flags
