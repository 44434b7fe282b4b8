# What lme4 does with degenerate inputs: the error it raises, or the fit it returns with its
# warnings, messages, convergence messages and isSingular. The inputs are generated here
# deterministically and stored in the JSON beside the outcome.
# Writes tests/data/lme4_degenerate.json. Versions: see common.R (R 4.2.2, lme4 1.1-31).
#
#   GLMMCORE_SHARED=/path/to/shared Rscript tests/data/r/degenerate.R

script_name <- "tests/data/r/degenerate.R"
source("tests/data/r/common.R")

# a character vector that stays a JSON array when it has one element or none
strings <- function(x) I(if (is.null(x)) character(0) else as.character(x))

# run `call` on `data`, collecting warnings and messages; an error is the outcome
outcome <- function(call, data) {
  warn <- character(0)
  msg <- character(0)
  env <- new.env()
  assign("d", data, envir = env)
  m <- tryCatch(withCallingHandlers(eval(parse(text = call), envir = env),
                                    warning = function(w) {
                                      warn <<- c(warn, conditionMessage(w))
                                      invokeRestart("muffleWarning")
                                    },
                                    message = function(m) {
                                      msg <<- c(msg, conditionMessage(m))
                                      invokeRestart("muffleMessage")
                                    }),
                error = function(e) e)
  res <- list(call = call, warnings = strings(warn), messages = strings(msg))
  if (inherits(m, "error")) return(c(res, list(error = conditionMessage(m))))
  conv <- m@optinfo$conv
  se <- tryCatch(sqrt(diag(as.matrix(vcov(m)))), error = function(e) conditionMessage(e))
  c(res, list(
    error = NULL,
    fixef = named(fixef(m)),
    se = if (is.character(se)) se else named(setNames(se, names(fixef(m)))),
    theta = unname(getME(m, "theta")),
    sigma = sigma(m),
    logLik = as.numeric(logLik(m)),
    REML = isREML(m),
    is_singular = isSingular(m),
    optimizer_code = conv$opt,
    lme4_messages = strings(unlist(conv$lme4$messages)),
    lme4_code = strings(conv$lme4$code),
    varcorr = as.data.frame(VarCorr(m))[c("grp", "var1", "var2", "vcov", "sdcor")],
    ngrps = as.list(ngrps(m))
  ))
}

cases <- list()
add <- function(name, description, data, calls) {
  cat(name, "\n")
  cases[[name]] <<- list(description = description, data = records(data),
                         fits = lapply(calls, outcome, data = data))
}

set.seed(20261207)
g6 <- factor(rep(letters[1:6], each = 4))
x24 <- round(seq(-2, 2, length.out = 24) + rnorm(24, sd = 0.3), 3)

add("exact_fixed",
    "y = 1 + 0.5 x exactly; 6 groups of 4",
    data.frame(y = 1 + 0.5 * x24, x = x24, g = g6),
    list(reml = "lmer(y ~ x + (1 | g), data = d)",
         ml = "lmer(y ~ x + (1 | g), data = d, REML = FALSE)"))

add("constant_within_groups",
    "y constant within each of 6 groups (different between groups)",
    data.frame(y = rep(c(1, 3, 2, 5, 4, 0.5), each = 4), x = x24, g = g6),
    list(intercept = "lmer(y ~ 1 + (1 | g), data = d)",
         slope = "lmer(y ~ x + (1 | g), data = d)"))

x_pn <- round(matrix(rnorm(30), 6, 5), 3)
d_pn <- data.frame(y = round(rnorm(6), 3), x_pn, g = factor(rep(c("a", "b"), each = 3)))
add("p_equals_n_ml",
    "6 rows, 6 fixed-effect columns (intercept + X1..X5), 2 groups; ML",
    d_pn,
    list(ml = "lmer(y ~ X1 + X2 + X3 + X4 + X5 + (1 | g), data = d, REML = FALSE)",
         reml = "lmer(y ~ X1 + X2 + X3 + X4 + X5 + (1 | g), data = d)",
         p_n_minus_1_ml = "lmer(y ~ X1 + X2 + X3 + X4 + (1 | g), data = d, REML = FALSE)"))

add("three_rows_two_groups",
    "3 rows, groups a, a, b",
    data.frame(y = c(1.2, 0.7, 2.5), x = c(0.1, 0.4, -0.3), g = factor(c("a", "a", "b"))),
    list(intercept = "lmer(y ~ 1 + (1 | g), data = d)",
         intercept_ml = "lmer(y ~ 1 + (1 | g), data = d, REML = FALSE)",
         slope = "lmer(y ~ x + (1 | g), data = d)"))

g8 <- factor(rep(sprintf("g%d", 1:8), each = 5))
x40 <- round(rnorm(40), 3)
add("binomial_all_zero",
    "binary response all 0; 8 groups of 5",
    data.frame(y = rep(0, 40), x = x40, g = g8),
    list(laplace = "glmer(y ~ x + (1 | g), data = d, family = binomial)",
         intercept = "glmer(y ~ 1 + (1 | g), data = d, family = binomial)"))

add("poisson_all_zero",
    "count response all 0; 8 groups of 5",
    data.frame(y = rep(0, 40), x = x40, g = g8),
    list(laplace = "glmer(y ~ x + (1 | g), data = d, family = poisson)",
         intercept = "glmer(y ~ 1 + (1 | g), data = d, family = poisson)"))

add("complete_separation",
    "y = 1 exactly when x > 0; 8 groups of 5",
    data.frame(y = as.numeric(x40 > 0), x = x40, g = g8),
    list(laplace = "glmer(y ~ x + (1 | g), data = d, family = binomial)"))

y40 <- round(1 + 0.5 * x40 + rnorm(40), 3)
add("one_level",
    "grouping factor with a single level",
    data.frame(y = y40, x = x40, g = factor(rep("a", 40))),
    list(lmm = "lmer(y ~ x + (1 | g), data = d)",
         glmm = "glmer(round(exp(y)) ~ x + (1 | g), data = d, family = poisson)"))

add("levels_equal_rows",
    "grouping factor with one level per row (40 rows)",
    data.frame(y = y40, x = x40, g = factor(sprintf("r%02d", 1:40))),
    list(lmm = "lmer(y ~ x + (1 | g), data = d)",
         glmm = "glmer(round(exp(y)) ~ x + (1 | g), data = d, family = poisson)"))

checks <- lmerControl()$checkControl
glmer_checks <- glmerControl()$checkControl
write_reference(list(lmer_checks = checks, glmer_checks = glmer_checks, cases = cases),
                "tests/data/lme4_degenerate.json")
