"""SAT coaching (Kalaian & Raudenbush 1996): math and verbal outcomes as dependent
effects, with the correlated-and-hierarchical-effects model and robust variance
estimation (CR2, Satterthwaite df).

Kalaian & Raudenbush fitted a bivariate model with known within-study correlations;
the CHE + RVE numbers this script replicates are those of the reference
implementation — metafor 3.8 ``rma.mv`` with ``impute_covariance_matrix(r = 0.66)``
and clubSandwich 0.5.8 ``coef_test(vcov = "CR2")`` — committed in
``tests/reference/meta/multilevel.json`` by ``tests/reference/meta/multilevel_reference.R``
and shipped as ``evalkit/analyses/data/metafor_sat_reference.json``.
"""

from __future__ import annotations

import evalkit
from evalkit import meta
from evalkit.analyses._common import Comparison, arguments, finish, reference, save_tables
from evalkit.plots import save_figure
from evalkit.tables import meta_summary_table

DESCRIPTION = (__doc__ or "").splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns 0 when every number is within its tolerance."""
    args = arguments("sat_coaching", DESCRIPTION, argv)
    metafor = reference("metafor_sat_reference")
    data = evalkit.datasets.load("kalaian1996")
    data["es_id"] = range(1, len(data) + 1)
    che = meta.multilevel(data, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
    robust = meta.robust(che, data["study"])
    sensitivity = meta.rho_sensitivity(data, effect="yi", variance="vi", levels=["study", "es_id"])
    tables = {
        "che_rve": meta_summary_table(
            che, robust_result=robust, title="SAT coaching: CHE model with CR2 standard errors"
        ),
    }
    files = save_tables(tables, args.out)
    files.append(
        save_figure(meta.rho_sensitivity_plot(sensitivity), args.out / "rho_sensitivity.png")
    )
    print(tables["che_rve"].to_markdown())
    model, rve = metafor["sat_che"], metafor["sat_che_CR2"]
    check = Comparison("metafor 3.8 + clubSandwich 0.5.8 (CHE, ρ = 0.66, CR2)", label="reference")
    check.check("overall effect", float(che.params["Intercept"]), model["beta"], 1e-6)
    check.check("model-based SE", float(che.std_errors["Intercept"]), model["se"], 1e-6)
    components = che.variance_components
    assert components is not None
    check.check("within-study variance", components.variance("es_id"), model["sigma2"][1], 1e-6)
    check.check("CR2 SE", float(robust.std_errors["Intercept"]), rve["se"], 1e-6)
    check.check("Satterthwaite df", float(robust.df["Intercept"]), rve["df"], 1e-4)
    return finish(check, files, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
