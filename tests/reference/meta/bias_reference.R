# Reference values for evalkit.meta bias and sensitivity analyses (metafor 3.8.1).
# Run from the repository root:  Rscript tests/reference/meta/bias_reference.R
suppressPackageStartupMessages({ library(metafor); library(metadat); library(jsonlite) })
out <- file.path("tests", "reference", "meta")
ctrl <- list(threshold = 1e-12, maxiter = 10000)
results <- list()
bcg <- read.csv(file.path(out, "bcg_logrr.csv"))
bd <- dat.bangertdrowns2004
data_sets <- list(bcg = bcg, writing = bd)
for (name in names(data_sets)) {
  d <- data_sets[[name]]
  for (m in c("REML", "DL", "FE")) {
    fit <- rma(yi, vi, data = d, method = m, control = ctrl)
    eg <- regtest(fit)
    key <- paste0(name, "_", m)
    results[[paste0(key, "_egger")]] <- list(z = eg$zval, p = eg$pval, limit = unname(eg$est),
                                             limit_lb = unname(eg$ci.lb), limit_ub = unname(eg$ci.ub))
    for (est in c("L0", "R0")) {
      tf <- trimfill(fit, estimator = est, control = ctrl)
      results[[paste0(key, "_trimfill_", est)]] <- list(
        k0 = tf$k0, side = tf$side, beta = unname(as.numeric(tf$beta)), se = unname(tf$se),
        tau2 = tf$tau2, filled_yi = unname(as.numeric(tf$yi[tf$fill])))
    }
    l1 <- leave1out(fit, control = ctrl)
    results[[paste0(key, "_loo")]] <- list(estimate = unname(l1$estimate), se = unname(l1$se),
      pval = unname(l1$pval), Q = unname(l1$Q), tau2 = unname(l1$tau2), I2 = unname(l1$I2))
    inf <- influence(fit)
    results[[paste0(key, "_influence")]] <- list(
      rstudent = unname(inf$inf$rstudent), dffits = unname(inf$inf$dffits),
      cook_d = unname(inf$inf$cook.d), cov_r = unname(inf$inf$cov.r),
      tau2_del = unname(inf$inf$tau2.del), QE_del = unname(inf$inf$QE.del),
      hat = unname(inf$inf$hat), weight = unname(inf$inf$weight))
  }
}
write(toJSON(results, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "bias.json"))
cat("wrote", length(results), "entries\n")

# Multilevel extensions: study-level aggregation (compound symmetry, rho = 0.66) of the
# SAT-coaching effects followed by trim-and-fill, and cluster-level Cook's distances
# of the three-level school-calendar model.
sat <- read.csv(file.path(out, "kalaian1996_ids.csv"))
sat_es <- escalc(measure = "GEN", yi = yi, vi = vi, data = sat)
agg <- aggregate(sat_es, cluster = study, struct = "CS", rho = 0.66)
agg_fit <- rma(yi, vi, data = agg, method = "REML", control = ctrl)
tf <- trimfill(agg_fit)
ko <- dat.konstantopoulos2011
three <- rma.mv(yi, vi, random = ~ 1 | district/school, data = ko, control = list(rel.tol = 1e-10))
cd <- cooks.distance(three, cluster = ko$district)
extra <- list(
  sat_aggregate = list(study = as.character(agg$study), yi = as.numeric(agg$yi), vi = as.numeric(agg$vi)),
  sat_aggregate_trimfill = list(k0 = tf$k0, side = tf$side, beta = as.numeric(tf$beta), se = tf$se, tau2 = tf$tau2),
  konst_cooks_district = list(district = as.numeric(names(cd)), cook_d = unname(as.numeric(cd)))
)
write(toJSON(extra, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "bias_multilevel.json"))
cat("wrote multilevel bias entries\n")
