"""The glmm command: fit from CSV and Parquet, JSON output, errors, the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA
from glmmcore.cli import main


def test_fit_csv_prints_the_summary_and_writes_json(tmp_path, capsys, reference):
    out = tmp_path / "fit.json"
    status = main(["fit", str(DATA / "gpa.csv"), "gpa ~ occasion + (1 + occasion | student)",
                   "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert "Linear mixed model fit by REML" in text
    assert "Data: gpa.csv" in text
    result = json.loads(out.read_text())
    assert result["loglik"] >= reference["gpa_rs"]["logLik"] - 1e-6 * 131
    assert result["fixef"]["occasion"] == pytest.approx(0.106314, rel=1e-4)
    assert result["convergence"]["converged"] is True
    assert {row["grp"] for row in result["varcorr"]} == {"student", "Residual"}


def test_fit_parquet_with_ml_and_a_glmm(tmp_path, capsys, datasets, reference):
    pytest.importorskip("pyarrow")
    path = tmp_path / "patents.parquet"
    datasets["patents"].to_parquet(path)
    assert main(["fit", str(path), "ncit ~ opposition + biopharm + (1 | yearf)",
                 "--family", "poisson", "--json", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["loglik"] >= reference["patents_pois"]["logLik"] * (1 + 1e-6)
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
