"""Regression, effect-size and descriptive tables and their six renderings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from evalkit import EvalkitInputError
from evalkit import effectsize as es
from evalkit.adapters import from_statsmodels
from evalkit.tables import SUPPRESSED, descriptive_table, effect_size_table, regression_table


@pytest.fixture
def fits() -> dict[str, object]:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"coached": rng.integers(0, 2, 200), "prior": rng.standard_normal(200)})
    frame["score"] = 0.3 * frame["coached"] + 0.5 * frame["prior"] + rng.standard_normal(200)
    return {
        "Unadjusted": from_statsmodels(smf.ols("score ~ coached", frame).fit()),
        "Adjusted": from_statsmodels(smf.ols("score ~ coached + prior", frame).fit()),
    }


def test_regression_table_layout(fits: dict[str, object]) -> None:
    table = regression_table(fits, show_stars=True, terms={"coached": "Coached", "prior": "Prior"})  # type: ignore[arg-type]
    body = table.body
    assert list(body.columns) == ["Unadjusted", "Adjusted"]
    assert body.loc["Prior", "Unadjusted"] == ""  # absent from the first model
    adjusted = fits["Adjusted"]
    expected = f"({adjusted.std_errors['coached']:.2f})".replace("-", "−")  # type: ignore[attr-defined]
    coached_row = list(body.index).index("Coached")
    assert body.iloc[coached_row + 1]["Adjusted"] == expected
    assert body.index[coached_row + 1] == ""  # blank stub under the estimate
    assert body.loc["N", "Adjusted"] == "200"
    assert "Standard errors in parentheses." in table.notes
    assert any("p < .05" in note for note in table.notes)
    numbers = table.data.set_index(["model", "term"])
    assert numbers.loc[("Adjusted", "coached"), "estimate"] == pytest.approx(
        adjusted.params["coached"]  # type: ignore[attr-defined]
    )


def test_regression_table_with_ci_and_bad_terms(fits: dict[str, object]) -> None:
    table = regression_table(fits, uncertainty="ci", level=0.9)  # type: ignore[arg-type]
    coached_row = list(table.body.index).index("coached")
    assert table.body.iloc[coached_row + 1]["Adjusted"].startswith("[")
    assert "90% confidence intervals in brackets." in table.notes
    with pytest.raises(EvalkitInputError, match="terms not in any model: nonsense"):
        regression_table(fits, terms=["nonsense"])  # type: ignore[arg-type]
    with pytest.raises(EvalkitInputError, match="wrap it with"):
        regression_table({"raw": object()})  # type: ignore[dict-item]


def test_every_format_renders(fits: dict[str, object], tmp_path: Path) -> None:
    from docx import Document

    table = regression_table(fits, title="Models & results_1")  # type: ignore[arg-type]
    paths = table.save_all(tmp_path / "models")
    assert sorted(p.suffix for p in paths) == [".csv", ".docx", ".html", ".md", ".tex"]
    markdown = (tmp_path / "models.md").read_text()
    assert markdown.startswith("**Models & results_1**") and "| Term" in markdown
    latex = (tmp_path / "models.tex").read_text()
    assert r"Models \& results\_1" in latex and r"\toprule" in latex
    html = (tmp_path / "models.html").read_text()
    assert "<caption>Models &amp; results_1</caption>" in html
    csv = pd.read_csv(tmp_path / "models.csv")
    assert list(csv.columns[:4]) == ["model", "term", "estimate", "std_error"]
    assert set(csv["model"]) == {"Unadjusted", "Adjusted"}
    document = Document(str(tmp_path / "models.docx"))
    assert document.tables[0].cell(0, 1).text == "Unadjusted"
    assert "Note." in document.paragraphs[-1].text
    with pytest.raises(EvalkitInputError, match="cannot tell the table format"):
        table.save(tmp_path / "models.xyz")


def test_effect_size_table() -> None:
    effects = {
        "Reading": es.hedges_g(52.0, 50.0, 10.0, 10.0, 120, 118),
        "Math": es.hedges_g(51.0, 50.0, 10.0, 10.0, 120, 118),
    }
    table = effect_size_table(effects)
    row = table.body.loc["Reading"]
    assert row["g"] == f"{effects['Reading'].estimate:.2f}"
    assert row["95% CI"].startswith("[")
    assert row["Improvement index"] == f"{es.improvement_index(effects['Reading'].estimate):.1f}"
    assert row["Substantively important"] == "no"


def test_descriptive_table_suppresses_and_explains() -> None:
    frame = pd.DataFrame(
        {
            "score": np.arange(60, dtype=float),
            "school": ["A"] * 30 + ["B"] * 25 + ["C"] * 5,
        }
    )
    table = descriptive_table(frame, {"score": "Score"}, by="school")
    n = table.body["n"]
    assert n["Score — C"] == SUPPRESSED  # 5 students
    assert n["Score — B"] == SUPPRESSED  # complementary: total minus A would reveal C
    assert n["Score — A"] == "30"
    assert n["Score — Total"] == "60"
    assert table.body.loc["Score — C", "M"] == SUPPRESSED
    assert any("fewer than 10 students are suppressed" in note for note in table.notes)
    assert np.isnan(table.data.loc["Score — C", "M"])
    unsuppressed = descriptive_table(frame, ["score"], by="school", threshold=None)
    assert unsuppressed.body.loc["score — C", "n"] == "5"


def test_descriptive_two_way_and_bad_input() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "score": rng.standard_normal(200),
            "grade": rng.choice([3, 4], 200),
            "coached": rng.choice(["yes", "no"], 200, p=[0.97, 0.03]),
        }
    )
    table = descriptive_table(frame, ["score"], by=["grade", "coached"])
    assert {"no n", "yes n", "Total n"} <= set(table.body.columns)
    assert (table.body["no n"] == SUPPRESSED).all() or (frame["coached"] == "no").sum() >= 10
    frame.loc[3, "grade"] = np.nan
    with pytest.raises(
        EvalkitInputError, match="grouping column 'grade' has missing values at rows 3"
    ):
        descriptive_table(frame, ["score"], by="grade")
    with pytest.raises(EvalkitInputError, match="missing required column"):
        descriptive_table(frame, ["nope"])
    with pytest.raises(EvalkitInputError, match="must be numeric"):
        descriptive_table(frame, ["coached"])
