# boot's percentile intervals (boot.ci(type = "perc"), the interval lme4's
# confint(method = "boot") reports) of fixed samples: the order statistics interpolated on the
# normal quantile scale. Writes tests/data/boot_percentile.json.
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/boot_percentile.R

script_name <- "tests/data/r/boot_percentile.R"
source("tests/data/r/common.R")
library(boot)

set.seed(20)
cases <- list()
for (n in c(19L, 99L, 100L, 250L, 1000L)) {
  t <- rgamma(n, shape = 2)
  b <- list(t0 = mean(t), t = matrix(t, ncol = 1), R = n)
  class(b) <- "boot"
  for (level in c(0.95, 0.9, 0.5)) {
    ci <- boot.ci(b, conf = level, type = "perc")$percent[1, 4:5]
    cases[[length(cases) + 1]] <- list(t = t, level = level, interval = unname(ci))
  }
}
write_reference(list(cases = cases), "tests/data/boot_percentile.json")
