"""Speed of the parametric bootstrap and of profiles: ``python -m bench.inference_speed``.

- Bootstrap: ``glmmcore.bootstrap`` of a sleepstudy-size LMM (18 subjects x 10 days,
  ``Reaction ~ Days + (Days | Subject)``), 1,000 draws with 1 and 2 threads and with 2
  processes, against the baseline of the same 1,000 refits on the regular path (started
  from the fit's theta, as lme4's ``refit``) one after the other in the same process
  (responses drawn beforehand). Target: 1,000 draws in at most 1 s on 2 cores.
- Profiles: ``result.profile()`` of every parameter of the seed models ``gpa_rs`` (LMM,
  3 variance parameters, sigma, 2 fixed effects) and ``patents_pois`` (Poisson GLMM, 4809
  rows), against one fresh fit of the same model (the ratio is the profile's cost in fits).

Rounds are interleaved (each round's order the reverse of the last's) after a warm-up; the
medians and the median of the per-round ratios are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

import glmmcore
from bench.refit_speed import sleepstudy_like

SHARED = Path(os.environ.get("GLMMCORE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _rounds(runs: dict, repeats: int) -> dict[str, list[float]]:
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for _ in range(repeats):
        for name in order:
            times[name].append(_seconds(runs[name]))
        order.reverse()
    return times


def bootstrap_rows(nsim: int, repeats: int) -> list[tuple]:
    fit = glmmcore.fit("Reaction ~ Days + (Days | Subject)", sleepstudy_like())
    model = fit.model
    responses = fit.simulate(nsim, seed=1).to_numpy().T
    start = fit.theta

    def sequential() -> None:
        for y in responses:
            model.fit_response(model.response_from_used(y), control={"warn": False},
                               start=start)

    runs = {"refits, one after another": sequential,
            "bootstrap, n_jobs=1": lambda: glmmcore.bootstrap(fit, nsim, seed=1),
            "bootstrap, n_jobs=2": lambda: glmmcore.bootstrap(fit, nsim, seed=1, n_jobs=2),
            "bootstrap, processes, n_jobs=2": lambda: glmmcore.bootstrap(
                fit, nsim, seed=1, n_jobs=2, backend="processes")}
    times = _rounds(runs, repeats)
    base = times["refits, one after another"]
    return [(f"sleepstudy LMM, {nsim} draws: {name}", statistics.median(t),
             statistics.median(a / b for a, b in zip(t, base)), "plain refits")
            for name, t in times.items()]


def profile_rows(repeats: int) -> list[tuple]:
    gpa = pd.read_csv(SHARED / "data" / "gpa.csv")
    patents = pd.read_csv(SHARED / "data" / "patents.csv")
    patents["yearf"] = patents["year"].astype(str)
    cases = [("gpa_rs", "gpa ~ occasion + (1 + occasion | student)", gpa, "gaussian"),
             ("patents_pois", "ncit ~ opposition + biopharm + (1 | yearf)", patents,
              "poisson")]
    rows = []
    for name, formula, data, family in cases:
        fit = glmmcore.fit(formula, data, family=family)
        times = _rounds({"fit": lambda f=formula, d=data, fam=family: glmmcore.fit(
                             f, d, family=fam),
                         "profile": lambda f=fit: f.profile()}, repeats)
        ratio = statistics.median(a / b for a, b in zip(times["profile"], times["fit"]))
        rows.append((f"{name}: profile of all parameters", statistics.median(times["profile"]),
                     ratio, "fresh fits"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsim", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = bootstrap_rows(args.nsim, args.repeat) + profile_rows(args.repeat)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| what | median s | ratio | to |")
    print("|---|---|---|---|")
    for what, seconds, ratio, to in rows:
        print(f"| {what} | {seconds:.3f} | {ratio:.2f} | {to} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
