"""Tables that survive a journal and a spreadsheet: numeric ASCII CSV, escaped LaTeX
that compiles, APA rules in Word, a complete HTML document, notes once, mixed-model
rows, and engines mixed in one table."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import meta
from evalkit.multilevel import lmm
from evalkit.tables import (
    Table,
    descriptive_table,
    effect_size_table,
    meta_summary_table,
    regression_table,
)
from evalkit.tables._table import latex_escape

FORMULA = "achievement ~ prior + coached + (1 | school_id) + (1 | school_id:teacher_id)"


@pytest.fixture(scope="module")
def students() -> pd.DataFrame:
    frame = evalkit.simulate_district(n_schools=10, teachers_per_school=4, seed=21).students
    frame.loc[frame.index[:7], "prior"] = np.nan  # some rows dropped, reported once
    return frame


@pytest.fixture(scope="module")
def mixed(students: pd.DataFrame) -> Table:
    null = lmm("achievement ~ 1 + (1 | school_id) + (1 | school_id:teacher_id)", students)
    full = lmm(FORMULA, students)
    slope = lmm("achievement ~ prior + coached + (1 + coached | school_id)", students)
    second = lmm("achievement ~ prior + coached + (1 | school_id)", students, engine="statsmodels")
    return regression_table(
        {"Null": null, "Full": full, "Slope": slope, "statsmodels": second},
        title="Coaching & achievement_1: 100% of {schools}",
        notes=("Standard errors in parentheses.",),
    )


def _every_table(mixed: Table, students: pd.DataFrame) -> dict[str, Table]:
    expectancy = evalkit.datasets.load("raudenbush1985")
    pooled = meta.random_effects(expectancy, effect="yi", variance="vi", test="knha")
    g = evalkit.effectsize.hedges_g(52.0, 50.0, 10.0, 10.0, 120, 118)
    return {
        "regression": mixed,
        "meta": meta_summary_table(pooled),
        "effects": effect_size_table({"Reading − grade 3": g}),
        "descriptive": descriptive_table(students, ["achievement", "prior"], by="coached"),
    }


def test_mixed_model_columns_show_components_iccs_and_groups(mixed: Table) -> None:
    rows = list(mixed.body.index)
    for label in (
        "Var(school_id)",
        "Var(school_id:teacher_id)",
        "Var(school_id: coached)",
        "Cor(school_id: Intercept, coached)",
        "Var(residual)",
        "ICC(school_id)",
        "N",
        "N (school_id)",
        "N (school_id:teacher_id)",
    ):
        assert label in rows, label
    assert rows.index("Var(residual)") < rows.index("ICC(school_id)") < rows.index("N")
    # the statsmodels fit keeps its variance components and fit statistics beside evalkit's
    assert mixed.body.loc["Var(school_id)", "statsmodels"] != ""
    assert mixed.body.loc["Var(residual)", "statsmodels"] != ""
    assert mixed.body.loc["Log-likelihood", "statsmodels"] != ""
    assert mixed.body.loc["Var(school_id:teacher_id)", "statsmodels"] == ""


def test_notes_appear_once(mixed: Table) -> None:
    assert len(mixed.notes) == len(set(mixed.notes))
    assert mixed.notes.count("Standard errors in parentheses.") == 1
    dropped = [n for n in mixed.notes if "rows dropped" in n]
    assert len(dropped) == 3  # one per evalkit model, none repeated from its warnings


def test_csv_is_numeric_ascii_and_round_trips(mixed: Table, students: pd.DataFrame) -> None:
    for name, table in _every_table(mixed, students).items():
        text = table.to_csv()
        assert text.isascii(), name
        assert "\u2212" not in text and "\u200b" not in text, name
        frame = pd.read_csv(io.StringIO(text))
        numeric = frame.select_dtypes("number")
        assert not numeric.empty, name
    tidy = pd.read_csv(io.StringIO(mixed.to_csv()))
    assert list(tidy.columns) == [
        "model", "term", "estimate", "std_error", "df", "statistic", "p_value", "ci_low", "ci_high",
    ]  # fmt: skip
    full = tidy[(tidy["model"] == "Full") & (tidy["term"] == "coached")].iloc[0]
    fit = lmm(FORMULA, students)
    assert full["estimate"] == pytest.approx(float(fit.params["coached"]), rel=1e-12)
    assert full["std_error"] == pytest.approx(float(fit.std_errors["coached"]), rel=1e-12)
    np.testing.assert_allclose(tidy["estimate"], mixed.data["estimate"], rtol=1e-12)
    assert tidy["estimate"].dtype == float and (tidy["estimate"] < 0).any()
    assert {"nobs", "var_school_id", "var_residual", "icc_school_id", "n_school_id"} <= set(
        tidy["term"]
    )
    formatted = mixed.to_csv(formatted=True)
    assert formatted.isascii() and "\u2212" not in formatted
    assert "-1,102.48" in formatted  # the null model's log-likelihood, plain minus


def test_latex_escapes_every_special_character() -> None:
    special = r"\ & % $ # _ { } ~ ^ | < > − τ² ≥ ρ —" + "\u200b"
    escaped = latex_escape(special)
    for raw in ("&", "%", "$", "#", "_", "{", "}", "~", "^", "|", "<", ">"):
        # every raw special character is now preceded by a backslash or inside a command
        assert f" {raw} " not in f" {escaped} ", raw
    assert escaped.isascii()
    assert r"\textbackslash{}" in escaped and r"$\tau$" in escaped and "\u200b" not in escaped


def test_latex_of_every_table_compiles(
    mixed: Table, students: pd.DataFrame, tmp_path: Path
) -> None:
    tables = _every_table(mixed, students)
    for name, table in tables.items():
        assert table.to_latex().isascii(), name
    latex = shutil.which("pdflatex")
    if latex is None:
        pytest.skip("no TeX installation (pdflatex) here; escaping is checked above")
    body = "\n".join(table.to_latex() for table in tables.values())
    document = tmp_path / "tables.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"{body}\n\\end{{document}}\n"
    )
    run = subprocess.run(
        [latex, "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]


def test_word_table_has_apa_rules_and_no_vertical_borders(mixed: Table, tmp_path: Path) -> None:
    path = mixed.to_docx(tmp_path / "table.docx")
    xml = zipfile.ZipFile(path).read("word/document.xml").decode("utf-8")
    table_xml = xml[xml.index("<w:tbl>") : xml.index("</w:tbl>")]
    assert "Table Grid" not in xml
    borders = table_xml[table_xml.index("<w:tblBorders>") : table_xml.index("</w:tblBorders>")]
    for side in ("left", "right", "insideV", "insideH"):
        assert f'<w:{side} w:val="nil"' in borders, side
    for side in ("top", "bottom"):
        assert f'<w:{side} w:val="single"' in borders, side
    assert '<w:left w:val="single"' not in table_xml and '<w:right w:val="single"' not in table_xml
    assert table_xml.count("<w:tcBorders>") == len(mixed.to_frame().columns)  # header rule


def test_html_is_a_complete_document(mixed: Table) -> None:
    page = mixed.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page and "</html>" in page
    assert "<caption>Coaching &amp; achievement_1: 100% of {schools}</caption>" in page
    assert mixed._repr_html_().startswith("<table")
