"""The analytic gradient of the profiled deviance against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.data import simulate_district
from evalkit.multilevel import lmm
from evalkit.multilevel.engine import Reducer, profile
from evalkit.multilevel.gradient import value_and_gradient

FORMULAS = [
    "achievement ~ prior + (1 | school_id)",
    "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)",
    "achievement ~ prior + (1 | school_id) + (1 | school_id:teacher_id) + (1 | school_id:teacher_id:half)",
]


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_matches_central_differences(formula: str, reml: bool) -> None:
    data = simulate_district(
        n_schools=12, teachers_per_school=4, students_per_teacher=8, seed=3
    ).students
    data["half"] = data["student_id"] % 2
    fit = lmm(formula, data, method="REML" if reml else "ML", df_method="none")
    assert fit.stats is not None and fit.layout is not None
    reducer = Reducer(fit.stats)
    for theta in (fit.theta * 0.7 + 0.05, fit.theta * 1.5 + 0.1):
        value, grad = value_and_gradient(reducer, theta, reml=reml)

        def deviance(t: np.ndarray) -> float:
            assert fit.layout is not None and fit.stats is not None
            return profile(fit.stats, fit.layout.factors(t), reml=reml, reducer=reducer).deviance

        assert value == pytest.approx(deviance(theta), rel=1e-12)
        steps = np.eye(theta.size) * 1e-5
        numeric = np.array([(deviance(theta + h) - deviance(theta - h)) / 2e-5 for h in steps])
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)
