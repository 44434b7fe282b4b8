"""The scikit-learn estimators' overhead over ``glmmcore.fit``: ``python -m bench.sklearn_speed``.

The seed speed-dating model (``speed_laplace``: binomial, Laplace, 7,366 of 7,707 rows,
``decision ~ sex + samerace + attractive_sc + sincere_sc + intelligent_sc + (1 | iid)``)
fitted by ``glmmcore.fit`` and by :class:`glmmcore.sklearn.GLMMClassifier` in both modes:

- formula mode, ``GLMMClassifier(formula).fit(data)`` (labels read from the data, encoded
  as 0/1, the response column replaced);
- column mode, ``GLMMClassifier().fit(X, y, groups=iid)`` on the same model's numeric
  columns (``sex`` and ``samerace`` as 0/1), against ``glmmcore.fit`` of the formula on
  those columns.

Interleaved in rounds after one warm-up each (each round's order the reverse of the
last's); the ratio is the median over the rounds of the estimator's time over
``glmmcore.fit``'s.  Target: at most 1.10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

import glmmcore
from bench.plugin_speed import interleaved, paired_ratio
from bench.workloads import load_seed
from glmmcore.sklearn import GLMMClassifier

FORMULA = ("decision ~ sex + samerace + attractive_sc + sincere_sc + intelligent_sc"
           " + (1 | iid)")
NUMERIC = ["sex_Male", "samerace_Yes", "attractive_sc", "sincere_sc", "intelligent_sc"]


def measure(name: str, baseline, estimator, repeats: int) -> dict:
    """Warm times of both, and the median over the rounds of their ratio."""
    times = interleaved({"glmmcore.fit": baseline, "estimator": estimator}, repeats)
    return {"mode": name, "fit_ms": 1e3 * statistics.median(times["glmmcore.fit"]),
            "estimator_ms": 1e3 * statistics.median(times["estimator"]),
            "ratio": paired_ratio(times, "estimator", "glmmcore.fit")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sklearn_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="rounds per mode")
    args = parser.parse_args(argv)
    data = load_seed("sd")
    rows = [measure("formula", lambda: glmmcore.fit(FORMULA, data, family="binomial"),
                    lambda: GLMMClassifier(FORMULA).fit(data), args.repeats)]
    used = data[["decision", "sex", "samerace", "attractive_sc", "sincere_sc",
                 "intelligent_sc", "iid"]].dropna()
    numeric = used.assign(sex_Male=(used["sex"] == "Male") * 1.0,
                          samerace_Yes=(used["samerace"] == "Yes") * 1.0)
    X = numeric[NUMERIC].to_numpy()
    y, groups = numeric["decision"].to_numpy(), numeric["iid"].to_numpy()
    column_formula = f"decision ~ {' + '.join(NUMERIC)} + (1 | iid)"
    rows.append(measure("column",
                        lambda: glmmcore.fit(column_formula, numeric, family="binomial"),
                        lambda: GLMMClassifier().fit(X, y, groups=groups), args.repeats))
    same = np.allclose(GLMMClassifier().fit(X, y, groups=groups).coef_[0],
                       glmmcore.fit(column_formula, numeric, family="binomial").beta[1:],
                       rtol=1e-10)
    print("| mode | glmmcore.fit (ms) | estimator (ms) | ratio (median of rounds) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['fit_ms']:.1f} | {r['estimator_ms']:.1f} | "
              f"{r['ratio']:.3f} |")
    print(f"\nsame estimates (column mode): {same}; load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
