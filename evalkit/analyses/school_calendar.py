"""Modified school calendars: the three-level meta-analysis of Konstantopoulos (2011).

56 effects of schools within 11 districts; effects nested in districts. Published
(Konstantopoulos 2011, Table 3, REML): overall effect 0.185 (SE 0.085), district
variance 0.065, school-within-district variance 0.033.
"""

from __future__ import annotations

import evalkit
from evalkit import meta
from evalkit.analyses._common import Comparison, arguments, finish, save_tables
from evalkit.plots import save_figure
from evalkit.tables import meta_summary_table

DESCRIPTION = (__doc__ or "").splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns 0 when every number is within its tolerance."""
    args = arguments("school_calendar", DESCRIPTION, argv)
    data = evalkit.datasets.load("konstantopoulos2011")
    fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
    by_year = meta.multilevel(
        data, effect="yi", moderators="year", variance="vi", levels=["district", "school"]
    )
    tables = {
        "three_level": meta_summary_table(
            fit, title="Modified school calendars: three-level model"
        ),
        "year_moderator": meta_summary_table(
            by_year, title="Modified school calendars: by study year"
        ),
    }
    files = save_tables(tables, args.out)
    labels = "district " + data["district"].astype(str) + ", school " + data["school"].astype(str)
    files.append(save_figure(meta.forest_plot(fit, labels=list(labels)), args.out / "forest.png"))
    print(tables["three_level"].to_markdown())
    components = fit.variance_components
    assert components is not None
    check = Comparison("Konstantopoulos (2011), three-level REML estimates")
    check.check("overall effect", float(fit.params["Intercept"]), 0.185, 0.0005)
    check.check("SE of the overall effect", float(fit.std_errors["Intercept"]), 0.085, 0.0005)
    check.check("district variance", components.variance("district"), 0.065, 0.0005)
    check.check("school variance", components.variance("school"), 0.033, 0.0005)
    return finish(check, files, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
