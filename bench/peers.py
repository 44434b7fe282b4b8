"""The peers, on the same data and with the same protocol: lme4 (via Rscript) and mixedlm.

Each peer runs in its own bounded subprocess (:func:`bench.measure.run_bounded`): one
untimed fit, then the median of up to ``repeat`` timed fits, and its log-likelihood.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .measure import RESULT_TAG, TIMEOUTS, Outcome, run_bounded
from .workloads import Workload


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "message": reason}


def _from_outcome(outcome: Outcome) -> dict[str, Any]:
    if outcome.status != "ok":
        return {"status": outcome.status, "message": outcome.message, "wall": outcome.seconds}
    return {"status": "ok", "wall": outcome.seconds} | outcome.result


# -- lme4 ---------------------------------------------------------------------

@functools.cache
def lme4_versions() -> dict[str, str] | str:
    """R and lme4 versions, or why lme4 cannot run here."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    code = ('suppressMessages(library(lme4)); cat(R.version.string, "\\n", '
            'as.character(packageVersion("lme4")), "\\n", sep = "")')
    try:
        proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return "Rscript -e 'library(lme4)' timed out"
    if proc.returncode != 0:
        return "lme4 not installed: " + " ".join(proc.stderr.strip().splitlines()[-1:])
    r, lme4 = proc.stdout.strip().splitlines()[:2]
    return {"R": r.strip().removeprefix("R version "), "lme4": lme4.strip()}


_R_SCRIPT = r"""
suppressMessages(library(lme4))
{data} <- read.csv("{csv}", stringsAsFactors = TRUE)
{prep}
notes <- character(0)
keep <- function(cond) {{ notes <<- c(notes, conditionMessage(cond)); invokeRestart(
  if (inherits(cond, "warning")) "muffleWarning" else "muffleMessage") }}
t0 <- proc.time()[["elapsed"]]
m <- withCallingHandlers({call}, warning = keep, message = keep)
first <- proc.time()[["elapsed"]] - t0
n <- max(1L, min({repeat}L, floor({budget} / max(first, 1e-9))))
times <- numeric(n)
for (i in seq_len(n))
  times[i] <- system.time(m <- suppressWarnings(suppressMessages({call})))[["elapsed"]]
ll <- logLik(m)
esc <- function(s) gsub('"', "'", gsub("[\\\n]", " ", s))
cat("{tag}{{", sprintf('"seconds": %.6f, "times": [%s], "untimed_first": %.6f, ',
    median(times), paste(sprintf("%.6f", times), collapse = ", "), first),
    sprintf('"loglik": %.17g, "nobs": %d, "warnings": [%s]', as.numeric(ll), nobs(m),
    paste0('"', esc(unique(notes)), '"', collapse = ", ")), "}}\n", sep = "")
"""


def lme4_script(work: Workload, csv: Path, repeat: int, budget: float) -> str:
    """The R script timing lme4 on ``csv`` (already written for simulated data)."""
    return _R_SCRIPT.format(data=work.source.key, csv=csv, prep="\n".join(work.source.r_prep),
                            call=work.r_call(), repeat=repeat, budget=budget, tag=RESULT_TAG)


def run_lme4(work: Workload, csv: Path, workdir: Path, repeat: int,
             budget: float) -> dict[str, Any]:
    """lme4's warm time and logLik for ``work``, or why it was skipped or failed."""
    versions = lme4_versions()
    if isinstance(versions, str):
        return _skipped(versions)
    script = workdir / f"{work.name}.R"
    script.write_text(lme4_script(work, csv, repeat, budget))
    out = _from_outcome(run_bounded(["Rscript", str(script)], TIMEOUTS[work.size], workdir))
    if out["status"] == "ok" and out.get("warnings") == [""]:
        out["warnings"] = []
    return out


# -- mixedlm ------------------------------------------------------------------

_MIXEDLM_FAMILIES = {"binomial": "Binomial", "poisson": "Poisson", "gamma": "Gamma",
                     "gaussian": "Gaussian"}

_PY_SCRIPT = """\
import json, resource, statistics, time, warnings
import pandas as pd
import mixedlm
from mixedlm import families
data = pd.read_pickle({path!r})
def fit():
    return {call}
try:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        m = fit()
        first = time.perf_counter() - t0
        n = max(1, min({repeat}, int({budget} // max(first, 1e-9))))
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            m = fit()
            times.append(time.perf_counter() - t0)
    nobs = m.nobs() if callable(m.nobs) else m.nobs
    out = {{"seconds": statistics.median(times), "times": times, "untimed_first": first,
           "loglik": float(m.logLik()), "nobs": int(nobs),
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "warnings": sorted({{f"{{w.category.__name__}}: {{w.message}}" for w in caught}})}}
except Exception as exc:
    out = {{"error": f"{{type(exc).__name__}}: {{exc}}"}}
print({tag!r} + json.dumps(out))
"""


def mixedlm_version() -> str | None:
    """mixedlm's version, None when it is not installed."""
    if importlib.util.find_spec("mixedlm") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mixedlm")
    except PackageNotFoundError:
        return "unknown"


def mixedlm_call(work: Workload) -> str:
    """The mixedlm expression fitting ``work`` to ``data``."""
    if work.is_lmm:
        return f"mixedlm.lmer({work.formula!r}, data, REML={work.REML})"
    agq = "" if work.nAGQ == 1 else f", nAGQ={work.nAGQ}"
    if work.family == "negative_binomial":
        return f"mixedlm.glmer_nb({work.formula!r}, data{agq})"
    cls = _MIXEDLM_FAMILIES[work.family]
    link = "" if work.link is None else f"link={work.link!r}"
    return f"mixedlm.glmer({work.formula!r}, data, family=families.{cls}({link}){agq})"


def run_mixedlm(work: Workload, pickle_path: Path, repeat: int,
                budget: float) -> dict[str, Any]:
    """mixedlm's warm time and logLik for ``work``, or why it was skipped or failed."""
    if mixedlm_version() is None:
        return _skipped("mixedlm not installed")
    code = _PY_SCRIPT.format(path=str(pickle_path), call=mixedlm_call(work), repeat=repeat,
                             budget=budget, tag=RESULT_TAG)
    return _from_outcome(run_bounded([sys.executable, "-c", code], TIMEOUTS[work.size],
                                     pickle_path.parent))
