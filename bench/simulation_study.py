"""Simulation study: bias and Wald coverage of glmmcore's estimates against known truths.

``python3 -m bench.simulation_study [--reps 500] [--workers 2] [--json PATH]``

For each design (an LMM, a binomial GLMM and a Poisson GLMM from
:func:`glmmcore.simulate`, at sizes that fit in a few minutes on 2 cores),
``--reps`` data sets are simulated with seeds 0, 1, ... and fitted with the
generating formula.  Printed per parameter: the true value, the mean estimate,
the bias with its Monte Carlo standard error, and for fixed effects the
coverage of the 95% Wald interval ``estimate +- 1.96 se`` (expected 93-97% at
500 replicates: 95% +- 2 Monte Carlo SEs).  Fits that do not converge, are
singular or raise are counted; they stay in the averages (as a user would get
them).  Slow; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

DESIGNS = {
    "lmm (gpa)": ("gpa", {"n_students": 100}),
    "binomial (speed_dating)": ("speed_dating", {"n_participants": 120, "n_partners": 130,
                                                 "dates_per_participant": 10}),
    "poisson (patents)": ("patents", {"n_patents": 600, "n_years": 18}),
}
Z95 = 1.959963984540054


def one_fit(args: tuple[str, str, dict, int]) -> dict:
    """Simulate one data set and fit it; estimates, Wald limits and status."""
    import glmmcore
    label, design, sizes, seed = args
    sim = glmmcore.simulate(design, seed=seed, **sizes)
    out = {"label": label, "seed": seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", glmmcore.GlmmWarning)
        try:
            fit = glmmcore.fit(sim.formula, sim.data, family=sim.family)
        except glmmcore.GlmmError as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
    fe = fit.fixef.reindex(sim.fixef.index)
    se = fit.stderr.reindex(sim.fixef.index)
    out.update(converged=bool(fit.converged), singular=bool(fit.is_singular),
               fixef=fe.to_dict(), se=se.to_dict(), true_fixef=sim.fixef.to_dict(),
               sd=_sds(fit.varcorr), true_sd=_sds(sim.varcorr))
    return out


def _sds(varcorr: pd.DataFrame) -> dict:
    """Standard deviations and correlations by 'grp var1 [var2]'."""
    keys = (varcorr["grp"].astype(str) + " " + varcorr["var1"].fillna("").astype(str) + " "
            + varcorr["var2"].fillna("").astype(str)).str.strip()
    return dict(zip(keys, varcorr["sdcor"].astype(float)))


def summarize(label: str, fits: list[dict]) -> pd.DataFrame:
    """One row per parameter: truth, mean, bias (MC se), Wald coverage."""
    ok = [f for f in fits if "error" not in f]
    rows = []
    for name, truth in ok[0]["true_fixef"].items():
        est = np.array([f["fixef"][name] for f in ok])
        se = np.array([f["se"][name] for f in ok])
        cover = np.abs(est - truth) <= Z95 * se
        rows.append(_row(label, name, truth, est, float(np.mean(cover))))
    for name, truth in ok[0]["true_sd"].items():
        est = np.array([f["sd"].get(name, np.nan) for f in ok])
        rows.append(_row(label, f"sd/cor {name}", truth, est, np.nan))
    return pd.DataFrame(rows)


def _row(label: str, name: str, truth: float, est: np.ndarray, coverage: float) -> dict:
    est = est[np.isfinite(est)]
    return {"model": label, "parameter": name, "true": truth, "mean": float(np.mean(est)),
            "bias": float(np.mean(est) - truth),
            "bias MC se": float(np.std(est, ddof=1) / np.sqrt(est.size)),
            "coverage 95%": coverage}


def markdown(table: pd.DataFrame) -> str:
    """A markdown table (floats to 4 decimals, coverage as a percentage)."""
    def cell(column: str, value: object) -> str:
        if isinstance(value, float):
            if np.isnan(value):
                return ""
            return f"{100 * value:.1f}%" if column.startswith("coverage") else f"{value:.4f}"
        return str(value)
    lines = ["| " + " | ".join(table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(table.columns, row)) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated design labels' prefixes")
    parser.add_argument("--json", default=None, help="write every fit's numbers here")
    args = parser.parse_args(argv)
    tables, status, everything = [], [], {}
    for label, (design, sizes) in DESIGNS.items():
        if args.only and not any(label.startswith(p) for p in args.only.split(",")):
            continue
        start = time.perf_counter()
        jobs = [(label, design, sizes, seed) for seed in range(args.reps)]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            fits = list(pool.map(one_fit, jobs, chunksize=10))
        seconds = time.perf_counter() - start
        everything[label] = fits
        ok = [f for f in fits if "error" not in f]
        status.append({"model": label, "fits": len(fits), "errors": len(fits) - len(ok),
                       "not converged": sum(not f["converged"] for f in ok),
                       "singular": sum(f["singular"] for f in ok),
                       "seconds": f"{seconds:.1f}"})
        tables.append(summarize(label, fits))
        print(f"{label}: {len(fits)} fits in {seconds:.1f} s", file=sys.stderr)
    print(markdown(pd.DataFrame(status)))
    print()
    print(markdown(pd.concat(tables, ignore_index=True)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
