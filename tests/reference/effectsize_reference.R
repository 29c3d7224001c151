# Reference effect sizes from metafor::escalc on public data (metafor 3.8.1, metadat 1.2-0).
# Run from the repository root:  Rscript tests/reference/effectsize_reference.R
# Writes tests/reference/effectsize_smd.csv and tests/reference/effectsize_cox.csv.
suppressPackageStartupMessages({
  library(metafor)
  library(metadat)
})
here <- file.path("tests", "reference")

# Standardised mean differences with the exact gamma-function correction
# (measure = "SMD", vtype = "LS": vi = 1/n1 + 1/n2 + yi^2 / (2 (n1 + n2))).
smd <- escalc(measure = "SMD", m1i = m1i, sd1i = sd1i, n1i = n1i,
              m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999, vtype = "LS")
write.csv(data.frame(study = smd$study, m1i = smd$m1i, sd1i = smd$sd1i, n1i = smd$n1i,
                     m2i = smd$m2i, sd2i = smd$sd2i, n2i = smd$n2i,
                     yi = as.numeric(smd$yi), vi = as.numeric(smd$vi)),
          file.path(here, "effectsize_smd.csv"), row.names = FALSE)

# Cox index (measure = "OR2DN": log odds ratio / 1.65, the normal-based conversion;
# "OR2DL" would be the logistic sqrt(3)/pi conversion) on the BCG trials.
cox <- escalc(measure = "OR2DN", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
write.csv(data.frame(trial = cox$trial, tpos = cox$tpos, tneg = cox$tneg,
                     cpos = cox$cpos, cneg = cox$cneg,
                     yi = as.numeric(cox$yi), vi = as.numeric(cox$vi)),
          file.path(here, "effectsize_cox.csv"), row.names = FALSE)
cat("metafor", as.character(packageVersion("metafor")), "\n")
