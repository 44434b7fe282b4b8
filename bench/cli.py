"""``python -m bench``: run the workloads on glmmcore and its peers, print the table."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .measure import fresh_glmmcore, warm_glmmcore
from .peers import lme4_versions, mixedlm_call, mixedlm_version, run_lme4, run_mixedlm
from .report import environment_lines, read_json, table, write_json
from .workloads import REPO, Workload, all_workloads, select

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="skip the large and huge workloads")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help="workloads whose name equals or starts with one of these")
    p.add_argument("--repeat", type=int, default=5, metavar="N",
                   help="timed warm repetitions per engine (default 5)")
    p.add_argument("--budget", type=float, default=300.0, metavar="SECONDS",
                   help="cap on the timed repetitions of one engine on one workload: fewer "
                        "than --repeat when they would take longer (default 300)")
    p.add_argument("--no-peers", action="store_true", help="skip lme4 and mixedlm")
    p.add_argument("--peers-huge", action="store_true",
                   help="run the peers on the huge workloads too (lme4 takes many minutes)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                   help=f"write all results here (default {DEFAULT_JSON.relative_to(REPO)})")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--report", type=Path, metavar="PATH",
                   help="print the table of an earlier results file and exit")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def _log(msg: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "glmmcore", "families"],
                               cwd=REPO, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty.strip() else ''}"


def environment(args: argparse.Namespace, peers: bool) -> dict[str, Any]:
    """Date, machine, versions and protocol of this run."""
    import glmmcore
    versions = {"python": platform.python_version(), "glmmcore": glmmcore.__version__,
                **{d: _version(d) for d in ("numba", "numpy", "scipy", "pandas")}}
    if peers:
        lme4 = lme4_versions()
        if isinstance(lme4, dict):
            versions |= {"R": lme4["R"], "lme4": lme4["lme4"]}
        versions["mixedlm"] = mixedlm_version() or "not installed"
    threads = {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS") if k in os.environ}
    return {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": _cpu_model(),
            "platform": f"{platform.system()} {platform.release()}",
            "versions": versions, "git": _git_state(), "threads_env": threads,
            "loadavg_start": list(os.getloadavg()),
            "repeat": args.repeat, "budget": args.budget, "peers": peers,
            "argv": sys.argv[1:]}


def _error(exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "message": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=5)}


def run_workload(work: Workload, args: argparse.Namespace, families: list[str],
                 tmp: Path) -> dict[str, Any]:
    """All measurements of one workload."""
    data = work.source.load()
    pickle_path = tmp / f"{work.name}.pkl"
    data.to_pickle(pickle_path)
    record: dict[str, Any] = {
        "name": work.name, "size": work.size, "formula": work.formula, "family": work.family,
        "link": work.link, "nAGQ": work.nAGQ, "REML": work.REML, "nrows": len(data),
        "lme4_call": work.r_call(), "mixedlm_call": mixedlm_call(work),
        "repeat": args.repeat, "simulation": work.extra or None}
    if not work.family_available(families):
        record["glmmcore"] = {"status": "skipped",
                              "message": f"family '{work.family}' not in glmmcore "
                                         f"(available: {', '.join(families)})"}
    else:
        family = work.glmmcore_family(families)
        _log(f"{work.name}: glmmcore warm fits")
        try:
            record["glmmcore"] = warm_glmmcore(work, data, family, args.repeat, args.budget)
        except Exception as exc:  # noqa: BLE001 - a failing fit is a result to report
            record["glmmcore"] = _error(exc)
        _log(f"{work.name}: glmmcore fresh processes")
        record["glmmcore"]["fresh"] = fresh_glmmcore(work, pickle_path, family)
    peers_off = ("--no-peers" if args.no_peers else
                 "huge workload: glmmcore only (--peers-huge runs the peers)"
                 if work.size == "huge" and not args.peers_huge else None)
    if peers_off:
        for peer in ("lme4", "mixedlm"):
            record[peer] = {"status": "skipped", "message": peers_off}
        return record
    csv = work.source.csv
    if csv is None:
        csv = tmp / f"{work.name}.csv"
        data.to_csv(csv, index=False)
    _log(f"{work.name}: lme4")
    record["lme4"] = run_lme4(work, csv, tmp, args.repeat, args.budget)
    _log(f"{work.name}: mixedlm")
    record["mixedlm"] = run_mixedlm(work, pickle_path, args.repeat, args.budget)
    return record


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, print the table, write the JSON."""
    args = parse_args(argv)
    if args.report:
        meta, records = read_json(args.report)
        print(f"{table(records)}\n\n{environment_lines(meta)}")
        return 0
    workloads = select(all_workloads(), args.only, args.quick)
    if args.list:
        for w in workloads:
            print(f"{w.name:24} {w.size:6} {w.r_call()}")
        return 0
    import glmmcore
    families = glmmcore.available_families()
    meta = environment(args, peers=not args.no_peers)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="glmmcore-bench-") as tmpdir:
        for work in workloads:
            records.append(run_workload(work, args, families, Path(tmpdir)))
            write_json(args.json, meta, records)   # partial results survive an interrupt
    meta["loadavg_end"] = list(os.getloadavg())
    write_json(args.json, meta, records)
    print(f"{table(records)}\n\n{environment_lines(meta)}")
    _log(f"results written to {args.json}")
    return 0
