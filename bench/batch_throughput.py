"""Throughput of many fits of one model: ``python -m bench.batch_throughput``.

The per-gene design of the batch issue (600 samples, 30 subjects in 2 conditions,
a library-size offset, ``y ~ cond + offset(lsf) + (1 | subject)``) and responses
drawn from it, a fifth of them hard (no subject variance, low counts).  Fits per
second, measured in one process:

- ``regular``: a loop of ``model.fit(y)`` on the regular path (``fast_path=False``),
  the baseline;
- ``model.fit``: the same loop on the fast path (a full result per fit);
- ``block, N threads``: :func:`glmmcore.fitting.scalar_block.fit_block` on blocks of
  ``--block`` responses, on N threads (the compiled fits release the GIL);
- ``fit_many, 2 threads``: ``glmmcore.fit_many`` with the threads backend and
  ``n_jobs=2`` (its tables included).

Poisson by Laplace and by ``nAGQ=0``, the LMM (REML) on ``log1p`` of the counts,
and the negative binomial by Laplace (its size estimated; the regular loop on a
quarter of the responses, it is slow).  Each row also gives
the largest relative difference of log-likelihood between the block's fits and
the regular path's on the responses the regular loop fitted.
"""

from __future__ import annotations

import argparse
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

import glmmcore
from glmmcore.fitting.scalar_block import fit_block

FORMULA = "y ~ cond + offset(lsf) + (1 | subject)"


def design(seed: int = 1) -> pd.DataFrame:
    """600 samples of 30 subjects (15 per condition), library-size offsets."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(30), 20)
    return pd.DataFrame({"subject": [f"s{s}" for s in subject],
                         "cond": np.where(subject < 15, "A", "B"),
                         "lsf": np.log(rng.uniform(0.5, 2.0, 600))})


def counts(data: pd.DataFrame, n: int, seed: int = 2) -> np.ndarray:
    """``n`` count responses: subject SD 0.5 and mean counts around 3, every fifth
    with no subject variance or mean counts around 0.1."""
    rng = np.random.default_rng(seed)
    codes = data["subject"].str[1:].astype(int).to_numpy()
    cond = (data["cond"] == "B").to_numpy()
    Y = np.empty((len(data), n))
    for j in range(n):
        sd, intercept = (0.5, 1.0) if j % 5 else ((0.0, 1.0) if j % 10 else (0.5, -2.3))
        eta = intercept + 0.3 * cond + rng.normal(0, sd, 30)[codes] + data["lsf"]
        Y[:, j] = rng.poisson(np.exp(eta))
    return Y


def blocks_per_second(model: glmmcore.MixedModel, Y: np.ndarray, threads: int,
                      block: int) -> tuple[float, list]:
    """Fits per second of ``fit_block`` over ``Y``'s columns on ``threads`` threads."""
    starts = range(0, Y.shape[1], block)
    start = time.perf_counter()
    if threads == 1:
        out = [fit_block(model, Y[:, a:a + block]) for a in starts]
    else:
        with ThreadPoolExecutor(threads) as pool:
            out = list(pool.map(lambda a: fit_block(model, Y[:, a:a + block]), starts))
    return Y.shape[1] / (time.perf_counter() - start), out


def loop_per_second(model: glmmcore.MixedModel, Y: np.ndarray, fast: bool) -> tuple[float,
                                                                                      list]:
    control = {"fast_path": fast, "warn": False}
    start = time.perf_counter()
    fits = [model.fit(Y[:, j], control=control) for j in range(Y.shape[1])]
    return Y.shape[1] / (time.perf_counter() - start), fits


def fit_many_per_second(data: pd.DataFrame, Y: np.ndarray, kwargs: dict) -> float:
    start = time.perf_counter()
    glmmcore.fit_many(FORMULA, data, Y, n_jobs=2, progress=False, **kwargs)
    return Y.shape[1] / (time.perf_counter() - start)


def case(name: str, model: glmmcore.MixedModel, Y: np.ndarray, n_loop: int, block: int,
         rounds: int, data: pd.DataFrame, kwargs: dict) -> dict:
    """One model's row: medians over ``rounds`` rounds, interleaved."""
    sub = Y[:, :n_loop]
    fit_block(model, Y[:, :8])           # warm-up (compilation when not cached)
    loop_per_second(model, sub[:, :4], True)
    rates: dict[str, list[float]] = {"regular": [], "model.fit": [], "block, 1 thread": [],
                                     "block, 2 threads": [], "fit_many, 2 threads": []}
    worst, fallback = 0.0, 0
    for _ in range(rounds):
        rate, regular = loop_per_second(model, sub, False)
        rates["regular"].append(rate)
        rates["model.fit"].append(loop_per_second(model, sub, True)[0])
        rates["block, 1 thread"].append(blocks_per_second(model, Y, 1, block)[0])
        rate, out = blocks_per_second(model, Y, 2, block)
        rates["block, 2 threads"].append(rate)
        rates["fit_many, 2 threads"].append(fit_many_per_second(data, Y, kwargs))
        loglik = np.concatenate([b.fits.loglik for b in out])
        regular_rows = np.concatenate([b.regular for b in out])
        fallback = int(regular_rows.sum())
        for j, fit in enumerate(regular):
            if not regular_rows[j]:
                worst = max(worst, abs(loglik[j] - fit.loglik) / abs(fit.loglik))
    row = {"model": name, **{k: float(np.median(v)) for k, v in rates.items()},
           "max rel. loglik diff": worst, "to the regular path": fallback}
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=4000)
    parser.add_argument("--loop", type=int, default=200, help="responses of the loops")
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    data = design()
    Y = counts(data, args.features)
    data["y"] = Y[:, 0]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, kwargs, responses in (
                ("Poisson, Laplace", {"family": "poisson"}, Y),
                ("Poisson, nAGQ=0", {"family": "poisson", "nAGQ": 0}, Y),
                ("LMM (REML), log1p counts", {}, np.log1p(Y)),
                ("negative binomial, Laplace", {"family": "negative_binomial"}, Y)):
            model = glmmcore.MixedModel(FORMULA, data.assign(y=responses[:, 0]), **kwargs)
            loop = args.loop if "negative" not in name else max(args.loop // 4, 10)
            rows.append(case(name, model, responses, loop, args.block, args.rounds,
                             data.assign(y=responses[:, 0]), kwargs))
            print(pd.DataFrame([rows[-1]]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
