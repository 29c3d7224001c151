"""Our own fuzz suite: bad input must end in an EvalkitInputError (CLEAR) or in a
finite, possibly flagged result (OK); anything else is VAGUE (another exception type)
or SILENT (a non-finite number without a flag). Named cases first, then generated
data frames with bad entries planted in every numeric column."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evalkit
from evalkit import EvalkitInputError, meta
from evalkit import effectsize as es
from evalkit.core import ModelResults
from evalkit.multilevel import lmm
from evalkit.power import mdes
from evalkit.tables import descriptive_table, suppress_counts

STUDENTS = evalkit.simulate_district(n_schools=6, teachers_per_school=3, seed=31).students
STUDIES = pd.DataFrame(
    {
        "yi": [0.10, 0.35, 0.22, -0.05, 0.41, 0.18],
        "vi": [0.02, 0.03, 0.015, 0.04, 0.025, 0.02],
        "study": ["a", "a", "b", "c", "c", "d"],
        "dosage": [10.0, 12.0, 30.0, 8.0, 8.5, 20.0],
    }
)


def classify(call: Callable[[], Any]) -> str:
    """CLEAR, OK, VAGUE or SILENT (see the module docstring)."""
    try:
        result = call()
    except EvalkitInputError:
        return "CLEAR"
    except Exception as error:
        return f"VAGUE ({type(error).__name__}: {error})"
    if isinstance(result, ModelResults):
        numbers = np.r_[result.params.to_numpy(dtype=float), result.std_errors.to_numpy()]
        if not np.all(np.isfinite(numbers)) and not result.warnings:
            return "SILENT"
    return "OK"


def _with(frame: pd.DataFrame, column: str, row: int, value: object) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(object)
    out.loc[out.index[row], column] = value
    return out


BAD_VALUES = [np.nan, np.inf, -np.inf, None, "high", True, 1e308]

NAMED: dict[str, Callable[[], Any]] = {
    "meta: empty frame": lambda: meta.random_effects(STUDIES.iloc[:0], effect="yi", variance="vi"),
    "meta: one row": lambda: meta.random_effects(STUDIES.iloc[:1], effect="yi", variance="vi"),
    "meta: zero variance": lambda: meta.random_effects(
        STUDIES.assign(vi=0.0), effect="yi", variance="vi"
    ),
    "meta: negative variance": lambda: meta.fixed_effect(
        STUDIES.assign(vi=-0.1), effect="yi", variance="vi"
    ),
    "meta: constant moderator": lambda: meta.meta_regression(
        STUDIES.assign(k=1.0), effect="yi", variance="vi", moderators="k"
    ),
    "meta: two-sided moderators": lambda: meta.meta_regression(
        STUDIES, effect="yi", variance="vi", moderators="yi ~ dosage"
    ),
    "meta: unknown level": lambda: meta.multilevel(
        STUDIES, effect="yi", variance="vi", levels=["district", "study"]
    ),
    "meta: robust with one cluster": lambda: meta.robust(
        meta.random_effects(STUDIES, effect="yi", variance="vi"), np.zeros(len(STUDIES))
    ),
    "meta: robust with short clusters": lambda: meta.robust(
        meta.random_effects(STUDIES, effect="yi", variance="vi"), ["a", "b"]
    ),
    "meta: egger k=2": lambda: meta.egger_test(
        meta.random_effects(STUDIES.iloc[:2], effect="yi", variance="vi")
    ),
    "lmm: no random term": lambda: lmm("achievement ~ prior", STUDENTS),
    "lmm: unknown column": lambda: lmm("achievement ~ nope + (1 | school_id)", STUDENTS),
    "lmm: one school": lambda: lmm(
        "achievement ~ prior + (1 | school_id)", STUDENTS[STUDENTS.school_id == 1]
    ),
    "lmm: constant outcome": lambda: lmm(
        "achievement ~ prior + (1 | school_id)", STUDENTS.assign(achievement=1.0)
    ),
    "lmm: collinear": lambda: lmm(
        "achievement ~ prior + twice + (1 | school_id)", STUDENTS.assign(twice=2 * STUDENTS.prior)
    ),
    "lmm: all treated": lambda: lmm(
        "achievement ~ coached + (1 | school_id)", STUDENTS.assign(coached=1)
    ),
    "lmm: bad option": lambda: lmm("achievement ~ (1 | school_id)", STUDENTS, method="OLS"),  # type: ignore[call-overload]
    "lmm: not a frame": lambda: lmm("achievement ~ (1 | school_id)", [1, 2, 3]),  # type: ignore[call-overload]
    "effect size: n of 1": lambda: es.hedges_g(1.0, 0.5, 1.0, 1.0, 1, 10),
    "effect size: ICC of 1": lambda: es.cluster_adjusted_g(0.3, 200, 200, 20, 1.0),
    "effect size: negative SD": lambda: es.hedges_g(1.0, 0.5, -1.0, 1.0, 10, 10),
    "power: ICC above 1": lambda: mdes("cra2r2", rho2=1.2, n=15, J=20),
    "power: text size": lambda: mdes("cra2r2", rho2=0.1, n="15", J=20),
    "power: unknown design": lambda: mdes("cra9", rho2=0.1, n=15, J=20),
    "tables: negative counts": lambda: suppress_counts([[3, -1], [4, 5]]),
    "tables: text column": lambda: descriptive_table(STUDENTS.assign(x="a"), ["x"]),
    "simulator: zero schools": lambda: evalkit.simulate_district(n_schools=0),
    "simulator: NaN ICC": lambda: evalkit.simulate_district(n_schools=3, icc_school=math.nan),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_cases_end_clearly(name: str) -> None:
    assert classify(NAMED[name]) in ("CLEAR", "OK"), name


@pytest.mark.parametrize("column", ["yi", "vi", "dosage"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_meta_bad_entries(column: str, value: object) -> None:
    data = _with(STUDIES, column, 2, value)
    outcome = classify(
        lambda: meta.meta_regression(data, effect="yi", variance="vi", moderators="dosage")
    )
    assert outcome in ("CLEAR", "OK"), outcome


@pytest.mark.parametrize("column", ["achievement", "prior", "school_id"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_lmm_bad_entries(column: str, value: object) -> None:
    data = _with(STUDENTS, column, 5, value)
    outcome = classify(lambda: lmm("achievement ~ prior + (1 | school_id)", data, missing="drop"))
    assert outcome in ("CLEAR", "OK"), outcome


finite = st.floats(-1e6, 1e6, allow_nan=False)
entries = st.one_of(
    finite, st.just(np.nan), st.just(np.inf), st.none(), st.text(max_size=3), st.booleans()
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, min_size=1, max_size=6), st.lists(entries, min_size=1, max_size=6))
def test_effect_sizes_from_generated_columns(means: list[Any], sds: list[Any]) -> None:
    size = min(len(means), len(sds))
    outcome = classify(
        lambda: es.hedges_g(
            pd.Series(means[:size]), pd.Series([0.0] * size), pd.Series(sds[:size]), 1.0, 20, 20
        )
    )
    assert outcome in ("CLEAR", "OK"), outcome


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(finite, st.floats(1e-6, 1e3)), min_size=0, max_size=8),
    st.sampled_from(["REML", "DL", "PM", "ML", "SJ", "HE", "EB", "HS"]),
    st.sampled_from(["z", "knha"]),
)
def test_meta_on_generated_studies(rows: list[tuple[float, float]], method: str, test: str) -> None:
    data = pd.DataFrame(rows, columns=["yi", "vi"])
    outcome = classify(
        lambda: meta.random_effects(data, effect="yi", variance="vi", method=method, test=test)  # type: ignore[arg-type]
    )
    assert outcome in ("CLEAR", "OK"), outcome
