# Reference fits of generalized linear mixed models for evalkit.multilevel.glmm from
# lme4 1.1-31 glmer (Debian r-cran-lme4), Laplace and adaptive Gauss-Hermite quadrature.
# Run from the repository root:  Rscript tests/reference/multilevel/glmm_reference.R
# Data: lme4's cbpp, grouseticks and VerbAgg (Bates et al. 2015, J. Stat. Softw. 67(1);
# grouseticks from Elston et al. 2001, Parasitology 122), mlmRev's Contraception (Steele
# et al. 1996, Bangladesh Fertility Survey), and the simulated proficiency data written by
# make_glmm_data.py (no real records).
#
# glmer's optimisers stop short of the optimum of the Laplace (or AGQ) deviance, and its
# standard errors come from a finite-difference Hessian with step 1e-4. Each model is
# therefore fitted with bobyqa (rhoend 1e-12, PIRLS tolerance 1e-12), continued by nlminb
# and polished by Newton steps with step halving on glmer's own deviance function of (theta, beta) (numDeriv
# gradients and Hessians, theta held on its bound when it sits there), and the standard
# errors are recomputed from a Richardson-extrapolated second-difference Hessian of that
# function at the polished optimum (central_hessian): vcov(beta) = [2 H^-1]_beta, lme4's
# own definition. glmer's reported SEs and
# log-likelihood at its stopping point are kept alongside ("lme4_*").
#
# lme4's nAGQ > 1 deviance function leaves out the saturated log-likelihood of a
# binomial response with trials (its Laplace deviance keeps it), so its AGQ logLik is
# not on the same scale as the Laplace one; "deviance" below is always the complete
# -2 log-likelihood (the constant added back for AGQ).
suppressPackageStartupMessages({
  library(lme4); library(mlmRev); library(numDeriv); library(jsonlite)
})
out <- file.path("tests", "reference", "multilevel")
ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12, check.conv.singular = "ignore",
                     optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

polish <- function(dd0, pars, lower, scale) {
  # Newton steps with step halving on coordinates scaled by `scale` (the SD of each
  # fixed-effect column; 1 for theta), so that numDeriv's steps move every term of the
  # linear predictor alike; stops when a step gains less than 1e-13
  dd <- function(x) dd0(x / scale)
  pars <- pars * scale
  lower <- lower * scale
  # nlminb (PORT quasi-Newton) from bobyqa's stopping point first: on grouseticks
  # bobyqa stops with a gradient of 5 where Newton's first steps cannot improve
  port <- nlminb(pars, dd, lower = lower,
                 control = list(rel.tol = 1e-15, x.tol = 1e-12, eval.max = 5000, iter.max = 2000))
  if (port$objective < dd(pars)) pars <- port$par
  value <- dd(pars)
  for (step in 1:50) {
    free <- pars > lower + 1e-8
    g <- numDeriv::grad(dd, pars)[free]
    h <- numDeriv::hessian(dd, pars)[free, free, drop = FALSE]
    move <- tryCatch(solve(h, g), error = function(e) NULL)
    if (is.null(move)) break
    size <- 1
    repeat {
      trial <- pars
      trial[free] <- pars[free] - size * move
      trial <- pmax(trial, lower)
      new <- dd(trial)
      if (new < value || size < 1e-4) break
      size <- size / 2
    }
    if (!(new < value)) break
    gain <- value - new
    pars <- trial
    value <- new
    if (gain < 1e-13) break
  }
  pars / scale
}

central_hessian <- function(fn0, pars, scale) {
  # Second differences with steps h = 2e-3 and 1e-3 (times max(|x|, 1)) on the scaled
  # coordinates, combined by Richardson extrapolation, then scaled back. numDeriv's
  # default first step (10% of each parameter) disagrees with them by up to 1.3e-5
  # (relative) in the SEs of the proficiency model, while steps of 1e-3 and 3e-3 agree
  # with each other to 1e-7.
  fn <- function(x) fn0(x / scale)
  pars <- pars * scale
  k <- length(pars)
  f0 <- fn(pars)
  at <- function(h) {
    out <- matrix(0, k, k)
    for (i in 1:k) {
      e <- rep(0, k); e[i] <- h[i]
      out[i, i] <- (fn(pars + e) - 2 * f0 + fn(pars - e)) / h[i]^2
      if (i < k) for (j in (i + 1):k) {
        d <- rep(0, k); d[j] <- h[j]
        out[i, j] <- out[j, i] <- (fn(pars + e + d) - fn(pars + e - d) - fn(pars - e + d) +
                                     fn(pars - e - d)) / (4 * h[i] * h[j])
      }
    }
    out
  }
  base <- pmax(abs(pars), 1)
  (4 * at(1e-3 * base) - at(2e-3 * base)) / 3 * outer(scale, scale)
}

conditional <- function(dd) {
  # conditional modes b = Lambda u and their variances diag(Lambda H^-1 Lambda'),
  # H = Lambda' Z' W Z Lambda + I at the PIRLS mode of the last evaluation
  env <- environment(dd)
  lt <- as.matrix(env$pp$Lambdat)
  zt <- as.matrix(env$pp$Zt)
  w <- env$resp$sqrtXwt^2
  a <- lt %*% zt
  h <- a %*% (w * t(a)) + diag(nrow(a))
  list(b = as.vector(env$pp$b(1)), var = diag(t(lt) %*% solve(h, lt)))
}

saturated <- function(fit) {
  # the binomial saturated log-likelihood lme4's AGQ deviance leaves out
  fam <- family(fit)$family
  if (fam != "binomial") return(0)
  n <- weights(fit, type = "prior")
  y <- getME(fit, "y")
  sum(dbinom(round(y * n), n, y, log = TRUE))
}

exact_laplace <- function(dd) {
  # glmer's Laplace deviance takes log|L|^2 from the factor built with the weights of
  # the last-but-one PIRLS iterate (the loop stops after its last step without
  # refactoring), about 5e-5 off on grouseticks' 403 observation-level effects. The
  # Laplace approximation is defined at the mode: refactor with the final weights.
  env <- environment(dd)
  function(pars) {
    dd(pars)
    env$pp$updateXwts(env$resp$sqrtXwt)
    env$pp$updateDecomp()
    env$resp$aic() + env$pp$sqrL(1) + env$pp$ldL2()
  }
}

reference <- function(fit, nagq) {
  dd_lme4 <- update(fit, devFunOnly = TRUE)
  dd <- if (nagq == 1) exact_laplace(dd_lme4) else dd_lme4
  theta <- getME(fit, "theta")
  p <- length(fixef(fit))
  lower <- c(getME(fit, "lower"), rep(-Inf, p))
  x <- getME(fit, "X")
  spread <- apply(x, 2, sd)
  scale <- c(rep(1, length(theta)), ifelse(spread > 0, spread, 1))
  pars <- polish(dd, c(theta, fixef(fit)), lower, scale)
  dev <- dd(pars)
  if (nagq > 1) dev <- dev - 2 * saturated(fit)
  free <- pars > lower + 1e-8
  hess <- central_hessian(dd, pars, scale)[free, free, drop = FALSE]
  vc <- 2 * solve(hess)
  cov_beta <- vc[match(seq_len(p) + length(theta), which(free)),
                 match(seq_len(p) + length(theta), which(free)), drop = FALSE]
  grad <- numDeriv::grad(dd, pars)
  dd(pars)
  cond <- conditional(dd_lme4)
  full_cov <- matrix(0, length(pars), length(pars))
  full_cov[free, free] <- vc
  list(
    full_cov = full_cov,
    terms = names(fixef(fit)),
    theta = unname(pars[seq_along(theta)]),
    beta = unname(pars[-seq_along(theta)]),
    se = unname(sqrt(diag(cov_beta))),
    deviance = dev,
    gradient = max(abs(grad[free])),
    n = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    ranef_b = cond$b,
    ranef_sd = sqrt(cond$var),
    lme4_beta = unname(fixef(fit)),
    lme4_se = unname(sqrt(diag(as.matrix(vcov(fit))))),
    lme4_loglik = as.numeric(logLik(fit)),
    lme4_deviance_at_optimum = dd_lme4(pars) - if (nagq > 1) 2 * saturated(fit) else 0,
    lme4_theta = unname(theta)
  )
}

fit_ref <- function(formula, data, family, nagq = 1, ...) {
  fit <- glmer(formula, data, family = family, nAGQ = nagq, control = ctrl, ...)
  reference(fit, nagq)
}

cbpp_data <- cbpp
cbpp_data$herd <- paste0("H", cbpp_data$herd)
cbpp_data$period <- paste0("P", cbpp_data$period)
write.csv(cbpp_data, file.path(out, "cbpp.csv"), row.names = FALSE)

contra <- Contraception
contra$use <- as.integer(contra$use == "Y")
contra$urban_y <- as.integer(contra$urban == "Y")
contra$age2 <- contra$age^2
contra$district <- paste0("D", contra$district)
contra$livch <- paste0("L", sub("\\+", "plus", as.character(contra$livch)))
contra <- contra[, c("woman", "district", "use", "age", "age2", "urban_y", "livch")]
write.csv(contra, file.path(out, "contraception.csv"), row.names = FALSE)

grouse <- grouseticks
grouse$YEAR <- paste0("Y", grouse$YEAR)
grouse$BROOD <- paste0("B", grouse$BROOD)
grouse$LOCATION <- paste0("L", grouse$LOCATION)
grouse$INDEX <- paste0("I", grouse$INDEX)
grouse <- grouse[, c("INDEX", "TICKS", "BROOD", "cHEIGHT", "YEAR", "LOCATION")]
write.csv(grouse, file.path(out, "grouseticks.csv"), row.names = FALSE)

verb <- VerbAgg
verb$r2 <- as.integer(verb$r2 == "Y")
verb$id <- paste0("P", verb$id)
verb <- verb[, c("id", "r2", "Anger", "Gender", "btype", "situ")]
write.csv(verb, gzfile(file.path(out, "verbagg.csv.gz")), row.names = FALSE)

prof <- read.csv(file.path(out, "proficiency.csv"))
prof$log_days <- log(prof$days_enrolled)

contra_f <- use ~ age + age2 + urban_y + livch
res <- list(
  cbpp = fit_ref(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_data, binomial),
  cbpp_agq = fit_ref(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_data,
                     binomial, nagq = 9),
  contraception = fit_ref(update(contra_f, . ~ . + (1 | district)), contra, binomial),
  contraception_agq = fit_ref(update(contra_f, . ~ . + (1 | district)), contra, binomial,
                              nagq = 7),
  contraception_probit = fit_ref(update(contra_f, . ~ . + (1 | district)), contra,
                                 binomial(link = "probit")),
  contraception_slope = fit_ref(update(contra_f, . ~ . + (1 + urban_y | district)), contra,
                                binomial),
  verbagg = fit_ref(r2 ~ Anger + Gender + btype + situ + (1 | id), verb, binomial),
  grouseticks = fit_ref(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD) + (1 | INDEX),
                        grouse, poisson),
  proficiency = fit_ref(proficient ~ coached + prior + leadership + (1 | school_id) +
                          (1 | teacher_id), prof, binomial),
  proficiency_slope = fit_ref(proficient ~ coached + prior + leadership +
                                (1 + prior | school_id) + (1 | teacher_id), prof, binomial),
  absences = fit_ref(absences ~ coached + prior + offset(log_days) + (1 | school_id) +
                       (1 | teacher_id), prof, poisson)
)
# counterfactual predictions for the proficiency model (coached = 1 and 0 for every
# row): conditional (random effects 0) and population-averaged (integrated over the
# school and teacher intercepts with stats::integrate), with delta-method SEs from
# numDeriv's Jacobian and the covariance of (theta, beta) at the polished optimum
prof_ref <- res$proficiency
prof_x <- function(value) {
  x <- model.matrix(~ coached + prior + leadership, transform(prof, coached = value))
  x
}
margins <- function(pars) {
  theta <- pars[1:2]
  beta <- pars[-(1:2)]
  sd_total <- sqrt(sum(theta^2))
  out <- c()
  for (value in c(1, 0)) {
    eta <- drop(prof_x(value) %*% beta)
    pa <- sapply(eta, function(e) integrate(function(b) plogis(e + b) * dnorm(b, 0, sd_total),
                                             -Inf, Inf, rel.tol = 1e-12)$value)
    out <- c(out, mean(plogis(eta)), mean(pa))
  }
  out
}
prof_pars <- c(prof_ref$theta, prof_ref$beta)
centre <- margins(prof_pars)
jac <- numDeriv::jacobian(margins, prof_pars)
contrasts <- rbind(c(1, 0, 0, 0), c(0, 0, 1, 0), 100 * c(1, 0, -1, 0),
                   c(0, 1, 0, 0), c(0, 0, 0, 1), 100 * c(0, 1, 0, -1))
res$proficiency_margins <- list(
  estimate = drop(contrasts %*% centre),
  se = sqrt(diag(contrasts %*% jac %*% prof_ref$full_cov %*% t(jac) %*% t(contrasts)))
)
res$cbpp_null <- fit_ref(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp_data, binomial)
res$cbpp_lrt <- as.list(anova(
  glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp_data, binomial, control = ctrl),
  glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_data, binomial, control = ctrl)
)[2, c("Chisq", "Df", "Pr(>Chisq)")])
# profile-likelihood interval of cbpp's herd SD: lme4's confint (a spline through a
# grid of profile points) and the exact crossings, found by uniroot on the profile
# (the Laplace deviance minimised by nlminb over the fixed effects, theta held)
cbpp_fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_data, binomial,
                  control = ctrl)
cbpp_dd <- exact_laplace(update(cbpp_fit, devFunOnly = TRUE))
profiled <- function(theta) {
  start <- res$cbpp$beta
  nlminb(start, function(beta) cbpp_dd(c(theta, beta)),
         control = list(rel.tol = 1e-15, x.tol = 1e-12, eval.max = 5000, iter.max = 2000))$objective
}
crit <- qchisq(0.95, 1)
excess <- function(theta) profiled(theta) - res$cbpp$deviance - crit
res$cbpp_profile <- list(
  lme4_confint = unname(confint(cbpp_fit, parm = 1, method = "profile")[1, ]),
  exact = c(uniroot(excess, c(1e-3, res$cbpp$theta), tol = 1e-12)$root,
            uniroot(excess, c(res$cbpp$theta, 5), tol = 1e-12)$root)
)
res$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(res, digits = I(17), auto_unbox = TRUE, pretty = TRUE),
           file.path(out, "glmm.json"))
