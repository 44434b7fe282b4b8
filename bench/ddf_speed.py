"""Cost of denominator degrees of freedom on the seed LMMs: ``python -m bench.ddf_speed``.

For each seed LMM: the warm time of the fit, of ``coef_table(ddf="satterthwaite")``, of
``coef_table(ddf="kenward-roger")`` (REML fits) and of the type III table
``anova(ddf="satterthwaite")``, interleaved in rounds (each round's order the reverse of
the last's) after one warm-up each; printed as median seconds and as the median over the
rounds of each one's time over the fit's.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import glmmcore
from bench.plugin_speed import interleaved, paired_ratio
from bench.workloads import SEED_LMMS, all_workloads


def measure(workload, repeats: int) -> dict[str, float]:
    """Median seconds of each step and their ratios to the fit's."""
    data = workload.source.load()
    kwargs = workload.fit_kwargs()
    fit = glmmcore.fit(workload.formula, data, **kwargs)
    steps = {"fit": lambda: glmmcore.fit(workload.formula, data, **kwargs),
             "satterthwaite": lambda: fit.coef_table(ddf="satterthwaite"),
             "anova": lambda: fit.anova(ddf="satterthwaite")}
    if fit.reml:
        steps["kenward-roger"] = lambda: fit.coef_table(ddf="kenward-roger")
    times = interleaved(steps, repeats)
    out = {name: statistics.median(t) for name, t in times.items()}
    for name in steps:
        if name != "fit":
            out[f"{name}/fit"] = paired_ratio(times, name, "fit")
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every seed LMM and print a markdown table; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.ddf_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per model")
    args = parser.parse_args(argv)
    print("| model | fit (ms) | Satterthwaite (ms) | ratio | Kenward-Roger (ms) | ratio "
          "| anova, Satterthwaite (ms) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in all_workloads():
        if workload.name not in SEED_LMMS:
            continue
        r = measure(workload, args.repeats)
        kr = (f"{1e3 * r['kenward-roger']:.1f} | {r['kenward-roger/fit']:.2f}"
              if "kenward-roger" in r else "(ML fit) | ")
        print(f"| {workload.name} | {1e3 * r['fit']:.1f} | {1e3 * r['satterthwaite']:.1f} | "
              f"{r['satterthwaite/fit']:.2f} | {kr} | {1e3 * r['anova']:.1f} | "
              f"{r['anova/fit']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
