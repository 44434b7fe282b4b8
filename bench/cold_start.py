"""Cold start: the first fits of a fresh process with empty compilation caches.

``python -m bench.cold_start`` runs each step in a fresh subprocess whose
``NUMBA_CACHE_DIR`` and ``GLMMCORE_KERNEL_DIR`` are new empty directories (the
state of a new install, Docker image or CI run): once as a user's first process
runs (the cold path, :mod:`glmmcore.fitting.cold_path`, with its background
compile off: that runs in its own niced process), once compiling in process
(``GLMMCORE_COLD_START=0``), then once more with the caches that filled (every
later process), and prints:

- the wall and CPU seconds of ``import glmmcore``, of the first LMM fit (the demo's
  first model, a 2,400-row LMM) and of the first binomial GLMM after it (the
  demo's second model), cold and cached;
- per compiled function, the seconds spent compiling it (its own time, the time
  of the functions it made numba compile meanwhile subtracted) and how many type
  specializations were compiled, from numba's ``numba:compile`` events; the
  family kernels (``numba.cfunc``, which send no events) as one line;
- with ``--demo``, the wall time of ``python -m glmmcore demo`` from empty caches.

The machine's load average is printed with the numbers: compile time is CPU
time, so the CPU seconds are the figures to compare on a loaded machine.

Options: ``--top N`` functions (default 25), ``--json PATH`` to keep the numbers,
``--demo`` to time the demo too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_TAG = "COLD_START "
REPO = Path(__file__).resolve().parents[1]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall": wall - start[0], "cpu": cpu - start[1]}


class _CompileLog:
    """Own compile time per dispatcher from numba's nested ``numba:compile`` events
    (the methods of a ``numba.core.event.Listener``)."""

    def __init__(self) -> None:
        self.stack: list[list] = []
        self.functions: dict[str, dict[str, float]] = {}
        self.step = ""
        self.llvm_depth, self.llvm_start = 0, 0.0

    def on_start(self, event) -> None:
        if event.kind == "numba:llvm_lock":     # re-entrant: time the outermost
            self.llvm_depth += 1
            if self.llvm_depth == 1:
                self.llvm_start = time.process_time()
            return
        self.stack.append([event, *_clock(), 0.0, 0.0, 0.0])

    def on_end(self, event) -> None:
        if event.kind == "numba:llvm_lock":
            self.llvm_depth -= 1
            if self.llvm_depth == 0 and self.stack:
                self.stack[-1][5] += time.process_time() - self.llvm_start
            return
        _, wall0, cpu0, child_wall, child_cpu, llvm = self.stack.pop()
        wall, cpu = _clock()
        total_wall, total_cpu = wall - wall0, cpu - cpu0
        if self.stack:
            self.stack[-1][3] += total_wall
            self.stack[-1][4] += total_cpu
        func = event.data["dispatcher"].py_func
        name = f"{func.__module__}.{func.__qualname__}"
        entry = self.functions.setdefault(name, {"wall": 0.0, "cpu": 0.0, "llvm": 0.0,
                                                 "versions": 0, "step": self.step})
        entry["wall"] += total_wall - child_wall
        entry["cpu"] += total_cpu - child_cpu
        entry["llvm"] += llvm
        entry["versions"] += 1


def child(steps: list[str]) -> None:
    """Run in the fresh process: import, fit, and print the timings as JSON."""
    start = _clock()
    from numba.core import event

    listener_class = type("CompileListener", (_CompileLog, event.Listener), {})
    log = listener_class()
    event.register("numba:compile", log)
    event.register("numba:llvm_lock", log)

    import glmmcore
    from glmmcore.objectives import family_kernels

    out: dict = {"import": _since(start)}
    kernel_time = {"wall": 0.0, "cpu": 0.0}
    load_module = family_kernels._load_module

    def timed_load(*args, **kwargs):
        t = _clock()
        try:
            return load_module(*args, **kwargs)
        finally:
            for key, value in _since(t).items():
                kernel_time[key] += value

    family_kernels._load_module = timed_load
    designs = {"lmm": ("gpa", {"n_students": 400}), "binomial": ("speed_dating", {})}
    for step in steps:
        design, size = designs[step]
        sim = glmmcore.simulate(design, seed=2024, **size)
        log.step = step
        t = _clock()
        glmmcore.fit(sim.formula, sim.data, family=sim.family)
        out[step] = _since(t)
    out["total"] = _since(start)
    out["functions"] = log.functions
    out["family_kernels"] = kernel_time
    print(RESULT_TAG + json.dumps(out), flush=True)


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t, done.stdout


def fresh_env(cache_root: Path) -> dict[str, str]:
    """The environment of a process whose numba and kernel caches live under cache_root."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_root / "numba"),
               GLMMCORE_KERNEL_DIR=str(cache_root / "kernels"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


RUNS = (("cold", "a first process: the cold path (the background compile off)"),
        ("in_process", "a first process compiling in process (GLMMCORE_COLD_START=0)"),
        ("cached", "a later process (the compiled paths, loaded from the cache)"))


def measure(demo: bool) -> dict:
    """The first fits of fresh processes (and the demo): on the cold path, compiling in
    process, and loading from the cache; each in a fresh process."""
    results: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="glmmcore-cold-") as tmp:
        envs = {"cold": dict(fresh_env(Path(tmp) / "a"), GLMMCORE_COLD_START="1",
                             GLMMCORE_BACKGROUND_COMPILE="0"),
                "in_process": dict(fresh_env(Path(tmp) / "b"), GLMMCORE_COLD_START="0")}
        envs["cached"] = envs["in_process"]
        for label, _ in RUNS:
            _, stdout = _run(["-m", "bench.cold_start", "--child", "lmm,binomial"], envs[label])
            line = next(ln for ln in stdout.splitlines() if ln.startswith(RESULT_TAG))
            results[label] = json.loads(line[len(RESULT_TAG):])
    if demo:
        with tempfile.TemporaryDirectory(prefix="glmmcore-demo-") as tmp:
            env = dict(fresh_env(Path(tmp)), GLMMCORE_COLD_START="1",
                       GLMMCORE_BACKGROUND_COMPILE="0")
            before = os.times()
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "glmmcore", "demo"], env=env, check=True,
                           capture_output=True, cwd=REPO, timeout=3600)
            after = os.times()      # children's times add up over every child waited for
            results["demo"] = {"wall": time.perf_counter() - t,
                               "cpu": (after.children_user + after.children_system
                                       - before.children_user - before.children_system)}
    results["load_after"] = os.getloadavg()
    return results


def report(results: dict, top: int) -> str:
    """The figures as markdown tables."""
    lines = [f"load average {results['load_before'][0]:.2f} before, "
             f"{results['load_after'][0]:.2f} after", "",
             "| step | " + " | ".join(f"{label} wall s | {label} CPU s" for label, _ in RUNS)
             + " |", "|---|" + "---:|---:|" * len(RUNS)]
    for step in ("import", "lmm", "binomial", "total"):
        lines.append(f"| {step} | " + " | ".join(
            f"{results[label][step]['wall']:.2f} | {results[label][step]['cpu']:.2f}"
            for label, _ in RUNS) + " |")
    if "demo" in results:
        lines.append(f"| demo (`python -m glmmcore demo`, cold path) | "
                     f"{results['demo']['wall']:.2f} | {results['demo']['cpu']:.2f} |"
                     + " | |" * (len(RUNS) - 1))
    lines += ["", "Runs: " + "; ".join(f"{label}: {text}" for label, text in RUNS) + "."]
    for label in ("cold", "in_process"):
        lines += _functions(results[label], label, top)
    return "\n".join(lines)


def _functions(run: dict, label: str, top: int) -> list[str]:
    """The compiled functions of one run, most expensive first."""
    functions = sorted(run["functions"].items(), key=lambda kv: -kv[1]["cpu"])
    compiled = sum(f["cpu"] for _, f in functions)
    lines = ["", f"{label}: compiling {compiled:.1f} CPU s in {len(functions)} functions "
             f"({sum(f['versions'] for _, f in functions)} specializations), family kernels "
             f"{run['family_kernels']['cpu']:.1f} CPU s.", "",
             "| function | first fit | own compile CPU s | of which LLVM | wall s "
             "| specializations |", "|---|---|---:|---:|---:|---:|"]
    for name, f in functions[:top]:
        lines.append(f"| {name.removeprefix('glmmcore.')} | {f['step']} | {f['cpu']:.2f} "
                     f"| {f['llvm']:.2f} | {f['wall']:.2f} | {f['versions']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--demo", action="store_true", help="time the demo from empty caches")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child.split(","))
        return 0
    results = measure(args.demo)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
