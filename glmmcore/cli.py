"""The ``glmm`` command: fit a model to a CSV or Parquet file, or run the demo.

::

    glmm fit DATA FORMULA [--ml] [--family F] [--link L] [--nagq K] [--json OUT]
    glmm demo [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError, GlmmError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glmm`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except GlmmError as exc:
        print(f"glmm: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glmm", description="Mixed models with lme4's "
                                     "formulas and answers.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a model to a CSV or Parquet file")
    fit.add_argument("data", help="CSV or Parquet file")
    fit.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (1 | g)'")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--family", default="gaussian", help="family name (default gaussian)")
    fit.add_argument("--link", default=None, help="link name (default: the family's)")
    fit.add_argument("--nagq", type=int, default=1,
                     help="GLMM integration: 0, 1 (Laplace) or quadrature nodes")
    fit.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    fit.set_defaults(run=_run_fit)
    demo = sub.add_parser("demo", help="fit simulated reference designs and compare with "
                          "the true values (no data file needed)")
    demo.add_argument("--seed", type=int, default=2024, help="simulation seed")
    demo.set_defaults(run=_run_demo)
    return parser


def read_table(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file into pandas."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"no such data file: {path}")
    if file.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(file)
    return pd.read_csv(file)


def _run_fit(args: argparse.Namespace) -> int:
    from .api import fit
    data = read_table(args.data)
    result = fit(args.formula, data, family=args.family, link=args.link, REML=not args.ml,
                 nAGQ=args.nagq, data_label=Path(args.data).name)
    print(result.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(result_to_dict(result), indent=2))
    return 0


def result_to_dict(result: Any) -> dict:
    """A fit's main results as JSON-ready data."""
    return {
        "formula": result.formula, "family": result.family.name,
        "link": result.family.link.name, "method": result.method,
        "fixef": result.fixef.to_dict(), "stderr": result.stderr.to_dict(),
        "theta": result.theta.tolist(), "sigma": result.sigma,
        "varcorr": json.loads(result.varcorr.to_json(orient="records")),
        "loglik": result.loglik, "aic": result.aic, "bic": result.bic,
        "deviance": result.deviance, "nobs": result.nobs, "n_dropped": result.n_dropped,
        "ngroups": result.ngroups, "convergence": result.convergence.as_dict(),
    }


def _run_demo(args: argparse.Namespace) -> int:
    from .api import fit
    from .simulation import simulate
    print("glmmcore demo: simulated reference designs, fitted and compared with the truth\n")
    for design, size in (("gpa", {"n_students": 400}), ("speed_dating", {})):
        sim = simulate(design, seed=args.seed, **size)
        start = time.perf_counter()
        result = fit(sim.formula, sim.data, family=sim.family, data_label=f"simulated {design}")
        seconds = time.perf_counter() - start
        print(f"== {design}: {sim.family} model, {result.nobs} observations, "
              f"fitted in {seconds:.2f} s ==")
        print(f"   {sim.formula}")
        print(_compare(result, sim))
        print(f"   log-likelihood {result.loglik:.3f}; converged: {result.converged}\n")
    return 0


def _compare(result: Any, sim: Any) -> str:
    fixed = pd.DataFrame({"true": sim.fixef, "estimate": result.fixef,
                          "std. error": result.stderr})
    fixed["z (est - true)"] = (fixed["estimate"] - fixed["true"]) / fixed["std. error"]
    keys = ["grp", "var1", "var2"]
    vc = sim.varcorr.merge(result.varcorr, on=keys, how="outer", suffixes=(" true", " est"))
    vc = vc[[*keys, "sdcor true", "sdcor est"]].fillna({"var1": "", "var2": ""})
    fmt = {c: (lambda v: f"{v:.4f}") for c in ("true", "estimate", "std. error")}
    fmt["z (est - true)"] = lambda v: f"{v:+.2f}"
    return ("   fixed effects:\n" + _indent(fixed.to_string(formatters=fmt)) +
            "\n   standard deviations / correlations:\n" +
            _indent(vc.to_string(index=False, float_format=lambda v: f"{v:.4f}")))


def _indent(text: str) -> str:
    return "\n".join("     " + line for line in text.splitlines())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
