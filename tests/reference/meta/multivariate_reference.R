# Reference values for evalkit.meta.multivariate: metafor's rma.mv with
# random = ~ outcome | study and struct = "UN" / "HCS" / "CS" (metafor 3.8.1), profile
# intervals (confint.rma.mv) and clubSandwich CR2 (Debian packages). Run from the root:
#   Rscript tests/reference/meta/multivariate_reference.R
# Data: dat.berkey1998 (Berkey et al. 1998; known within-trial covariances) and
# dat.kalaian1996 (SAT coaching, math and verbal, within-study r = 0.66 imputed).
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})
out <- file.path("tests", "reference", "meta")
ctrl <- list(rel.tol = 1e-12, iter.max = 100000, eval.max = 100000)
# nlminb can stop with "false convergence" on a boundary (rho = -1); retry with BFGS.
bfgs <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 100000)
fit_mv <- function(V, mods, random, struct, data, method = "REML") {
  data$V_yi <- data$yi
  tryCatch(rma.mv(V_yi, V, mods = mods, random = random, struct = struct, data = data,
                  method = method, control = ctrl),
           error = function(e) rma.mv(V_yi, V, mods = mods, random = random, struct = struct,
                                      data = data, method = method, control = bfgs))
}
facts <- function(fit) {
  list(beta = unname(as.numeric(fit$beta)), se = unname(fit$se), tau2 = unname(fit$tau2),
       rho = unname(fit$rho), logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       names = rownames(fit$beta))
}
results <- list()
berkey <- dat.berkey1998
write.csv(berkey[, c("trial", "author", "year", "outcome", "yi", "vi", "v1i", "v2i")],
          file.path(out, "berkey1998.csv"), row.names = FALSE)
V <- bldiag(lapply(split(berkey[, c("v1i", "v2i")], berkey$trial), as.matrix))
for (struct in c("UN", "HCS", "CS")) {
  for (m in c("REML", "ML")) {
    fit <- fit_mv(V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = struct,
                  data = berkey, method = m)
    results[[paste("berkey", struct, m, sep = "_")]] <- facts(fit)
  }
}
# Profiles refit many times; nlminb's rel.tol = 1e-10 is as tight as they converge.
fit <- rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = "UN",
              data = berkey, control = list(rel.tol = 1e-10))
ci_tau <- confint(fit, tau2 = 1, control = list(tol = 1e-10))
ci_tau2 <- confint(fit, tau2 = 2, control = list(tol = 1e-10))
ci_rho <- confint(fit, rho = 1, control = list(tol = 1e-10))
results[["berkey_UN_profile"]] <- list(tau2_1 = unname(ci_tau$random[1, ]),
                                       tau2_2 = unname(ci_tau2$random[1, ]),
                                       rho = unname(ci_rho$random[1, ]))
pred <- predict(fit, newmods = diag(2), tau2.levels = 1:2)
results[["berkey_UN_predict"]] <- list(pred = unname(pred$pred), se = unname(pred$se),
                                       pi_lb = unname(pred$pi.lb), pi_ub = unname(pred$pi.ub))
ct <- coef_test(fit, vcov = "CR2", cluster = berkey$trial, test = "Satterthwaite")
results[["berkey_UN_CR2"]] <- list(beta = unname(ct$beta), se = unname(ct$SE),
                                   df = unname(ct$df_Satt), p = unname(ct$p_Satt))
# A moderator common to both outcomes (publication year, centred).
berkey$year_c <- berkey$year - 1990
fit <- fit_mv(V, mods = ~ outcome - 1 + year_c, random = ~ outcome | trial, struct = "UN",
              data = berkey)
results[["berkey_UN_year"]] <- facts(fit)

sat <- dat.kalaian1996
Vs <- impute_covariance_matrix(sat$vi, cluster = sat$study, r = 0.66)
sat$outcome <- factor(sat$outcome, levels = c("verbal", "math"))
for (struct in c("UN", "HCS", "CS")) {
  fit <- fit_mv(Vs, mods = ~ outcome - 1, random = ~ outcome | study, struct = struct,
                data = sat)
  results[[paste("sat", struct, sep = "_")]] <- facts(fit)
}
write(toJSON(results, digits = NA, auto_unbox = TRUE, na = "null"),
      file.path(out, "multivariate.json"))
cat("wrote", length(results), "entries\n")
