"""Bad input and invariants of the univariate meta-analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit import EvalkitInputError, meta


def _studies(k: int = 8, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.1, k)
    return pd.DataFrame(
        {
            "yi": rng.normal(0.3, np.sqrt(v + 0.02)),
            "vi": v,
            "dosage": rng.uniform(5, 40, k),
            "format": rng.choice(["in_person", "virtual"], k),
        },
        index=[f"study {i}" for i in range(k)],
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vi": -0.01}, "vi must be positive .* at row study 2"),
        ({"vi": 0.0}, "vi must be positive"),
        ({"vi": np.nan}, "vi has missing values at row study 2"),
        ({"vi": np.inf}, "vi has infinite values at row study 2"),
        ({"yi": np.nan}, "yi has missing values at row study 2"),
    ],
)
def test_bad_effects_and_variances(change: dict[str, float], message: str) -> None:
    data = _studies()
    for column, value in change.items():
        data.loc["study 2", column] = value
    with pytest.raises(EvalkitInputError, match=message):
        meta.random_effects(data, effect="yi", variance="vi")


def test_random_effects_needs_two_studies_fixed_effect_of_one_returns_it() -> None:
    one = _studies().iloc[:1]
    with pytest.raises(EvalkitInputError, match="at least two effect sizes"):
        meta.random_effects(one, effect="yi", variance="vi")
    fit = meta.fixed_effect(one, effect="yi", variance="vi")
    assert fit.params["Intercept"] == pytest.approx(one["yi"].iloc[0])
    assert fit.std_errors["Intercept"] == pytest.approx(np.sqrt(one["vi"].iloc[0]))


def test_moderator_problems_are_named() -> None:
    data = _studies()
    with pytest.raises(EvalkitInputError, match="moderator term 'constant' does not vary"):
        meta.meta_regression(
            data.assign(constant=1.0), effect="yi", moderators="constant", variance="vi"
        )
    with pytest.raises(EvalkitInputError, match="collinear: dosage_twice"):
        meta.meta_regression(
            data.assign(dosage_twice=2 * data["dosage"]),
            effect="yi",
            moderators="dosage + dosage_twice",
            variance="vi",
        )
    with_missing = data.copy()
    with_missing.loc["study 4", "dosage"] = np.nan
    with pytest.raises(
        EvalkitInputError, match="moderator 'dosage' has missing values at row study 4"
    ):
        meta.meta_regression(with_missing, effect="yi", moderators="dosage", variance="vi")
    with pytest.raises(EvalkitInputError, match="missing required column"):
        meta.meta_regression(data, effect="yi", moderators="nonexistent", variance="vi")
    with pytest.raises(EvalkitInputError, match="method='DerSimonian' is not allowed"):
        meta.random_effects(data, effect="yi", variance="vi", method="DerSimonian")  # type: ignore[arg-type]


def test_categorical_moderator_and_prediction() -> None:
    data = _studies(12)
    fit = meta.meta_regression(data, effect="yi", moderators="dosage + C(format)", variance="vi")
    assert fit.qm_df == (2,)
    pred = fit.predict(pd.DataFrame({"dosage": [10.0, 30.0], "format": ["virtual", "in_person"]}))
    x_new = np.array([[1.0, 10.0, 1.0], [1.0, 30.0, 0.0]])
    np.testing.assert_allclose(pred["estimate"], x_new @ fit.params.to_numpy())


@given(st.permutations(list(range(8))))
@settings(max_examples=30, deadline=None)
def test_row_order_does_not_matter(order: list[int]) -> None:
    data = _studies()
    base = meta.random_effects(data, effect="yi", variance="vi")
    shuffled = meta.random_effects(data.iloc[order], effect="yi", variance="vi")
    assert shuffled.params["Intercept"] == pytest.approx(base.params["Intercept"], rel=1e-10)
    assert shuffled.tau2 == pytest.approx(base.tau2, rel=1e-8, abs=1e-14)


@given(st.floats(0.1, 10.0))
@settings(max_examples=30, deadline=None)
def test_rescaling_effects_rescales_estimates(scale: float) -> None:
    data = _studies()
    base = meta.random_effects(data, effect="yi", variance="vi")
    scaled = meta.random_effects(
        data.assign(yi=data["yi"] * scale, vi=data["vi"] * scale**2), effect="yi", variance="vi"
    )
    assert scaled.params["Intercept"] == pytest.approx(scale * base.params["Intercept"], rel=1e-8)
    assert scaled.tau2 == pytest.approx(scale**2 * base.tau2, rel=1e-7, abs=1e-14)
    assert scaled.i2 == pytest.approx(base.i2, rel=1e-7, abs=1e-10)
