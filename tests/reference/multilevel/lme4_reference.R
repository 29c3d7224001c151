# Reference fits for evalkit.multilevel from lme4 (Debian r-cran-lme4).
# Run from the repository root:  Rscript tests/reference/multilevel/lme4_reference.R
suppressPackageStartupMessages({ library(lme4); library(nlme); library(jsonlite) })
out <- file.path("tests", "reference", "multilevel")
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5),
                    check.conv.singular = "ignore")
facts <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  list(beta = unname(fixef(fit)), se = unname(sqrt(diag(as.matrix(vcov(fit))))),
       terms = names(fixef(fit)), theta = unname(getME(fit, "theta")),
       sigma2 = sigma(fit)^2, criterion = if (isREML(fit)) REMLcrit(fit) else deviance(fit),
       REML = isREML(fit), logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
       vc_grp = vc$grp, vc_var1 = vc$var1, vc_var2 = vc$var2, vc_vcov = vc$vcov,
       singular = isSingular(fit))
}
hsb <- read.csv(file.path("evalkit", "data", "datasets", "hsb.csv"), colClasses = c(school = "character"))
hsb$ses_c <- hsb$ses - ave(hsb$ses, hsb$school)
res <- list()
res$hsb_null <- facts(lmer(mathach ~ 1 + (1 | school), hsb, REML = TRUE, control = ctrl))
res$hsb_null_ml <- facts(lmer(mathach ~ 1 + (1 | school), hsb, REML = FALSE, control = ctrl))
res$hsb_rc <- facts(lmer(mathach ~ 1 + ses_c + (1 + ses_c | school), hsb, control = ctrl))
res$hsb_full <- facts(lmer(mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school), hsb, control = ctrl))
res$hsb_uncorrelated <- facts(lmer(mathach ~ 1 + ses_c + (ses_c || school), hsb, control = ctrl))
sleep <- lme4::sleepstudy
write.csv(sleep, file.path(out, "sleepstudy.csv"), row.names = FALSE)
res$sleep_correlated <- facts(lmer(Reaction ~ Days + (Days | Subject), sleep, control = ctrl))
res$sleep_uncorrelated <- facts(lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleep, control = ctrl))
res$sleep_ml <- facts(lmer(Reaction ~ Days + (Days | Subject), sleep, REML = FALSE, control = ctrl))
district <- read.csv(file.path(out, "district.csv"))
res$district_3level <- facts(lmer(achievement ~ prior + coached * (leadership + collaboration + readiness) +
                                    (1 | school_id) + (1 | school_id:teacher_id), district, control = ctrl))
res$district_slope <- facts(lmer(achievement ~ prior + coached + leadership + (1 + coached | school_id) +
                                   (1 | school_id:teacher_id), district, control = ctrl))
write(toJSON(res, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "lme4.json"))
cat("wrote", length(res), "fits; lme4", as.character(packageVersion("lme4")), "\n")
