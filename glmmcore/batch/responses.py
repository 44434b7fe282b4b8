"""The responses of a batch: one column per feature, read a chunk at a time.

:class:`Responses` holds a DataFrame, a 2-D array, a dict of arrays or a
scipy.sparse matrix (rows = observations) as it was given and hands out
chunks of columns as dense float blocks, so a sparse matrix is never densified
whole.  AnnData objects are unpacked by :func:`from_anndata`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, DataError


class Responses:
    """Feature columns with their names, read by chunks.

    Parameters
    ----------
    values
        A DataFrame (one column per feature), a 2-D numpy array, a
        scipy.sparse matrix (CSC is used; rows = observations) or a dict of
        name -> 1-D array.
    nrows
        Rows of the data the model is built from; every feature has one value
        per row.
    features
        Feature names (default: the columns, the dict's keys, or
        ``feature_0, feature_1, ...``).
    """

    def __init__(self, values: Any, nrows: int, features: Any = None) -> None:
        self.sparse = _is_sparse(values)
        names: list[str] | None = None
        if isinstance(values, pd.DataFrame):
            names = [str(c) for c in values.columns]
            matrix: Any = values.to_numpy()
        elif isinstance(values, Mapping):
            names = [str(k) for k in values]
            columns = [np.asarray(v) for v in values.values()]
            for name, column in zip(names, columns):
                if column.ndim != 1 or column.shape[0] != nrows:
                    raise DataError(f"response {name!r} must be one value per row of the data "
                                    f"({nrows}), not shape {column.shape}")
            matrix = np.column_stack(columns) if columns else np.empty((nrows, 0))
        elif self.sparse:
            matrix = values.tocsc()
            matrix.sort_indices()
        else:
            matrix = np.asarray(values)
            if matrix.ndim == 1:
                matrix = matrix[:, None]
        if matrix.ndim != 2:
            raise DataError(f"responses must be 2-D (observations x features), not "
                            f"shape {matrix.shape}")
        if matrix.shape[0] != nrows:
            hint = (" (it looks transposed: pass it with one row per observation, e.g. "
                    "counts.T)" if matrix.shape[1] == nrows else "")
            raise DataError(f"responses must have one row per row of the data ({nrows}), "
                            f"not {matrix.shape[0]}{hint}")
        self.matrix = matrix
        self.names = _feature_names(features, names, matrix.shape[1])

    @property
    def n_features(self) -> int:
        """Number of features (columns)."""
        return len(self.names)

    def block(self, start: int, stop: int) -> Any:
        """Columns ``start:stop`` as they are stored (sparse stays sparse)."""
        return self.matrix[:, start:stop]

    def column(self, index: int) -> np.ndarray:
        """One feature's column as a dense 1-D array."""
        return dense_columns(self.block(index, index + 1))[:, 0]

    def position(self, feature: str) -> int:
        """Column of a feature name; a name not in the batch is a :class:`DataError`."""
        try:
            return self.names.index(str(feature))
        except ValueError:
            raise DataError(f"no feature named {feature!r} in the batch") from None

    def digest(self) -> str:
        """A hash of the values and names, for checkpoints' fingerprints."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.names).encode())
        if self.sparse:
            for part in (self.matrix.data, self.matrix.indices, self.matrix.indptr):
                h.update(np.ascontiguousarray(part).tobytes())
            h.update(repr(self.matrix.shape).encode())
        elif self.matrix.dtype.kind in "biuf":
            h.update(str(self.matrix.dtype).encode())
            h.update(np.ascontiguousarray(self.matrix).tobytes())
        else:
            h.update(pd.util.hash_pandas_object(pd.DataFrame(self.matrix),
                                                index=False).to_numpy().tobytes())
        return h.hexdigest()


def dense_columns(block: Any) -> np.ndarray:
    """A block of columns as a dense 2-D array (a sparse block densified alone)."""
    if _is_sparse(block):
        return block.toarray()
    return np.asarray(block)


def from_anndata(adata: Any, layer: str | None) -> tuple[pd.DataFrame, Any, list[str]]:
    """The observations' table, the response matrix and the feature names of an AnnData."""
    if layer is None:
        matrix = adata.X
    else:
        if layer not in adata.layers:
            raise DataError(f"the AnnData has no layer {layer!r} (layers: "
                            f"{sorted(adata.layers.keys())})")
        matrix = adata.layers[layer]
    if matrix is None:
        raise DataError("the AnnData has no X matrix; name a layer with layer=")
    return adata.obs, matrix, [str(v) for v in adata.var_names]


def is_anndata(value: Any) -> bool:
    """True for an AnnData object (checked by its class name, without importing anndata)."""
    return any(c.__name__ == "AnnData" and c.__module__.startswith("anndata")
               for c in type(value).__mro__)


def _is_sparse(value: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:         # pragma: no cover - scipy is a core dependency
        return False
    return sp.issparse(value)


def _feature_names(features: Any, found: list[str] | None, n: int) -> list[str]:
    if features is not None:
        names = [str(f) for f in features]
        if len(names) != n:
            raise ArgumentError(f"features must name each of the {n} responses, not "
                                f"{len(names)}")
    elif found is not None:
        names = found
    else:
        names = [f"feature_{j}" for j in range(n)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"feature name {name!r} is not unique")
        seen.add(name)
    return names
