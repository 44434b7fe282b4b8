# Shared set-up for the reference scripts in this folder: the seed data sets prepared as
# ../shared/reference/lme4_seed.json's _meta says, and JSON output helpers.
#
# Run from the repository root, e.g. `Rscript tests/data/r/predict.R`, with ../shared beside it
# (or GLMMCORE_SHARED set). Written and run with R 4.2.2 Patched (2022-11-10 r83330), lme4 1.1-31,
# lmerTest 3.1-3, pbkrtest 0.5.2, Matrix 1.5-3, jsonlite 1.8.4 (Debian 12 packages).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

shared <- Sys.getenv("GLMMCORE_SHARED", "../shared")  # the folder holding data/ and reference/
data_dir <- file.path(shared, "data")

read_seed <- function(file) read.csv(file.path(data_dir, file), stringsAsFactors = TRUE)

gpa <- read_seed("gpa.csv")
gpa$student <- factor(gpa$student)

pupils <- read_seed("pupils.csv")
pupils$primary_school_id <- factor(pupils$primary_school_id)
pupils$secondary_school_id <- factor(pupils$secondary_school_id)

nurses <- read_seed("nurses.csv")
nurses$hospital <- factor(nurses$hospital)
nurses$wardid <- factor(nurses$wardid)

socio <- read_seed("sociometric.csv")
socio$group <- factor(socio$group)
socio$sender <- factor(socio$sender)
socio$receiver <- factor(socio$receiver)

sd <- read_seed("speed_dating.csv")
sd$decision <- ifelse(sd$decision == "Yes", 1, 0)

patents <- read_seed("patents.csv")
patents$yearf <- factor(patents$year)
patents$subject <- factor(patents$subject)

versions <- function() {
  pk <- c("lme4", "lmerTest", "pbkrtest", "Matrix", "jsonlite")
  v <- lapply(pk, function(p) if (requireNamespace(p, quietly = TRUE))
    as.character(packageVersion(p)) else NULL)
  names(v) <- pk
  c(list(R = R.version.string), v)
}

write_reference <- function(x, file) {
  x <- c(list(`_meta` = c(versions(), list(script = script_name))), x)
  writeLines(toJSON(x, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                    pretty = TRUE), file)
  cat("wrote", file, "\n")
}

# a data frame as a list of records, NA as null
records <- function(df) {
  df[] <- lapply(df, function(col) if (is.factor(col)) as.character(col) else col)
  lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))
}

# a named vector as a JSON object
named <- function(v) as.list(setNames(as.numeric(v), names(v)))

# a matrix/data frame with row names as {column: {row: value}}
table_json <- function(tab) {
  tab <- as.data.frame(tab, check.names = FALSE)
  out <- list(rows = rownames(tab))
  for (col in colnames(tab)) out[[col]] <- unname(as.numeric(tab[[col]]))
  out
}
