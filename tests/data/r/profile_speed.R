# lme4's likelihood profile of the speed-dating GLMM (speed_laplace of the seed models):
# confint(profile(m), level = 0.95 and 0.90) and the profile itself, as inference.R stores
# them for the other models. Kept apart from inference.R because profiling 7 parameters on
# 7,707 rows takes R many minutes.
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/profile_speed.R
#
# Writes tests/data/lme4_profile_speed.json (R, lme4 versions in its _meta).

script_name <- "tests/data/r/profile_speed.R"
source("tests/data/r/common.R")
seed <- fromJSON(file.path(shared, "reference/lme4_seed.json"), simplifyVector = FALSE)

call <- seed$speed_laplace$call
m <- eval(parse(text = gsub("^glmer\\(", "lme4::glmer(", call)))
started <- proc.time()[["elapsed"]]
pr <- profile(m, signames = FALSE)
seconds <- proc.time()[["elapsed"]] - started
prof <- as.data.frame(pr)
prof$.par <- as.character(prof$.par)
entry <- list(call = call, theta = unname(getME(m, "theta")),
              profile_seconds = seconds,
              profile_ci = table_json(confint(pr, level = 0.95)),
              profile_ci_90 = table_json(confint(pr, level = 0.90)),
              profile = list(columns = names(prof), rows = records(prof)))
write_reference(list(speed_laplace = entry), "tests/data/lme4_profile_speed.json")
