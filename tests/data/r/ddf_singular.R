# lmerTest's Satterthwaite and Kenward-Roger tables of a singular fit (the random-intercept
# variance estimated as 0), on data generated here with a fixed seed and stored beside them.
# Writes tests/data/lmertest_singular.json. Versions: see common.R (R 4.2.2, lme4 1.1-31,
# lmerTest 3.1-3, pbkrtest 0.5.2).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/ddf_singular.R

script_name <- "tests/data/r/ddf_singular.R"
source("tests/data/r/common.R")
suppressPackageStartupMessages(library(lmerTest))

set.seed(1)
d <- data.frame(y = rnorm(60), x = rnorm(60), g = factor(rep(1:10, each = 6)))
m <- suppressMessages(lmer(y ~ x + (1 | g), data = d))
stopifnot(isSingular(m))
write_reference(list(
  data = list(y = d$y, x = d$x, g = as.integer(d$g)),
  call = "lmer(y ~ x + (1 | g), data = d)",
  theta = unname(getME(m, "theta")),
  satterthwaite = table_json(summary(m, ddf = "Satterthwaite")$coefficients),
  `kenward-roger` = table_json(summary(m, ddf = "Kenward-Roger")$coefficients)
), "tests/data/lmertest_singular.json")
