"""The glmm command: fit from CSV and Parquet, JSON output, errors, the demo.

The tests named for what a user does run the command in a fresh process (``run_glmm``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

import glmmcore
import glmmcore.api
from conftest import DATA
from glmmcore.cli import main
from glmmcore.errors import ConvergenceWarning
from glmmcore.results.export import schema


def test_fit_csv_prints_the_summary_and_writes_json(tmp_path, capsys, reference):
    out = tmp_path / "fit.json"
    status = main(["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 + occasion | student)",
                   "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert "Linear mixed model fit by REML" in text
    assert "Data: gpa.csv" in text
    result = json.loads(out.read_text())
    assert result["fit_statistics"]["loglik"] >= reference["gpa_rs"]["logLik"] - 1e-6 * 131
    rows = {row["term"]: row for row in result["coefficients"]["rows"]}
    assert rows["occasion"]["estimate"] == pytest.approx(0.106314, rel=1e-4)
    assert result["diagnostics"]["converged"] is True
    assert {row["grp"] for row in result["varcorr"]} == {"student", "Residual"}


def test_fit_parquet_with_ml_and_a_glmm(tmp_path, capsys, datasets, reference):
    pytest.importorskip("pyarrow")
    path = tmp_path / "patents.parquet"
    datasets["patents"].to_parquet(path)
    assert main(["fit", str(path), "ncit ~ opposition + biopharm + (1 | yearf)",
                 "--family", "poisson", "--json", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["fit_statistics"]["loglik"] >= reference["patents_pois"]["logLik"] * (1 + 1e-6)
    assert result["family"] == "poisson" and result["method"] == "Laplace"
    assert main(["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | student)", "--ml"]) == 0
    assert "maximum likelihood" in capsys.readouterr().out


def test_link_and_quadrature_options(tmp_path, capsys):
    assert main(["fit", str(DATA / "patents.csv"), "opposition ~ biopharm + (1 | year)",
                 "--family", "binomial", "--link", "probit", "--nagq", "5"]) == 0
    text = capsys.readouterr().out
    assert "Family: binomial  ( probit )" in text
    assert "nAGQ = 5" in text


def test_errors_exit_with_status_2_and_a_message(capsys):
    assert main(["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | )"]) == 2
    assert "FormulaError" in capsys.readouterr().err
    assert main(["fit", "no/such/file.csv", "y ~ x + (1 | g)"]) == 2
    assert "no such data file" in capsys.readouterr().err


def test_demo_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "glmmcore", "demo"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "== gpa: gaussian model" in done.stdout
    assert "== speed_dating: binomial model" in done.stdout
    assert "converged: True" in done.stdout


# -- the command as a user runs it ---------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def run_glmm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed ``glmm`` command (``python -m glmmcore`` where it is not installed)
    in a fresh process, on this checkout's code.

    PYTHONPATH puts this checkout's root first, so the process imports its ``glmmcore``
    (a worktree's copy rather than another checkout's editable install, whose finder comes
    after the path entries); ``cwd`` is a temporary directory, so a stray output file shows.
    """
    exe = shutil.which("glmm")
    command = [exe] if exe else [sys.executable, "-m", "glmmcore"]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([*command, *args], cwd=cwd, env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=900)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glmm: error: "), done.stderr
    return lines[0]


def test_a_yes_no_response_without_a_family_names_the_flag(tmp_path):
    data = pd.DataFrame({"decision": ["Yes", "No", "No", "Yes", "No", "Yes"] * 5,
                         "x": np.arange(30.0), "g": np.repeat(np.arange(6), 5)})
    data.to_csv(tmp_path / "d.csv", index=False)
    line = _one_error_line(run_glmm("fit", "d.csv", "decision ~ x + (1 | g)", cwd=tmp_path))
    assert "response 'decision' must be numeric for the gaussian family" in line
    assert "two values ('No', 'Yes')" in line
    assert line.endswith("(on the command line: --family binomial)")


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(tmp_path):
    """``glmm fit ... | head``: output to a pipe whose reader is gone ends the command with
    the shell's status for SIGPIPE (141) and no error message."""
    data = pd.DataFrame({"y": np.sin(np.arange(60.0)) + np.repeat(np.arange(6.0), 10),
                         "x": np.arange(60.0), "g": np.repeat(np.arange(6), 10)})
    data.to_csv(tmp_path / "d.csv", index=False)
    exe = shutil.which("glmm")
    command = [exe] if exe else [sys.executable, "-m", "glmmcore"]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    read_end, write_end = os.pipe()
    os.close(read_end)                          # the reader is gone before any output
    try:
        done = subprocess.run([*command, "fit", "d.csv", "y ~ x + (1 | g)"], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": path}, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=900)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "error" not in done.stderr.lower() and "Traceback" not in done.stderr


def test_json_dash_is_standard_output_and_matches_the_schema(tmp_path, reference):
    done = run_glmm("fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | student)", "--json",
                    "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "-").exists()
    assert "Linear mixed model fit by REML" in done.stderr      # the summary is out of the way
    result = json.loads(done.stdout)
    jsonschema.validate(result, schema(), cls=jsonschema.Draft202012Validator)
    ref = reference["gpa_ri"]
    rows = {row["term"]: row for row in result["coefficients"]["rows"]}
    for term, value in ref["fixef"].items():
        assert rows[term]["estimate"] == pytest.approx(value, rel=1e-6)
        assert rows[term]["std_error"] == pytest.approx(ref["se"][term], rel=1e-4)
        assert rows[term]["p_value"] is None                  # none for an LMM, as lme4
    assert result["fit_statistics"]["reml_criterion"] == pytest.approx(ref["REMLcrit"], rel=1e-9)
    assert result["data"] == "gpa.csv" and result["ngroups"] == {"student": 200}
    assert len(result["ranef"]["student"]["levels"]) == 200


def test_an_unwritable_json_path_stops_before_the_fit(tmp_path):
    done = run_glmm("fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | student)",
                    "--json", "no/such/dir/out.json", cwd=tmp_path)
    line = _one_error_line(done)
    assert "CommandLineError" in line and "no/such/dir does not exist" in line
    assert done.stdout == ""                                 # nothing was fitted


@pytest.mark.parametrize("args, message", [
    (["gpa ~ occasion + (1 | )"], "FormulaError: the random-effects term has no grouping factor "
     "after the bar (at character 18: '(1 | )')"),
    (["gpa ~ occasion + (1 | student)", "--family", "binomal"], "FamilyError: unknown family "
     "'binomal'"),
    (["gpa ~ occasion + (1 | student)", "--json", "."], "--json . is a directory"),
])
def test_user_errors_end_in_one_line(args, message, capsys):
    assert main(["fit", str(DATA / "gpa.csv"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_unreadable_data_files(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    assert main(["fit", str(tmp_path / "empty.csv"), "y ~ x + (1 | g)"]) == 2
    assert "DataError: cannot read the data file" in capsys.readouterr().err
    assert main(["fit", str(tmp_path), "y ~ x + (1 | g)"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_warnings_are_one_line_and_internal_errors_say_how_to_see_more(monkeypatch, capsys):
    def warn_then_fail(*args, **kwargs):
        warnings.warn("a check failed", ConvergenceWarning, stacklevel=1)
        raise RuntimeError("boom")
    monkeypatch.setattr(glmmcore.api, "fit", warn_then_fail)
    argv = ["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | student)"]
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        "glmm: warning: ConvergenceWarning: a check failed",
        "glmm: internal error: RuntimeError: boom (rerun with --traceback to see where)"]
    with pytest.raises(RuntimeError, match="boom"):
        main([*argv, "--traceback"])


def test_the_api_error_for_a_two_level_response_names_the_binomial_family():
    data = pd.DataFrame({"y": ["no", "yes"] * 10, "x": np.arange(20.0),
                         "g": np.repeat(np.arange(4), 5)})
    with pytest.raises(glmmcore.ResponseError, match="fit it with family='binomial' "
                       r"\('yes' counts as success\)") as info:
        glmmcore.fit("y ~ x + (1 | g)", data)
    assert info.value.suggested_family == "binomial"
    data["y"] = data["y"].map({"no": "a", "yes": "b"}).where(data.index < 19, "c")
    with pytest.raises(glmmcore.ResponseError) as info:             # three levels: no hint
        glmmcore.fit("y ~ x + (1 | g)", data, family="poisson")
    assert info.value.suggested_family is None and "binomial" not in str(info.value)


def test_a_command_line_fit_loads_no_scipy_subpackage(tmp_path):
    """scipy.stats (0.7 s of CPU to import), scipy.linalg, scipy.optimize and scipy.sparse
    are what made a small ``glmm fit`` take seconds; a summary needs none of them."""
    code = ("import sys\nfrom glmmcore.cli import main\n"
            f"assert main(['fit', {str(DATA / 'patents.csv')!r}, 'opposition ~ biopharm + "
            "(1 | year)', '--family', 'binomial']) == 0\n"
            "print(sorted(m for m in ('scipy.stats', 'scipy.special', 'scipy.linalg',"
            " 'scipy.optimize', 'scipy.sparse') if m in sys.modules))")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": path}, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Pr(>|z|)" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- what a process loads ------------------------------------------------------------------
OPTIONAL_EXTRAS = ("pyarrow", "dask", "distributed", "sklearn", "matplotlib", "anndata",
                   "sksparse", "joblib")
UNUSED_BY_A_FIT = ("scipy.sparse", "scipy.stats", "glmmcore.inference", "glmmcore.batch.engine",
                   "glmmcore.simulation", "glmmcore.plot", "glmmcore_beta")


def _loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a fresh process on this checkout has imported after ``code``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    script = f"{code}\nimport sys\nprint(sorted(n for n in {names!r} if n in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_import_glmmcore_loads_numba_and_not_the_rest():
    """``import glmmcore`` loads no optional extra, not pandas, and no fitting machinery;
    the public names still resolve, from their modules."""
    heavy = ("pandas", "glmmcore.api", "glmmcore.design.model", *OPTIONAL_EXTRAS,
             *UNUSED_BY_A_FIT)
    assert _loaded_after("import glmmcore", heavy) == []
    used = _loaded_after("import glmmcore; glmmcore.fit", heavy)
    assert {"glmmcore.api", "glmmcore.design.model", "pandas"} <= set(used)
    assert not set(used) & {*UNUSED_BY_A_FIT, "dask", "sklearn", "matplotlib", "anndata"}
    assert glmmcore.fit is glmmcore.api.fit
    assert glmmcore.anova is glmmcore.inference.anova
    assert {"fit", "MixedModel", "anova", "plot", "fit_many"} <= set(dir(glmmcore))
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        glmmcore.fitt  # noqa: B018


def test_a_csv_fit_from_the_command_line_loads_only_what_it_runs():
    """``glmm fit`` of a CSV file with a built-in family: no optional extra (pandas without
    pyarrow), no plugin or other family, no inference, batch engine or plotting."""
    code = ("import contextlib, io\nfrom glmmcore.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['fit', {str(DATA / 'gpa.csv')!r}, "
            "'gpa ~ occasion + (1 | student)']) == 0")
    others = ("glmmcore.families.binomial", "glmmcore.families.poisson",
              "glmmcore.families.gamma", "glmmcore.families.negative_binomial")
    assert _loaded_after(code, (*OPTIONAL_EXTRAS, *UNUSED_BY_A_FIT, *others)) == []
    if importlib.util.find_spec("pyarrow"):     # left out of pandas, still importable
        assert _loaded_after(f"{code}\nimport pyarrow", ("pyarrow",)) == ["pyarrow"]


OTHER_PATHS = ("glmmcore.linalg.blocked", "glmmcore.linalg.dense", "glmmcore.linalg.sparse",
               "glmmcore.linalg.zlambda", "glmmcore.fitting.lmm_fit", "glmmcore.fitting.glmm_fit",
               "glmmcore.fitting.vector_fast", "glmmcore.objectives.vector_lmm",
               "glmmcore.objectives.pirls_kernel", "scipy.linalg")


def test_a_fast_path_fit_loads_no_other_paths_compiled_modules():
    """A one-scalar-term LMM on the compiled fast path builds the model's layout in numpy
    and loads neither the blocked nor the sparse factorization, nor the vector-term path:
    their modules' dispatchers and imports are a tenth of a small command-line fit."""
    code = ("import os\nos.environ['GLMMCORE_COLD_START'] = '0'\nimport pandas as pd\n"
            f"import glmmcore\ngpa = pd.read_csv({str(DATA / 'gpa.csv')!r})\n"
            "r = glmmcore.fit('gpa ~ occasion + (1 | student)', gpa)\n"
            "assert r.extra['fast_path']")
    assert _loaded_after(code, OTHER_PATHS) == []

def test_the_command_ends_its_process_with_output_flushed_and_exit_handlers_run(tmp_path):
    """``main()`` as the command ends the process itself (no interpreter teardown): the
    summary, standard output written last and an ``atexit`` handler's output all arrive,
    with the exit status; with arguments given, ``main`` returns instead."""
    code = ("import atexit, sys\nfrom glmmcore.cli import main\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            f"sys.argv = ['glmm', 'fit', {str(DATA / 'gpa.csv')!r}, "
            "'gpa ~ occasion + (1 | student)', '--json', '-']\n"
            "main()\nprint('not reached')")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": path}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Linear mixed model fit by REML" in done.stderr
    body, handler = done.stdout.rsplit("}", 1)
    assert json.loads(body + "}")["response"] == "gpa"
    assert handler.strip() == "exit handler ran"
    failing = code.replace("(1 | student)", "(1 | )")
    done = subprocess.run([sys.executable, "-c", failing], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": path}, timeout=600)
    assert done.returncode == 2 and done.stdout.strip() == "exit handler ran"
    assert main(["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 | )"]) == 2
