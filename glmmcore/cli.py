"""The ``glmm`` command: fit a model to a CSV or Parquet file, or run the demo.

::

    glmm fit DATA FORMULA [--ml] [--family F] [--link L] [--nagq K]
                          [--json OUT] [--condvar] [--quiet] [--traceback]
    glmm batch DATA RESPONSES FORMULA --out OUT [--reduced F] [--family F] [--jobs N]
               [--scheduler ADDRESS] [--checkpoint DIR] ...   (see glmmcore.batch.cli)
    glmm demo [--seed S]
    glmm warmup [--quiet] [--background]

Every error a user can cause ends in one ``glmm: error: ...`` message on
standard error and exit status 2 (1 for an internal error, whose traceback
``--traceback`` shows); nothing is fitted when an argument is unusable.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from .errors import CommandLineError, DataError, FormulaError, GlmmError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``glmm`` command.

    With ``argv`` None, the command itself (the console script, ``python -m glmmcore``):
    the arguments are ``sys.argv``'s and the process ends here with the exit status
    (:func:`_end_process`).  With a list of arguments the exit status is returned.
    """
    status = _command(argv)
    if argv is None:
        _end_process(status)
    return status


def _end_process(status: int) -> None:
    """End the process with ``status`` without the interpreter's teardown.

    Freeing one by one the objects that numba, pandas and a fit made, with the garbage
    collector's passes over them, takes a third of a small fit's CPU time; the operating
    system frees the memory at once.  Output is flushed and the ``atexit`` handlers run
    first, as at a normal exit.  While other Python threads are alive this returns, and
    the normal exit waits for them.
    """
    if threading.active_count() > 1:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe or stream takes no more output
            pass
    atexit._run_exitfuncs()
    os._exit(status)


def _command(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except GlmmError as exc:
            _say(f"error: {type(exc).__name__}: {_one_line(exc)}")
            return 2
        except ImportError as exc:          # an optional dependency (pyarrow) is missing
            _say(f"error: {' '.join(str(exc).split())}")
            return 2
        except KeyboardInterrupt:
            _say("interrupted")
            return 130
        except BrokenPipeError:
            # the reader went away (``glmm fit ... | head``): nothing more to say, and the
            # output still buffered must not fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141                  # 128 + SIGPIPE, as a shell reports it
        except Exception as exc:
            if args.traceback:
                raise
            message = " ".join(str(exc).split())
            _say(f"internal error: {type(exc).__name__}: {message} (rerun with --traceback "
                 "to see where)")
            return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true",
                        help="show the traceback of an internal error")
    parser = argparse.ArgumentParser(prog="glmm", description="Mixed models with lme4's "
                                     "formulas and answers.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", parents=[common], help="fit a model to a CSV or Parquet file")
    fit.add_argument("data", help="CSV or Parquet file")
    fit.add_argument("formula", help="lme4 formula, e.g. 'y ~ x + (1 | g)'")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--family", default="gaussian", help="family name (default gaussian)")
    fit.add_argument("--link", default=None, help="link name (default: the family's)")
    fit.add_argument("--nagq", type=_nagq, default=1,
                     help="GLMM integration: 0, 1 (Laplace) or quadrature nodes")
    fit.add_argument("--json", metavar="OUT",
                     help="also write the whole result as JSON to OUT ('-': standard output, "
                     "the summary then goes to standard error)")
    fit.add_argument("--condvar", action="store_true",
                     help="include the random effects' conditional covariances in the JSON")
    fit.add_argument("-q", "--quiet", action="store_true", help="do not print the summary")
    fit.set_defaults(run=_run_fit)
    from .batch.cli import add_parser as add_batch_parser
    add_batch_parser(sub, common)
    demo = sub.add_parser("demo", parents=[common], help="fit simulated reference designs "
                          "and compare with the true values (no data file needed)")
    demo.add_argument("--seed", type=int, default=2024, help="simulation seed")
    demo.set_defaults(run=_run_demo)
    warm = sub.add_parser("warmup", parents=[common], help="compile every kernel ahead, "
                          "so that no later fit waits for the compiler (images, clusters)")
    warm.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    warm.add_argument("--background", action="store_true",
                      help="at low priority, and not at all while another process does it "
                      "(what a first fit starts: glmmcore.fitting.cold_path)")
    warm.set_defaults(run=_run_warmup)
    return parser


def _say(text: str) -> None:
    print(f"glmm: {text}", file=sys.stderr)


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    _say(f"warning: {category.__name__}: {message}")


def _one_line(exc: GlmmError) -> str:
    """The error's message on one line, with the command line's remedy where it has one."""
    if isinstance(exc, FormulaError) and exc.formula and exc.span:
        start = exc.span[0]
        text = f"{exc.reason} (at character {start + 1}: {exc.formula[start:]!r})"
    else:
        text = " ".join(str(exc).split())
    family = getattr(exc, "suggested_family", None)
    return f"{text} (on the command line: --family {family})" if family else text


def _nagq(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def read_table(path: str) -> Any:
    """Read a CSV or Parquet file into pandas; unreadable files raise :class:`DataError`."""
    import pandas as pd
    file = Path(path)
    if not file.exists():
        raise DataError(f"no such data file: {path}")
    if file.is_dir():
        raise DataError(f"the data file {path} is a directory")
    try:
        if _is_parquet(file):
            return _read_parquet(file)
        return pd.read_csv(file)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read the data file {path}: {reason}") from exc


def _is_parquet(file: Path) -> bool:
    return file.suffix.lower() in (".parquet", ".pq")


def _import_pandas_without_pyarrow() -> None:
    """Import pandas as if pyarrow were not installed, where it is not imported yet.

    pandas imports pyarrow whenever it is installed (a tenth of a second, a sixth of
    ``glmm fit``'s start-up), and reading a CSV file and fitting need none of it.
    pyarrow stays importable afterwards; only this process's pandas does without it.
    """
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        return
    sys.modules["pyarrow"] = None           # ``import pyarrow`` raises ImportError
    try:
        import pandas  # noqa: F401
    finally:
        del sys.modules["pyarrow"]


def _read_parquet(file: Path) -> Any:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError('reading Parquet files needs pyarrow: pip install '
                          '"glmmcore[parquet]"') from None
    import pandas as pd
    return pd.read_parquet(file)


def _json_target(path: str | None) -> Path | None:
    """Check, before any fitting, that the JSON can be written where asked."""
    if path is None or path == "-":
        return None
    target = Path(path)
    if target.is_dir():
        raise CommandLineError(f"--json {path} is a directory; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise CommandLineError(f"--json {path}: the directory {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".glmm-", suffix=".tmp"):
            pass
    except OSError as exc:
        raise CommandLineError(f"--json {path}: cannot write in {folder} "
                               f"({exc.strerror or exc})") from exc
    return target


def _write_json(text: str, target: Path) -> None:
    """Write beside the target and rename, so a failure leaves no half-written file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".glmm-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_fit(args: argparse.Namespace) -> int:
    target = _json_target(args.json)
    if not _is_parquet(Path(args.data)):
        _import_pandas_without_pyarrow()
    from .api import fit
    data = read_table(args.data)
    result = fit(args.formula, data, family=args.family, link=args.link, REML=not args.ml,
                 nAGQ=args.nagq, data_label=Path(args.data).name)
    to_stdout = args.json == "-"
    if not args.quiet:
        print(result.summary(), file=sys.stderr if to_stdout else sys.stdout)
    if args.json:
        text = result.to_json(condvar=args.condvar) + "\n"
        if to_stdout:
            sys.stdout.write(text)
        else:
            _write_json(text, target)
    return 0


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


def _run_warmup(args: argparse.Namespace) -> int:
    from .fitting.warmup import warmup
    if args.background:
        from .fitting.cold_path import hold_background_lock
        lock = hold_background_lock()
        if lock is None:
            return 0                   # another process compiles into the same cache
        if hasattr(os, "nice"):
            os.nice(10)
    seconds = warmup(progress=not args.quiet)
    print(f"glmmcore kernels compiled and cached in {seconds:.0f} s")
    return 0


def _compare(result: Any, sim: Any) -> str:
    import pandas as pd
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
