# Reference values of R's p.adjust(method = "BH") for tests/test_batch.py.
# Run: Rscript tests/data/p_adjust_bh.R > tests/data/p_adjust_bh.json
p <- c(0.01, 0.04, 0.03, NA, 0.5, 0.001, 0.2, 0.04, 0.9, 0.0049)
adj <- p.adjust(p, method = "BH")
fmt <- function(v) paste0("[", paste(ifelse(is.na(v), "null", sprintf("%.17g", v)), collapse = ", "), "]")
cat(sprintf('{"r_version": "%s", "p": %s, "bh": %s}\n', getRversion(), fmt(p), fmt(adj)))
