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


def _texts(figure: object) -> list[str]:
    return [t.get_text() for ax in figure.axes for t in ax.texts]  # type: ignore[attr-defined]


def test_forest_plot_columns_robust_pooled_and_weights() -> None:
    """The columns evaluators publish, the pooled row of the model reported (CR2 when a
    robust fit is given) and metafor's weights (weights.rma.mv for a multilevel fit)."""
    import json

    calendars = evalkit.datasets.load("konstantopoulos2011")
    fit = meta.multilevel(calendars, effect="yi", variance="vi", levels=["district", "school"])
    ref = json.loads((REFERENCE / "degenerate.json").read_text())["konst_weights"]["weights"]
    frame = meta.forest_frame(fit)
    np.testing.assert_allclose(frame["weight"], ref, rtol=1e-5)
    robust = meta.robust(fit, "district")
    figure = meta.forest_plot(fit, labels="school", robust=robust, sort="weight")
    texts = _texts(figure)
    assert "Estimate [95% CI]" in texts and "Weight" in texts
    tidy = robust.tidy().iloc[0]
    pooled = f"{tidy['estimate']:.2f} [{tidy['ci_low']:.2f}, {tidy['ci_high']:.2f}]"
    assert pooled in texts
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert "Pooled (CR2 robust CI)" in labels
    named = meta.forest_frame(fit, labels="school")
    heaviest = named.sort_values("weight", ascending=False).iloc[0]
    assert labels[-1] == str(heaviest["label"])  # sorted by weight: the heaviest on top
    assert f"{heaviest['weight']:.1f}%" in texts
    plain = _texts(meta.forest_plot(fit, columns=False))
    assert "Weight" not in plain


def test_forest_subgroups_orchard_and_selection_plot() -> None:
    studies = pd.read_csv(REFERENCE / "hackshaw1998.csv")
    fit = meta.random_effects(studies, effect="yi", variance="vi")
    figure = meta.forest_plot(
        fit, labels="author", subgroups=np.where(studies["year"] > 1990, "after 1990", "to 1990")
    )
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels.count("  RE model for subgroup") == 2
    assert "after 1990" in labels and "to 1990" in labels
    later = meta.random_effects(studies[studies["year"] > 1990], effect="yi", variance="vi")
    row = later.tidy().iloc[0]
    assert f"{row['estimate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" in _texts(figure)
    orchard = meta.orchard_plot(fit)
    assert any(t.startswith("k = 37") for t in _texts(orchard))
    step = meta.selection_model(fit, type="step", steps=(0.025, 0.5))
    drawn = meta.selection_plot(step).axes[0].lines[0].get_ydata()
    assert set(np.round(np.unique(drawn), 10)) == set(np.round(step.delta, 10))
    with pytest.raises(EvalkitInputError, match="intercept-only"):
        meta.orchard_plot(
            meta.meta_regression(studies, effect="yi", variance="vi", moderators="year")
        )
