# Reference reliability and aggregation statistics for evalkit.scales from psych and
# multilevel (Debian r-cran-psych, r-cran-multilevel), on the simulated teacher survey
# in survey.csv (simulate_district(n_schools=30, teachers_per_school=8, seed=12)).
# Run from the repository root:  Rscript tests/reference/scales/psych_reference.R
suppressPackageStartupMessages({ library(psych); library(multilevel); library(jsonlite) })
out <- file.path("tests", "reference", "scales")
survey <- read.csv(file.path(out, "survey.csv"))
constructs <- list(leadership = c("lead1", "lead2", "lead3", "lead4"),
                   collaboration = c("collab1", "collab2", "collab3", "collab4"),
                   readiness = c("ready1", "ready2", "ready3", "ready4"))
res <- list()
for (name in names(constructs)) {
  items <- survey[, constructs[[name]]]
  items[[4]] <- 6 - items[[4]]                      # the fourth item is reverse-worded
  complete <- na.omit(items)
  a <- psych::alpha(complete, warnings = FALSE)
  om <- suppressWarnings(suppressMessages(psych::omega(complete, nfactors = 1, fm = "minres", plot = FALSE)))
  answered <- rowMeans(!is.na(items))
  score <- ifelse(answered >= 0.5, rowMeans(items, na.rm = TRUE), NA)
  keep <- !is.na(score)
  aov_fit <- aov(score ~ as.factor(school_id), data = data.frame(score = score[keep], school_id = survey$school_id[keep]))
  rwg <- rwg.j(items[keep, ], survey$school_id[keep], ranvar = (5^2 - 1) / 12)
  res[[name]] <- list(alpha = a$total$raw_alpha, feldt_lower = a$feldt$lower.ci[[1]], feldt_upper = a$feldt$upper.ci[[1]],
                      omega_total = om$omega.tot, icc1 = ICC1(aov_fit), icc2 = ICC2(aov_fit),
                      rwg_groups = as.character(rwg$grpid), rwg = rwg$rwg.j, n_complete = nrow(complete))
}
write(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(out, "psych.json"))
cat("psych", as.character(packageVersion("psych")), "multilevel", as.character(packageVersion("multilevel")), "\n")
