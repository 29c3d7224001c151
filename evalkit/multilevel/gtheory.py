"""Generalizability theory for classroom-observation scores: how much of a score is
the teacher, and how many lessons and raters make a teacher's mean score reliable.

The G study fits the crossed random-effects model of the (l:p) × r design — lessons
(occasions) nested in teachers, raters crossed with teachers and lessons — by REML:
``score ~ 1 + (1 | teacher) + (1 | teacher:lesson) + (1 | rater) + (1 | teacher:rater)``,
whose residual is the lesson × rater interaction confounded with error. The D study
follows Brennan (2001, *Generalizability Theory*, Springer, ch. 4 and 5): for a
teacher's mean over ``n_l`` lessons each scored by ``n_r`` raters,

* relative error ``σ²(δ) = σ²(l:p)/n_l + σ²(pr)/n_r + σ²(lr:p,e)/(n_l n_r)``,
* absolute error ``σ²(Δ) = σ²(δ) + σ²(r)/n_r``,
* ``Eρ² = σ²(p) / (σ²(p) + σ²(δ))`` (G, for ranking teachers) and
  ``Φ = σ²(p) / (σ²(p) + σ²(Δ))`` (for standing against a fixed cut score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from evalkit.core import EvalkitInputError, check_option, require_columns
from evalkit.multilevel.model import EstimationMethod, LMMResults, lmm

Coefficient = Literal["G", "Phi"]

_FACETS = ("teacher", "lesson:teacher", "rater", "teacher:rater", "residual")


@dataclass(frozen=True)
class GStudy:
    """Variance components of observation scores and the D studies built on them.

    Attributes
    ----------
    components
        One row per facet (``teacher``, ``lesson:teacher``, ``rater``,
        ``teacher:rater``, ``residual``): variance and percent of the total; facets
        the design does not have are 0 and named in ``notes``.
    fit
        The REML fit of the crossed model (its table, df, profile CIs, BLUPs).
    lessons, raters
        Mean number of lessons per teacher and of raters per lesson observed.
    notes
        What was pooled with what, and why.
    """

    components: pd.DataFrame
    fit: LMMResults
    lessons: float
    raters: float
    notes: tuple[str, ...]

    def variance(self, facet: str) -> float:
        """The variance of one facet (0 for a facet the design does not have)."""
        return float(self.components["variance"].to_dict()[facet])

    def d_study(
        self,
        lessons: int | Sequence[int] = (1, 2, 3, 4, 6, 8),
        raters: int | Sequence[int] = (1, 2, 3),
    ) -> pd.DataFrame:
        """Reliability of a teacher's mean score for each number of lessons and raters.

        Returns
        -------
        pandas.DataFrame
            ``lessons, raters, relative_error, absolute_error, G, Phi, sem_relative,
            sem_absolute`` (SEMs are the square roots of the error variances).
        """
        rows = []
        for n_l in np.atleast_1d(lessons):
            for n_r in np.atleast_1d(raters):
                rows.append(self._design(int(n_l), int(n_r)))
        return pd.DataFrame(rows)

    def _design(self, n_l: int, n_r: int) -> dict[str, float]:
        if n_l < 1 or n_r < 1:
            raise EvalkitInputError(f"lessons and raters must be ≥ 1; got {n_l} and {n_r}.")
        errors = self._errors(n_l, n_r)
        return {"lessons": n_l, "raters": n_r, **errors}

    def _errors(self, n_l: float, n_r: float) -> dict[str, float]:
        """Brennan's error variances and coefficients for ``n_l`` lessons, ``n_r`` raters."""
        p = self.variance("teacher")
        relative = (
            self.variance("lesson:teacher") / n_l
            + self.variance("teacher:rater") / n_r
            + self.variance("residual") / (n_l * n_r)
        )
        absolute = relative + self.variance("rater") / n_r
        return {
            "relative_error": relative,
            "absolute_error": absolute,
            "G": p / (p + relative),
            "Phi": p / (p + absolute),
            "sem_relative": float(np.sqrt(relative)),
            "sem_absolute": float(np.sqrt(absolute)),
        }

    def observed(self) -> dict[str, float]:
        """G and Φ of the design as observed (mean lessons and raters per teacher)."""
        errors = self._errors(self.lessons, self.raters)
        return {"G": errors["G"], "Phi": errors["Phi"]}

    def cheapest(
        self,
        target: float = 0.8,
        *,
        coefficient: Coefficient = "G",
        lesson_cost: float = 1.0,
        rating_cost: float = 0.5,
        max_lessons: int = 20,
        max_raters: int = 5,
    ) -> pd.DataFrame:
        """The least costly design reaching ``target`` reliability.

        A teacher's cost is ``n_l × (lesson_cost + n_r × rating_cost)``: each lesson
        is observed once (filmed or visited) and scored by ``n_r`` raters. Returns the
        designs that reach the target, cheapest first (ties: fewer raters first); an
        empty frame when none within the limits does.
        """
        check_option("coefficient", coefficient, Coefficient)
        if not 0 < target < 1:
            raise EvalkitInputError(f"target must be between 0 and 1; got {target}.")
        if lesson_cost < 0 or rating_cost < 0 or lesson_cost + rating_cost <= 0:
            raise EvalkitInputError("costs must be non-negative and not both zero.")
        table = self.d_study(list(range(1, max_lessons + 1)), list(range(1, max_raters + 1)))
        table["cost"] = table["lessons"] * (lesson_cost + table["raters"] * rating_cost)
        reached = table[table[coefficient] >= target]
        return reached.sort_values(["cost", "raters", "lessons"]).reset_index(drop=True)


def g_study(
    data: pd.DataFrame,
    *,
    score: str = "score",
    teacher: str = "teacher",
    lesson: str | None = "lesson",
    rater: str | None = "rater",
    method: EstimationMethod = "REML",
) -> GStudy:
    """Variance decomposition of observation scores (a G study) by crossed REML.

    Parameters
    ----------
    data
        One row per score: the teacher, the lesson (occasion) within the teacher, the
        rater, and the score. Lesson IDs are read within teacher (lesson "1" of two
        teachers are different lessons).
    score, teacher, lesson, rater
        Column names; ``lesson=None`` (one lesson per teacher) or ``rater=None`` (one
        rater) drop those facets.
    method
        ``"REML"`` (default; Brennan's estimates for balanced designs) or ``"ML"``.

    Returns
    -------
    GStudy
        Components, the fit, and :meth:`GStudy.d_study` / :meth:`GStudy.cheapest`.

    Examples
    --------
    >>> import evalkit
    >>> scores = evalkit.data.simulate_observation_scores(n_teachers=80, seed=3)
    >>> study = g_study(scores)
    >>> study.components.round(3).columns.tolist()
    ['variance', 'percent']
    """
    columns = [score, teacher] + [c for c in (lesson, rater) if c]
    require_columns(data, columns)
    frame = data[columns].copy()
    terms = [f"(1 | {teacher})"]
    notes = []
    if lesson:
        lessons_per = frame.groupby(teacher)[lesson].nunique()
        if int(lessons_per.max()) < 2:
            raise EvalkitInputError(
                f"every teacher has one {lesson!r}: the lesson facet is not identified; "
                "pass lesson=None."
            )
        scores_per_lesson = frame.groupby([teacher, lesson]).size()
        if int(scores_per_lesson.max()) < 2:
            raise EvalkitInputError(
                "every lesson has a single score: lesson-to-lesson variation cannot be told "
                "apart from rater error. Double-score some lessons (two raters on the same "
                "lesson), or pass lesson=None to treat each teacher's scores as one lesson."
            )
        terms.append(f"(1 | {teacher}:{lesson})")
    if rater:
        if frame[rater].nunique() < 2:
            raise EvalkitInputError(
                f"{rater!r} has a single rater: the rater facet is not identified; pass rater=None."
            )
        terms.append(f"(1 | {rater})")
        per_rater = frame.dropna().groupby(rater).size()
        lone = per_rater[per_rater == 1]
        if len(lone):
            shown = ", ".join(map(str, lone.index[:10]))
            notes.append(
                f"{len(lone)} rater(s) gave a single score ({shown}): their severity is barely "
                "identified and is shrunk to the mean; the rater variance rests on the others."
            )
        keys = [teacher, rater]
        pair_counts = frame.dropna().groupby(keys).size()
        if int(pair_counts.max()) > 1:
            terms.append(f"(1 | {teacher}:{rater})")
        else:
            notes.append(
                "every rater scored each teacher once: teacher × rater is pooled into the "
                "residual (it cannot be separated from error in this design)."
            )
    formula = f"{score} ~ 1 + " + " + ".join(terms)
    fit = lmm(formula, frame, method=method, df_method="none")
    names = {
        teacher: "teacher",
        f"{teacher}:{lesson}": "lesson:teacher",
        str(rater): "rater",
        f"{teacher}:{rater}": "teacher:rater",
    }
    vc = fit.variance_components
    assert vc is not None
    values = dict.fromkeys(_FACETS, 0.0)
    values["residual"] = float(vc.residual)
    for level in vc.levels:
        if level in names:
            values[names[level]] = vc.variance(level)
    if not lesson:
        notes.append("one lesson per teacher: lesson-to-lesson variation is in the residual.")
    if not rater:
        notes.append("one rater: rater severity and teacher × rater are in the residual.")
    if fit.facts["singular"]:
        notes.append("a facet's variance is estimated at zero (a boundary fit).")
    components = pd.DataFrame({"variance": pd.Series(values)})
    components["percent"] = 100 * components["variance"] / components["variance"].sum()
    components.index.name = "facet"
    per_teacher = float(frame.groupby(teacher)[lesson].nunique().mean()) if lesson else 1.0
    keys = [teacher, lesson] if lesson else [teacher]
    per_lesson = float(frame.groupby(keys)[rater].nunique().mean()) if rater else 1.0
    return GStudy(
        components=components,
        fit=fit,
        lessons=float(per_teacher),
        raters=float(per_lesson),
        notes=tuple(notes + list(fit.warnings)),
    )
