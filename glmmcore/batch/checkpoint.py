"""Checkpoints of a batch: each finished chunk as Parquet in a directory.

``DIR/manifest.json`` holds the fingerprint of the batch (digests of the
model's arguments, the data, the responses and the chunking); a chunk ``k`` is
finished when ``DIR/chunk-k.fits.parquet`` exists (it is written after the
chunk's coefficient table, each file to a temporary name first and then
renamed, so a killed run leaves no half-written chunk).  A run with the same
directory and other arguments is a :class:`~glmmcore.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CheckpointError
from .rows import ChunkTables

FORMAT = "glmmcore.batch.checkpoint"
VERSION = 1


def digest(value: Any) -> str:
    """A SHA-256 hex digest of an argument: tables by their values and index, arrays by
    their bytes, anything else by its ``repr`` (strings, numbers, None, dicts of them)."""
    h = hashlib.sha256()
    if isinstance(value, (pd.DataFrame, pd.Series)):
        frame = value if isinstance(value, pd.DataFrame) else value.to_frame()
        h.update(repr([str(c) for c in frame.columns]).encode())
        h.update(repr([str(t) for t in frame.dtypes]).encode())
        h.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        if value.dtype.kind == "O":
            h.update(pickle.dumps(value.tolist()))
        else:
            h.update(np.ascontiguousarray(value).tobytes())
    elif hasattr(value, "to_pandas"):         # polars, pyarrow
        return digest(value.to_pandas())
    else:
        h.update(repr(value).encode())
    return h.hexdigest()


class Checkpoint:
    """A checkpoint directory for one batch.

    Parameters
    ----------
    directory
        Created if needed.
    parts
        Name -> digest of everything the result depends on.
    """

    def __init__(self, directory: str | os.PathLike, parts: dict[str, str]) -> None:
        _require_pyarrow()
        self.directory = Path(directory)
        self.parts = dict(parts)
        self.fingerprint = hashlib.sha256(json.dumps(self.parts, sort_keys=True)
                                          .encode()).hexdigest()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint {str(self.directory)!r} is a file, not a "
                                  "directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = self.directory / "manifest.json"
        if manifest.exists():
            self._check(manifest)
        else:
            leftovers = list(self.directory.glob("chunk-*.parquet"))
            if leftovers:
                raise CheckpointError(f"checkpoint {str(self.directory)!r} has chunk files "
                                      "but no manifest.json: not a glmmcore checkpoint "
                                      "(use an empty directory)")
            _write_atomic(manifest, json.dumps(
                {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
                 "parts": self.parts}, indent=1, sort_keys=True).encode())

    def finished(self) -> set[int]:
        """Indices of the chunks already written."""
        done = set()
        for path in self.directory.glob("chunk-*.fits.parquet"):
            done.add(int(path.name.split("-")[1].split(".")[0]))
        return done

    def read(self, index: int) -> ChunkTables:
        """A finished chunk's tables."""
        fits = pd.read_parquet(self._path(index, "fits"))
        coefs = pd.read_parquet(self._path(index, "coefs"))
        return ChunkTables.from_frames(index, fits, coefs)

    def write(self, tables: ChunkTables) -> None:
        """Write a finished chunk (coefficients first; the fits file marks it finished)."""
        for kind in ("coefs", "fits"):
            frame = pd.DataFrame(getattr(tables, kind))
            target = self._path(tables.index, kind)
            temporary = target.with_name(target.name + f".{os.getpid()}.tmp")
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, target)

    def _path(self, index: int, kind: str) -> Path:
        return self.directory / f"chunk-{index:06d}.{kind}.parquet"

    def _check(self, manifest: Path) -> None:
        try:
            stored = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {manifest}: {exc}") from None
        if stored.get("format") != FORMAT:
            raise CheckpointError(f"{manifest} is not a glmmcore batch checkpoint")
        if stored.get("fingerprint") == self.fingerprint:
            return
        old = stored.get("parts", {})
        differ = sorted(k for k in set(old) | set(self.parts) if old.get(k) != self.parts.get(k))
        raise CheckpointError(
            f"checkpoint {str(self.directory)!r} belongs to another batch: its "
            f"{', '.join(differ)} differ from this run's; rerun with the same arguments "
            "and data to resume, or use another (or an empty) directory")


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError('checkpoints are written as Parquet, which needs pyarrow: '
                          'pip install "glmmcore[parquet]"') from None
