"""Power by simulation: generate districts under a design, fit the planned multilevel
model with :func:`evalkit.multilevel.lmm`, and count rejections.

Every replication draws from its own seed, spawned from one root seed by design
point and replication number (``numpy.random.SeedSequence``), so the results are
identical whether the replications run serially, on joblib workers or on a Dask
cluster, and however they are split into tasks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from evalkit.core import EvalkitInputError, check_option, figure_and_axes

Assignment = Literal["school", "teacher"]
OutcomeKind = Literal["continuous", "binary"]
SimulationKind = Literal["auto", "statistics", "rows"]
COX = 1.65
"""Cox index divisor: a binary design's effects are log odds ratios / 1.65 (WWC)."""


@dataclass(frozen=True)
class SimulationDesign:
    """A planned coaching study, in standardised units (total outcome variance 1).

    Attributes
    ----------
    n_schools, teachers_per_school, students_per_teacher
        K, J and n.
    icc_school, icc_teacher
        ρ₃ and ρ₂: shares of the outcome variance between schools and between
        teachers within schools.
    effect
        Coaching effect in SD units of the outcome (δ_T).
    assignment
        ``"school"``: schools are randomised (PowerUp!'s ``cra3r3``); ``"teacher"``:
        teachers are randomised within schools (``bcra3r2`` with ω₃ = 0).
    p
        Share of schools (or of teachers in each school) coached.
    r21
        Share of the student-level variance explained by a student covariate (prior
        achievement), included in the planned model.
    moderation
        Coaching × leadership interaction per SD of school leadership.
    leadership
        Main effect of school leadership (an SD-1 school-level covariate).
    outcome
        ``"continuous"`` (the default) or ``"binary"``: a 0/1 outcome from a logistic
        model whose latent scale has level-1 variance π²/3. The ICCs are then
        latent-scale ICCs, ``r21`` the share of the level-1 latent variance explained
        by the prior score, and ``effect``, ``moderation`` and ``leadership`` are in Cox
        index units (log odds ratio / 1.65, the WWC effect size for dichotomous
        outcomes); the planned model is fitted by :func:`evalkit.multilevel.glmm`.
    base_rate
        Binary outcome: the probability of success of a comparison student in an
        average school and classroom.
    """

    n_schools: int = 40
    teachers_per_school: int = 10
    students_per_teacher: int = 20
    icc_school: float = 0.10
    icc_teacher: float = 0.08
    effect: float = 0.20
    assignment: Assignment = "school"
    p: float = 0.5
    r21: float = 0.0
    moderation: float = 0.0
    leadership: float = 0.0
    outcome: OutcomeKind = "continuous"
    base_rate: float = 0.5

    def validate(self) -> None:
        """Raise on impossible designs, naming the parameter."""
        check_option("assignment", self.assignment, Assignment)
        check_option("outcome", self.outcome, OutcomeKind)
        if not 0 < self.base_rate < 1:
            raise EvalkitInputError(f"base_rate must lie in (0, 1), got {self.base_rate!r}.")
        for name in ("icc_school", "icc_teacher", "r21"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise EvalkitInputError(f"{name} must lie in [0, 1), got {value!r}.")
        if self.icc_school + self.icc_teacher >= 1:
            raise EvalkitInputError(
                f"icc_school + icc_teacher = {self.icc_school + self.icc_teacher:.3g}; the ICCs must sum to less than 1."
            )
        if not 0 < self.p < 1:
            raise EvalkitInputError(f"p (share coached) must lie in (0, 1), got {self.p!r}.")
        if self.n_schools < 3:
            raise EvalkitInputError(f"n_schools = {self.n_schools}: at least 3 schools are needed.")
        if self.teachers_per_school < 1 or self.students_per_teacher < 1:
            raise EvalkitInputError(
                "teachers_per_school and students_per_teacher must be at least 1."
            )
        if self.assignment == "teacher" and self.teachers_per_school < 2:
            raise EvalkitInputError("assignment='teacher' needs at least 2 teachers per school.")

    def analytic_design(self) -> tuple[str, dict[str, float]] | None:
        """The PowerUp! design and parameters that describe this study when the
        planned model has no moderator and the outcome is continuous (``None``
        otherwise)."""
        if self.moderation or self.leadership or self.outcome == "binary":
            return None
        sizes = {"n": self.students_per_teacher, "J": self.teachers_per_school, "K": self.n_schools}
        common = {
            "rho2": self.icc_teacher,
            "rho3": self.icc_school,
            "r21": self.r21,
            "p": self.p,
            "g": 0.0,
        }
        if self.assignment == "school":
            return "cra3r3", {**sizes, **common}
        return "bcra3r2", {**sizes, **common, "omega3": 0.0}


def simulate_study(design: SimulationDesign, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated data set: students with ``y``, ``treated``, ``prior``,
    ``leadership``, ``school`` and ``teacher``."""
    k, j, n = design.n_schools, design.teachers_per_school, design.students_per_teacher
    n_teachers = k * j
    school_of_teacher = np.repeat(np.arange(k), j)
    if design.assignment == "school":
        treated_school = rng.permutation(k) < max(1, round(design.p * k))
        treated_teacher = treated_school[school_of_teacher]
    else:
        per_school = max(1, round(design.p * j))
        ranks = np.argsort(rng.random((k, j)), axis=1).argsort(axis=1)
        treated_teacher = (ranks < per_school).ravel()
    leadership = rng.standard_normal(k)
    if design.outcome == "binary":
        # latent scale: level-1 variance π²/3, the ICCs shares of the total
        level1 = np.pi**2 / 3
        total = level1 / (1.0 - design.icc_school - design.icc_teacher)
        school_var, teacher_var = design.icc_school * total, design.icc_teacher * total
    else:
        level1 = 1.0 - design.icc_school - design.icc_teacher
        school_var, teacher_var = design.icc_school, design.icc_teacher
    school_effect = rng.normal(0.0, np.sqrt(school_var), k)
    teacher_effect = rng.normal(0.0, np.sqrt(teacher_var), n_teachers)
    teacher = np.repeat(np.arange(n_teachers), n)
    school = school_of_teacher[teacher]
    prior = rng.standard_normal(teacher.size)
    treated = treated_teacher[teacher].astype(float)
    lead = leadership[school]
    scale = COX if design.outcome == "binary" else 1.0
    systematic = (
        school_effect[school]
        + teacher_effect[teacher]
        + scale * treated * (design.effect + design.moderation * lead)
        + scale * design.leadership * lead
    )
    if design.outcome == "binary":
        slope = np.sqrt(design.r21 / (1.0 - design.r21) * level1)
        eta = np.log(design.base_rate / (1.0 - design.base_rate)) + systematic + slope * prior
        y = (rng.random(teacher.size) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    else:
        residual = rng.normal(0.0, np.sqrt(level1 * (1 - design.r21)), teacher.size)
        y = systematic + np.sqrt(level1 * design.r21) * prior + residual
    return pd.DataFrame(
        {
            "y": y,
            "treated": treated,
            "prior": prior,
            "leadership": lead,
            "school": school,
            "teacher": teacher,
        }
    )


def default_formula(design: SimulationDesign) -> tuple[str, str]:
    """The planned model and the tested term for a design."""
    covariates = " + prior" if design.r21 > 0 else ""
    if design.moderation or design.leadership:
        return (
            f"y ~ treated * leadership{covariates} + (1 | school) + (1 | school:teacher)",
            "treated:leadership",
        )
    return f"y ~ treated{covariates} + (1 | school) + (1 | school:teacher)", "treated"


def _replicate(
    design: SimulationDesign,
    formula: str,
    term: str,
    alpha: float,
    df_method: str,
    seeds: Sequence[np.random.SeedSequence],
    engine: str,
) -> list[tuple[float, float, float, float, bool, bool]]:
    """Fit the planned model to one simulated study per seed."""
    from evalkit.multilevel import glmm, lmm

    out = []
    if engine == "statistics":
        from evalkit.power.statistics import replicate_statistics

        return [replicate_statistics(design, np.random.default_rng(s)) for s in seeds]
    for seed in seeds:
        data = simulate_study(design, np.random.default_rng(seed))
        if design.outcome == "binary":
            # log odds ratios reported in Cox index units, the design's effect scale
            model = glmm(formula, data)
            out.append(
                (
                    float(model.params[term]) / COX,
                    float(model.std_errors[term]) / COX,
                    float(model.pvalues[term]),
                    float("inf"),
                    bool(model.facts["converged"]),
                    bool(model.facts["singular"]),
                )
            )
            continue
        if engine == "statsmodels":
            fit = lmm(formula, data, engine="statsmodels")
            converged, singular = bool(fit.facts.get("converged", True)), False
        else:
            fit = lmm(formula, data, df_method=df_method)  # type: ignore[call-overload]
            converged, singular = bool(fit.facts["converged"]), bool(fit.facts["singular"])
        estimate = float(fit.params[term])
        se = float(fit.std_errors[term])
        p_value = float(fit.pvalues[term])
        df = float(fit.df[term])
        out.append((estimate, se, p_value, df, converged, singular))
    return out


@dataclass(frozen=True)
class SimulatedPower:
    """Power by design point, with Monte Carlo standard errors.

    ``table`` has one row per design point: the design's parameters, ``power`` and
    ``mc_se`` (``sqrt(power(1 − power)/R)``), the analytic power where PowerUp! has the
    design, the mean estimate and its bias, the empirical SD of the estimates and the
    mean model SE, CI coverage, and counts of non-converged and singular fits.
    """

    table: pd.DataFrame
    replications: int
    seed: int
    term: str
    formula: str
    raw: pd.DataFrame = field(repr=False)
    simulation: str = "rows"
    """``"statistics"`` (sufficient statistics drawn directly) or ``"rows"``."""

    def to_frame(self) -> pd.DataFrame:
        """The per-design-point table."""
        return self.table


def simulate_power(
    designs: SimulationDesign | Iterable[SimulationDesign],
    *,
    replications: int = 500,
    seed: int = 0,
    alpha: float = 0.05,
    formula: str | None = None,
    term: str | None = None,
    df_method: str = "containment",
    n_jobs: int = 1,
    client: Any = None,
    chunk_size: int = 25,
    progress: bool = False,
    engine: Literal["evalkit", "statsmodels"] = "evalkit",
    simulation: SimulationKind = "auto",
) -> SimulatedPower:
    """Power of the planned analysis by simulation, over one or more designs.

    Parameters
    ----------
    designs
        One :class:`SimulationDesign` or several (e.g. from :func:`design_grid`).
    replications
        Simulated studies per design point.
    seed
        Root seed; results do not depend on ``n_jobs``, ``client`` or ``chunk_size``.
    alpha
        Two-sided significance level of the test of ``term``.
    formula, term
        The planned model (lme4 syntax) and the coefficient tested; defaults from
        :func:`default_formula` (the coaching main effect, or coaching × leadership
        when the design has moderation).
    df_method
        Degrees of freedom of the test (``"containment"`` is HLM's rule and matches
        PowerUp!'s df in balanced designs; ``"satterthwaite"`` costs a little more).
    n_jobs
        Worker processes for joblib (1: serial).
    client
        A ``dask.distributed.Client``: run the replications on its cluster.
    chunk_size
        Replications per task.
    progress
        Show a progress bar (tqdm) over tasks.
    engine
        ``"evalkit"`` or ``"statsmodels"`` (MixedLM, for comparison).
    simulation
        ``"statistics"``: draw each study's per-teacher sufficient statistics directly
        (exact distribution; see :mod:`evalkit.power.statistics`) and fit from them —
        for continuous outcomes, the default planned model and containment df;
        ``"rows"``: simulate student rows and fit them with ``lmm``/``glmm``;
        ``"auto"`` (default): statistics where they apply, rows otherwise. The
        result's ``simulation`` says which ran.
    """
    if isinstance(designs, SimulationDesign):
        points = [designs]
    elif isinstance(designs, list | tuple):
        points = list(designs)
    else:
        raise EvalkitInputError(
            f"designs must be a SimulationDesign or a list of them, got {type(designs).__name__}."
        )
    if not points or not all(isinstance(p, SimulationDesign) for p in points):
        raise EvalkitInputError("give at least one design, each a SimulationDesign.")
    if replications < 2:
        raise EvalkitInputError(f"replications must be at least 2, got {replications}.")
    if not 0 < alpha < 1:
        raise EvalkitInputError(f"alpha must lie in (0, 1), got {alpha!r}.")
    for point in points:
        point.validate()
    check_option("simulation", simulation, SimulationKind)
    eligible = (
        formula is None
        and term is None
        and df_method == "containment"
        and engine == "evalkit"
        and all(point.outcome == "continuous" for point in points)
    )
    if simulation == "statistics" and not eligible:
        raise EvalkitInputError(
            "simulation='statistics' covers continuous outcomes with the default planned "
            "model, containment df and the evalkit engine; use simulation='rows' here."
        )
    kind = (
        "statistics"
        if simulation == "statistics" or (simulation == "auto" and eligible)
        else "rows"
    )
    root = np.random.SeedSequence(seed)
    seeds = [child.spawn(replications) for child in root.spawn(len(points))]
    tasks: list[tuple[int, SimulationDesign, str, str, Sequence[np.random.SeedSequence]]] = []
    for index, point in enumerate(points):
        planned, tested = default_formula(point)
        f = formula or planned
        t = term or tested
        for start in range(0, replications, chunk_size):
            tasks.append((index, point, f, t, seeds[index][start : start + chunk_size]))
    results = _run(
        tasks, alpha, df_method, engine if kind == "rows" else "statistics",
        n_jobs=n_jobs, client=client, progress=progress,
    )  # fmt: skip
    rows = []
    for task, outcome in zip(tasks, results, strict=True):
        index = task[0]
        for estimate, se, p_value, df, converged, singular in outcome:
            rows.append((index, estimate, se, p_value, df, converged, singular))
    raw = pd.DataFrame(
        rows, columns=["point", "estimate", "std_error", "p_value", "df", "converged", "singular"]
    )
    table = _summarise(points, raw, alpha)
    used_formula, used_term = (formula, term) if formula and term else default_formula(points[0])
    return SimulatedPower(table, replications, seed, used_term, used_formula, raw, kind)


def _run(
    tasks: list[tuple[int, SimulationDesign, str, str, Sequence[np.random.SeedSequence]]],
    alpha: float,
    df_method: str,
    engine: str,
    *,
    n_jobs: int,
    client: Any,
    progress: bool,
) -> list[list[tuple[float, float, float, float, bool, bool]]]:
    calls = [
        (point, f, t, alpha, df_method, list(chunk), engine) for _, point, f, t, chunk in tasks
    ]
    bar = _progress(len(calls)) if progress else None
    if client is not None:
        futures = [client.submit(_replicate, *call, pure=False) for call in calls]
        if bar is not None:
            from dask.distributed import as_completed

            for _ in as_completed(futures):
                bar.update(1)
        results = client.gather(futures)
    elif n_jobs != 1:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator")
        results = []
        for outcome in parallel(delayed(_replicate)(*call) for call in calls):
            results.append(outcome)
            if bar is not None:
                bar.update(1)
    else:
        results = []
        for call in calls:
            results.append(_replicate(*call))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return list(results)


def _progress(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="replication tasks", unit="task")


def _summarise(points: list[SimulationDesign], raw: pd.DataFrame, alpha: float) -> pd.DataFrame:
    from evalkit.power.analytic import power as analytic_power

    rows = []
    for index, point in enumerate(points):
        part = raw[raw["point"] == index]
        r = len(part)
        reject = float(np.mean(part["p_value"] < alpha))
        target = point.moderation if (point.moderation or point.leadership) else point.effect
        crit = stats.t.ppf(1 - alpha / 2, part["df"].to_numpy())
        covered = (
            np.abs(part["estimate"].to_numpy() - target) <= crit * part["std_error"].to_numpy()
        )
        analytic = point.analytic_design()
        analytic_value = float("nan")
        if analytic is not None and point.effect > 0:
            name, params = analytic
            analytic_value = analytic_power(name, point.effect, alpha=alpha, **params).power
        rows.append(
            {
                **asdict(point),
                "replications": r,
                "power": reject,
                "mc_se": float(np.sqrt(reject * (1 - reject) / r)),
                "analytic_power": analytic_value,
                "mean_estimate": float(part["estimate"].mean()),
                "bias": float(part["estimate"].mean() - target),
                "empirical_sd": float(part["estimate"].std(ddof=1)),
                "mean_std_error": float(part["std_error"].mean()),
                "coverage": float(np.mean(covered)),
                "not_converged": int((~part["converged"]).sum()),
                "singular": int(part["singular"].sum()),
            }
        )
    return pd.DataFrame(rows)


def design_grid(
    base: SimulationDesign | None = None, **values: Sequence[Any]
) -> list[SimulationDesign]:
    """Every combination of the given values, e.g.
    ``design_grid(n_schools=[20, 40, 60], effect=[0.1, 0.2])``."""
    base = base or SimulationDesign()
    names = list(values)
    unknown = [n for n in names if n not in asdict(base)]
    if unknown:
        raise EvalkitInputError(f"unknown design parameter(s): {', '.join(unknown)}.")
    return [
        replace(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*values.values())
    ]


def power_curve(
    result: SimulatedPower, x: str, *, by: str | None = None, ax: Any = None, target: float = 0.8
) -> Any:
    """Simulated power (with ±2 Monte Carlo SE bands) against one design parameter,
    one line per value of ``by``; analytic power dashed where available. Returns the
    Figure (drawn on ``ax`` when given)."""
    table = result.table
    if x not in table.columns:
        raise EvalkitInputError(f"{x!r} is not a design parameter of the result.")
    figure, ax = figure_and_axes(ax)
    groups: Iterable[tuple[Any, pd.DataFrame]] = table.groupby(by) if by else [(None, table)]
    for label, part in groups:
        part = part.sort_values(x)
        name = f"{by} = {label}" if by else "simulated"
        line = ax.plot(part[x], part["power"], marker="o", label=name)[0]
        ax.fill_between(
            part[x],
            part["power"] - 2 * part["mc_se"],
            part["power"] + 2 * part["mc_se"],
            color=line.get_color(),
            alpha=0.15,
        )
        if part["analytic_power"].notna().all():
            ax.plot(part[x], part["analytic_power"], linestyle="--", color=line.get_color())
    ax.axhline(target, color="0.5", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 1)
    ax.set_xlabel(x)
    ax.set_ylabel("power")
    ax.legend(frameon=False, fontsize=8)
    return figure
