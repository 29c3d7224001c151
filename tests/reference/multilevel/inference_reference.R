# Reference small-sample inference for evalkit.multilevel: lmerTest (Satterthwaite),
# pbkrtest (Kenward-Roger), nlme (containment df), clubSandwich (CR2 on nlme::lme),
# lme4 (profile CIs, conditional modes, likelihood-ratio tests).
# Run from the repository root:  Rscript tests/reference/multilevel/inference_reference.R
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(nlme); library(clubSandwich); library(jsonlite)
})
out <- file.path("tests", "reference", "multilevel")
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5),
                    check.conv.singular = "ignore")
lctrl <- lmeControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, niterEM = 100, msTol = 1e-12)
hsb <- read.csv(file.path("evalkit", "data", "datasets", "hsb.csv"), colClasses = c(school = "character"))
hsb$ses_c <- hsb$ses - ave(hsb$ses, hsb$school)
sleep <- read.csv(file.path(out, "sleepstudy.csv"))
district <- read.csv(file.path(out, "district.csv"))

# Nakagawa-Schielzeth R2 with Johnson's (2014) random-slope term, written out here.
r2_ns <- function(fit) {
  X <- getME(fit, "X")
  var_f <- var(as.vector(X %*% fixef(fit)))
  mf <- model.frame(fit)
  var_r <- 0
  for (g in names(VarCorr(fit))) {
    S <- VarCorr(fit)[[g]]
    cols <- colnames(S)
    Zg <- sapply(cols, function(cc) if (cc == "(Intercept)") rep(1, nrow(mf)) else mf[[cc]])
    Zg <- matrix(Zg, ncol = length(cols))
    var_r <- var_r + mean(rowSums((Zg %*% S) * Zg))
  }
  s2 <- sigma(fit)^2
  c(marginal = var_f / (var_f + var_r + s2), conditional = (var_f + var_r) / (var_f + var_r + s2))
}

inference <- function(fit, lme_fit = NULL, tests = list()) {
  sm <- summary(fit, ddf = "Satterthwaite")$coefficients
  kr <- summary(fit, ddf = "Kenward-Roger")$coefficients
  res <- list(terms = rownames(sm), beta = unname(sm[, "Estimate"]),
              se = unname(sm[, "Std. Error"]), df_satterthwaite = unname(sm[, "df"]),
              se_kr = unname(kr[, "Std. Error"]), df_kr = unname(kr[, "df"]),
              r2 = as.list(r2_ns(fit)))
  ftests <- list()
  for (nm in names(tests)) {
    L <- tests[[nm]]
    s <- contestMD(fit, L, ddf = "Satterthwaite")
    k <- contestMD(fit, L, ddf = "Kenward-Roger")
    ftests[[nm]] <- list(L = L, F_satterthwaite = s[["F value"]], ddf_satterthwaite = s[["DenDF"]],
                         F_kr = k[["F value"]], ddf_kr = k[["DenDF"]], ndf = s[["NumDF"]])
  }
  res$ftests <- ftests
  if (!is.null(lme_fit)) {
    tt <- summary(lme_fit)$tTable
    res$df_containment <- unname(tt[, "DF"])
    res$lme_beta <- unname(tt[, "Value"])
    cr2 <- coef_test(lme_fit, vcov = "CR2", test = "Satterthwaite")
    res$se_cr2 <- unname(cr2$SE)
    res$df_cr2 <- unname(cr2$df_Satt)
  }
  res
}

modes <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  lapply(re, function(tab) {
    pv <- attr(tab, "postVar")
    list(groups = rownames(tab), modes = unname(as.matrix(tab)),
         condsd = t(sapply(seq_len(nrow(tab)), function(i) sqrt(diag(as.matrix(pv[, , i]))))))
  })
}

res <- list()
f <- lmer(mathach ~ 1 + (1 | school), hsb, control = ctrl)
res$hsb_null <- inference(f, lme(mathach ~ 1, random = ~ 1 | school, data = hsb, control = lctrl))
f <- lmer(mathach ~ 1 + ses_c + (1 + ses_c | school), hsb, control = ctrl)
res$hsb_rc <- inference(f, lme(mathach ~ 1 + ses_c, random = ~ 1 + ses_c | school, data = hsb, control = lctrl))
res$hsb_rc$ranef <- modes(f)
pr <- confint(f, method = "profile", oldNames = FALSE, level = 0.95)
res$hsb_rc$profile <- list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]))
L2 <- matrix(0, 2, 6); L2[1, 5] <- 1; L2[2, 6] <- 1
f <- lmer(mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school), hsb, control = ctrl)
res$hsb_full <- inference(f, lme(mathach ~ 1 + ses_c * (sector + meanses), random = ~ 1 + ses_c | school,
                                 data = hsb, control = lctrl), tests = list(interactions = L2))
res$hsb_uncorrelated <- inference(lmer(mathach ~ 1 + ses_c + (ses_c || school), hsb, control = ctrl),
                                  lme(mathach ~ 1 + ses_c, random = list(school = pdDiag(~ 1 + ses_c)),
                                      data = hsb, control = lctrl))
f <- lmer(Reaction ~ Days + (Days | Subject), sleep, control = ctrl)
res$sleep_correlated <- inference(f, lme(Reaction ~ Days, random = ~ Days | Subject, data = sleep, control = lctrl))
res$sleep_correlated$ranef <- modes(f)
pr <- confint(f, method = "profile", oldNames = FALSE, level = 0.95)
res$sleep_correlated$profile <- list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]))

f3 <- lmer(achievement ~ prior + coached * (leadership + collaboration + readiness) +
             (1 | school_id) + (1 | school_id:teacher_id), district, control = ctrl)
L3 <- matrix(0, 3, 9); L3[1, 7] <- 1; L3[2, 8] <- 1; L3[3, 9] <- 1
res$district_3level <- inference(
  f3, lme(achievement ~ prior + coached * (leadership + collaboration + readiness),
          random = ~ 1 | school_id / teacher_id, data = district, control = lctrl),
  tests = list(moderators = L3))
res$district_3level$ranef <- modes(f3)
pr <- confint(f3, method = "profile", oldNames = FALSE, level = 0.95)
res$district_3level$profile <- list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]))
res$district_slope <- inference(
  lmer(achievement ~ prior + coached + leadership + (1 + coached | school_id) + (1 | school_id:teacher_id),
       district, control = ctrl),
  lme(achievement ~ prior + coached + leadership,
      random = list(school_id = ~ 1 + coached, teacher_id = ~ 1), data = district,
      control = lmeControl(opt = "optim", maxIter = 500, msMaxIter = 500)))

# Likelihood-ratio tests of nested models (ML refits, as anova.merMod does).
m0 <- lmer(mathach ~ 1 + ses_c + (1 + ses_c | school), hsb, control = ctrl)
m1 <- lmer(mathach ~ 1 + ses_c * (sector + meanses) + (1 + ses_c | school), hsb, control = ctrl)
a <- anova(m0, m1)
res$lrt_fixed <- list(chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2],
                      deviance = unname(a$deviance))
m0 <- lmer(mathach ~ 1 + ses_c + (1 | school), hsb, control = ctrl)
m1 <- lmer(mathach ~ 1 + ses_c + (1 + ses_c | school), hsb, control = ctrl)
a <- anova(m0, m1, refit = FALSE)
res$lrt_random <- list(chisq = a$Chisq[2], df = a$Df[2], p = a[["Pr(>Chisq)"]][2])
write(toJSON(res, digits = NA, auto_unbox = TRUE, na = "null", matrix = "rowmajor"), file.path(out, "inference.json"))
cat("wrote inference references; lmerTest", as.character(packageVersion("lmerTest")),
    "pbkrtest", as.character(packageVersion("pbkrtest")), "nlme", as.character(packageVersion("nlme")),
    "clubSandwich", as.character(packageVersion("clubSandwich")), "\n")
