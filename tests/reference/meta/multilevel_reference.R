# Reference values for evalkit.meta multilevel models and robust variance estimation.
# metafor 3.8.1, clubSandwich (Debian packages). Run from the repository root:
#   Rscript tests/reference/meta/multilevel_reference.R
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})
out <- file.path("tests", "reference", "meta")
ctrl <- list(rel.tol = 1e-10, iter.max = 10000, eval.max = 10000)

fit_facts <- function(fit) {
  list(beta = unname(as.numeric(fit$beta)), se = unname(fit$se), zval = unname(fit$zval),
       pval = unname(fit$pval), ci_lb = unname(fit$ci.lb), ci_ub = unname(fit$ci.ub),
       sigma2 = unname(fit$sigma2), logLik = as.numeric(logLik(fit)),
       AIC = AIC(fit), BIC = BIC(fit), QE = fit$QE, QEp = fit$QEp,
       QM = fit$QM, QMp = fit$QMp, k = fit$k, p = fit$p)
}
robust_facts <- function(fit, cluster, type) {
  ct <- coef_test(fit, vcov = type, cluster = cluster, test = "Satterthwaite")
  vc <- vcovCR(fit, cluster = cluster, type = type)
  list(beta = unname(ct$beta), se = unname(ct$SE), tstat = unname(ct$tstat),
       df = unname(ct$df_Satt), p = unname(ct$p_Satt), vcov = unname(as.matrix(vc)))
}
results <- list()

# Konstantopoulos (2011): schools within districts, three-level model.
ko <- dat.konstantopoulos2011
for (m in c("REML", "ML")) {
  fit <- rma.mv(yi, vi, random = ~ 1 | district/school, data = ko, method = m, control = ctrl)
  results[[paste0("konst_", m)]] <- fit_facts(fit)
}
fit <- rma.mv(yi, vi, mods = ~ I(year - 1990), random = ~ 1 | district/school, data = ko, control = ctrl)
results[["konst_year_REML"]] <- fit_facts(fit)
for (m in c("REML", "ML")) {
  fit_ci <- rma.mv(yi, vi, random = ~ 1 | district/school, data = ko, method = m, control = ctrl)
  ci <- confint(fit_ci, control = list(tol = 1e-10))
  results[[paste0("konst_", m, "_profile")]] <- list(
    sigma2_district = unname(ci[[1]]$random["sigma^2.1", ]),
    sigma2_school = unname(ci[[2]]$random["sigma^2.2", ]))
}
for (type in c("CR0", "CR1", "CR2")) {
  results[[paste0("konst_year_REML_", type)]] <- robust_facts(fit, ko$district, type)
}
fit <- rma.mv(yi, vi, random = ~ 1 | district/school, data = ko, control = ctrl)
results[["konst_REML_CR2"]] <- robust_facts(fit, ko$district, "CR2")

# SAT coaching (Kalaian & Raudenbush 1996): correlated and hierarchical effects,
# within-study sampling correlation imputed at r = 0.66 between math and verbal.
sat <- dat.kalaian1996
sat$es_id <- seq_len(nrow(sat))
sat$math <- as.integer(sat$outcome == "math")
write.csv(sat, file.path(out, "kalaian1996_ids.csv"), row.names = FALSE)
V <- impute_covariance_matrix(sat$vi, cluster = sat$study, r = 0.66)
che <- rma.mv(yi, V, random = ~ 1 | study/es_id, data = sat, control = ctrl)
results[["sat_che"]] <- fit_facts(che)
results[["sat_che_CR2"]] <- robust_facts(che, sat$study, "CR2")
che_mods <- rma.mv(yi, V, mods = ~ math + hrs + ets + homework, random = ~ 1 | study/es_id,
                   data = sat, control = ctrl)
results[["sat_che_mods"]] <- fit_facts(che_mods)
results[["sat_che_mods_CR2"]] <- robust_facts(che_mods, sat$study, "CR2")
results[["sat_che_mods_CR1"]] <- robust_facts(che_mods, sat$study, "CR1")
htz <- Wald_test(che_mods, constraints = constrain_zero(3:5), vcov = "CR2",
                 cluster = sat$study, test = "HTZ")
results[["sat_che_mods_HTZ"]] <- list(Fstat = htz$Fstat, df_num = htz$df_num,
                                      df_denom = htz$df_denom, p = htz$p_val)
# Egger's test for the CHE model: the standard error as moderator, CR2 inference by study.
sat$sei <- sqrt(sat$vi)
egger <- rma.mv(yi, V, mods = ~ sei, random = ~ 1 | study/es_id, data = sat, control = ctrl)
results[["sat_che_egger_CR2"]] <- robust_facts(egger, sat$study, "CR2")
# A random-effects model of the same data with RVE by study (working independence within).
re <- rma(yi, vi, data = sat, method = "REML", control = list(threshold = 1e-12, maxiter = 10000))
results[["sat_re_CR2"]] <- robust_facts(re, sat$study, "CR2")
write(toJSON(results, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "multilevel.json"))
cat("wrote", length(results), "entries\n")
