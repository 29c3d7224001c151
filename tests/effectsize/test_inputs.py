"""Bad input gets a clear error naming the field and the rows; vectorised use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit import EvalkitInputError, EvalkitWarning
from evalkit import effectsize as es


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_t": 1}, "n_t must be greater than 1"),
        ({"n_c": 0}, "n_c must be greater than 1"),
        ({"n_t": 10.5}, "n_t must be a whole number"),
        ({"sd_t": 0.0}, "sd_t must be positive"),
        ({"sd_c": -1.0}, "sd_c must be positive"),
        ({"mean_t": float("nan")}, "mean_t has missing values"),
        ({"mean_c": "abc"}, "mean_c must be numeric"),
        ({"icc": 1.0, "cluster_size": 5}, "icc must be in [0, 1)"),
        ({"icc": -0.1, "cluster_size": 5}, "icc must be in [0, 1)"),
        ({"icc": 0.1, "cluster_size": 500}, "cluster_size must be no larger than the total"),
        ({"icc": 0.1}, "icc and cluster_size go together"),
        ({"correction": "hedges"}, "correction='hedges' is not allowed"),
    ],
)
def test_hedges_g_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "mean_t": 10.0, "mean_c": 9.0, "sd_t": 2.0, "sd_c": 2.0, "n_t": 50, "n_c": 50,
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(EvalkitInputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        es.hedges_g(**args)  # type: ignore[arg-type]


def test_errors_name_series_rows() -> None:
    frame = pd.DataFrame(
        {"m_t": [1.0, 2.0, 3.0], "m_c": [0.0, 1.0, 2.0], "sd": [1.0, -1.0, 1.0], "n": [10, 10, 10]},
        index=["study A", "study B", "study C"],
    )
    with pytest.raises(EvalkitInputError, match="sd_t must be positive; violated at row study B"):
        es.hedges_g(frame["m_t"], frame["m_c"], frame["sd"], 1.0, frame["n"], frame["n"])


@pytest.mark.parametrize("p", [0.0, 1.0, 1.2, -0.1])
def test_cox_index_rejects_proportions_outside_unit_interval(p: float) -> None:
    with pytest.raises(EvalkitInputError, match="p_t must be strictly between 0 and 1"):
        es.cox_index(p, 0.5, 20, 20)


def test_mismatched_lengths() -> None:
    with pytest.raises(EvalkitInputError, match="has 2 rows but other inputs have 3"):
        es.hedges_g([1.0, 2.0, 3.0], [1.0, 2.0], 1.0, 1.0, 10, 10)


def test_attrition_bad_counts() -> None:
    with pytest.raises(EvalkitInputError, match="analyzed_t \\(120\\) exceeds randomized_t"):
        es.attrition(100, 100, 120, 90)
    with pytest.raises(EvalkitInputError, match="randomized_c must be a non-negative whole number"):
        es.attrition(100, 10.5, 90, 9)  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="boundary='liberal' is not allowed"):
        es.attrition(100, 100, 90, 90, boundary="liberal")  # type: ignore[arg-type]


def test_attrition_beyond_transcribed_optimistic_table_warns() -> None:
    with pytest.warns(EvalkitWarning, match="beyond the transcribed optimistic boundary"):
        result = es.attrition(100, 100, 40, 40, boundary="optimistic")
    assert result.rating == "high"


def test_vectorised_equals_scalar_loop() -> None:
    rng = np.random.default_rng(3)
    mean_t, mean_c = rng.normal(10, 1, 8), rng.normal(10, 1, 8)
    sd_t, sd_c = rng.uniform(1, 3, 8), rng.uniform(1, 3, 8)
    n_t, n_c = rng.integers(5, 200, 8), rng.integers(5, 200, 8)
    vector = es.hedges_g(mean_t, mean_c, sd_t, sd_c, n_t, n_c)
    for i in range(8):
        single = es.hedges_g(mean_t[i], mean_c[i], sd_t[i], sd_c[i], int(n_t[i]), int(n_c[i]))
        assert vector.estimate[i] == pytest.approx(single.estimate)
        assert vector.variance[i] == pytest.approx(single.variance)
    frame = vector.to_frame()
    assert list(frame.columns[:6]) == [
        "estimate",
        "variance",
        "std_error",
        "ci_low",
        "ci_high",
        "p_value",
    ]
    assert len(frame) == 8


def test_confidence_interval_is_normal_theory() -> None:
    g = es.hedges_g(10.5, 10.0, 2.0, 2.0, 40, 60, level=0.90)
    assert g.ci_high - g.estimate == pytest.approx(1.6448536269514722 * g.std_error)
    with pytest.raises(EvalkitInputError, match="level must lie strictly between 0 and 1"):
        es.hedges_g(10.5, 10.0, 2.0, 2.0, 40, 60, level=95)
