"""High School and Beyond: the Raudenbush & Bryk (2002, ch. 4) model sequence.

One-way ANOVA (Table 4.2), means as outcomes (Table 4.3), random coefficients with
SES centred on the school mean (Table 4.4) and intercepts and slopes as outcomes with
sector and mean SES (Table 4.5), fitted by REML with Kenward–Roger df. As R&B, SES is
centred on MEANSES from the school file. Published values are compared at the
precision R&B print (±half a unit in the last digit).
"""

from __future__ import annotations

import evalkit
from evalkit.analyses._common import Comparison, arguments, finish, save_tables
from evalkit.multilevel import LMMResults, caterpillar_plot, lmm, reliability
from evalkit.plots import save_figure
from evalkit.tables import regression_table

DESCRIPTION = (__doc__ or "").splitlines()[0]


def _intercept_variance(model: LMMResults) -> float:
    """τ00: the school intercept variance."""
    assert model.variance_components is not None
    return model.variance_components.variance("school")


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns 0 when every number is within its tolerance."""
    args = arguments("hsb_chapter4", DESCRIPTION, argv)
    hsb = evalkit.datasets.load("hsb")
    hsb["cses"] = hsb["ses"] - hsb["meanses"]
    anova = lmm("mathach ~ 1 + (1 | school)", hsb, df_method="kenward-roger")
    means = lmm(
        "mathach ~ 1 + meanses + (1 | school)", hsb, reference=anova, df_method="kenward-roger"
    )
    coefficients = lmm(
        "mathach ~ 1 + cses + (1 + cses | school)", hsb, reference=anova, df_method="kenward-roger"
    )
    outcomes = lmm(
        "mathach ~ 1 + cses * (sector + meanses) + (1 + cses | school)",
        hsb,
        reference=coefficients,
        df_method="kenward-roger",
    )
    models = {
        "Table 4.2": anova,
        "Table 4.3": means,
        "Table 4.4": coefficients,
        "Table 4.5": outcomes,
    }
    statistics = {
        "nobs": "N",
        "var_school": "τ00 (intercepts)",
        "var_school[cses]": "τ11 (SES slopes)",
        "var_residual": "σ²",
        "icc_school": "ICC",
        "prv_school": "PRV(intercepts)",
        "reml_criterion": "REML criterion",
    }
    table = regression_table(
        models,
        statistics=statistics,
        title="High School and Beyond: the chapter-4 sequence",
        digits=3,
    )
    files = save_tables({"model_sequence": table}, args.out)
    files.append(
        save_figure(caterpillar_plot(coefficients, "school", "cses"), args.out / "ses_slopes.png")
    )
    print(table.to_markdown())
    tau = {name: _intercept_variance(model) for name, model in models.items()}
    check = Comparison("Raudenbush & Bryk (2002), Tables 4.2–4.5 and p. 74")
    check.check("4.2 grand mean γ00", float(anova.params["Intercept"]), 12.64, 0.005)
    check.check("4.2 τ00", tau["Table 4.2"], 8.61, 0.005)
    check.check("4.2 σ²", anova.sigma2, 39.15, 0.005)
    check.check("4.2 ICC", anova.facts["icc_school"], 0.18, 0.005)
    check.check(
        "4.2 mean reliability", float(reliability(anova)["school"]["Intercept"]), 0.90, 0.005
    )
    check.check("4.3 γ00", float(means.params["Intercept"]), 12.65, 0.005)
    check.check("4.3 MEANSES γ01", float(means.params["meanses"]), 5.86, 0.005)
    check.check("4.3 τ00", tau["Table 4.3"], 2.64, 0.005)
    check.check("4.4 γ00", float(coefficients.params["Intercept"]), 12.65, 0.005)
    check.check("4.4 SES slope γ10", float(coefficients.params["cses"]), 2.19, 0.005)
    check.check("4.4 τ00", tau["Table 4.4"], 8.68, 0.005)
    check.check("4.4 σ²", coefficients.sigma2, 36.70, 0.005)
    for term, value in {
        "Intercept": 12.1136, "sector": 1.2167, "meanses": 5.3391,
        "cses": 2.9388, "cses:sector": -1.6426, "cses:meanses": 1.0389,
    }.items():  # fmt: skip
        check.check(f"4.5 {term}", float(outcomes.params[term]), value, 0.00005)
    check.check("4.5 τ00", tau["Table 4.5"], 2.38, 0.005)
    check.check("4.5 PRV of intercept variance", outcomes.facts["prv_school"], 0.73, 0.005)
    return finish(check, files, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
