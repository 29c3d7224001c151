# Reference values for evalkit.meta univariate models and meta-regression.
# metafor 3.8.1 / metadat 1.2-0 (Debian packages). Run from the repository root:
#   Rscript tests/reference/meta/univariate_reference.R
# Iterative estimators use a tight threshold so the comparison tests the optimum.
suppressPackageStartupMessages({ library(metafor); library(metadat); library(jsonlite) })
out <- file.path("tests", "reference", "meta")
ctrl <- list(threshold = 1e-12, maxiter = 10000, tol = 1e-12)

summarise <- function(fit, level = 95) {
  ci <- try(confint(fit, level = level, control = list(tol = 1e-12)), silent = TRUE)
  het <- if (inherits(ci, "try-error")) NULL else ci$random
  pred <- predict(fit, level = level)
  list(
    beta = unname(as.numeric(fit$beta)), se = unname(fit$se), zval = unname(fit$zval),
    pval = unname(fit$pval), ci_lb = unname(fit$ci.lb), ci_ub = unname(fit$ci.ub),
    terms = rownames(fit$beta),
    tau2 = fit$tau2, se_tau2 = if (is.null(fit$se.tau2)) NA else fit$se.tau2,
    I2 = fit$I2, H2 = fit$H2, QE = fit$QE, QEp = fit$QEp, QM = fit$QM, QMp = fit$QMp,
    QMdf = if (is.null(fit$QMdf)) NA else fit$QMdf, R2 = if (is.null(fit$R2)) NA else fit$R2,
    k = fit$k, p = fit$p, dfs = if (is.null(fit$ddf)) NA else fit$ddf,
    logLik = as.numeric(logLik(fit)), deviance = as.numeric(deviance(fit)),
    AIC = AIC(fit), BIC = BIC(fit),
    weights = unname(weights(fit)),
    pred = unname(as.numeric(pred$pred))[1], pi_lb = unname(as.numeric(pred$pi.lb))[1],
    pi_ub = unname(as.numeric(pred$pi.ub))[1],
    tau2_ci = if (is.null(het)) c(NA, NA) else unname(het["tau^2", c("ci.lb", "ci.ub")]),
    I2_ci = if (is.null(het)) c(NA, NA) else unname(het["I^2(%)", c("ci.lb", "ci.ub")]),
    H2_ci = if (is.null(het)) c(NA, NA) else unname(het["H^2", c("ci.lb", "ci.ub")])
  )
}

results <- list()
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
write.csv(data.frame(trial = bcg$trial, yi = as.numeric(bcg$yi), vi = as.numeric(bcg$vi),
                     ablat = bcg$ablat, year = bcg$year, alloc = bcg$alloc),
          file.path(out, "bcg_logrr.csv"), row.names = FALSE)
for (m in c("FE", "DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")) {
  fit <- rma(yi, vi, data = bcg, method = m, control = ctrl)
  results[[paste0("bcg_", m)]] <- summarise(fit)
  fit_kh <- rma(yi, vi, data = bcg, method = m, test = "knha", control = ctrl)
  results[[paste0("bcg_", m, "_knha")]] <- summarise(fit_kh)
  fit_mr <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = m, control = ctrl)
  results[[paste0("bcg_mr_", m)]] <- summarise(fit_mr)
}
fit <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "REML", test = "knha", control = ctrl)
results[["bcg_mr_REML_knha"]] <- summarise(fit)
fit <- rma(yi, vi, mods = ~ factor(alloc), data = bcg, method = "REML", control = ctrl)
results[["bcg_alloc_REML"]] <- summarise(fit)

# Teacher expectancy (Raudenbush 1985): REML + Knapp-Hartung, moderation by prior contact
# (weeks dichotomised at more than one week, as in Raudenbush 1984).
ra <- dat.raudenbush1985
ra$weeks_high <- as.integer(ra$weeks > 1)
results[["raudenbush_REML_knha"]] <- summarise(rma(yi, vi, data = ra, method = "REML", test = "knha", control = ctrl))
results[["raudenbush_weeks_REML_knha"]] <- summarise(rma(yi, vi, mods = ~ weeks_high, data = ra, method = "REML", test = "knha", control = ctrl))
results[["raudenbush_weeks_REML"]] <- summarise(rma(yi, vi, mods = ~ weeks_high, data = ra, method = "REML", control = ctrl))

# Writing-to-learn (Bangert-Drowns 2004): random effects and a meta-regression.
bd <- dat.bangertdrowns2004
results[["bangertdrowns_REML"]] <- summarise(rma(yi, vi, data = bd, method = "REML", control = ctrl))
bd_sub <- bd[complete.cases(bd[, c("yi", "vi", "grade", "length", "meta")]), ]
results[["bangertdrowns_mr_REML"]] <- summarise(rma(yi, vi, mods = ~ factor(grade) + length + meta, data = bd_sub, method = "REML", control = ctrl))
write(toJSON(results, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "univariate.json"))
cat("wrote", length(results), "fits\n")
