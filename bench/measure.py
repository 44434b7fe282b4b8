"""Timing glmmcore: warm fits in this process, first fit and peak memory in a fresh one.

Every subprocess the harness starts goes through :func:`run_bounded`, which puts it in
its own session and kills that session when the timeout expires, so a stuck fit (or an R
process under ``Rscript``) never outlives its budget.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import glmmcore

from .workloads import Workload

RESULT_TAG = "BENCH_RESULT "
TIMEOUTS = {"seed": 900.0, "large": 1800.0, "huge": 3600.0}   # seconds per subprocess


@dataclass
class Outcome:
    """What one subprocess did.

    Attributes
    ----------
    status
        ``"ok"``, ``"error"`` (nonzero exit or no result line) or ``"timeout"``.
    result
        The JSON printed after ``BENCH_RESULT`` (empty unless status is ok).
    seconds
        Wall time of the whole subprocess.
    message
        Error text (tail of stderr) or the timeout.
    """

    status: str
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""


def run_bounded(cmd: list[str], timeout: float, cwd: Path | None = None) -> Outcome:
    """Run ``cmd``, parse its ``BENCH_RESULT {json}`` line, kill it after ``timeout`` s."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return Outcome("timeout", seconds=time.perf_counter() - t0,
                       message=f"timed out after {timeout:.0f} s")
    seconds = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_TAG)]
    if lines:
        result = json.loads(lines[-1][len(RESULT_TAG):])
        if "error" in result:
            return Outcome("error", result, seconds, result["error"])
        return Outcome("ok", result, seconds)
    tail = " | ".join((err or out).strip().splitlines()[-3:])
    return Outcome("error", seconds=seconds, message=f"exit {proc.returncode}: {tail}")


def repetitions(first_seconds: float, repeat: int, budget: float) -> int:
    """Timed repetitions: ``repeat``, fewer when they would exceed ``budget`` s (at least 1)."""
    if first_seconds <= 0:
        return repeat
    return max(1, min(repeat, int(budget // first_seconds)))


def warm_glmmcore(work: Workload, data: pd.DataFrame, family: str, repeat: int,
                  budget: float) -> dict[str, Any]:
    """One untimed fit, then the median of up to ``repeat`` timed fits, in this process."""
    import glmmcore
    kw = work.fit_kwargs() | {"family": family}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        res = glmmcore.fit(work.formula, data, **kw)
        first = time.perf_counter() - t0
        times = []
        for _ in range(repetitions(first, repeat, budget)):
            t0 = time.perf_counter()
            res = glmmcore.fit(work.formula, data, **kw)
            times.append(time.perf_counter() - t0)
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return {"status": "ok", "seconds": statistics.median(times), "times": times,
            "untimed_first": first, "loglik": float(res.loglik), "nobs": int(res.nobs),
            "converged": bool(res.converged), "warnings": messages}


_FRESH = """\
import json, resource, time
t0 = time.perf_counter()
import glmmcore
t1 = time.perf_counter()
import pandas as pd
data = pd.read_pickle({path!r})
t2 = time.perf_counter()
try:
    res = glmmcore.fit({formula!r}, data, **{kwargs!r})
except Exception as exc:
    print({tag!r} + json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}}))
    raise SystemExit(0)
t3 = time.perf_counter()
try:   # this process's own peak: ru_maxrss also counts the parent's RSS at the fork
    with open("/proc/self/status") as status:
        peak = next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM")) / 1024.0
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print({tag!r} + json.dumps({{"first_fit": (t3 - t0) - (t2 - t1), "import": t1 - t0,
                             "load": t2 - t1, "fit": t3 - t2, "peak_mb": peak,
                             "loglik": float(res.loglik), "module": glmmcore.__file__}}))
"""


def fresh_glmmcore(work: Workload, pickle_path: Path, family: str,
                   runs: int = 2) -> dict[str, Any]:
    """First fit and peak RSS of fresh processes; the last of ``runs`` (warm cache) counts.

    They run in this process's working directory, so that they import the same
    glmmcore as the warm fits (a checkout beside the installed one, say); a
    fresh process that imports another is an error.
    """
    code = _FRESH.format(path=str(pickle_path), formula=work.formula,
                         kwargs=work.fit_kwargs() | {"family": family}, tag=RESULT_TAG)
    outcomes = [run_bounded([sys.executable, "-c", code], TIMEOUTS[work.size])
                for _ in range(runs)]
    for o in outcomes:
        module = o.result.get("module") if o.result else None
        if o.status == "ok" and module != glmmcore.__file__:
            o.status, o.message = "error", (f"the fresh process imported {module}, the warm "
                                            f"fits {glmmcore.__file__}")
    last = outcomes[-1]
    out: dict[str, Any] = {"status": last.status, "message": last.message,
                           "runs": [o.result | {"status": o.status, "wall": o.seconds}
                                    for o in outcomes]}
    if last.status == "ok":
        r = last.result
        out |= {"first_fit": r["first_fit"], "import": r["import"], "fit": r["fit"],
                "peak_mb": r["peak_mb"], "loglik": r["loglik"]}
    return out
