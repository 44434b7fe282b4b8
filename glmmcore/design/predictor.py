"""The predictor side of a model: X, the random-effects terms and the factor layout.

Everything here is independent of the response, so one :class:`Predictor`
serves every response fitted with the same formula and rows (the batch
fitting reuses it).  The response side lives in :mod:`glmmcore.design.response`.

Choice of factorization (``backend``):

- ``"blocked"``: the first block (most levels) is block diagonal and the rest
  forms one dense Schur complement (MixedModels.jl's layout).  Best whenever
  the random effects outside the first block number up to a few thousand,
  which covers nested models, one-factor models and crossed designs with one
  large factor.
- ``"sparse"``: CHOLMOD factors the whole random-effects system with a
  fill-reducing ordering, analysed once per model.  Chosen automatically when
  the rest exceeds :data:`DENSE_REST_MAX` random effects, where a dense Schur
  complement would cost too much memory and time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ModelSpecError
from ..linalg.structure import build_structure
from ..spec.fixed import FixedDesign
from ..spec.reterms import ReTerms

DENSE_REST_MAX = 2500
BACKENDS = ("auto", "blocked", "sparse")


@dataclass
class Predictor:
    """X, Z (as terms) and the layout of the penalized system.

    Attributes
    ----------
    fixed
        The fixed-effects design.
    reterms
        The random-effects terms.
    backend
        ``"blocked"`` or ``"sparse"`` (see module doc).
    built_layout
        The backend's response-independent structure, or None until
        :attr:`layout` builds it.
    """

    fixed: FixedDesign
    reterms: ReTerms
    backend: str
    built_layout: Any = field(default=None, repr=False)

    @property
    def layout(self) -> Any:
        """The backend's response-independent structure, built on first use: the
        blocked layout's ordering compiles kernels that a fit on another path never
        needs (:mod:`glmmcore.fitting.cold_path`).  Two threads may both build it the
        first time: the same structure either way."""
        if self.built_layout is None:
            self.built_layout = build_layout(self.reterms.blocks, self.backend)
        return self.built_layout

    @property
    def X(self) -> np.ndarray:
        """Fixed-effects model matrix."""
        return self.fixed.X

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.fixed.X.shape[0]

    @property
    def p(self) -> int:
        """Number of fixed-effects coefficients."""
        return self.fixed.X.shape[1]

    def new_factor(self, m: int) -> Any:
        """A factor workspace for ``m`` dense columns appended to Z."""
        if self.backend == "blocked":
            from ..linalg.blocked import BlockedFactor
            return BlockedFactor(self.layout, m)
        from ..linalg.sparse import SparseFactor
        return SparseFactor(self.layout, m)

    @cached_property
    def _z(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        blocks = self.reterms.blocks
        codes = np.ascontiguousarray(np.column_stack([b.factor.codes for b in blocks]),
                                     dtype=np.int64)
        Xall = np.ascontiguousarray(np.column_stack([b.X for b in blocks]))
        p = np.array([b.p for b in blocks], dtype=np.int64)
        xoff = np.concatenate([[0], np.cumsum(p)[:-1]]).astype(np.int64)
        boff = np.concatenate([[0], np.cumsum([b.q for b in blocks])[:-1]]).astype(np.int64)
        return codes, Xall, p, xoff, boff

    def Zb(self, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Z b`` for random effects ``b`` ordered block by block, level-major."""
        codes, Xall, p, xoff, boff = self._z
        if out is None:
            out = np.zeros(self.n)
        else:
            out[:] = 0.0
        from ..linalg.zlambda import add_zb
        add_zb(codes, Xall, p, xoff, boff, np.ascontiguousarray(b, dtype=float), out)
        return out

    def linear_predictor(self, theta: np.ndarray, u: np.ndarray, base: np.ndarray,
                         zb: np.ndarray, eta: np.ndarray) -> None:
        """``zb = Z Lambda(theta) u`` and ``eta = base + zb``, into the given arrays."""
        from ..linalg.dense import writable
        from ..linalg.zlambda import linear_predictor
        linear_predictor(*self.linear_predictor_args(), writable(theta), u, base, zb, eta)

    def linear_predictor_args(self) -> tuple:
        """The fixed arguments of the compiled linear predictor."""
        return (*self._z, *self._tmaps)

    @cached_property
    def _tmaps(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [b.theta_index.ravel() for b in self.reterms.blocks]
        toff = np.concatenate([[0], np.cumsum([t.size for t in parts])]).astype(np.int64)
        return np.concatenate(parts).astype(np.int64), toff

    def Lambda_u(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``b = Lambda(theta) u``."""
        _, _, p, _, boff = self._z
        tidx, toff = self._tmaps
        out = np.empty(u.shape[0])
        from ..linalg.dense import writable
        from ..linalg.zlambda import apply_lambda
        apply_lambda(p, boff, tidx, toff, writable(theta),
                      np.ascontiguousarray(u, dtype=float), out, False)
        return out


def build_predictor(fixed: FixedDesign, reterms: ReTerms, backend: str = "auto",
                    *, build: bool = True) -> Predictor:
    """Lay out the penalized system and choose the factorization.

    Parameters
    ----------
    backend
        ``"auto"``, ``"blocked"`` or ``"sparse"``.
    build
        Build the factorization's layout now; else on first use (:attr:`Predictor.layout`).
    """
    if backend not in BACKENDS:
        raise ModelSpecError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    q_rest = sum(b.q for b in reterms.blocks[1:])
    if backend == "auto":
        backend = "blocked" if q_rest <= DENSE_REST_MAX else "sparse"
    predictor = Predictor(fixed=fixed, reterms=reterms, backend=backend)
    if build:
        predictor.layout    # noqa: B018 (built here, so that threads only read it)
    return predictor


def build_layout(blocks: list, backend: str) -> Any:
    """The response-independent structure of the ``"blocked"`` or ``"sparse"`` factorization."""
    if backend == "blocked":
        return build_structure(blocks)
    from ..linalg.sparse import build_sparse_structure
    return build_sparse_structure(blocks)
