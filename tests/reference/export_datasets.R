# Export the public datasets bundled with evalkit (evalkit/data/datasets/*.csv).
# Run from the repository root:  Rscript tests/reference/export_datasets.R
# Sources: Debian packages r-cran-metadat (1.2-0), r-cran-nlme (3.1-162) and
# r-cran-lme4 (1.1-31, Penicillin and cbpp);
# citations and licences are in evalkit/data/SOURCES.md.
suppressPackageStartupMessages({
  library(metadat)
  library(nlme)
})
out <- file.path("evalkit", "data", "datasets")
dir.create(out, showWarnings = FALSE, recursive = TRUE)
write_csv <- function(data, name) {
  path <- file.path(out, paste0(name, ".csv"))
  write.csv(data, path, row.names = FALSE, na = "")
  cat(sprintf("%-22s %5d rows x %2d columns -> %s\n", name, nrow(data), ncol(data), path))
}

write_csv(dat.raudenbush1985, "raudenbush1985")
write_csv(dat.konstantopoulos2011, "konstantopoulos2011")
write_csv(dat.bangertdrowns2004, "bangertdrowns2004")
write_csv(dat.bcg, "bcg")
write_csv(dat.kalaian1996, "kalaian1996")
write_csv(lme4::Penicillin, "penicillin")
write_csv(lme4::cbpp, "cbpp")

# High School and Beyond: students (nlme::MathAchieve) with their school's variables
# (nlme::MathAchSchool), as in Raudenbush & Bryk (2002), chapter 4.
students <- as.data.frame(MathAchieve)
schools <- as.data.frame(MathAchSchool)
hsb <- data.frame(
  school = as.character(students$School),
  minority = as.integer(students$Minority == "Yes"),
  female = as.integer(students$Sex == "Female"),
  ses = students$SES,
  mathach = students$MathAch
)
school_vars <- data.frame(
  school = as.character(schools$School),
  size = schools$Size,
  sector = as.integer(schools$Sector == "Catholic"),
  pracad = schools$PRACAD,
  disclim = schools$DISCLIM,
  himinty = as.integer(as.character(schools$HIMINTY)),
  meanses = schools$MEANSES
)
hsb <- merge(hsb, school_vars, by = "school", sort = FALSE)
hsb <- hsb[order(hsb$school, seq_len(nrow(hsb))), ]
write_csv(hsb, "hsb")
