"""Reference encoders the benchmarks race candletok against, on the SAME fitted vocabulary.

Why they exist: a speed figure means little without something to compare it with, and
the comparison is only honest if both sides produce the same tokens. Each function here
takes a fitted candletok tokenizer and reads its edges/centroids, so equal tokens are a
checkable claim (the benchmarks assert it on a subset before they report a ratio).

Two levels, because they answer different questions:

- features -> tokens (the assignment kernel): :func:`naive_bins` (per-row Python,
  ``bisect`` and a mixed radix), :func:`pandas_bins` (one ``pd.cut`` per feature), and
  :func:`naive_kmeans` (per-row squared distances to every centroid);
- bars -> tokens (what a user who wrote it themselves would run): :func:`naive_encode_bins`
  (one Python loop over candles: previous close, causal EWMA scale, features, bins) and
  :func:`pandas_encode_bins` (groupby-shift, groupby-EWM, ``pd.cut``), both with the exact
  feature definitions of :mod:`candletok.tokenize.features` (scale = EWMA(adjust=False) of the log
  true range of earlier bars, seeded with bar 0's ``ln(H/L)``, floored at ``min_scale``).

Only the price features are covered (``gap, body, upper, lower``); a tokenizer with the
optional ``vol`` feature is refused.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import pandas as pd
import polars as pl

from candletok.tokenize.bins import BinsTokenizer
from candletok.tokenize.kmeans import KMeansTokenizer


def _price_only(tok: BinsTokenizer) -> list[list[float]]:
    if tok.features.volume:
        raise ValueError("the reference encoders cover the four price features only")
    return [tok.edges[n].tolist() for n in tok.feature_names]


def naive_bins(tok: BinsTokenizer, X: np.ndarray) -> list[int]:
    """Per-row Python: bisect each feature, combine by mixed radix."""
    edges = [tok.edges[n].tolist() for n in tok.feature_names]
    radix = tok.radix
    out = []
    for row in X.tolist():
        t = 0
        for x, e, r in zip(row, edges, radix, strict=True):
            t = t * r + bisect.bisect_right(e, x)
        out.append(t + tok.N_SPECIAL)
    return out


def naive_kmeans(tok: KMeansTokenizer, X: np.ndarray) -> list[int]:
    """Per-row Python: squared distance to every centroid, keep the smallest."""
    assert tok._cw is not None
    C = tok._cw.tolist()
    w = tok.weights.tolist()
    out = []
    for row in X.tolist():
        z = [a * b for a, b in zip(row, w, strict=True)]
        best, arg = math.inf, 0
        for i, c in enumerate(C):
            d = sum((a - b) ** 2 for a, b in zip(z, c, strict=True))
            if d < best:
                best, arg = d, i
        out.append(arg + tok.N_SPECIAL)
    return out


def _pandas_codes(tok: BinsTokenizer, cols: list[pd.Series]) -> np.ndarray:
    """Mixed-radix token from one ``pd.cut`` per feature. ``right=False`` makes bin i the
    interval [edge[i-1], edge[i]), i.e. the count of edges <= x, as candletok counts."""
    tok_ids = np.zeros(len(cols[0]), dtype=np.int64)
    for x, e, r in zip(cols, _price_only(tok), tok.radix, strict=True):
        codes = pd.cut(x, bins=[-np.inf, *e, np.inf], right=False, labels=False)
        tok_ids = tok_ids * r + codes.to_numpy(dtype=np.int64)
    return tok_ids + tok.N_SPECIAL


def pandas_bins(tok: BinsTokenizer, X: np.ndarray) -> np.ndarray:
    """features -> tokens the pandas way: a DataFrame and ``pd.cut`` per column."""
    df = pd.DataFrame(X, columns=list(tok.feature_names))
    return _pandas_codes(tok, [df[n] for n in tok.feature_names])


def naive_encode_bins(tok: BinsTokenizer, bars: pl.DataFrame) -> list[int]:
    """bars -> tokens with one Python loop over candles (a series' first bar only anchors
    the next candle and yields no token), exactly the candletok feature definitions."""
    edges = _price_only(tok)
    radix = tok.radix
    a, floor = tok.features.alpha, tok.features.min_scale
    log = math.log
    out: list[int] = []
    cols = (bars[c].to_list() for c in ("symbol", "open", "high", "low", "close"))
    last_sym: str | None = None
    ew = pc = 0.0
    for sym, o, h, lo, c in zip(*cols, strict=True):
        if sym != last_sym:  # series start: seed the EWMA with ln(H/L)
            last_sym, ew, pc = sym, log(h / lo), c
            continue
        s = max(ew, floor)
        feats = (
            log(o / pc) / s,
            log(c / o) / s,
            max(log(h / max(o, c)) / s, 0.0),
            max(log(min(o, c) / lo) / s, 0.0),
        )
        t = 0
        for x, e, r in zip(feats, edges, radix, strict=True):
            t = t * r + bisect.bisect_right(e, x)
        out.append(t + tok.N_SPECIAL)
        ew = ew + a * (log(max(h, pc) / min(lo, pc)) - ew)
        pc = c
    return out


def pandas_encode_bins(tok: BinsTokenizer, bars: pl.DataFrame) -> np.ndarray:
    """bars -> tokens in idiomatic pandas: per-symbol shift and EWM, then ``pd.cut``."""
    a, floor = tok.features.alpha, tok.features.min_scale
    df = bars.select("symbol", "open", "high", "low", "close").to_pandas()
    sym = df["symbol"]
    pc = df.groupby(sym, sort=False)["close"].shift(1)
    tr = np.log(np.fmax(df["high"], pc) / np.fmin(df["low"], pc))  # fmax: NaN pc -> H/L
    ew = tr.groupby(sym, sort=False).transform(lambda s: s.ewm(alpha=a, adjust=False).mean())
    scale = ew.groupby(sym, sort=False).shift(1).clip(lower=floor)
    o, h, lo, c = df["open"], df["high"], df["low"], df["close"]
    feats = [
        np.log(o / pc) / scale,
        np.log(c / o) / scale,
        (np.log(h / np.fmax(o, c)) / scale).clip(lower=0.0),
        (np.log(np.fmin(o, c) / lo) / scale).clip(lower=0.0),
    ]
    keep = pc.notna().to_numpy()
    return _pandas_codes(tok, [f[keep].reset_index(drop=True) for f in feats])
