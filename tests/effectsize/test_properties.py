"""Invariants of the effect-size formulas (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit import effectsize as es

means = st.floats(-100, 100)
sds = st.floats(0.1, 50)
sizes = st.integers(2, 500)


@given(means, means, sds, sds, sizes, sizes)
@settings(max_examples=200, deadline=None)
def test_swapping_groups_negates_g(
    mt: float, mc: float, st_: float, sc: float, nt: int, nc: int
) -> None:
    forward = es.hedges_g(mt, mc, st_, sc, nt, nc)
    backward = es.hedges_g(mc, mt, sc, st_, nc, nt)
    assert backward.estimate == pytest.approx(-forward.estimate, abs=1e-12)
    assert backward.variance == pytest.approx(forward.variance)


@given(means, means, sds, sds, sizes, sizes, st.floats(0.01, 100), st.floats(-50, 50))
@settings(max_examples=200, deadline=None)
def test_g_is_invariant_to_linear_rescaling(
    mt: float, mc: float, st_: float, sc: float, nt: int, nc: int, scale: float, shift: float
) -> None:
    original = es.hedges_g(mt, mc, st_, sc, nt, nc)
    rescaled = es.hedges_g(scale * mt + shift, scale * mc + shift, scale * st_, scale * sc, nt, nc)
    # Rounding the shifted means costs up to one ulp of |shift| + |scale·mean| each; the
    # difference of two such means carries that absolute error into the numerator,
    # which is then divided by the (rescaled) pooled SD (at least the smaller SD).
    rounding = 4 * np.finfo(float).eps * (abs(shift) + scale * max(abs(mt), abs(mc)))
    allowed = 1e-12 + rounding / (scale * min(st_, sc))
    assert rescaled.estimate == pytest.approx(original.estimate, rel=1e-9, abs=allowed)


@given(st.floats(-2, 2), st.floats(0.01, 0.5))
@settings(max_examples=100, deadline=None)
def test_pooling_one_finding_returns_it(g: float, se: float) -> None:
    pooled = es.pool_fixed([g], [se])
    assert pooled.estimate == pytest.approx(g)
    assert pooled.std_error == pytest.approx(se)


@given(st.floats(-1, 1), st.integers(20, 400), st.integers(2, 10), st.floats(0.0, 0.4))
@settings(max_examples=200, deadline=None)
def test_cluster_correction_never_shrinks_the_variance(
    d: float, n_arm: int, size: int, icc: float
) -> None:
    naive = es.hedges_g_from_t(d / (2 / n_arm) ** 0.5, n_arm, n_arm, correction="none")
    clustered = es.cluster_adjusted_g(d, n_arm, n_arm, size, icc, correction="none")
    assert abs(clustered.estimate) <= abs(naive.estimate) + 1e-12
    assert clustered.variance >= (1 / n_arm + 1 / n_arm) - 1e-12
