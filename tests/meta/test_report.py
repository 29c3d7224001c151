"""ρ-sensitivity, figures and the MARS summary table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit import EvalkitInputError, meta
from evalkit.plots import save_figure
from evalkit.tables import meta_summary_table

REFERENCE = Path(__file__).parents[1] / "reference" / "meta"


def test_rho_sensitivity_matches_individual_fits() -> None:
    sat = pd.read_csv(REFERENCE / "kalaian1996_ids.csv")
    table = meta.rho_sensitivity(
        sat, effect="yi", variance="vi", levels=["study", "es_id"], rhos=[0.0, 0.66]
    )
    assert list(table["rho"]) == [0.0, 0.66]
    fit = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    robust_fit = meta.robust(fit, sat["study"])
    row = table.iloc[1]
    assert row["estimate"] == pytest.approx(fit.params["Intercept"])
    assert row["std_error"] == pytest.approx(robust_fit.std_errors["Intercept"])
    assert row["df"] == pytest.approx(robust_fit.df["Intercept"])
    assert row["sd_es_id"] == pytest.approx(np.sqrt(fit.variance_components.variance("es_id")))
    assert (
        row["pi_low"] < row["ci_low"] <= row["estimate"] <= row["ci_high"] < row["pi_high"]
        or row["sd_es_id"] == 0
    )


def test_figures_render(tmp_path: Path) -> None:
    expectancy = evalkit.datasets.load("raudenbush1985")
    fit = meta.random_effects(expectancy, effect="yi", variance="vi", test="knha")
    labels = expectancy["author"] + " " + expectancy["year"].astype(str)
    paths = [
        save_figure(
            meta.forest_plot(fit, labels=labels, subgroups=expectancy["weeks"] > 1),
            tmp_path / "forest.png",
        ),
        save_figure(meta.funnel_plot(fit, contour=True), tmp_path / "funnel.png"),
    ]
    frame = meta.rho_sensitivity(
        pd.read_csv(REFERENCE / "kalaian1996_ids.csv"),
        effect="yi",
        variance="vi",
        levels=["study", "es_id"],
        rhos=[0.2, 0.8],
    )
    paths.append(save_figure(meta.rho_sensitivity_plot(frame), tmp_path / "rho.png"))
    assert all(p.stat().st_size > 5000 for p in paths)
    with pytest.raises(EvalkitInputError, match="labels has 2 entries for 19"):
        meta.forest_plot(fit, labels=["a", "b"])


def test_meta_summary_table_reports_mars_items() -> None:
    expectancy = evalkit.datasets.load("raudenbush1985")
    fit = meta.random_effects(expectancy, effect="yi", variance="vi", test="knha")
    table = meta_summary_table(fit)
    items = list(table.body.index)
    for item in (
        "Effect-size metric",
        "Model",
        "Inference",
        "95% prediction interval",
        "τ² [95% CI]",
        "I² [95% CI]",
        "Q (df, p)",
    ):
        assert item in items
    assert table.body.loc["Inference", "Value"] == "Knapp–Hartung t"
    sat = pd.read_csv(REFERENCE / "kalaian1996_ids.csv")
    che = meta.multilevel(sat, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    robust_table = meta_summary_table(che, robust_result=meta.robust(che, sat["study"]))
    assert "CHE working model, ρ = 0.66" in robust_table.body.loc["Dependent effects", "Value"]
    assert any("boundary" in note for note in robust_table.notes)
