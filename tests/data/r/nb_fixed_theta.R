# lme4's fits of negative binomial GLMMs with a fixed size theta, as
# glmer(..., family = MASS::negative.binomial(theta)), on the patents seed data:
# tests/data/lme4_nb_fixed_theta.json. Versions: see common.R (R 4.2.2, lme4 1.1-31, MASS).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/nb_fixed_theta.R
#
# lme4's logLik is the complete Laplace log-likelihood; its AIC counts theta as a parameter
# (df = the number of fixed effects + covariance parameters + 1) although it was not estimated.

script_name <- "tests/data/r/nb_fixed_theta.R"
source("tests/data/r/common.R")
suppressPackageStartupMessages(library(MASS))

fit_one <- function(formula, theta, link = "log") {
  fit <- glmer(as.formula(formula), data = patents,
               family = MASS::negative.binomial(theta = theta, link = link))
  list(formula = formula, theta_fixed = theta, link = link,
       logLik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"),
       AIC = AIC(fit), deviance = deviance(fit), nobs = nobs(fit),
       fixef = named(fixef(fit)), se = named(sqrt(diag(as.matrix(vcov(fit))))),
       theta = unname(getME(fit, "theta")),
       converged = is.null(fit@optinfo$conv$lme4$messages))
}

models <- list(
  nb1 = fit_one("ncit ~ opposition + biopharm + (1 | yearf)", 1),
  nb2_5 = fit_one("ncit ~ opposition + biopharm + (1 | yearf)", 2.5),
  nb1_sqrt = fit_one("ncit ~ opposition + biopharm + (1 | yearf)", 1, "sqrt")
)
write_reference(models, "tests/data/lme4_nb_fixed_theta.json")
