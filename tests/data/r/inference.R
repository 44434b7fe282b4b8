# Inference after the fit, as lme4, lmerTest and pbkrtest give it for the seed models:
#  - `coef`: lmerTest's coefficient tables with Satterthwaite and Kenward-Roger denominator
#    degrees of freedom (summary(m, ddf = ...)), and lme4's asymptotic z table for GLMMs
#    (Kenward-Roger from one pbkrtest::vcovAdj per model: see kr_tables);
#  - `anova3`: lmerTest's type III F tables (anova(m, type = 3, ddf = ...)) and the contrast
#    matrices lmerTest tests for each term (lmerTest:::get_contrasts_type3);
#  - `varpar`: lmerTest's asymptotic covariance of (theta, sigma) (2 * inverse Hessian of the
#    deviance in those parameters) and pbkrtest's adjusted covariance of beta (vcovAdj);
#  - `lrt`: lme4's anova(m1, m2, ...) likelihood-ratio tables for nested models, REML fits
#    refitted by ML (the default) and kept (refit = FALSE);
#  - `confint`: confint(m, method = "profile" / "Wald", oldNames = FALSE) and the profile
#    itself (as.data.frame(profile(m, signames = FALSE))).
# Writes tests/data/lme4_inference.json. Versions: see common.R (R 4.2.2, lme4 1.1-31,
# lmerTest 3.1-3, pbkrtest 0.5.2).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/inference.R
#
# Models are the seed models of ../shared/reference/lme4_seed.json (same calls) and a few more
# with factors of several levels and interactions (their calls are stored beside them). Each
# entry stores lme4's estimates (theta, sigma, beta) so that tests can evaluate at them.

script_name <- "tests/data/r/inference.R"
source("tests/data/r/common.R")
suppressPackageStartupMessages({
  library(lmerTest)
  library(pbkrtest)
})
seed <- fromJSON(file.path(shared, "reference/lme4_seed.json"), simplifyVector = FALSE)

extra_calls <- list(
  pupils_ses_sex = paste("lmer(achievement ~ sex * ses + (1 | primary_school_id) +",
                         "(1 | secondary_school_id), data = pupils)"),
  pupils_primary = "lmer(achievement ~ sex + ses + (1 | primary_school_id), data = pupils)",
  nurses_treat_size = paste("lmer(stress ~ age + experience + treatment * hospsize +",
                            "(1 | hospital) + (1 | hospital:wardid), data = nurses)"),
  gpa_job = "lmer(gpa ~ occasion * job + sex + (1 + occasion | student), data = gpa)"
)
lmm_keys <- c("gpa_ri", "gpa_ri_ml", "gpa_rs", "gpa_uncorr", "gpa_cluster", "pupils_crossed",
              "nurses_nested", "nurses_slope", "socio_m4", "nurses_slash", names(extra_calls))
glmm_keys <- c("speed_laplace", "speed_crossed", "patents_pois", "patents_opp")

call_of <- function(key) if (key %in% names(extra_calls)) extra_calls[[key]] else seed[[key]]$call

# lme4's fit of a call (lmer is lmerTest's, so the fit carries lmerTest's Satterthwaite parts)
fit_call <- function(call) eval(parse(text = call))

params <- function(m) {
  list(theta = unname(getME(m, "theta")), sigma = sigma(m), beta = named(fixef(m)),
       REML = isREML(m), logLik = as.numeric(logLik(m)))
}

coef_json <- function(tab) table_json(as.data.frame(tab, check.names = FALSE))

kr_or_error <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))

# lmerTest's Kenward-Roger tables from one pbkrtest::vcovAdj: what summary(m, ddf =
# "Kenward-Roger") and anova(m, ddf = "Kenward-Roger") compute (lmerTest's contest1D/get_KR1D:
# vcovAdj then Lb_ddf per coefficient; contestMD: KRmodcomp, i.e. vcovAdj then .KR_adjust, per
# term), without recomputing vcovAdj (n x n matrices) for every coefficient and term.
kr_tables <- function(m, contrasts) {
  Phi <- as.matrix(vcov(m))
  PhiA <- pbkrtest::vcovAdj(m)
  beta <- fixef(m)
  coefs <- t(vapply(seq_along(beta), function(i) {
    L <- matrix(0, 1, length(beta))
    L[i] <- 1
    se <- sqrt(PhiA[i, i])
    ddf <- pbkrtest::Lb_ddf(L = L, V0 = Phi, Vadj = PhiA)
    tval <- beta[[i]] / se
    c(beta[[i]], se, ddf, tval, 2 * pt(abs(tval), ddf, lower.tail = FALSE))
  }, numeric(5)))
  dimnames(coefs) <- list(names(beta), c("Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"))
  anova <- t(vapply(contrasts, function(L) {
    x <- pbkrtest:::.KR_adjust(PhiA, Phi = Phi, L, beta = beta, betaH = 0)
    MS <- x$FstatU * sigma(m)^2
    Fvalue <- x$FstatU * x$F.scaling
    c(MS * x$ndf, MS, x$ndf, x$ddf, Fvalue, pf(Fvalue, x$ndf, x$ddf, lower.tail = FALSE))
  }, numeric(6)))
  colnames(anova) <- c("Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)")
  list(coef = coefs, anova = anova, vcov_adj = as.matrix(PhiA))
}

rows_of <- function(M) unname(lapply(seq_len(nrow(M)), function(i) unname(M[i, ])))

lmm_entry <- function(key) {
  call <- call_of(key)
  message(key)
  m <- fit_call(call)
  res <- c(list(call = call), params(m))
  contrasts <- lmerTest:::get_contrasts_type3(m)
  res$coef <- list(satterthwaite = coef_json(summary(m, ddf = "Satterthwaite")$coefficients))
  res$anova3 <- list(satterthwaite = table_json(anova(m, type = 3, ddf = "Satterthwaite")))
  if (isREML(m)) {
    kr <- kr_tables(m, contrasts)
    if (key == "gpa_job") {  # the shortcut gives lmerTest's own tables
      stopifnot(isTRUE(all.equal(kr$coef, summary(m, ddf = "Kenward-Roger")$coefficients,
                                 tolerance = 1e-10, check.attributes = FALSE)),
                isTRUE(all.equal(kr$anova, as.matrix(anova(m, type = 3, ddf = "Kenward-Roger")),
                                 tolerance = 1e-10, check.attributes = FALSE)))
    }
    res$coef[["kenward-roger"]] <- coef_json(kr$coef)
    res$anova3[["kenward-roger"]] <- table_json(kr$anova)
    res$vcov_adj <- rows_of(kr$vcov_adj)
  } else {
    res$kenward_roger_error <- kr_or_error(summary(m, ddf = "Kenward-Roger"))$error
  }
  res$contrasts3 <- lapply(contrasts, function(L) list(columns = colnames(L), L = rows_of(L)))
  res$vcov_varpar <- rows_of(m@vcov_varpar)
  res
}

glmm_entry <- function(key) {
  call <- call_of(key)
  message(key)
  m <- fit_call(call)
  res <- c(list(call = call), params(m))
  res$coef <- list(asymptotic = coef_json(summary(m)$coefficients))
  res
}

models <- c(setNames(lapply(lmm_keys, lmm_entry), lmm_keys),
            setNames(lapply(glmm_keys, glmm_entry), glmm_keys))

# likelihood-ratio tables; models named by their keys as anova() names them
lrt_entry <- function(keys, refit = TRUE) {
  env <- new.env()
  for (k in keys) assign(k, fit_call(gsub("^lmer\\(", "lme4::lmer(", call_of(k))), envir = env)
  call <- sprintf("anova(%s, refit = %s)", paste(keys, collapse = ", "), refit)
  message(call)
  tab <- suppressMessages(eval(parse(text = call), envir = env))
  list(models = keys, refit = refit, table = table_json(tab))
}
lrt <- list(
  gpa_ri_rs = lrt_entry(c("gpa_ri", "gpa_rs")),
  gpa_ri_rs_norefit = lrt_entry(c("gpa_ri", "gpa_rs"), refit = FALSE),
  gpa_three = lrt_entry(c("gpa_rs", "gpa_ri", "gpa_uncorr")),
  gpa_fixed = lrt_entry(c("gpa_ri", "gpa_cluster")),
  pupils_crossed = lrt_entry(c("pupils_primary", "pupils_crossed")),
  nurses = lrt_entry(c("nurses_nested", "nurses_slope")),
  speed = lrt_entry(c("speed_laplace", "speed_slopes")),
  patents = lrt_entry(c("patents_pois", "patents_pois_olre"))
)

# confidence intervals and profiles (Wald only for the speed-dating GLMM: profiling its 7
# parameters on 7,707 rows takes many minutes)
ci_entry <- function(key, with_profile = TRUE) {
  m <- fit_call(gsub("^lmer\\(", "lme4::lmer(", call_of(key)))
  message("confint ", key)
  res <- list(call = call_of(key), theta = unname(getME(m, "theta")),
              wald_ci = table_json(confint(m, method = "Wald", oldNames = FALSE)))
  if (with_profile) {
    pr <- profile(m, signames = FALSE)
    prof <- as.data.frame(pr)
    prof$.par <- as.character(prof$.par)
    res$profile_ci <- table_json(confint(pr, level = 0.95))
    res$profile_ci_90 <- table_json(confint(pr, level = 0.90))
    res$profile <- list(columns = names(prof), rows = records(prof))
  }
  res
}
ci_keys <- c("gpa_ri", "gpa_rs", "pupils_crossed", "patents_pois", "speed_laplace")
confints <- setNames(lapply(ci_keys, function(k) ci_entry(k, k != "speed_laplace")), ci_keys)

write_reference(list(models = models, lrt = lrt, confint = confints),
                "tests/data/lme4_inference.json")
