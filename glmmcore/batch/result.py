"""The result of a batch: two tables, and any feature's full fit on demand."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

PARQUET_KEY = b"glmmcore.batch"


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R's ``p.adjust(p, "BH")``); NaN stays NaN
    and does not count in the number of tests."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    n = present.size
    if n == 0:
        return out
    order = np.argsort(-p[present], kind="stable")     # largest first
    ranks = n - np.arange(n)                          # rank of each, in that order
    adjusted = np.minimum.accumulate(p[present][order] * n / ranks)
    out[present[order]] = np.minimum(adjusted, 1.0)
    return out


class BatchResult:
    """Many features fitted to one model, as tables.

    Attributes
    ----------
    fits
        One row per feature: ``feature, converged, singular, loglik, deviance,
        aic``, the variance components (``sd__COL|GROUP``, ``cor__A.B|GROUP``),
        ``sigma`` (families with a scale), the family's parameter
        (``family_theta`` for the negative binomial), with ``reduced`` the
        likelihood-ratio test (``loglik_reduced, lrt_statistic, lrt_df,
        lrt_p_value, lrt_p_adjusted``), then ``n_evaluations, seconds, error,
        flags`` (the diagnostics' flag codes, ``;``-separated).
    coefs
        One row per feature and fixed-effect term: ``feature, term, estimate,
        std_error, statistic, p_value`` (two-sided Wald, normal reference) and
        ``p_adjusted`` (Benjamini-Hochberg within the term, over the features
        with a p-value).
    """

    def __init__(self, fits: pd.DataFrame, coefs: pd.DataFrame, *, refit: Any = None) -> None:
        self.fits = fits
        self.coefs = coefs
        self._refit = refit

    @classmethod
    def from_chunks(cls, fits: pd.DataFrame, coefs: pd.DataFrame, *, refit: Any = None
                    ) -> BatchResult:
        """Assemble the tables of all chunks (in feature order) and adjust p-values."""
        fits = fits.reset_index(drop=True)
        coefs = coefs.reset_index(drop=True)
        coefs["p_adjusted"] = np.nan
        for _, rows in coefs.groupby("term", sort=False).groups.items():
            coefs.loc[rows, "p_adjusted"] = bh_adjust(coefs.loc[rows, "p_value"].to_numpy())
        if "lrt_p_value" in fits:
            at = fits.columns.get_loc("lrt_p_value") + 1
            fits.insert(at, "lrt_p_adjusted", bh_adjust(fits["lrt_p_value"].to_numpy()))
        return cls(fits, coefs, refit=refit)

    @property
    def failed(self) -> pd.DataFrame:
        """The features whose fit raised an error: their ``feature`` and ``error``."""
        return self.fits.loc[self.fits["error"].notna(), ["feature", "error"]]

    @property
    def features(self) -> list[str]:
        """The features, in the order of the responses."""
        return list(self.fits["feature"])

    def result(self, feature: str) -> Any:
        """The full :class:`~glmmcore.MixedModelResult` of one feature, fitted again
        (with ``reduced``: the full model, fitted by ML)."""
        if self._refit is None:
            raise DataError("this BatchResult was read from a file: refitting a feature "
                            "needs the data; run fit_many again")
        return self._refit(feature)

    def to_parquet(self, path: Any) -> None:
        """Write both tables to one Parquet file: one row per feature and term, each
        carrying its feature's ``fits`` columns (a failed feature: one row, no term).
        :meth:`read_parquet` splits it again."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError('writing Parquet needs pyarrow: pip install '
                              '"glmmcore[parquet]"') from None
        table = self.fits.merge(self.coefs, on="feature", how="left", sort=False)
        meta = {"fits": list(self.fits.columns), "coefs": list(self.coefs.columns)}
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                               PARQUET_KEY: json.dumps(meta).encode()})
        pq.write_table(arrow, path)

    @classmethod
    def read_parquet(cls, path: Any) -> BatchResult:
        """A result written by :meth:`to_parquet` (without :meth:`result`)."""
        import pyarrow.parquet as pq
        arrow = pq.read_table(path)
        meta = (arrow.schema.metadata or {}).get(PARQUET_KEY)
        if meta is None:
            raise DataError(f"{path} was not written by BatchResult.to_parquet")
        columns = json.loads(meta)
        table = arrow.to_pandas()
        fits = (table[columns["fits"]].drop_duplicates("feature", keep="first")
                .reset_index(drop=True))
        coefs = table.loc[table["term"].notna(), columns["coefs"]].reset_index(drop=True)
        return cls(fits, coefs)

    def __len__(self) -> int:
        return len(self.fits)

    def __repr__(self) -> str:
        failed = int(self.fits["error"].notna().sum())
        unconverged = int((~self.fits["converged"]).sum()) - failed
        return (f"<BatchResult: {len(self.fits)} features, {failed} failed, "
                f"{unconverged} not converged, {self.coefs['term'].nunique()} terms>")
