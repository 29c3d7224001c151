# Reference values for degenerate multilevel designs (metafor 3.8.1 rma.mv, clubSandwich):
# one effect per study (components not separately identified), a single top-level
# cluster (its variance fixed at 0 by metafor), and leave-one-out on a two-district data
# set. Run from the repository root:
#   Rscript tests/reference/meta/degenerate_reference.R
suppressPackageStartupMessages({
  library(metafor); library(metadat); library(clubSandwich); library(jsonlite)
})
out <- file.path("tests", "reference", "meta")
ctrl <- list(rel.tol = 1e-12, iter.max = 100000, eval.max = 100000)
# nlminb reports false convergence along an unidentified direction; optim's BFGS does not.
bfgs <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 100000)
fit3 <- function(d) {
  tryCatch(rma.mv(yi, vi, random = ~ 1 | district/school, data = d, control = ctrl),
           error = function(e) rma.mv(yi, vi, random = ~ 1 | district/school, data = d,
                                      control = bfgs))
}
facts <- function(fit) {
  list(beta = unname(as.numeric(fit$beta)), se = unname(fit$se), sigma2 = unname(fit$sigma2),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit))
}
results <- list()
ko <- dat.konstantopoulos2011
# One school per district: the district and school variances are not separately
# identified; their sum, the estimate and its SE are.
one <- ko[!duplicated(ko$district), ]
fit <- fit3(one)
results[["one_per_district"]] <- c(facts(fit), list(sum_sigma2 = sum(fit$sigma2)))
ct <- coef_test(fit, vcov = "CR2", cluster = one$district, test = "Satterthwaite")
results[["one_per_district_CR2"]] <- list(se = unname(ct$SE), df = unname(ct$df_Satt))
# One district: its variance is fixed at 0 (single-level factor).
single <- ko[ko$district == 11, ]
fit <- suppressWarnings(fit3(single))
results[["single_district"]] <- facts(fit)
# Two districts; leaving one out leaves a single district.
two <- ko[ko$district %in% c(11, 12), ]
fit <- fit3(two)
results[["two_districts"]] <- facts(fit)
loo <- lapply(unique(two$district), function(d) {
  f <- suppressWarnings(fit3(two[two$district != d, ]))
  facts(f)
})
results[["two_districts_loo"]] <- loo
# CHE with one effect per study (rho imputed, no pair to impute it for).
sat <- dat.kalaian1996
first <- sat[!duplicated(sat$study), ]
first$es_id <- seq_len(nrow(first))
V <- impute_covariance_matrix(first$vi, cluster = first$study, r = 0.6)
fit <- tryCatch(rma.mv(yi, V, random = ~ 1 | study/es_id, data = first, control = ctrl),
                error = function(e) rma.mv(yi, V, random = ~ 1 | study/es_id, data = first,
                                           control = bfgs))
results[["sat_first_che"]] <- c(facts(fit), list(sum_sigma2 = sum(fit$sigma2)))
write.csv(first[, c("study", "es_id", "yi", "vi")], file.path(out, "kalaian1996_first.csv"),
          row.names = FALSE)
# Weights of a full three-level fit (forest-plot column): diag(M^-1) / sum, in %.
fit <- fit3(ko)
results[["konst_weights"]] <- list(weights = unname(weights(fit)))
write(toJSON(results, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "degenerate.json"))
cat("wrote", length(results), "entries\n")
