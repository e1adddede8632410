"""Tokenizer speed: bins and kmeans (K=512) on in-memory candles.

    python -m benchmarks.tokenizer_speed          # 10M candles
    python -m benchmarks.tokenizer_speed --quick  # 200k candles, seconds

Two figures per scheme, reported separately on purpose:
- token assignment from a ready (n, d) feature matrix (``encode_features``);
- full bars -> tokens (``encode``: causal features + assignment, chunked on two threads):
  the first call in the process, then the best and median of 5 warm calls.
Each is compared with a naive per-row Python encoder of the same scheme
(``benchmarks/references.py``; timed on a subset, extrapolated per candle).
Targets: bins >= 20M candles/s, kmeans >= 2M candles/s.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import polars as pl

from benchmarks._util import machine, measure
from benchmarks.references import naive_bins, naive_kmeans
from candletok.data.sample import load_sample
from candletok.tokenize.base import Tokenizer
from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.kmeans import KMeansTokenizer


def big_bars(n_candles: int) -> pl.DataFrame:
    """n candles made by tiling the real sample into many symbols (each a real series)."""
    base = load_sample(["AAPL", "IBM", "MSFT", "GOOG"])
    reps = max(1, math.ceil(n_candles / base.height))
    frames = [base.with_columns(pl.col("symbol") + f"_{i:04d}") for i in range(reps)]
    return pl.concat(frames).head(n_candles).rechunk()  # contiguous, as read from a file


def bench(name: str, tok: Tokenizer, naive: Any, bars: pl.DataFrame,
          n_naive: int) -> list[dict[str, Any]]:
    n = bars.height
    _, X = tok.feature_matrix(bars)
    tok.encode_features(X[:300_000])  # warm-up (kmeans builds its grid index here)
    m_feat = measure(lambda: tok.encode_features(X), repeat=2)
    # The first full encode in a fresh process pays for first-touch page faults on every
    # new buffer (about 1 s per GB on this VM); later calls reuse the allocator's pages.
    # Both figures are reported: the first call, and the best and median of 5 warm calls.
    m_cold = measure(lambda: tok.encode(bars))
    tok.encode(bars)
    m_full = measure(lambda: tok.encode(bars), repeat=5)
    sub = X[:n_naive]
    t0 = time.perf_counter()
    ref = naive(tok, sub)
    t_naive = (time.perf_counter() - t0) / len(sub)
    assert np.array_equal(np.asarray(ref), m_feat.value[:n_naive]), "naive encoder disagrees"
    naive_rate = 1.0 / t_naive
    rows = []
    stages = (("features -> tokens", m_feat),
              ("bars -> tokens, first call", m_cold),
              ("bars -> tokens, warm", m_full))
    for what, m in stages:
        rate = n / m.seconds
        rows.append({
            "scheme": name, "stage": what, "candles": n, "seconds": m.seconds,
            "per_s": rate, "median_per_s": n / m.median, "naive_per_s": naive_rate,
            "speedup": rate / naive_rate, "peak_rss_mib": m.peak_rss_mib,
        })
    return rows


def main(quick: bool = False) -> list[dict[str, Any]]:
    n = 200_000 if quick else 10_000_000
    bars = big_bars(n)
    fit_bars = load_sample(["AAPL", "IBM", "MSFT", "GOOG"]).filter(
        pl.col("ts") < pl.datetime(2011, 1, 1, time_zone="UTC"))
    rows = bench("bins default (1,053)", BinsTokenizer().fit(fit_bars), naive_bins, bars,
                 20_000 if quick else 200_000)
    rows += bench("kmeans K=512", KMeansTokenizer(k=512).fit(fit_bars), naive_kmeans, bars,
                  300 if quick else 2_000)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(machine())
    rows = main(quick=args.quick)
    print("| scheme | stage | candles | best s | candles/s (best) | candles/s (median) | "
          "naive Python candles/s | speed-up | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scheme']} | {r['stage']} | {r['candles']:,} | {r['seconds']:.2f} | "
              f"{r['per_s'] / 1e6:.2f}M | {r['median_per_s'] / 1e6:.2f}M | "
              f"{r['naive_per_s'] / 1e3:.1f}k | "
              f"{r['speedup']:,.0f}x | {r['peak_rss_mib']:,.0f} |")
