"""Speed of the families and links off the canonical path: ``python -m bench.family_speed``.

Each model is timed against the canonical model of the same data and formula
(Poisson with the log link, binomial with the logit link), in the same process:
one warm-up fit of each, then ``--repeats`` rounds, each fitting the pair in the
reverse order of the round before (:func:`bench.plugin_speed.interleaved`).  The
ratio is the median over the rounds of the pair's ratio, beside the ratio of the
warm medians.  The target is 1.5 (issue 22).  All these models have one scalar
random-effects term and take the compiled fast path (:mod:`glmmcore.fitting.scalar_fast`;
the line names the path each fit took); a second ratio is against the canonical fit on the
regular path (``control={"fast_path": False}``), and a third of the model itself on the
regular path against that (what a model with more random-effects terms pays).

- negative binomial (theta estimated), Poisson sqrt: the patents data,
  ``ncit ~ opposition + biopharm + (1 | yearf)``, against the Poisson fit;
- Gamma with the log link: ``gpa ~ occasion + (1 | student)`` on the gpa data,
  against a Poisson fit of the same formula to ``round(10 gpa)`` (a Poisson GLMM
  needs counts; the design is the same);
- binomial probit: the speed-dating model, against its logit fit;
- the example Beta plugin (``python3 -m pip install ./docs/examples/glmmcore-beta``)
  on its simulated data (:func:`bench.plugin_speed.beta_data`), against a logit
  binomial fit of the same formula to ``y > median(y)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import glmmcore

from .plugin_speed import beta_data, interleaved, paired_ratio
from .workloads import load_seed

TARGET = 1.5
PATENTS = "ncit ~ opposition + biopharm + (1 | yearf)"
SPEED_DATING = ("decision ~ sex + samerace + attractive_sc + sincere_sc + intelligent_sc"
                " + (1 | iid)")


def pairs(beta_groups: int, beta_per_group: int) -> dict[str, tuple[Callable, Callable]]:
    """``name: (model, its canonical baseline)`` as fits of no arguments; the baseline
    takes ``regular=True`` for its fit off the fast path."""
    def fit(formula, data, family, link=None):
        def run(regular: bool = False):
            control = {"fast_path": False} if regular else None
            return glmmcore.fit(formula, data, family=family, link=link, control=control)
        return run

    patents, gpa, sd = load_seed("patents"), load_seed("gpa").copy(), load_seed("sd")
    gpa["gpa10"] = (10 * gpa["gpa"]).round()
    sd = sd.dropna(subset=["decision", "sex", "samerace", "attractive_sc", "sincere_sc",
                           "intelligent_sc"])
    out = {
        "negative_binomial (patents)": (fit(PATENTS, patents, "negative_binomial"),
                                        fit(PATENTS, patents, "poisson")),
        "poisson sqrt (patents)": (fit(PATENTS, patents, "poisson", "sqrt"),
                                   fit(PATENTS, patents, "poisson")),
        "gamma log (gpa)": (fit("gpa ~ occasion + (1 | student)", gpa, "gamma", "log"),
                            fit("gpa10 ~ occasion + (1 | student)", gpa, "poisson")),
        "binomial probit (speed dating)": (fit(SPEED_DATING, sd, "binomial", "probit"),
                                           fit(SPEED_DATING, sd, "binomial")),
    }
    if "beta" in glmmcore.available_families():
        data = beta_data(beta_groups, beta_per_group)
        data["yb"] = (data["y"] > data["y"].median()).astype(float)
        out["beta plugin (simulated)"] = (fit("y ~ x + (1 | g)", data, "beta"),
                                          fit("yb ~ x + (1 | g)", data, "binomial"))
    return out


def main(argv: list[str] | None = None) -> int:
    """Time every pair and print the ratios; returns 1 if a ratio misses the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.family_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds per pair")
    parser.add_argument("--beta-groups", type=int, default=100)
    parser.add_argument("--beta-per-group", type=int, default=10)
    parser.add_argument("--only", help="run the pairs whose name contains this")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    missed = 0
    for name, (model, baseline) in pairs(args.beta_groups, args.beta_per_group).items():
        if args.only and args.only not in name:
            continue
        times = interleaved({"model": model, "baseline": baseline,
                             "regular": lambda baseline=baseline: baseline(regular=True),
                             "model_regular": lambda model=model: model(regular=True)},
                            args.repeats)
        median = {k: statistics.median(v) for k, v in times.items()}
        ratio = paired_ratio(times, "model", "baseline")
        regular = paired_ratio(times, "model", "regular")
        both = paired_ratio(times, "model_regular", "regular")
        result = model()
        missed += ratio > TARGET
        verdict = "ok" if ratio <= TARGET else "OVER"
        print(f"{name:<31} {1e3 * median['model']:6.1f} ms; canonical "
              f"{1e3 * median['baseline']:6.1f} ms, ratio {ratio:.2f} {verdict}; canonical off the"
              f" fast path {1e3 * median['regular']:6.1f} ms, ratio {regular:.2f}; both off it"
              f" {1e3 * median['model_regular']:6.1f} ms, ratio {both:.2f}"
              f"  [{result.extra['nevals']} evaluations; {result.convergence.optimizer[-1]}]")
    return int(missed > 0)


if __name__ == "__main__":
    sys.exit(main())
