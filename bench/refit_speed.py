"""Speed of a model built once and fitted many times: ``python -m bench.refit_speed``.

A sleepstudy-size LMM (18 subjects x 10 days, ``Reaction ~ Days + (Days | Subject)``,
180 rows) and a per-gene-size Poisson GLMM (600 rows, 30 subjects, an offset):
``model.fit(y)`` on a model built once against a fresh ``glmmcore.fit`` of the same
data and response (responses drawn from the fitted model), interleaved in rounds (each
round's order the reverse of the last's) after one warm-up each.  The ratio is the
median over the rounds of fresh / ``model.fit``; the first quartile, the fastest fits and
their ratio are printed too: on a loaded machine a fit longer than the scheduler's time
slice is often preempted, which moves medians by 10 ms and more.  Target (LMM):
``model.fit(y)`` at most 1 ms warm median and at least 3x faster than a fresh fit.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
import pandas as pd

import glmmcore
from bench.plugin_speed import interleaved, paired_ratio


def sleepstudy_like(seed: int = 1, slope_sd: float = 6.0) -> pd.DataFrame:
    """18 subjects x 10 days with a random intercept and slope, as lme4's sleepstudy
    (``slope_sd``: the slopes' standard deviation; small values give singular fits)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(18), 10)
    days = np.tile(np.arange(10.0), 18)
    b0, b1 = rng.normal(0, 25, 18), rng.normal(0, slope_sd, 18)
    reaction = 250 + 10 * days + b0[subject] + b1[subject] * days + rng.normal(0, 25, 180)
    return pd.DataFrame({"Reaction": reaction, "Days": days,
                         "Subject": [f"S{s}" for s in subject]})


def per_gene_poisson(seed: int = 1) -> pd.DataFrame:
    """600 samples of 30 subjects in 2 conditions with a library-size offset."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(30), 20)
    cond = (subject % 2).astype(float)
    lib = rng.uniform(0.5, 2.0, 600)
    mu = lib * np.exp(1.0 + 0.4 * cond + rng.normal(0, 0.5, 30)[subject])
    return pd.DataFrame({"count": rng.poisson(mu), "cond": cond, "lsf": np.log(lib),
                         "subject": subject})


def measure(name: str, formula: str, data: pd.DataFrame, column: str, family: str,
            repeats: int) -> dict:
    """Times of a fresh fit and of ``model.fit(y)``, both of responses drawn from the
    model fitted to the data (a new one each round, as a parametric bootstrap)."""
    model = glmmcore.MixedModel(formula, data, family=family)
    draws = model.fit().simulate(repeats + 1, seed=7).to_numpy().T
    k = {"fresh": 0, "model.fit": 0}

    def fresh() -> object:
        k["fresh"] += 1
        new = data.assign(**{column: draws[k["fresh"] % len(draws)]})
        return glmmcore.fit(formula, new, family=family)

    def refit() -> object:
        k["model.fit"] += 1
        return model.fit(draws[k["model.fit"] % len(draws)])

    times = interleaved({"fresh": fresh, "model.fit": refit}, repeats)
    same = (model.fit(draws[0]).loglik
            == glmmcore.fit(formula, data.assign(**{column: draws[0]}), family=family).loglik)
    return {"workload": name, "fresh_ms": 1e3 * statistics.median(times["fresh"]),
            "model_fit_ms": 1e3 * statistics.median(times["model.fit"]),
            "fastest_fresh_ms": 1e3 * min(times["fresh"]),
            "fastest_model_fit_ms": 1e3 * min(times["model.fit"]),
            "quartile_model_fit_ms": 1e3 * float(np.percentile(times["model.fit"], 25)),
            "ratio": paired_ratio(times, "fresh", "model.fit"),
            "fastest_ratio": min(times["fresh"]) / min(times["model.fit"]), "same_loglik": same}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    rows = [measure("sleepstudy LMM", "Reaction ~ Days + (Days | Subject)", sleepstudy_like(),
                    "Reaction", "gaussian", args.repeats),
            measure("per-gene Poisson", "count ~ cond + offset(lsf) + (1 | subject)",
                    per_gene_poisson(), "count", "poisson", max(args.repeats // 5, 10))]
    print("| workload | fresh fit (ms) | model.fit (ms) | model.fit 25% (ms) | fastest fresh "
          "(ms) | fastest model.fit (ms) | ratio (median of rounds) | ratio of fastest | "
          "same log-likelihood |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['fresh_ms']:.3f} | {r['model_fit_ms']:.3f} | "
              f"{r['quartile_model_fit_ms']:.3f} | {r['fastest_fresh_ms']:.3f} | "
              f"{r['fastest_model_fit_ms']:.3f} | {r['ratio']:.2f} | "
              f"{r['fastest_ratio']:.2f} | {r['same_loglik']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
