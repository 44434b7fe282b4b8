"""Compilation ahead (warmup), the first-compile notice, and caching in a read-only install.

The cold-start timings themselves are benchmarks (bench/cold_start.py), not tests.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmcore
from glmmcore import _numba_cache
from glmmcore.fitting import warmup as warmup_module
from glmmcore.objectives.family_kernels import _loaded

CHECKOUT = Path(glmmcore.__file__).resolve().parents[1]


def _small_lmm_data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 5)
    return pd.DataFrame({"y": rng.normal(size=12)[g] + rng.normal(size=60),
                         "x": rng.normal(size=60), "g": g})


def test_warmup_compiles_every_path_and_family_with_a_progress_bar():
    out = io.StringIO()
    seconds = glmmcore.warmup(stream=out)
    assert seconds > 0
    text = out.getvalue()
    last = text.split("\r")[-1]
    steps = len(warmup_module._lmm_steps()) + len(warmup_module._glmm_steps())
    links = sum(len(type(glmmcore.get_family(name)).links)
                for name in glmmcore.available_families())
    assert f"{steps + links}/{steps + links}" in last and "done" in last
    for kind in ("lmm", "glmm"):
        for path in ("regular", "fast"):
            assert not warmup_module.must_compile(kind, path)
    made = {(k.family.name, k.family.link.name) for k in _loaded.values()}
    for name in glmmcore.available_families():
        for link in type(glmmcore.get_family(name)).links:
            assert (name, link) in made


def test_a_first_fit_that_must_compile_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(warmup_module, "_announced", set())
    monkeypatch.setattr(warmup_module, "must_compile", lambda kind, path: True)
    data = _small_lmm_data()
    glmmcore.fit("y ~ x + (1 | g)", data)
    glmmcore.fit("y ~ x + (1 | g)", data)
    err = capsys.readouterr().err
    assert err.count("glmmcore: compiling the linear mixed model kernels") == 1
    assert "glmm warmup" in err


def test_no_notice_when_the_kernels_are_cached(monkeypatch, capsys):
    glmmcore.fit("y ~ x + (1 | g)", _small_lmm_data())       # loaded in this process now
    monkeypatch.setattr(warmup_module, "_announced", set())
    glmmcore.fit("y ~ x + (1 | g)", _small_lmm_data())
    assert not warmup_module.must_compile("lmm", "fast")
    assert "compiling" not in capsys.readouterr().err


def test_no_writable_cache_anywhere_falls_back_to_the_temporary_directory(monkeypatch,
                                                                          tmp_path):
    import numba
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(_numba_cache, "_writable", lambda d: str(d).startswith(str(tmp_path)))
    monkeypatch.setattr(_numba_cache.tempfile, "gettempdir", lambda: str(tmp_path))
    chosen = _numba_cache.ensure_writable_cache()
    assert chosen is not None and chosen.startswith(str(tmp_path))
    assert numba.config.CACHE_DIR == chosen
    monkeypatch.setattr(_numba_cache, "_writable", lambda d: True)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    assert _numba_cache.ensure_writable_cache() is None       # numba's own choice stands


def _can_mount_read_only(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c",
                           f"mount --bind {probe} {probe} && mount -o remount,ro,bind {probe} "
                           f"{probe} && ! touch {probe}/x 2>/dev/null"],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_a_read_only_install_caches_in_the_user_cache_dir(tmp_path):
    """A copy of the package on a read-only mount (root can write anywhere else): the
    first process compiles into $HOME/.cache, the second loads from there."""
    if shutil.which("unshare") is None or not _can_mount_read_only(tmp_path):
        pytest.skip("needs a private read-only mount (unshare -m as root)")
    site = tmp_path / "site"
    shutil.copytree(CHECKOUT / "glmmcore", site / "glmmcore", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "GLMMCORE_KERNEL_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(site))
    code = ("import numpy as np, pandas as pd, glmmcore\n"
            "from glmmcore.fitting.warmup import must_compile\n"
            "print('before', must_compile('lmm', 'fast'))\n"
            "rng = np.random.default_rng(3); g = np.repeat(np.arange(12), 5)\n"
            "d = pd.DataFrame({'y': rng.normal(size=12)[g] + rng.normal(size=60),"
            " 'x': rng.normal(size=60), 'g': g})\n"
            "print(repr(glmmcore.fit('y ~ x + (1 | g)', d).loglik))\n")
    script = (f"mount --bind {site} {site} && mount -o remount,ro,bind {site} {site} && "
              f"exec {sys.executable} -c \"$CODE\"")
    outputs = []
    for _ in range(2):
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=tmp_path,
                              env={**env, "CODE": code}, capture_output=True, text=True,
                              timeout=3600)
        assert done.returncode == 0, done.stderr
        outputs.append(done)
    assert "before True" in outputs[0].stdout and "compiling" in outputs[0].stderr
    assert "before False" in outputs[1].stdout and "compiling" not in outputs[1].stderr
    assert outputs[0].stdout.splitlines()[1] == outputs[1].stdout.splitlines()[1]
    assert list((home / ".cache" / "numba").rglob("*.nbi"))
    assert not list(site.rglob("*.nbi"))


def test_glmm_warmup_command_after_warmup_loads_from_the_cache(tmp_path):
    """``glmm warmup`` in a fresh process (the in-process warmup above filled the caches)."""
    from test_cli import run_glmm
    done = run_glmm("warmup", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "glmmcore kernels compiled and cached in" in done.stdout
    assert "done" in done.stderr.split("\r")[-1]
    assert "compiling the" not in done.stderr
