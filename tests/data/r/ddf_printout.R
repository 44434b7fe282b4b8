# lmerTest's printed tables: the fixed-effects block of summary(m, ddf = ...) and
# print(anova(m, ddf = ...)) (type III), as text, for a model with a factor of 6 levels and
# an interaction and for an ML fit. Writes tests/data/lmertest_printout.json. Versions: see
# common.R (R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/ddf_printout.R

script_name <- "tests/data/r/ddf_printout.R"
source("tests/data/r/common.R")
suppressPackageStartupMessages(library(lmerTest))
options(width = 200)  # no wrapped lines

calls <- list(
  pupils_ses_sex = paste("lmer(achievement ~ sex * ses + (1 | primary_school_id) +",
                         "(1 | secondary_school_id), data = pupils)"),
  gpa_ri_ml = "lmer(gpa ~ occasion + (1 | student), data = gpa, REML = FALSE)"
)

# the lines of a printed summary from "Fixed effects:" to the line before the correlations
fixed_block <- function(lines) {
  start <- which(lines == "Fixed effects:")
  end <- which(startsWith(lines, "Correlation of Fixed Effects")) - 1L
  lines <- lines[(start + 1L):end]
  lines[nzchar(lines)]
}

entry <- function(call) {
  m <- eval(parse(text = call))
  out <- list(call = call, theta = unname(getME(m, "theta")))
  for (ddf in c("Satterthwaite", if (isREML(m)) "Kenward-Roger")) {
    out[[ddf]] <- list(
      fixed = I(fixed_block(capture.output(print(summary(m, ddf = ddf))))),
      anova = I(capture.output(print(anova(m, ddf = ddf)))))
  }
  out
}

write_reference(lapply(calls, entry), "tests/data/lmertest_printout.json")
