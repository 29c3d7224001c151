"""Modified school calendars: the three-level meta-analysis of Konstantopoulos (2011).

56 effects of schools within 11 districts; effects nested in districts. Published
(Konstantopoulos 2011, Table 3, REML): overall effect 0.185 (SE 0.085), district
variance 0.065, school-within-district variance 0.033.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from _common import Comparison, arguments, finish, save_tables

import evalkit
from evalkit import meta
from evalkit.plots import save_figure

args = arguments("school_calendar", __doc__.splitlines()[0])
data = evalkit.datasets.load("konstantopoulos2011")
fit = meta.multilevel(data, effect="yi", variance="vi", levels=["district", "school"])
by_year = meta.multilevel(data, formula="yi ~ year", variance="vi", levels=["district", "school"])
tables = {
    "three_level": meta.summary_table(fit, title="Modified school calendars: three-level model"),
    "year_moderator": meta.summary_table(by_year, title="Modified school calendars: by study year"),
}
files = save_tables(tables, args.out)
labels = "district " + data["district"].astype(str) + ", school " + data["school"].astype(str)
files.append(save_figure(meta.forest_plot(fit, labels=labels), args.out / "forest.png"))
print(tables["three_level"].to_markdown())
components = fit.variance_components
check = Comparison("Konstantopoulos (2011), three-level REML estimates")
check.check("overall effect", float(fit.params["intercept"]), 0.185, 0.0005)
check.check("SE of the overall effect", float(fit.std_errors["intercept"]), 0.085, 0.0005)
check.check("district variance", components["sigma2_district"], 0.065, 0.0005)
check.check("school variance", components["sigma2_school"], 0.033, 0.0005)
finish(check, files, args.out)
