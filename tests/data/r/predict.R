# lme4's predictions on new data for seed models with crossed, nested and slope terms, LMM and
# GLMM: predict(fit, newdata, allow.new.levels = TRUE) with every random-effect term, with none
# (re.form = NA) and with one of them (a partial re.form), on the link and the response scale.
# Writes tests/data/lme4_predict.json. Versions: see common.R (R 4.2.2, lme4 1.1-31).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/predict.R
#
# newdata: rows of the data set (their predictions equal fitted()) and rows whose grouping
# levels the fit never saw (9999, or year 2001), stored with the columns the model uses, typed as
# in the CSV (ids are integers; patents' yearf is the year as a string, as tests/conftest.py
# builds it). Unseen levels get random effects of zero.

script_name <- "tests/data/r/predict.R"
source("tests/data/r/common.R")
ref <- fromJSON(file.path(shared, "reference/lme4_seed.json"), simplifyVector = FALSE)

raw <- list(gpa = read.csv(file.path(data_dir, "gpa.csv")),
            pupils = read.csv(file.path(data_dir, "pupils.csv")),
            nurses = read.csv(file.path(data_dir, "nurses.csv")),
            socio = read.csv(file.path(data_dir, "sociometric.csv")),
            sd = read.csv(file.path(data_dir, "speed_dating.csv")),
            patents = read.csv(file.path(data_dir, "patents.csv")))
raw$sd$decision <- ifelse(raw$sd$decision == "Yes", 1, 0)
raw$patents$yearf <- as.character(raw$patents$year)

# rows `rows` of raw data set `ds` restricted to the model's variables, then one copy of row
# rows[1] per entry of `unseen` with those columns set to unseen values
make_newdata <- function(ds, vars, rows, unseen) {
  d <- raw[[ds]]
  base <- d[rows, vars, drop = FALSE]
  extra <- lapply(unseen, function(change) {
    r <- d[rows[1], vars, drop = FALSE]
    for (col in names(change)) r[[col]] <- change[[col]]
    r
  })
  out <- do.call(rbind, c(list(base), extra))
  rownames(out) <- NULL
  out
}

spec <- list(
  gpa_rs = list(ds = "gpa", rows = c(1, 8, 600, 1200),
                unseen = list(list(student = 9999L)), partial = NULL),
  pupils_crossed = list(ds = "pupils", rows = c(1, 2, 500, 1000),
                        unseen = list(list(primary_school_id = 9999L),
                                      list(secondary_school_id = 9999L),
                                      list(primary_school_id = 9999L, secondary_school_id = 9999L)),
                        partial = "~(1 | primary_school_id)"),
  nurses_nested = list(ds = "nurses", rows = c(1, 2, 500, 1000),
                       unseen = list(list(wardid = 9999L), list(hospital = 9999L),
                                     list(hospital = 9999L, wardid = 9999L)),
                       partial = "~(1 | hospital)"),
  nurses_slash = list(ds = "nurses", rows = c(1, 2, 500, 1000),
                      unseen = list(list(ward = 9L), list(hospital = 9999L)),
                      partial = "~(1 | hospital)"),
  nurses_slope = list(ds = "nurses", rows = c(1, 2, 500, 1000),
                      unseen = list(list(wardid = 9999L), list(hospital = 9999L)),
                      partial = "~(1 + treatment | hospital)"),
  socio_m4 = list(ds = "socio", rows = c(1, 2, 600, 1106),
                  unseen = list(list(sender = 9999L), list(group = 9999L)),
                  partial = "~(1 | group)"),
  speed_laplace = list(ds = "sd", rows = c(1, 2, 4000, 7000),
                       unseen = list(list(iid = 9999L)), partial = NULL),
  speed_slopes = list(ds = "sd", rows = c(1, 2, 4000, 7000),
                      unseen = list(list(iid = 9999L)), partial = NULL),
  speed_crossed = list(ds = "sd", rows = c(1, 2, 4000, 7000),
                       unseen = list(list(iid = 9999L), list(partner_id = 9999L),
                                     list(iid = 9999L, partner_id = 9999L)),
                       partial = "~(1 | iid)"),
  patents_pois = list(ds = "patents", rows = c(1, 2, 2500, 4809),
                      unseen = list(list(yearf = "2001")), partial = NULL),
  patents_pois_sqrt = list(ds = "patents", rows = c(1, 2, 2500, 4809),
                           unseen = list(list(yearf = "2001")), partial = NULL),
  patents_pois_olre = list(ds = "patents", rows = c(1, 2, 2500, 4809),
                           unseen = list(list(subject = 99999L), list(yearf = "2001"),
                                         list(yearf = "2001", subject = 99999L)),
                           partial = "~(1 | yearf)"),
  patents_opp = list(ds = "patents", rows = c(1, 2, 2500, 4809),
                     unseen = list(list(yearf = "2001")), partial = NULL),
  # not a seed model: a Poisson GLMM with an offset in the formula, evaluated on newdata
  patents_offset = list(ds = "patents", rows = c(1, 2, 2500, 4809),
                        unseen = list(list(yearf = "2001")), partial = NULL,
                        call = paste("glmer(ncit ~ opposition + biopharm + offset(log(nclaims))",
                                     "+ (1 | yearf), data = patents, family = poisson)"))
)

# speed dating: some rows have missing values in the model's variables; use complete ones
stopifnot(all(complete.cases(raw$sd[c(1, 2, 4000, 7000), c("sex", "samerace", "attractive_sc",
                                                          "sincere_sc", "intelligent_sc",
                                                          "partner_id")])))

predictions <- function(m, nd, re_form) {
  list(link = unname(predict(m, newdata = nd, re.form = re_form, allow.new.levels = TRUE,
                             type = "link")),
       response = unname(predict(m, newdata = nd, re.form = re_form, allow.new.levels = TRUE,
                                 type = "response")))
}

out <- list()
for (name in names(spec)) {
  s <- spec[[name]]
  call <- if (is.null(s$call)) ref[[name]]$call else s$call
  cat(name, ":", call, "\n")
  warn <- character(0)
  m <- withCallingHandlers(eval(parse(text = call)), warning = function(w) {
    warn <<- c(warn, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  vars <- setdiff(all.vars(formula(m)), character(0))
  vars <- intersect(c(vars, if (grepl("hospital/ward", call)) "ward"), names(raw[[s$ds]]))
  vars <- unique(vars)
  nd <- make_newdata(s$ds, vars, s$rows, s$unseen)
  fam <- family(m)
  entry <- list(call = call, family = fam$family, link = fam$link, nobs = nobs(m),
                logLik = as.numeric(logLik(m)), fixef = named(fixef(m)),
                theta = unname(getME(m, "theta")), warnings = I(warn),
                data_rows = s$rows - 1L,  # 0-based rows of the CSV that open newdata
                newdata = records(nd),
                all = predictions(m, nd, NULL),
                none = predictions(m, nd, NA))
  if (!is.null(s$partial)) {
    entry$partial <- c(list(re_form = s$partial), predictions(m, nd, as.formula(s$partial)))
  }
  # the data rows' predictions are the fitted values (a check of newdata's set-up)
  k <- length(s$rows)
  fit_rows <- unname(fitted(m)[as.character(s$rows)])  # names: data rows
  stopifnot(isTRUE(all.equal(entry$all$response[seq_len(k)], fit_rows, tolerance = 1e-10)))
  # the first ten fitted values, of the rows kept after dropping missing values
  entry$fitted_head <- unname(fitted(m)[1:10])
  entry$population_head <- list(link = unname(predict(m, re.form = NA, type = "link")[1:10]),
                                response = unname(predict(m, re.form = NA,
                                                          type = "response")[1:10]))
  out[[name]] <- entry
}
write_reference(out, "tests/data/lme4_predict.json")
