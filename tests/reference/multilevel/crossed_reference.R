# Reference fits of crossed random-effects models for evalkit.multilevel from
# lme4 1.1-31 / lmerTest 3.1 / pbkrtest 0.5 (Debian r-cran-* packages).
# Run from the repository root:  Rscript tests/reference/multilevel/crossed_reference.R
# Data: lme4's Penicillin and InstEval (Bates et al. 2015, J. Stat. Softw. 67(1)),
# and two simulated sets written by make_crossed_data.py (no real records).
# Every model is fitted with bobyqa (rhoend 1e-12) and nloptwrap (tight tolerances);
# the fit with the lower criterion is kept and polished (see polish()).
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(numDeriv); library(jsonlite)
})
out <- file.path("tests", "reference", "multilevel")
ctrl_bobyqa <- lmerControl(optimizer = "bobyqa", check.conv.singular = "ignore",
                           optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5))
ctrl_nlopt <- lmerControl(optimizer = "nloptwrap", check.conv.singular = "ignore",
                          optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-14, xtol_rel = 0,
                                         ftol_rel = 0, maxeval = 1e5))
# Both optimisers still stop up to 1e-5 (relative) short of the optimum in flat
# directions (e.g. the department variance of InstEval's three-factor model), so the
# better of the two is polished by Newton steps on lme4's own deviance function
# (numDeriv gradients and Hessians, coordinates on a bound held), and the model is
# then evaluated at the polished theta with an "optimizer" that only evaluates.
at_theta <- function(par, fn, lower, upper, control) {
  list(par = par, fval = fn(par), conv = 0, message = "evaluated at the polished optimum")
}
polish <- function(fit, formula, data, REML) {
  dd <- update(fit, devFunOnly = TRUE)
  theta <- getME(fit, "theta")
  lower <- getME(fit, "lower")
  free <- theta > lower + 1e-8
  value <- dd(theta)
  for (step in 1:20) {
    g <- numDeriv::grad(dd, theta)[free]
    h <- numDeriv::hessian(dd, theta)[free, free, drop = FALSE]
    move <- tryCatch(solve(h, g), error = function(e) NULL)
    if (is.null(move)) break
    trial <- theta
    trial[free] <- theta[free] - move
    trial <- pmax(trial, lower)
    new <- dd(trial)
    if (!(new < value)) break
    gain <- value - new
    theta <- trial
    value <- new
    if (gain < 1e-13) break
  }
  lmer(formula, data, REML = REML, start = list(theta = theta),
       control = lmerControl(optimizer = at_theta, calc.derivs = FALSE,
                             check.conv.singular = "ignore"))
}
best_fit <- function(formula, data, REML) {
  fits <- list(lmer(formula, data, REML = REML, control = ctrl_bobyqa),
               lmer(formula, data, REML = REML, control = ctrl_nlopt))
  crit <- sapply(fits, function(f) if (REML) REMLcrit(f) else deviance(f))
  polish(fits[[which.min(crit)]], formula, data, REML)
}
facts <- function(fit, kr = FALSE, satterthwaite = TRUE) {
  vc <- as.data.frame(VarCorr(fit))
  res <- list(beta = unname(fixef(fit)), se = unname(sqrt(diag(as.matrix(vcov(fit))))),
              terms = names(fixef(fit)), theta = unname(getME(fit, "theta")),
              sigma2 = sigma(fit)^2, criterion = if (isREML(fit)) REMLcrit(fit) else deviance(fit),
              REML = isREML(fit), logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit),
              vc_grp = vc$grp, vc_var1 = vc$var1, vc_var2 = vc$var2, vc_vcov = vc$vcov,
              singular = isSingular(fit), ngrps = as.list(ngrps(fit)))
  if (satterthwaite) {
    s <- summary(fit, ddf = "Satterthwaite")$coefficients
    res$df_satterthwaite <- unname(s[, "df"])
  }
  if (kr) {
    s <- summary(fit, ddf = "Kenward-Roger")$coefficients
    res$df_kr <- unname(s[, "df"])
    res$se_kr <- unname(s[, "Std. Error"])
  }
  res
}
res <- list()

pen <- lme4::Penicillin
write.csv(pen, file.path(out, "penicillin.csv"), row.names = FALSE)
f <- best_fit(diameter ~ 1 + (1 | plate) + (1 | sample), pen, TRUE)
res$penicillin <- facts(f, kr = TRUE)
# profile() re-optimises with the fit's optimizer, so profile a bobyqa refit started
# at the polished optimum (not the evaluate-only fit).
fp <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen, REML = TRUE, control = ctrl_bobyqa,
           start = list(theta = getME(f, "theta")))
pr <- confint(fp, method = "profile", oldNames = FALSE)
res$penicillin$profile <- list(parameter = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]))
re <- ranef(f, condVar = TRUE)
res$penicillin$ranef_plate <- unname(re$plate[, 1])
res$penicillin$ranef_plate_sd <- unname(sqrt(attr(re$plate, "postVar")[1, 1, ]))
res$penicillin$ranef_sample <- unname(re$sample[, 1])
res$penicillin$ranef_sample_sd <- unname(sqrt(attr(re$sample, "postVar")[1, 1, ]))
res$penicillin$ranef_plate_levels <- rownames(re$plate)
res$penicillin_ml <- facts(best_fit(diameter ~ 1 + (1 | plate) + (1 | sample), pen, FALSE))

obs <- read.csv(file.path(out, "observation_scores.csv"))
g <- best_fit(score ~ 1 + (1 | teacher) + (1 | teacher:lesson) + (1 | rater) + (1 | teacher:rater), obs, TRUE)
res$gstudy <- facts(g, kr = TRUE)
res$rater_slope <- facts(best_fit(score ~ coached + (1 | teacher) + (1 + coached | rater), obs, TRUE), kr = TRUE)
res$rater_slope_ml <- facts(best_fit(score ~ coached + (1 | teacher) + (1 + coached | rater), obs, FALSE))

panel <- read.csv(file.path(out, "student_panel.csv"))
res$panel <- facts(best_fit(score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school), panel, TRUE), kr = TRUE)
res$panel_ml <- facts(best_fit(score ~ year + coached + (1 | student) + (1 | teacher) + (1 | school), panel, FALSE))

ie <- lme4::InstEval
write.csv(data.frame(s = as.character(ie$s), d = as.character(ie$d), studage = as.character(ie$studage),
                     lectage = as.character(ie$lectage), service = as.integer(ie$service == "1"),
                     dept = as.character(ie$dept), y = ie$y),
          gzfile(file.path(out, "insteval.csv.gz")), row.names = FALSE)
fie <- best_fit(y ~ service * dept + (1 | s) + (1 | d), ie, TRUE)
res$insteval <- facts(fie)
res$insteval$dept_levels <- levels(ie$dept)
res$insteval_ml3 <- facts(best_fit(y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept), ie, FALSE))
res$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
write(toJSON(res, digits = NA, auto_unbox = TRUE, na = "null"), file.path(out, "crossed.json"))
cat("wrote", length(res) - 1, "fits\n")
