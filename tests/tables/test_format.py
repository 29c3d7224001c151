"""APA number formatting."""

from __future__ import annotations

import pytest

from evalkit.tables import fmt_bounded, fmt_df, fmt_number, fmt_p, stars


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.0321, ".032"), (0.001, ".001"), (0.000999, "< .001"), (0.5, ".500"), (1.0, "1.000")],
)
def test_p_values(p: float, text: str) -> None:
    assert fmt_p(p) == text


def test_numbers_keep_leading_zero_and_true_minus() -> None:
    assert fmt_number(0.25) == "0.25"
    assert fmt_number(-0.25) == "−0.25"
    assert fmt_number(-0.001) == "0.00"
    assert fmt_number(12345.678, 1) == "12,345.7"
    assert fmt_bounded(0.456) == ".46"
    assert fmt_bounded(-0.456) == "−.46"


def test_stars_and_df() -> None:
    assert [stars(p) for p in (0.2, 0.04, 0.009, 0.0001)] == ["", "*", "**", "***"]
    assert fmt_df(float("inf")) == "∞"
    assert fmt_df(37.0) == "37"
    assert fmt_df(37.46) == "37.5"
