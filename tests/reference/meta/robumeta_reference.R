# Reference values for evalkit.meta.robumeta (robumeta 2.0-3, Debian package).
# Run from the repository root:  Rscript tests/reference/meta/robumeta_reference.R
suppressPackageStartupMessages({ library(robumeta); library(jsonlite) })
out <- file.path("tests", "reference", "meta")
sat <- read.csv(file.path(out, "kalaian1996_ids.csv"))
sat <- sat[!is.na(sat$hrs), ]
grab <- function(fit) {
  r <- fit$reg_table
  list(b = unname(r$b.r), se = unname(r$SE), t = unname(r$t), df = unname(r$dfs),
       p = unname(r$prob), ci_lb = unname(r$CI.L), ci_ub = unname(r$CI.U),
       tau2 = unname(fit$mod_info$tau.sq), omega2 = if (is.null(fit$mod_info$omega.sq)) NA else unname(fit$mod_info$omega.sq),
       I2 = if (is.null(fit$mod_info$I.2)) NA else unname(fit$mod_info$I.2))
}
ko <- metadat::dat.konstantopoulos2011
ko$year_c <- ko$year - 1990
res <- list(
  ko_ce = grab(robu(yi ~ year_c, data = ko, studynum = district, var.eff.size = vi, modelweights = "CORR", rho = 0.8)),
  ko_ce_null = grab(robu(yi ~ 1, data = ko, studynum = district, var.eff.size = vi, modelweights = "CORR", rho = 0.5)),
  ko_he = grab(robu(yi ~ year_c, data = ko, studynum = district, var.eff.size = vi, modelweights = "HIER")),
  ce_null = grab(robu(yi ~ 1, data = sat, studynum = study, var.eff.size = vi, modelweights = "CORR", rho = 0.8)),
  ce_mods = grab(robu(yi ~ math + hrs + ets, data = sat, studynum = study, var.eff.size = vi, modelweights = "CORR", rho = 0.8)),
  ce_mods_rho0 = grab(robu(yi ~ math + hrs + ets, data = sat, studynum = study, var.eff.size = vi, modelweights = "CORR", rho = 0)),
  he_null = grab(robu(yi ~ 1, data = sat, studynum = study, var.eff.size = vi, modelweights = "HIER")),
  he_mods = grab(robu(yi ~ math + hrs + ets, data = sat, studynum = study, var.eff.size = vi, modelweights = "HIER"))
)
write(toJSON(res, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "robumeta.json"))
cat("wrote", length(res), "fits\n")
