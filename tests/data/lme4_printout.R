# lme4's printed summaries of the seed models, for tests/test_printout.py.
#
#   Rscript tests/data/lme4_printout.R /work/shared   (writes tests/data/lme4_printout.json)
#
# The calls are those of ../shared/reference/lme4_seed.json, on the CSVs prepared as its
# _meta says, with the printed fits' estimates at full precision (a refit may differ from
# lme4_seed.json in the last digits). ASCII quotes in the significance legend (useFancyQuotes = FALSE), width 80.
suppressPackageStartupMessages({library(lme4); library(jsonlite); library(MASS)})
options(useFancyQuotes = FALSE, width = 80)
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared"
out <- if (length(args) > 1) args[2] else "tests/data/lme4_printout.json"
csv <- function(name) read.csv(file.path(shared, "data", name), stringsAsFactors = TRUE)

gpa <- csv("gpa.csv"); gpa$student <- factor(gpa$student)
pupils <- csv("pupils.csv")
pupils$primary_school_id <- factor(pupils$primary_school_id)
pupils$secondary_school_id <- factor(pupils$secondary_school_id)
pupils$ses <- factor(as.character(pupils$ses))
nurses <- csv("nurses.csv")
nurses$hospital <- factor(nurses$hospital); nurses$wardid <- factor(nurses$wardid)
socio <- csv("sociometric.csv")
for (v in c("group", "sender", "receiver")) socio[[v]] <- factor(socio[[v]])
sd <- csv("speed_dating.csv"); sd$decision <- as.integer(sd$decision == "Yes")
patents <- csv("patents.csv")
patents$yearf <- factor(patents$year); patents$subject <- factor(patents$subject)

ref <- fromJSON(file.path(shared, "reference", "lme4_seed.json"), simplifyVector = FALSE)
result <- list(`_meta` = list(lme4 = as.character(packageVersion("lme4")),
                              R = R.version.string))
for (name in setdiff(names(ref), "_meta")) {
    call <- ref[[name]]$call
    fit <- suppressWarnings(suppressMessages(eval(parse(text = call))))
    text <- capture.output(print(summary(fit)))
    vc <- as.data.frame(VarCorr(fit))
    vc$var1[is.na(vc$var1)] <- NA; vc$var2[is.na(vc$var2)] <- NA
    result[[name]] <- list(call = call, summary = paste(text, collapse = "\n"),
                           fixef = as.list(fixef(fit)),
                           se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
                           varcorr = vc)
    message(name)
}
write_json(result, out, auto_unbox = TRUE, pretty = TRUE, digits = NA)
