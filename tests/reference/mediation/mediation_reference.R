# Reference fits for evalkit.mediation: the two equations of each multilevel
# mediation model fitted by lme4 1.1-31 / lmerTest 3.1 (Satterthwaite df), and the
# 2-2-1 models as two-level SEMs by lavaan 0.6 (ML, random intercepts).
# Run from the repository root:  Rscript tests/reference/mediation/mediation_reference.R
# Data: the public High School and Beyond extract (Raudenbush & Bryk 2002; sector ->
# disciplinary climate -> mathematics achievement, a 2-2-1 design) and simulated sets
# written by make_mediation_data.py (no real records).
# Every lmer fit takes the better of bobyqa (rhoend 1e-12) and nloptwrap (tight
# tolerances); the single-level a paths are lm() fits.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(lavaan); library(jsonlite)
})
out <- file.path("tests", "reference", "mediation")
ctrl_bobyqa <- lmerControl(optimizer = "bobyqa", check.conv.singular = "ignore",
                           optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
ctrl_nlopt <- lmerControl(optimizer = "nloptwrap", check.conv.singular = "ignore",
                          optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-14, xtol_rel = 0,
                                         ftol_rel = 0, maxeval = 1e5))
best_fit <- function(formula, data, REML) {
  fits <- list(lmerTest::lmer(formula, data, REML = REML, control = ctrl_bobyqa),
               lmerTest::lmer(formula, data, REML = REML, control = ctrl_nlopt))
  crit <- sapply(fits, function(f) if (REML) REMLcrit(f) else deviance(f))
  fits[[which.min(crit)]]
}
lmer_facts <- function(fit) {
  tab <- summary(fit)$coefficients
  list(terms = rownames(tab), beta = unname(tab[, "Estimate"]),
       se = unname(tab[, "Std. Error"]), df = unname(tab[, "df"]),
       variances = as.data.frame(VarCorr(fit))$vcov,
       groups = as.data.frame(VarCorr(fit))$grp,
       criterion = if (isREML(fit)) REMLcrit(fit) else deviance(fit))
}
lm_facts <- function(fit, ML) {
  n <- nobs(fit); p <- length(coef(fit))
  scale <- if (ML) (n - p) / n else 1
  list(terms = names(coef(fit)), beta = unname(coef(fit)),
       se = unname(sqrt(diag(vcov(fit)) * scale)), df = rep(n - p, p),
       sigma2 = sum(residuals(fit)^2) / (if (ML) n else n - p))
}
first_rows <- function(data, id) data[!duplicated(data[[id]]), ]
results <- list()
for (method in c("REML", "ML")) {
  REML <- method == "REML"
  ML <- !REML
  # HSB: sector -> disclim -> mathach, meanses in both equations; ses in the outcome one.
  hsb <- read.csv(file.path(out, "hsb.csv.gz"))
  schools <- first_rows(hsb, "school")
  results[[paste0("hsb_", method)]] <- list(
    a = lm_facts(lm(disclim ~ sector + meanses, schools), ML),
    b = lmer_facts(best_fit(mathach ~ sector + disclim + meanses + ses + (1 | school), hsb, REML)))
  # 2-2-1 with two levels, string teacher IDs.
  t221 <- read.csv(file.path(out, "teachers_221.csv"))
  teachers <- first_rows(t221, "teacher_id")
  results[[paste0("teachers_221_", method)]] <- list(
    a = lm_facts(lm(instruction ~ coached + experience, teachers), ML),
    b = lmer_facts(best_fit(achievement ~ coached + instruction + experience + prior +
                              (1 | teacher_id), t221, REML)))
  # 2-1-1: the student-level mediator split into its teacher mean and the deviation.
  s211 <- read.csv(file.path(out, "students_211.csv"))
  s211$engagement_between <- ave(s211$engagement, s211$teacher_id)
  s211$engagement_within <- s211$engagement - s211$engagement_between
  results[[paste0("students_211_", method)]] <- list(
    a = lmer_facts(best_fit(engagement ~ coached + (1 | teacher_id), s211, REML)),
    b = lmer_facts(best_fit(achievement ~ coached + engagement_within + engagement_between +
                              (1 | teacher_id), s211, REML)))
  # Three levels, teachers randomised within schools (2-2-1), leadership a school covariate.
  d221 <- read.csv(file.path(out, "district_221.csv"))
  teach <- first_rows(d221, "teacher_id")
  d221$leadership_c <- d221$leadership - mean(teach$leadership)
  teach$leadership_c <- teach$leadership - mean(teach$leadership)
  results[[paste0("district_221_", method)]] <- list(
    a = lmer_facts(best_fit(instruction ~ coached + leadership + (1 | school_id), teach, REML)),
    b = lmer_facts(best_fit(achievement ~ coached + instruction + leadership + prior +
                              (1 | school_id/teacher_id), d221, REML)),
    # first- and second-stage moderation by leadership (centred at the teachers' mean)
    a_first = lmer_facts(best_fit(instruction ~ coached * leadership_c + (1 | school_id),
                                  teach, REML)),
    b_second = lmer_facts(best_fit(achievement ~ coached + instruction * leadership_c + prior +
                                     (1 | school_id/teacher_id), d221, REML)))
  # Schools randomised (3-2-1): instruction split at the school level.
  d321 <- read.csv(file.path(out, "district_321.csv"))
  teach3 <- first_rows(d321, "teacher_id")
  means <- tapply(teach3$instruction, teach3$school_id, mean)
  d321$instruction_between <- unname(means[d321$school_id])
  d321$instruction_within <- d321$instruction - d321$instruction_between
  results[[paste0("district_321_", method)]] <- list(
    a = lmer_facts(best_fit(instruction ~ coached + leadership + (1 | school_id), teach3, REML)),
    b = lmer_facts(best_fit(achievement ~ coached + instruction_within + instruction_between +
                              leadership + prior + (1 | school_id/teacher_id), d321, REML)))
}
# lavaan two-level SEMs of the 2-2-1 models (ML). The outcome's within part has no
# predictors, so each model coincides with the lm/lmer pair fitted by ML without
# student-level covariates; expected information, as lme4's vcov uses.
sem_facts <- function(model, data, cluster) {
  fit <- sem(model, data = data, cluster = cluster, estimator = "ML",
             information = "observed", control = list(rel.tol = 1e-10, iter.max = 10000))
  pe <- parameterEstimates(fit)
  keep <- pe$label != ""
  list(labels = pe$label[keep], est = pe$est[keep], se = pe$se[keep],
       loglik = as.numeric(logLik(fit)), converged = lavInspect(fit, "converged"))
}
hsb <- read.csv(file.path(out, "hsb.csv.gz"))
results$hsb_lavaan <- sem_facts('
  level: 1
    mathach ~~ mathach
  level: 2
    disclim ~ a*sector + meanses
    mathach ~ b*disclim + direct*sector + meanses
    indirect := a*b
    total := direct + a*b
', hsb, "school")
t221 <- read.csv(file.path(out, "teachers_221.csv"))
results$teachers_221_lavaan <- sem_facts('
  level: 1
    achievement ~~ achievement
  level: 2
    instruction ~ a*coached + experience
    achievement ~ b*instruction + direct*coached + experience
    indirect := a*b
    total := direct + a*b
', t221, "teacher_id")
# the same two data sets by lm/lmer (ML) without the student-level covariate
hsb_schools <- first_rows(hsb, "school")
t221_teachers <- first_rows(t221, "teacher_id")
results$hsb_nocov_ML <- list(
  a = lm_facts(lm(disclim ~ sector + meanses, hsb_schools), TRUE),
  b = lmer_facts(best_fit(mathach ~ sector + disclim + meanses + (1 | school), hsb, FALSE)))
results$teachers_221_nocov_ML <- list(
  a = lm_facts(lm(instruction ~ coached + experience, t221_teachers), TRUE),
  b = lmer_facts(best_fit(achievement ~ coached + instruction + experience + (1 | teacher_id),
                          t221, FALSE)))
results$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                         lmerTest = as.character(packageVersion("lmerTest")),
                         lavaan = as.character(packageVersion("lavaan")))
writeLines(toJSON(results, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out, "mediation.json"))
