"""``glmm batch``: one model fitted to every column of a responses file.

::

    glmm batch DATA RESPONSES FORMULA --out results.parquet [--reduced F]
               [--family F] [--link L] [--nagq K] [--ml] [--jobs N]
               [--backend threads|processes|dask] [--scheduler ADDRESS]
               [--checkpoint DIR] [--chunk-size N] [--transpose] [--progress]

DATA and RESPONSES are CSV or Parquet files with the same rows (RESPONSES:
one column per feature; with ``--transpose`` one row per feature, its name in
the first column).  The output is :meth:`BatchResult.to_parquet`'s file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import CommandLineError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``batch`` subcommand to the ``glmm`` parser."""
    batch = sub.add_parser("batch", parents=[common],
                           help="fit one model to every column of a responses file")
    batch.add_argument("data", help="CSV or Parquet file: the observations (covariates, "
                       "groups, offsets)")
    batch.add_argument("responses", help="CSV or Parquet file: one column per feature, "
                       "rows as DATA's")
    batch.add_argument("formula", help="the model, its left side naming the response, "
                       "e.g. 'y ~ cond + offset(lsf) + (1 | subject)'")
    batch.add_argument("--out", required=True, help="results file (Parquet)")
    batch.add_argument("--reduced", help="a nested formula: likelihood-ratio test per "
                       "feature (both models by ML)")
    batch.add_argument("--family", default="gaussian", help="family name (default gaussian)")
    batch.add_argument("--link", default=None, help="link name (default: the family's)")
    batch.add_argument("--nagq", type=int, default=1, help="GLMM integration: 0, 1 "
                       "(Laplace) or quadrature nodes")
    batch.add_argument("--ml", action="store_true", help="maximum likelihood instead of "
                       "REML (linear mixed models)")
    batch.add_argument("--jobs", type=int, default=None, help="threads or processes "
                       "(default: the cores available)")
    batch.add_argument("--backend", choices=("threads", "processes", "dask"), default=None,
                       help="default threads, dask with --scheduler")
    batch.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler's address "
                       "(tcp://host:8786); implies --backend dask")
    batch.add_argument("--checkpoint", metavar="DIR", help="write finished chunks here and "
                       "resume from them")
    batch.add_argument("--chunk-size", type=int, default=None, help="features per chunk")
    batch.add_argument("--transpose", action="store_true", help="RESPONSES has one row per "
                       "feature (its name in the first column), e.g. a genes x samples "
                       "count table")
    batch.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar (default: when standard error is a terminal)")
    batch.set_defaults(run=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    """Run ``glmm batch``: read, fit, write the results, report on standard error."""
    from ..cli import read_table
    from .engine import fit_many
    out = _out_target(args.out)
    backend = args.backend or ("dask" if args.scheduler else "threads")
    if args.scheduler and backend != "dask":
        raise CommandLineError(f"--scheduler needs the dask backend, not --backend {backend}")
    data = read_table(args.data)
    responses = read_table(args.responses)
    if args.transpose:
        responses = responses.set_index(responses.columns[0]).T
    client = _client(args.scheduler) if args.scheduler else None
    start = time.perf_counter()
    try:
        result = fit_many(args.formula, data, responses, family=args.family, link=args.link,
                          REML=not args.ml, nAGQ=args.nagq, reduced=args.reduced,
                          backend=backend, n_jobs=args.jobs, client=client,
                          chunk_size=args.chunk_size, checkpoint=args.checkpoint,
                          progress=args.progress)
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    temporary = out.with_name(f".{out.name}.tmp")
    result.to_parquet(temporary)
    temporary.replace(out)
    failed = len(result.failed)
    unconverged = int((~result.fits["converged"]).sum()) - failed
    print(f"glmm: {len(result)} features fitted in {seconds:.1f} s ({failed} failed, "
          f"{unconverged} not converged) -> {out}", file=sys.stderr)
    return 0


def _out_target(path: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise CommandLineError(f"--out {path} is a directory; give a file name")
    if not target.parent.is_dir():
        raise CommandLineError(f"--out {path}: the directory {target.parent} does not exist")
    if target.suffix.lower() not in (".parquet", ".pq"):
        raise CommandLineError(f"--out {path}: the results are written as Parquet; name "
                               "the file .parquet")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError('writing Parquet needs pyarrow: pip install '
                          '"glmmcore[parquet]"') from None
    return target


def _client(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ImportError('--scheduler needs dask.distributed: pip install '
                          '"glmmcore[dask]"') from None
    try:
        return Client(address, timeout="20s")
    except OSError as exc:
        raise CommandLineError(f"--scheduler {address}: cannot connect ({exc})") from None
