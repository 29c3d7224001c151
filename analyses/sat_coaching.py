"""SAT coaching (Kalaian & Raudenbush 1996): math and verbal outcomes as dependent
effects, with the correlated-and-hierarchical-effects model and robust variance
estimation (CR2, Satterthwaite df).

Kalaian & Raudenbush fitted a bivariate model with known within-study correlations;
the CHE + RVE numbers this script replicates are those of the reference
implementation — metafor 3.8 ``rma.mv`` with ``impute_covariance_matrix(r = 0.66)``
and clubSandwich 0.5.8 ``coef_test(vcov = "CR2")`` — committed in
``tests/reference/meta/multilevel.json`` by ``tests/reference/meta/multilevel_reference.R``.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from _common import ROOT, Comparison, arguments, finish, save_tables

import evalkit
from evalkit import meta
from evalkit.plots import save_figure

args = arguments("sat_coaching", __doc__.splitlines()[0])
reference = json.loads((ROOT / "tests" / "reference" / "meta" / "multilevel.json").read_text())
data = evalkit.datasets.load("kalaian1996")
data["es_id"] = range(1, len(data) + 1)
che = meta.multilevel(data, effect="yi", variance="vi", levels=["study", "es_id"], rho=0.66)
robust = meta.robust(che, data["study"])
sensitivity = meta.rho_sensitivity(data, effect="yi", variance="vi", levels=["study", "es_id"])
tables = {
    "che_rve": meta.summary_table(
        che, robust_result=robust, title="SAT coaching: CHE model with CR2 standard errors"
    ),
}
files = save_tables(tables, args.out)
files.append(save_figure(meta.rho_sensitivity_plot(sensitivity), args.out / "rho_sensitivity.png"))
print(tables["che_rve"].to_markdown())
model, rve = reference["sat_che"], reference["sat_che_CR2"]
check = Comparison("metafor 3.8 + clubSandwich 0.5.8 (CHE, ρ = 0.66, CR2)", label="reference")
check.check("overall effect", float(che.params["intercept"]), model["beta"], 1e-6)
check.check("model-based SE", float(che.std_errors["intercept"]), model["se"], 1e-6)
check.check(
    "within-study variance", che.variance_components["sigma2_es_id"], model["sigma2"][1], 1e-6
)
check.check("CR2 SE", float(robust.std_errors["intercept"]), rve["se"], 1e-6)
check.check("Satterthwaite df", float(robust.df["intercept"]), rve["df"], 1e-4)
finish(check, files, args.out)
