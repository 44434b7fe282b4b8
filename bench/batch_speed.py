"""Throughput of ``glmmcore.fit_many``: ``python -m bench.batch_speed``.

Workloads (features simulated per gene: own intercept, condition effect and subject SD):

- ``poisson``: per-gene Poisson GLMM, 600 samples of 30 subjects in 2 conditions, a
  library-size offset, Laplace: ``count ~ cond + offset(lsf) + (1 | subject)``;
- ``poisson_nagq0``: the same with ``nAGQ=0``;
- ``lmm``: ``expr ~ cond + (1 | subject)`` on the same design (log-expression);
- ``negative_binomial``: the Poisson model with an NB2 response (theta 5);
- ``sparse``: 2,000 cells of 20 subjects, 20,000 genes of mostly zero counts as a CSR
  matrix (run in a child process, which reports its peak RSS), against the same features
  dense for throughput;
- ``dask``: the same Poisson batch on a ``LocalCluster(n_workers=2, threads_per_worker=1)``
  against the threads backend with two threads.

Baselines in the same process: a loop of ``glmmcore.fit`` (formula and data each time) and a
loop of ``model.fit(y)``; peers: lme4's ``glmer`` loop and glmmTMB (``Rscript``, when R is
present) on the first ``--r-features`` features of the same data.  Each fit is checked
against a fresh ``glmmcore.fit`` (log-likelihood to 1e-8 relative) on a sample.  Times are
wall clock of the whole batch (model built once, tables assembled); the machine may be
loaded, so compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import glmmcore

POISSON = "count ~ cond + offset(lsf) + (1 | subject)"
LMM = "count ~ cond + (1 | subject)"


def design(n_subjects: int = 30, per_subject: int = 20, seed: int = 1) -> pd.DataFrame:
    """Samples nested in subjects, subjects in 2 conditions, a library-size offset."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), per_subject)
    return pd.DataFrame({"cond": (subject % 2).astype(float),
                         "lsf": np.log(rng.uniform(0.5, 2.0, subject.size)),
                         "subject": [f"s{s}" for s in subject]})


def responses(data: pd.DataFrame, n: int, kind: str, seed: int = 2,
              base: tuple[float, float] = (1.0, 0.5)) -> np.ndarray:
    """``n`` features of one kind: ``poisson``, ``nb`` (theta 5) or ``gaussian``."""
    rng = np.random.default_rng(seed)
    codes = pd.factorize(data["subject"])[0]
    k = codes.max() + 1
    out = np.empty((len(data), n))
    for j in range(n):
        eta = (rng.normal(*base) + rng.normal(0, 0.4) * data["cond"].to_numpy()
               + rng.normal(0, rng.uniform(0.2, 0.8), k)[codes])
        if kind == "gaussian":
            out[:, j] = eta + rng.normal(0, 0.5, len(data))
            continue
        mu = np.exp(eta + data["lsf"].to_numpy())
        out[:, j] = rng.poisson(rng.gamma(5.0, mu / 5.0) if kind == "nb" else mu)
    return out


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def check_optimum(data: pd.DataFrame, Y: np.ndarray, out: glmmcore.BatchResult, formula: str,
                  family: str, nagq: int = 1, sample: int = 20) -> float:
    """Largest relative log-likelihood difference to a fresh fit, over a sample."""
    worst = 0.0
    for j in np.linspace(0, Y.shape[1] - 1, sample).astype(int):
        fresh = glmmcore.fit(formula, data.assign(count=Y[:, j]), family=family, nAGQ=nagq)
        worst = max(worst, abs(out.fits["loglik"].iloc[j] - fresh.loglik) / abs(fresh.loglik))
    return worst


def batch_rate(name: str, data: pd.DataFrame, Y: np.ndarray, formula: str, family: str,
               jobs: int, nagq: int = 1, loop: int = 100) -> dict:
    """fits/s of fit_many (1 and ``jobs`` threads), a model.fit loop and a glmmcore.fit loop."""
    kwargs = {"family": family, "nAGQ": nagq, "progress": False}
    glmmcore.fit_many(formula, data, Y[:, :4], **kwargs)          # warm-up (compilation)
    one, out = timed(lambda: glmmcore.fit_many(formula, data, Y, n_jobs=1, **kwargs))
    many, out2 = timed(lambda: glmmcore.fit_many(formula, data, Y, n_jobs=jobs, **kwargs))
    model = glmmcore.MixedModel(formula, data.assign(count=Y[:, 0]), family=family, nAGQ=nagq)
    k = min(loop, Y.shape[1])
    refit, _ = timed(lambda: [model.fit(Y[:, j]) for j in range(k)])
    fresh, _ = timed(lambda: [glmmcore.fit(formula, data.assign(count=Y[:, j]), family=family,
                                           nAGQ=nagq) for j in range(k)])
    same = out.fits.drop(columns="seconds").equals(out2.fits.drop(columns="seconds"))
    return {"workload": name, "features": Y.shape[1], "nobs": len(data),
            "batch_1_thread_fits_per_s": Y.shape[1] / one,
            f"batch_{jobs}_threads_fits_per_s": Y.shape[1] / many,
            "model_fit_loop_fits_per_s": k / refit, "glmmcore_fit_loop_fits_per_s": k / fresh,
            "failed": len(out.failed), "unconverged": int((~out.fits["converged"]).sum()),
            "threads_identical": bool(same),
            "max_rel_loglik_diff_vs_fresh_fit": check_optimum(data, Y, out, formula, family,
                                                              nagq)}


def tables_megabytes(out: glmmcore.BatchResult) -> float:
    return (out.fits.memory_usage(deep=True).sum()
            + out.coefs.memory_usage(deep=True).sum()) / 2 ** 20


def dask_overhead(data: pd.DataFrame, Y: np.ndarray) -> dict:
    """The Poisson batch on a 2-worker LocalCluster against two threads."""
    from distributed import Client, LocalCluster
    kwargs = {"family": "poisson", "progress": False}
    threads_s, threads = timed(lambda: glmmcore.fit_many(POISSON, data, Y, n_jobs=2, **kwargs))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        # warm every worker (imports, compiled code) with chunks enough for both
        glmmcore.fit_many(POISSON, data, Y[:, :64], backend="dask", chunk_size=4, **kwargs)
        dask_s, dask = timed(lambda: glmmcore.fit_many(POISSON, data, Y, backend="dask",
                                                       client=client, **kwargs))
    same = (dask.fits.drop(columns="seconds").equals(threads.fits.drop(columns="seconds"))
            and dask.coefs.equals(threads.coefs))
    return {"workload": "dask vs threads (poisson)", "features": Y.shape[1],
            "threads_2_s": threads_s, "dask_2_workers_s": dask_s,
            "dask_overhead": dask_s / threads_s - 1, "identical": bool(same),
            "tables_MB": tables_megabytes(threads),
            "tables_MB_per_10000_features": tables_megabytes(threads) * 1e4 / Y.shape[1]}


SPARSE_CHILD = """
import json, resource, sys, time
import numpy as np, scipy.sparse as sp
sys.path.insert(0, {repo!r})
import glmmcore
from bench.batch_speed import design, sparse_counts
data = design(n_subjects=20, per_subject=100, seed=3)
X = sparse_counts(data, {features}, seed=4)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
glmmcore.fit_many({formula!r}, data, X[:, :4].toarray(), family="poisson", progress=False)
start = time.perf_counter()
out = glmmcore.fit_many({formula!r}, data, X, family="poisson", n_jobs={jobs}, progress=False)
seconds = time.perf_counter() - start
sub = X[:, :{dense}].toarray()
start = time.perf_counter()
glmmcore.fit_many({formula!r}, data, sub, family="poisson", n_jobs={jobs}, progress=False)
dense_seconds = time.perf_counter() - start
print(json.dumps({{"features": X.shape[1], "nobs": X.shape[0], "nnz": int(X.nnz),
    "seconds": seconds, "fits_per_s": X.shape[1] / seconds,
    "dense_fits_per_s": {dense} / dense_seconds, "failed": len(out.failed),
    "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_before_MB": rss0 / 1024}}))
"""


def sparse_counts(data: pd.DataFrame, n: int, seed: int = 4) -> sp.csr_matrix:
    """Single-cell-like counts: mostly zeros, per-gene means spread over 3 decades."""
    rng = np.random.default_rng(seed)
    codes = pd.factorize(data["subject"])[0]
    k = codes.max() + 1
    columns = []
    for start in range(0, n, 1000):
        m = min(1000, n - start)
        base = rng.uniform(-4.0, 1.0, m)
        b = rng.normal(0, 0.4, (k, m))[codes]
        mu = np.exp(base + 0.3 * data["cond"].to_numpy()[:, None] + b
                    + data["lsf"].to_numpy()[:, None])
        columns.append(sp.csc_matrix(rng.poisson(mu).astype(float)))
    return sp.hstack(columns).tocsr()


def sparse_run(features: int, jobs: int, dense: int) -> dict:
    code = SPARSE_CHILD.format(repo=str(Path(__file__).resolve().parents[1]), formula=POISSON,
                               features=features, jobs=jobs, dense=dense)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return {"workload": "sparse", "error": proc.stderr[-2000:]}
    return {"workload": "sparse 2,000 cells", **json.loads(proc.stdout.strip().splitlines()[-1])}


R_LOOP = """
suppressMessages({{library(lme4); library(glmmTMB)}})
d <- read.csv("{design}"); Y <- as.matrix(read.csv("{responses}"))
d$subject <- factor(d$subject)
fam <- {family}
t0 <- proc.time()[["elapsed"]]
ll_lme4 <- sapply(seq_len(ncol(Y)), function(j) {{ d$count <- Y[, j]
  as.numeric(logLik({lme4_call})) }})
t1 <- proc.time()[["elapsed"]]
ll_tmb <- sapply(seq_len(ncol(Y)), function(j) {{ d$count <- Y[, j]
  as.numeric(logLik(glmmTMB({formula}, data = d, family = fam{tmb_extra}))) }})
t2 <- proc.time()[["elapsed"]]
cat(sprintf('{{"lme4_s": %.4f, "glmmTMB_s": %.4f, "n": %d, "ll_lme4": [%s], "ll_tmb": [%s]}}\\n',
    t1 - t0, t2 - t1, ncol(Y), paste(sprintf("%.10f", ll_lme4), collapse = ","),
    paste(sprintf("%.10f", ll_tmb), collapse = ",")))
"""

R_CALLS = {
    "poisson": ("poisson()", "glmer(count ~ cond + offset(lsf) + (1 | subject), d, "
                "family = fam)", ""),
    "poisson_nagq0": ("poisson()", "glmer(count ~ cond + offset(lsf) + (1 | subject), d, "
                      "family = fam, nAGQ = 0)", ""),
    "lmm": ("gaussian()", "lmer(count ~ cond + (1 | subject), d, REML = TRUE)",
            ", REML = TRUE"),
    "negative_binomial": ("nbinom2()", "glmer.nb(count ~ cond + offset(lsf) + (1 | subject), d)",
                          ""),
}


def r_peers(name: str, data: pd.DataFrame, Y: np.ndarray, formula: str,
            out: glmmcore.BatchResult) -> dict:
    if shutil.which("Rscript") is None:
        return {"workload": name, "r": "Rscript not found"}
    family, call, extra = R_CALLS[name]
    with tempfile.TemporaryDirectory() as tmp:
        data.to_csv(Path(tmp) / "d.csv", index=False)
        pd.DataFrame(Y).to_csv(Path(tmp) / "y.csv", index=False)
        script = R_LOOP.format(design=Path(tmp) / "d.csv", responses=Path(tmp) / "y.csv",
                               family=family, lme4_call=call, formula=formula, tmb_extra=extra)
        (Path(tmp) / "loop.R").write_text(script)
        proc = subprocess.run(["Rscript", str(Path(tmp) / "loop.R")], capture_output=True,
                              text=True, check=False)
    if proc.returncode != 0:
        return {"workload": name, "r": proc.stderr[-1000:]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = out.fits["loglik"].to_numpy()[: r["n"]]
    return {"workload": name, "r_features": r["n"], "lme4_fits_per_s": r["n"] / r["lme4_s"],
            "glmmTMB_fits_per_s": r["n"] / r["glmmTMB_s"],
            "min_loglik_minus_lme4": float(np.min(ours - np.array(r["ll_lme4"]))),
            "min_loglik_minus_glmmTMB": float(np.min(ours - np.array(r["ll_tmb"])))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1000, help="features per workload")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sparse-features", type=int, default=20000)
    parser.add_argument("--dask-features", type=int, default=10000)
    parser.add_argument("--r-features", type=int, default=20)
    parser.add_argument("--only", default="poisson,poisson_nagq0,lmm,negative_binomial,"
                        "sparse,dask", help="comma-separated workloads")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    data = design()
    rows = []
    specs = {"poisson": (POISSON, "poisson", "poisson"),
             "poisson_nagq0": (POISSON, "poisson", "poisson"),
             "lmm": (LMM, "gaussian", "gaussian"),
             "negative_binomial": (POISSON, "negative_binomial", "nb")}
    for name, (formula, family, kind) in specs.items():
        if name not in only:
            continue
        nagq = 0 if name == "poisson_nagq0" else 1
        Y = responses(data, args.features, kind, base=(5.0, 0.5) if kind == "gaussian"
                      else (1.0, 0.5))
        row = batch_rate(name, data, Y, formula, family, args.jobs, nagq)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
        if args.r_features:
            out = glmmcore.fit_many(formula, data, Y[:, :args.r_features], family=family,
                                    nAGQ=nagq, progress=False)
            peer = r_peers(name, data, Y[:, :args.r_features], formula, out)
            print(json.dumps(peer), file=sys.stderr)
            rows.append(peer)
    if "sparse" in only:
        row = sparse_run(args.sparse_features, args.jobs, min(1000, args.sparse_features))
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    if "dask" in only:
        row = dask_overhead(data, responses(data, args.dask_features, "poisson", seed=11))
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": _commit(), "load_average": os.getloadavg(),
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(meta))
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
