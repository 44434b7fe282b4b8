"""Speed of the command line: ``python -m bench.cli_speed [--runs N] [--checkout DIR ...]``.

Times, each in a fresh process, a small fit from the command line
(``glmm fit gpa.csv "gpa ~ occasion + (1 | student)"``, the summary printed) and
``python -c "import glmmcore"``, once the kernels are compiled: two warm-up runs
per checkout fill numba's cache and Python's bytecode cache first (the state of an
installed package; ``PYTHONDONTWRITEBYTECODE`` is dropped from the children's
environment so that the checkout gets its ``.pyc`` files as an install would).
The console script is run by this interpreter directly (``python <bin>/glmm``),
so a version manager's shim in front of it (pyenv's costs ~0.1 s) is not counted.

Each ``--checkout`` is a source tree put first on ``PYTHONPATH`` (default: this
one); with several, the rounds are interleaved (each round's order the reverse of
the last's) and the medians of every checkout are printed with the ratio of each
to the first.  Wall and CPU seconds (user + system of the child) are reported:
on a loaded machine compare the CPU seconds; the target (at most 1 s wall for the
fit) is an idle machine's.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GLMMCORE_SHARED", REPO.parent / "shared")) / "data"
FORMULA = "gpa ~ occasion + (1 | student)"


def console_script() -> list[str]:
    """The installed ``glmm`` script run by this interpreter, or ``-m glmmcore``."""
    script = Path(sys.executable).parent / "glmm"
    if script.is_file():
        return [sys.executable, str(script)]
    found = shutil.which("glmm")
    return [found] if found else [sys.executable, "-m", "glmmcore"]


def commands(data: Path, formula: str) -> dict[str, list[str]]:
    """The timed commands by label."""
    return {"glmm fit": [*console_script(), "fit", str(data), formula],
            "import glmmcore": [sys.executable, "-c", "import glmmcore"]}


def child_env(checkout: Path) -> dict[str, str]:
    """This environment with the checkout first on the path and bytecode caching on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), env.get("PYTHONPATH")) if p)
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of the command (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          cwd=tempfile.gettempdir())      # not a checkout: PYTHONPATH decides
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(checkouts: list[Path], runs: int, data: Path,
            formula: str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Wall and CPU seconds per (checkout, command), rounds interleaved."""
    envs = {str(c): child_env(c) for c in checkouts}
    todo = commands(data, formula)
    for env in envs.values():
        for _ in range(2):
            timed(todo["glmm fit"], env)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    order = [(c, label) for c in envs for label in todo]
    for round_ in range(runs):
        for checkout, label in (order if round_ % 2 == 0 else order[::-1]):
            times.setdefault((checkout, label), []).append(timed(todo[label], envs[checkout]))
    return times


def report(times: dict[tuple[str, str], list[tuple[float, float]]]) -> str:
    """Markdown table of the medians, with each checkout's ratio to the first's."""
    lines = ["| checkout | command | wall s (median) | wall s (min-max) | CPU s (median) "
             "| wall ratio |", "|---|---|---:|---:|---:|---:|"]
    first: dict[str, float] = {}
    for (checkout, label), runs in times.items():
        walls = [w for w, _ in runs]
        wall = statistics.median(walls)
        first.setdefault(label, wall)
        lines.append(f"| {checkout} | {label} | {wall:.3f} | {min(walls):.3f}-{max(walls):.3f} "
                     f"| {statistics.median(c for _, c in runs):.3f} "
                     f"| {wall / first[label]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--checkout", type=Path, action="append",
                        help="source tree to time (repeat to compare; default this one)")
    parser.add_argument("--data", type=Path, default=DATA / "gpa.csv")
    parser.add_argument("--formula", default=FORMULA)
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in args.checkout or [REPO]]
    load_before = os.getloadavg()
    times = measure(checkouts, args.runs, args.data, args.formula)
    print(report(times))
    print(f"\nload average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"command: {' '.join(commands(args.data, args.formula)['glmm fit'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
